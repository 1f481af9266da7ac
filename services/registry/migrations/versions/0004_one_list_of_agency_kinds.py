"""One list of agency kinds (shared/agencies.py): the consents of agreements that name
``clergy`` name ``church`` instead, the kind the referrals directory gives such agencies.

The renames are written out here, not imported: a migration must keep meaning what it meant
when the list changes again. Downgrade maps back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RENAMES = {"clergy": "church"}
BATCH = 1000


def _rename_kinds(renames: dict[str, str]) -> None:
    """Rewrite the kinds in ``agreements.share_with`` (a JSON list) on PostgreSQL and SQLite
    alike: the rows whose JSON text names an old kind are read and written back in batches,
    keyed by id, so a large table is never held in memory."""
    bind = op.get_bind()
    agreements = sa.table("agreements", sa.column("id", sa.String), sa.column("share_with", sa.JSON))
    as_text = sa.cast(agreements.c.share_with, sa.Text)
    named = sa.or_(*(as_text.like(f'%"{old}"%') for old in renames))
    after = ""
    while True:
        rows = bind.execute(
            sa.select(agreements.c.id, agreements.c.share_with)
            .where(named, agreements.c.id > after)
            .order_by(agreements.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for agreement_id, kinds in rows:
            renamed = sorted({renames.get(kind, kind) for kind in kinds})
            if renamed != kinds:
                bind.execute(
                    agreements.update()
                    .where(agreements.c.id == agreement_id)
                    .values(share_with=renamed)
                )
        after = rows[-1][0]


def upgrade() -> None:
    """Upgrade schema."""
    _rename_kinds(RENAMES)


def downgrade() -> None:
    """Downgrade schema."""
    _rename_kinds({new: old for old, new in RENAMES.items()})
