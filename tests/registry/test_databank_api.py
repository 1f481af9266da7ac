"""The data bank's search and export over HTTP, on SQLite (embedded) and on PostgreSQL (the
trigram indexes): any member's name in either script and with typos, birth dates, and the
coordinators' CSV/XLSX export audited as a read of every family in it."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from conftest import System, family_payload
from openpyxl import load_workbook
from sqlalchemy import select, text

from services.registry.models import tables

BACKENDS = [
    pytest.param("embedded_system", marks=pytest.mark.embedded, id="sqlite"),
    pytest.param("system", marks=pytest.mark.integration, id="postgresql"),
]


@pytest.fixture(params=BACKENDS)
def bank(request: pytest.FixtureRequest) -> System:
    system: System = request.getfixturevalue(request.param)
    return system


def client(system: System, role: str, subject: str | None = None) -> Any:
    c = system.app("registry").test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token(role, subject=subject)}"
    return c


def register(system: System, payload: dict[str, Any]) -> dict[str, Any]:
    response = client(system, "lead_specialist").post("/families", json=payload)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def names(page: dict[str, Any]) -> list[str]:
    return [f["display_name"] for f in page["items"]]


def seed(system: System) -> dict[str, dict[str, Any]]:
    smirnova = family_payload("Смирнова")
    smirnova["members"].append(
        {"role": "child", "full_name": "Смирнов Юрий Иванович", "birth_date": "2016-07-09"}
    )
    shchukina = family_payload("Shchukina", district="Вожегодский район")
    shchukina["members"][0]["full_name"] = "Shchukina Natalya Igorevna"
    shchukina["members"][1]["full_name"] = "Shchukin Petr Olegovich"
    orlova = family_payload("Орлова")
    return {
        "smirnova": register(system, smirnova),
        "shchukina": register(system, shchukina),
        "orlova": register(system, orlova),
    }


def test_search_by_any_members_name_either_script_typos_and_birth_date(bank: System) -> None:
    seed(bank)
    c = client(bank, "coordinator")

    def q(**params: str) -> list[str]:
        response = c.get("/families", query_string=params)
        assert response.status_code == 200, response.get_json()
        return names(response.get_json())

    assert q(q="Yuriy") == ["Смирнова"]  # a child's given name, typed in Latin
    assert q(q="Щукин Пётр") == ["Shchukina"]  # Cyrillic typed (ё), Latin stored
    assert q(q="Natalia") == ["Shchukina"]  # another Latin spelling of Наталья
    assert q(q="Смирнва") == ["Смирнова"]  # a letter missing
    assert q(q="Орлава") == ["Орлова"]  # a wrong letter
    assert q(birth_date="2016-07-09") == ["Смирнова"]
    assert q(q="Смирнова 09.07.2016") == ["Смирнова"]
    assert q(q="Орлова 09.07.2016") == []
    assert q(q="Смирн", district="Вожегодский район") == []
    assert q(surname="Smirnov") == ["Смирнова"]  # the older parameter still works
    bad = c.get("/families", query_string={"q": "31.02.2016"})
    assert bad.status_code == 422 and "q" in bad.get_json()["errors"]
    assert c.get("/families?sort=relevance&q=Орлова").status_code == 200


def test_coordinators_export_the_filtered_list_audited_per_family(bank: System) -> None:
    families = seed(bank)
    coordinator = client(bank, "coordinator", subject="coord-7")
    response = coordinator.get("/families/export?format=csv&district=Тарногский район&sort=number")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Номер", "Семья", "Категория"]
    body = sorted(rows[1:])
    expected = sorted([families["smirnova"]["number"], families["orlova"]["number"]])
    assert [r[0] for r in body] == expected
    smirnova = next(r for r in body if r[1] == "Смирнова")
    assert smirnova[2] == "группа риска" and smirnova[8] == "подготовительный"
    assert smirnova[11] == "2"  # two children

    xlsx = coordinator.get("/families/export?format=xlsx&q=Щукина")
    assert xlsx.status_code == 200
    assert xlsx.mimetype == export_media()
    sheet = load_workbook(io.BytesIO(xlsx.data)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][0] == "Номер" and len(values) == 2
    assert values[1][:2] == [families["shchukina"]["number"], "Shchukina"]

    with bank.session("registry") as session:
        log = tables.audit_log
        exported = session.execute(
            select(log.c.family_id, log.c.fields).where(
                log.c.action == "export", log.c.actor == "coord-7"
            )
        ).all()
    assert sorted(row.family_id for row in exported) == sorted(
        [families["smirnova"]["id"], families["orlova"]["id"], families["shchukina"]["id"]]
    )
    assert all("display_name" in row.fields for row in exported)

    for role in ("lead_specialist", "agency_staff", "auditor"):
        assert client(bank, role).get("/families/export").status_code == 403
    bad = coordinator.get("/families/export?format=pdf")
    assert bad.status_code == 422 and "format" in bad.get_json()["errors"]


def export_media() -> str:
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.mark.integration
def test_name_look_ups_use_the_trigram_index_and_typos_have_theirs(system: System) -> None:
    seed(system)
    with system.session("registry") as session:
        session.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            session.execute(
                text("EXPLAIN SELECT id FROM families WHERE search_names LIKE '% smirn%'")
            ).scalars()
        )
        # the lexicon's own index: the planner takes it once the lexicon is large
        lexicon = session.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_name_words_word_trgm'")
        )
        words = set(session.scalars(text("SELECT word FROM name_words")))
    assert "ix_families_search_names_trgm" in plan, plan
    assert "gist_trgm_ops" in lexicon
    assert {"smirnova", "iuri", "shukina", "natalia"} <= words
