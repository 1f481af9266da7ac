"""Families in the domain layer: entry, changes with events, category history, duplicates,
linking, search. SQLite, no HTTP, no broker."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from registry_helpers import TODAY, family_data, outbox, sqlite_session
from sqlalchemy.orm import Session

from services.registry import (
    domain,
    domain_approvals,
    domain_cases,
    domain_plan,
    domain_search,
    duplicates,
)
from services.registry.models import Case, Family
from shared.errors import Conflict, RuleViolation


@pytest.fixture
def session(tmp_path) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    session = sqlite_session(tmp_path)
    yield session
    session.close()


def test_registration_opens_the_first_case_and_publishes_one_event(session: Session) -> None:
    family = domain.register_family(session, family_data(), by="spec-1")
    case = domain_cases.open_case_of(session, family.id)
    assert case is not None and case.stage == "preparatory" and not case.reentry
    assert family.in_bank and family.stage == "preparatory" and family.display_name == "Иванова"
    assert [e["type"] for e in outbox(session)] == [
        "registry.family.registered",
        "registry.case.opened",
    ]
    [history] = domain.category_history(session, family.id)
    assert (history.category_from, history.category_to, history.changed_by) == (
        None,
        "risk_group",
        "spec-1",
    )
    assert family.members[1].school_class == "3Б" and family.contacts[0].consent


def test_school_is_for_children_only(session: Session) -> None:
    data = family_data()
    data["members"][0]["school"] = "СОШ"
    with pytest.raises(RuleViolation) as info:
        domain.register_family(session, data)
    assert "members.0.school" in (info.value.errors or {})


def test_category_change_is_dated_justified_and_announced(session: Session) -> None:
    family = domain.register_family(session, family_data())
    domain.change_category(session, family, "sop", justification="побои, акт ПДН", by="coord")
    assert family.category == "sop" and family.version == 2
    history = domain.category_history(session, family.id)
    assert [(h.category_from, h.category_to) for h in history] == [
        (None, "risk_group"),
        ("risk_group", "sop"),
    ]
    assert history[1].justification == "побои, акт ПДН" and history[1].changed_on == TODAY
    [changed] = outbox(session, "registry.family.category_changed")
    assert changed["data"]["category_to"] == "sop"
    assert "justification" not in changed["data"]
    [updated] = outbox(session, "registry.family.updated")
    assert updated["data"]["family_version"] == 2 and updated["data"]["category"] == "sop"


@pytest.mark.parametrize(
    ("category", "justification", "changed_on", "field"),
    [
        ("risk_group", "same again", None, "category"),
        ("sop", "   ", None, "justification"),
        ("sop", "future", TODAY + dt.timedelta(days=1), "changed_on"),
        ("sop", "before entry", TODAY - dt.timedelta(days=1), "changed_on"),
    ],
)
def test_bad_category_changes_are_refused_and_change_nothing(
    session: Session, category: str, justification: str, changed_on: dt.date | None, field: str
) -> None:
    family = domain.register_family(session, family_data())
    with pytest.raises(RuleViolation) as info:
        domain.change_category(
            session, family, category, justification=justification, changed_on=changed_on
        )
    assert field in (info.value.errors or {})
    assert family.category == "risk_group" and len(domain.category_history(session, family.id)) == 1


def test_address_and_member_changes_publish_family_updated_others_do_not(
    session: Session,
) -> None:
    family = domain.register_family(session, family_data())
    domain.update_family(session, family, {"notes": "живут с бабушкой"})
    assert outbox(session, "registry.family.updated") == []
    address = {**family_data()["address"], "house": "7", "latitude": 60.5, "longitude": 43.6}
    changed = domain.update_family(session, family, {"address": address})
    assert set(changed) == {"address.house", "address.latitude", "address.longitude"}
    members = [
        {"id": m.id, "role": m.role, "full_name": m.full_name, "birth_date": m.birth_date}
        for m in family.members
    ]
    members.append({"role": "child", "full_name": "Иванов Пётр Ильич", "birth_date": None})
    domain.update_family(session, family, {"members": members})
    updates = outbox(session, "registry.family.updated")
    assert [u["data"]["family_version"] for u in updates] == [2, 3]
    assert updates[0]["data"]["address"]["house"] == "7"
    assert updates[1]["data"]["children_count"] == 2


def test_a_member_id_of_another_family_is_refused(session: Session) -> None:
    one = domain.register_family(session, family_data())
    other = domain.register_family(session, family_data("Петрова"))
    stranger = {"id": other.members[0].id, "role": "mother", "full_name": "Иванова Мария"}
    with pytest.raises(RuleViolation):
        domain.update_family(session, one, {"members": [stranger, *family_data()["members"][1:]]})


# --- duplicates ----------------------------------------------------------------------------------


def _candidates(session: Session, data: dict) -> list[duplicates.Candidate]:  # type: ignore[type-arg]
    return duplicates.find_candidates(session, data)


def test_latin_spelling_of_the_same_family_is_found(session: Session) -> None:
    family = domain.register_family(session, family_data("Васильева", "Наталья Юрьевна"))
    latin = family_data("Vasilyeva", "Natalya Yuryevna", mother="Mariya Petrovna")
    [candidate] = _candidates(session, latin)
    assert candidate.family_id == family.id and candidate.score >= duplicates.STRONG
    assert {"members.full_name", "children.birth_date", "address.house"} <= set(
        candidate.matched_fields
    )


def test_typos_and_given_name_first_order_are_tolerated(session: Session) -> None:
    family = domain.register_family(session, family_data("Кузнецова", "Дарья Андреевна"))
    typo = family_data("Кузнецва", "Дарья Андреевна", mother="Мария Петровна")
    assert _candidates(session, typo)[0].family_id == family.id
    swapped = family_data("Maria", mother="Kuznetsova", child="Darya Andreevna")
    swapped["members"][1]["full_name"] = "Darya Kuznetsova"
    assert _candidates(session, swapped)[0].family_id == family.id


def test_changed_surname_is_found_through_birth_dates(session: Session) -> None:
    family = domain.register_family(session, family_data("Иванова"))
    remarried = family_data("Петрова", child_surname="Иванова", street="ул. Лесная", house="9")
    [candidate] = _candidates(session, remarried)
    assert candidate.family_id == family.id
    assert "members.surname_changed" in candidate.matched_fields
    assert any(m.surname_changed and m.birth_date for m in candidate.members)


def test_a_different_family_with_the_same_surname_is_not_a_candidate(session: Session) -> None:
    domain.register_family(session, family_data("Смирнова", "Ольга Игоревна"))
    other = family_data(
        "Смирнова",
        "Кирилл Олегович",
        mother="Елена Викторовна",
        district="Кичменгско-Городецкий район",
        settlement="с. Кичменгский Городок",
        mother_born=dt.date(1979, 1, 1),
        child_born=dt.date(2010, 6, 6),
    )
    assert _candidates(session, other) == []


def test_transliteration_meets_common_spellings() -> None:
    pairs = [
        ("Юрий", "Yuriy"),
        ("Алексей", "Alexey"),
        ("Щукин", "Shchukin"),
        ("Хохлова", "Khokhlova"),
        ("Цветкова", "Tsvetkova"),
        ("Иванов", "Ivanoff"),
        ("Сергеев", "Sergeyev"),
        ("Мария", "Marija"),
    ]
    for cyrillic, latin in pairs:
        assert duplicates.skeleton(cyrillic) == duplicates.skeleton(latin), (cyrillic, latin)
    assert duplicates.surname_key("Иванова") == duplicates.surname_key("Ivanov")
    assert duplicates.skeleton("Петров") != duplicates.skeleton("Сидоров")


def test_a_second_report_is_linked_instead_of_a_second_family(session: Session) -> None:
    family = domain.register_family(session, family_data("Попова", "Максим Олегович"))
    report = family_data("Popova", "Maksim Olegovich", mother="Mariya Petrovna")
    report["members"].append(
        {"role": "child", "full_name": "Попова Вера Олеговна", "birth_date": dt.date(2019, 1, 1)}
    )
    report["contacts"] = [{"kind": "email", "value": "popova@example.ru", "consent": False}]
    link = domain.link_report(session, family, report, by="coord", score=0.9)
    assert link.members_added == 1 and len(family.members) == 3
    assert {c.kind for c in family.contacts} == {"phone", "email"}
    assert session.query(Family).count() == 1
    assert outbox(session, "registry.family.updated")[-1]["data"]["children_count"] == 2


def test_a_record_registered_twice_is_merged_and_deleted(session: Session) -> None:
    family = domain.register_family(session, family_data("Попова"))
    twice = domain.register_family(session, family_data("Popova", mother="Mariya Petrovna"))
    link = domain.merge_record(session, twice, family, by="coord")
    session.flush()
    assert link.merged_family_id == twice.id and link.score and link.score > 0.7
    assert session.get(Family, twice.id) is None
    assert session.query(Case).filter(Case.family_id == twice.id).count() == 0
    removed = [
        e for e in outbox(session, "registry.family.updated") if e["data"]["family_id"] == twice.id
    ]
    assert removed and removed[0]["data"]["removed"] is True


def test_a_record_with_casework_is_not_merged(session: Session) -> None:
    family = domain.register_family(session, family_data("Попова"))
    twice = domain.register_family(session, family_data("Popova"))
    case = domain_cases.open_case_of(session, twice.id)
    assert case is not None
    domain_plan.add_measure(
        session,
        case,
        {"title": "Консультация", "kind": "counselling", "deadline": TODAY},
    )
    with pytest.raises(RuleViolation):
        domain.merge_record(session, twice, family)


def test_one_open_case_per_family(session: Session) -> None:
    family = domain.register_family(session, family_data())
    with pytest.raises(Conflict):
        domain_cases.open_case(session, family, source="report")


# --- search --------------------------------------------------------------------------------------


def _search(session: Session, **args: object) -> list[str]:
    stmt = domain_search.search_families(args, session=session)
    return [f.display_name for f in session.scalars(stmt)]


def test_search_by_surname_start_in_either_script_and_filters(session: Session) -> None:
    ivanova = domain.register_family(session, family_data("Иванова"))
    domain.register_family(session, family_data("Петрова", district="Другой район"))
    domain.register_family(session, family_data("Ёлкина", category="sop"))
    session.flush()
    assert _search(session, surname="ивано") == ["Иванова"]
    assert _search(session, surname="Ivanov") == ["Иванова"]
    assert _search(session, surname="Елкин") == ["Ёлкина"]
    assert _search(session, surname="нова") == []  # the start of a name (or a typo), not any part
    assert _search(session, district="Другой район") == ["Петрова"]
    assert _search(session, category="sop") == ["Ёлкина"]
    assert _search(session, sort="display_name") == ["Ёлкина", "Иванова", "Петрова"]
    assert _search(session, in_bank=False) == []
    case = domain_cases.open_case_of(session, ivanova.id)
    assert case is not None
    domain_approvals.assign_lead(session, case, "spec-7", by="coord")
    domain_plan.add_measure(
        session, case, {"title": "Проверка школы", "kind": "school_check", "deadline": TODAY}
    )
    session.flush()
    assert _search(session, lead_specialist="spec-7") == ["Иванова"]
    assert _search(session, overdue=True) == []
    assert _search(session, overdue=True, today=TODAY + dt.timedelta(days=1)) == ["Иванова"]
    assert _search(session, stage="support") == []


def test_the_family_count_stops_at_the_cap(session: Session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for surname in ("Иванова", "Иванцова", "Иваненко"):
        domain.register_family(session, family_data(surname))
    session.flush()
    stmt = domain_search.search_families({"surname": "иван"}, session=session)
    exact = domain_search.page_of(session, stmt, page=1, page_size=1)
    assert (exact["total"], exact["total_exact"], exact["pages"]) == (3, True, 3)
    monkeypatch.setattr(domain_search, "COUNT_CAP", 2)
    capped = domain_search.page_of(session, stmt, page=1, page_size=1)
    assert (capped["total"], capped["total_exact"], len(capped["items"])) == (2, False, 1)
    deep = domain_search.page_of(session, stmt, page=3, page_size=1)
    assert len(deep["items"]) == 1 and deep["total"] == 3 and deep["total_exact"]


def test_search_any_members_name_in_either_script_with_typos_and_birth_dates(
    session: Session,
) -> None:
    domain.register_family(
        session, family_data("Смирнова", child="Юрий Петрович", child_born=dt.date(2016, 7, 9))
    )
    domain.register_family(session, family_data("Щукина", mother="Наталья Игоревна"))
    domain.register_family(session, family_data("Smirnoff", mother="Anna"))  # not a Smirnova
    session.flush()
    # the child's given name, in Latin, and its other spellings
    assert _search(session, q="Yuriy") == ["Смирнова"]
    assert _search(session, q="Iurii") == ["Смирнова"]
    assert _search(session, q="юр") == ["Смирнова"]
    # Latin typed, Cyrillic stored, and the other way round
    assert _search(session, q="Schukina") == ["Щукина"]
    assert _search(session, q="Natalia") == ["Щукина"]
    # Смирнофф is "smirnov": Smirnoff whole, then Смирнова, which starts with it
    assert _search(session, q="Смирнофф") == ["Smirnoff", "Смирнова"]
    # typos: a letter missing, one wrong; each word must match some member
    assert _search(session, q="Смирнва") == ["Смирнова", "Smirnoff"]  # the closest first
    assert _search(session, q="Щюкина Наталья") == ["Щукина"]
    assert _search(session, q="Смирнва Наталья") == []
    assert _search(session, q="Жуковская") == []  # nothing near it: no guess
    # a birth date, alone, in the box with a name, or as its own filter
    assert _search(session, q="09.07.2016") == ["Смирнова"]
    assert _search(session, q="Смирнова 2016-07-09") == ["Смирнова"]
    assert _search(session, q="Щукина 09.07.2016") == []
    assert _search(session, birth_date=dt.date(2016, 7, 9)) == ["Смирнова"]


def test_search_ranks_whole_names_before_starts_and_typos(session: Session) -> None:
    domain.register_family(session, family_data("Иванов"))
    domain.register_family(session, family_data("Ивановская"))
    domain.register_family(session, family_data("Петрова", mother="Иванна Сергеевна"))
    session.flush()
    # newest first would put Ивановская first; the whole word ranks first
    assert _search(session, q="Иванов") == ["Иванов", "Ивановская"]
    assert _search(session, q="Иванов", sort="-created_at") == ["Ивановская", "Иванов"]
    assert _search(session, q="Иванна") == ["Петрова"]
    # a typo is matched through the closest known words, the closest first
    assert _search(session, q="Ивонов")[0] == "Иванов"
    # the API's page (one window query, ranked in Python) in the statement's order
    for q in ("Иванов", "Иванна", "Ивонов", "Ив"):
        page = domain_search.find(session, {"q": q}, page=1, page_size=2)
        assert [f.display_name for f in page["items"]] == _search(session, q=q)[:2]
    assert domain_search.find(session, {"q": "Ив"}, page=2, page_size=2)["total"] == 3


def test_past_the_cap_a_common_name_pages_newest_first(session: Session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for surname in ("Иванов", "Ивановская", "Иванова"):
        domain.register_family(session, family_data(surname))
    session.flush()
    monkeypatch.setattr(domain_search, "COUNT_CAP", 2)
    page = domain_search.find(session, {"q": "Иванов"}, page=1, page_size=2)
    assert (page["total"], page["total_exact"]) == (2, False)
    assert [f.display_name for f in page["items"]] == ["Иванова", "Ивановская"]
