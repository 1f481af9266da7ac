"""A signal the registry refused returns to triage with the reason (``registry.signal.refused``):
the reason and when it came back are kept on the signal for the coordinator.

Revision ID: 0011_signal_refusals
Revises: 0010_answer_link_floors
Create Date: 2026-12-07 18:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0011_signal_refusals'
down_revision: Union[str, Sequence[str], None] = '0010_answer_link_floors'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refusal_reason', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('refusal_detail', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('refused_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_column('refused_at')
        batch_op.drop_column('refusal_detail')
        batch_op.drop_column('refusal_reason')
