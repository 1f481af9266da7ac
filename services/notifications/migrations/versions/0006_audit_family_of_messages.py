"""audit trail append-only in SQLite (issue #12), as the trigger of the first migration makes
it on PostgreSQL; messages keep the family they concern, so reading one is audited for it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 18:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa

from shared.tables import protect_audit_log_in_sqlite, unprotect_audit_log_in_sqlite


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    protect_audit_log_in_sqlite(op)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('family_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_family_id'), ['family_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_family_id'))
        batch_op.drop_column('family_id')
    unprotect_audit_log_in_sqlite(op)
