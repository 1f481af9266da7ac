"""audit trail append-only in SQLite (issue #12): BEFORE UPDATE and BEFORE DELETE triggers
abort, as the trigger of the first migration does on PostgreSQL

Revision ID: 0009_audit_append_only
Revises: 0008_consent_withdrawal
Create Date: 2026-12-07 18:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op

from shared.tables import protect_audit_log_in_sqlite, unprotect_audit_log_in_sqlite


# revision identifiers, used by Alembic.
revision: str = '0009_audit_append_only'
down_revision: Union[str, Sequence[str], None] = '0008_consent_withdrawal'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    protect_audit_log_in_sqlite(op)


def downgrade() -> None:
    unprotect_audit_log_in_sqlite(op)
