"""audit trail append-only in SQLite (issue #12): BEFORE UPDATE and BEFORE DELETE triggers
abort, as the trigger of the first migration does on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 18:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op

from shared.tables import protect_audit_log_in_sqlite, unprotect_audit_log_in_sqlite


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    protect_audit_log_in_sqlite(op)


def downgrade() -> None:
    unprotect_audit_log_in_sqlite(op)
