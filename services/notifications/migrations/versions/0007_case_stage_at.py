"""When the known stage of a case was set: stage events that arrive out of order are applied by
their own moment, apart from the lead's (a stage can move back: final -> support).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 18:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('known_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('known_cases', schema=None) as batch_op:
        batch_op.drop_column('stage_at')
