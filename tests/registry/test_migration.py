"""Data migrations of the registry: families entered before cases existed get their first case
and category history, the address history is backfilled, and consents name agency kinds from
the one list (on SQLite and on the real PostgreSQL)."""

from __future__ import annotations

import datetime as dt

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
        words = conn.execute(sa.text("SELECT word FROM name_words ORDER BY word")).scalars().all()
    engine.dispose()
    # surnames and given names as skeletons (0006), patronymics left out
    assert family["display_name"] == "Ёлкина"
    assert family["search_names"] == " elkina ana elkin ivan "
    assert words == ["ana", "elkin", "elkina", "ivan"]
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


def test_upgrade_to_0003_backfills_the_address_history(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each family's current address holds from its entry: the earlier of the record's creation
    and its first case."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    db.upgrade("registry", url, "0002")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO families (id, number, category, region, district, settlement, street,"
                " house, version, created_at, updated_at) VALUES"
                " ('f1', 'F-1', 'sop', 'R', 'D1', 'S', 'ул. Лесная', '3', 1,"
                " '2024-03-01 10:00:00', '2024-03-01 10:00:00'),"
                " ('f2', 'F-2', 'sop', 'R', 'D2', 'S', NULL, NULL, 1,"
                " '2024-05-01 10:00:00', '2024-05-01 10:00:00')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO cases (id, family_id, stage, opened_on, reentry, source,"
                " entry_category, opened_by, stage_changed_at, version, created_at) VALUES"
                " ('c1', 'f1', 'closed', '2023-01-10', 0, 'x', 'sop', 'x',"
                " '2024-03-01 10:00:00', 1, '2024-03-01 10:00:00')"
            )
        )
    db.upgrade("registry", url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT family_id, valid_from, district, street, house FROM family_addresses"
                " ORDER BY family_id"
            )
        ).all()
    engine.dispose()
    assert [tuple(str(v) if v is not None else None for v in row) for row in rows] == [
        ("f1", "2023-01-10", "D1", "ул. Лесная", "3"),
        ("f2", "2024-05-01", "D2", None, None),
    ]


AGREEMENTS = sa.table(
    "agreements",
    sa.column("id", sa.String),
    sa.column("case_id", sa.String),
    sa.column("signed_on", sa.Date),
    sa.column("valid_until", sa.Date),
    sa.column("consent_data_processing", sa.Boolean),
    sa.column("share_with", sa.JSON),
    sa.column("recorded_by", sa.String),
    sa.column("recorded_at", db.UTCDateTime),
)


def test_upgrade_to_0004_names_clergy_church_and_the_downgrade_maps_back(
    empty_database: str,
) -> None:
    """Consents stored before the one list of agency kinds name ``church`` where they said
    ``clergy``; other kinds and other agreements are left as they were."""
    url = empty_database
    db.upgrade("registry", url, "0003")
    engine = db.make_engine(url)
    at = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO families (id, number, category, region, district, settlement, version,"
                " created_at, updated_at) VALUES ('f1', 'F-1', 'sop', 'R', 'D', 'S', 1, :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            sa.text(
                "INSERT INTO cases (id, family_id, stage, opened_on, reentry, source,"
                " entry_category, opened_by, stage_changed_at, version, created_at) VALUES"
                " ('c1', 'f1', 'support', :on, :no, 'x', 'sop', 'x', :at, 1, :at)"
            ),
            {"on": at.date(), "no": False, "at": at},
        )
        conn.execute(
            AGREEMENTS.insert(),
            [
                {
                    "id": agreement_id,
                    "case_id": "c1",
                    "signed_on": at.date(),
                    "valid_until": at.date() + dt.timedelta(days=365),
                    "consent_data_processing": True,
                    "share_with": kinds,
                    "recorded_by": "spec-1",
                    "recorded_at": at,
                }
                for agreement_id, kinds in (
                    ("a1", ["clergy", "school"]),
                    ("a2", ["health", "kindergarten"]),
                    ("a3", []),
                )
            ],
        )

    def stored() -> dict[str, list[str]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(AGREEMENTS.c.id, AGREEMENTS.c.share_with)).all()
        return dict(rows)  # type: ignore[arg-type]

    db.upgrade("registry", url)
    assert stored() == {"a1": ["church", "school"], "a2": ["health", "kindergarten"], "a3": []}
    from alembic import command

    command.downgrade(db.alembic_config("registry", url), "0003")
    assert stored() == {"a1": ["clergy", "school"], "a2": ["health", "kindergarten"], "a3": []}
    engine.dispose()
