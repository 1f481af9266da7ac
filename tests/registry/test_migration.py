"""Families entered before cases existed get their first case and category history on upgrade."""

from __future__ import annotations

import sqlalchemy as sa

from shared import db


def test_upgrade_backfills_cases_history_and_search_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade("registry", url, "0001")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO families (id, number, category, region, district, settlement, version,"
                " created_at, updated_at) VALUES ('f1', 'F-1', 'sop', 'R', 'D', 'S', 1,"
                " '2024-03-01 10:00:00', '2024-03-01 10:00:00')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO members (id, family_id, position, role, full_name) VALUES"
                " ('m1', 'f1', 0, 'mother', 'Ёлкина Анна Петровна'),"
                " ('m2', 'f1', 1, 'child', 'Ёлкин Иван Сергеевич')"
            )
        )
    db.upgrade("registry", url)
    with engine.connect() as conn:
        family = conn.execute(sa.text("SELECT * FROM families")).mappings().one()
        case = conn.execute(sa.text("SELECT * FROM cases")).mappings().one()
        history = conn.execute(sa.text("SELECT * FROM category_changes")).mappings().one()
        keys = conn.execute(sa.text("SELECT surname_key, given_key FROM members")).all()
    engine.dispose()
    assert family["display_name"] == "Ёлкина" and " елкина elkina " in family["search_names"]
    assert family["stage"] == "preparatory" and family["in_bank"]
    assert (case["stage"], str(case["opened_on"]), case["closed_on"]) == (
        "preparatory",
        "2024-03-01",
        None,
    )
    assert (history["category_from"], history["category_to"]) == (None, "sop")
    assert all(surname and given for surname, given in keys)


def test_downgrade_keeps_the_families_and_members(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'down.db'}"
    db.upgrade("registry", url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO families (id, number, category, region, district, settlement, version,"
                " created_at, updated_at) VALUES ('f1', 'F-1', 'sop', 'R', 'D', 'S', 1,"
                " '2024-03-01 10:00:00', '2024-03-01 10:00:00')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO members (id, family_id, position, role, full_name) VALUES"
                " ('m1', 'f1', 0, 'child', 'Ёлкин Иван')"
            )
        )
    from alembic import command

    command.downgrade(db.alembic_config("registry", url), "0001")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM members")).scalar_one() == 1
    engine.dispose()
