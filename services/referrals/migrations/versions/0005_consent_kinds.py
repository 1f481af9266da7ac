"""One list of agency kinds (shared/agencies.py): the consent read model kept the registry's
``clergy``, which the directory calls ``church``; the stored consents say ``church`` now, so a
consent is checked by comparing the kinds as they are, with no mapping.

The renames are written out here, not imported: a migration must keep meaning what it meant
when the list changes again. Downgrade maps back.

Revision ID: 0005_consent_kinds
Revises: 0004
Create Date: 2026-11-24 10:00:00.000000

"""
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005_consent_kinds'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RENAMES = {"clergy": "church"}
BATCH = 1000


def _rename_kinds(renames: dict[str, str]) -> None:
    """Rewrite the kinds in ``consents.share_with`` (a JSON list) on PostgreSQL and SQLite
    alike: the rows whose JSON text names an old kind are read and written back in batches,
    keyed by agreement id, so a large table is never held in memory."""
    bind = op.get_bind()
    consents = sa.table(
        "consents", sa.column("agreement_id", sa.String), sa.column("share_with", sa.JSON)
    )
    as_text = sa.cast(consents.c.share_with, sa.Text)
    named = sa.or_(*(as_text.like(f'%"{old}"%') for old in renames))
    after = ""
    while True:
        rows = bind.execute(
            sa.select(consents.c.agreement_id, consents.c.share_with)
            .where(named, consents.c.agreement_id > after)
            .order_by(consents.c.agreement_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for agreement_id, kinds in rows:
            renamed = sorted({renames.get(kind, kind) for kind in kinds})
            if renamed != kinds:
                bind.execute(
                    consents.update()
                    .where(consents.c.agreement_id == agreement_id)
                    .values(share_with=renamed)
                )
        after = rows[-1][0]


def upgrade() -> None:
    """Upgrade schema."""
    _rename_kinds(RENAMES)


def downgrade() -> None:
    """Downgrade schema."""
    _rename_kinds({new: old for old, new in RENAMES.items()})
