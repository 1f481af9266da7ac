"""The data bank's name search: every word of every member's name as its folded Latin skeleton
in ``families.search_names`` (was: surnames in Cyrillic and Latin), and the lexicon of those
words (``name_words``) that the typo look-up reads, trigram-indexed (GiST) on PostgreSQL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 18:10:00.000000

"""
import json
from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BATCH = 1000


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'name_words',
        sa.Column('word', sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint('word', name=op.f('pk_name_words')),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index('ix_name_words_word_trgm', 'name_words', ['word'], unique=False, postgresql_using='gist', postgresql_ops={'word': 'gist_trgm_ops'})
    _backfill()


def _backfill() -> None:
    """Existing families, a batch at a time: their search text and their words in the lexicon."""
    from services.registry.name_search import search_names

    bind = op.get_bind()
    last = ""
    words: set[str] = set()
    while True:
        ids = bind.execute(
            sa.text("SELECT id FROM families WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": BATCH},
        ).scalars().all()
        if not ids:
            break
        members: dict[str, list[dict[str, object]]] = {i: [] for i in ids}
        rows = bind.execute(
            sa.text(
                "SELECT family_id, full_name, former_surnames FROM members "
                "WHERE family_id IN :ids ORDER BY family_id, position"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": list(ids)},
        ).mappings()
        for row in rows:
            former = row["former_surnames"]
            if isinstance(former, str):
                former = json.loads(former)
            members[row["family_id"]].append({"full_name": row["full_name"], "former_surnames": former})
        updates = [{"id": i, "s": search_names(m)} for i, m in members.items()]
        bind.execute(sa.text("UPDATE families SET search_names = :s WHERE id = :id"), updates)
        for update in updates:
            words.update(update["s"].split())
        last = ids[-1]
    ordered = sorted(words)
    for start in range(0, len(ordered), BATCH):
        bind.execute(
            sa.text("INSERT INTO name_words (word) VALUES (:w)"),
            [{"w": w} for w in ordered[start : start + BATCH]],
        )


def downgrade() -> None:
    """Downgrade schema: the surname search text is rebuilt as it was (surnames, both scripts)."""
    op.drop_index('ix_name_words_word_trgm', table_name='name_words', postgresql_using='gist', postgresql_ops={'word': 'gist_trgm_ops'})
    op.drop_table('name_words')
    from services.registry.duplicates import normalise, split_name, transliterate

    bind = op.get_bind()
    families = bind.execute(sa.text("SELECT id FROM families")).scalars().all()
    for family_id in families:
        rows = bind.execute(
            sa.text("SELECT full_name FROM members WHERE family_id = :f ORDER BY position"),
            {"f": family_id},
        ).scalars().all()
        words: list[str] = []
        for full_name in rows:
            for surname in split_name(full_name)[:1]:
                for form in (normalise(surname), transliterate(surname)):
                    if form and form not in words:
                        words.append(form)
        bind.execute(
            sa.text("UPDATE families SET search_names = :s WHERE id = :id"),
            {"s": " " + " ".join(words) + " ", "id": family_id},
        )
