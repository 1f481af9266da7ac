"""The changes feed's commit-ordered change number on referrals (see services/referrals/changes.py),
indexed with the id in the feed's order.

Referrals already stored get 0: older than any change to come, so a reader starting afresh gets
them first (cursors of the former feed are refused: its order was another). Every insert and
update through the table sets the number itself (the column's default and on-update); the
server default 0 only fills the rows already there.

Revision ID: 0006_change_feed
Revises: 0005_consent_kinds
Create Date: 2026-11-24 10:05:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0006_change_feed'
down_revision: Union[str, Sequence[str], None] = '0005_consent_kinds'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('change_seq', sa.BigInteger(), server_default='0', nullable=False)
        )
        batch_op.create_index('ix_referrals_change', ['change_seq', 'id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_change')
        batch_op.drop_column('change_seq')
