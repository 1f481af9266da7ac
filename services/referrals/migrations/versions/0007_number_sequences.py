"""Referral numbers from one PostgreSQL sequence per year (see services/referrals/numbering.py):
each year counted so far in ``referral_counters`` gets its sequence, continuing after the last
number given. SQLite keeps the counter rows: nothing to do there. Downgrade writes the
sequences' positions back into the counters and drops the sequences.

Stop the old web processes before this runs: one still bumping the counter row would give
numbers the sequence gives again (the unique number would refuse the second create).

Revision ID: 0007_number_sequences
Revises: 0006_change_feed
Create Date: 2026-11-24 12:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007_number_sequences'
down_revision: Union[str, Sequence[str], None] = '0006_change_feed'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PREFIX = "referral_number_"  # written out: numbering.py may change, this must not


def upgrade() -> None:
    """Upgrade schema."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for year, last in bind.execute(sa.text("SELECT year, last FROM referral_counters")).all():
        bind.execute(
            sa.text(f"CREATE SEQUENCE IF NOT EXISTS {PREFIX}{int(year)} START WITH {int(last) + 1}")
        )


def downgrade() -> None:
    """Downgrade schema."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    rows = bind.execute(
        sa.text(
            "SELECT sequencename, last_value FROM pg_sequences "
            "WHERE schemaname = current_schema() AND sequencename LIKE :pattern"
        ),
        {"pattern": PREFIX + "%"},
    ).all()
    for name, last_value in rows:
        suffix = name[len(PREFIX):]
        if not suffix.isdigit():
            continue
        year = int(suffix)
        if last_value is not None:
            bind.execute(
                sa.text(
                    "INSERT INTO referral_counters (year, last) VALUES (:year, :last) "
                    "ON CONFLICT (year) DO UPDATE SET last = GREATEST(referral_counters.last, :last)"
                ),
                {"year": year, "last": int(last_value)},
            )
        bind.execute(sa.text(f"DROP SEQUENCE {PREFIX}{year}"))
