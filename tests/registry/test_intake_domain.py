"""Accepted signals without a family id (intake), break-the-glass durations, the dated address
history and statistics by the address at the time, in the domain layer (SQLite, no HTTP, no
broker)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from registry_helpers import TODAY, family_data, outbox, sqlite_session
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.registry import (
    access,
    addresses,
    domain,
    domain_cases,
    duplicates,
    duplicates_signal,
    intake,
    statistics,
)
from services.registry.models import Case, ContactEntry, Family, FamilyAddress, Intake
from shared.auth.context import principal_context
from shared.auth.principal import Principal
from shared.config import ConfigError
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, RuleViolation

DISTRICT = "Тарногский район"
SETTLEMENT = "с. Тарногский Городок"
TOMORROW = TODAY + dt.timedelta(days=1)


@pytest.fixture
def session(tmp_path) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    session = sqlite_session(tmp_path)
    yield session
    session.close()


def signal(signal_id: str = "sig-1", **family: Any) -> dict[str, Any]:
    """The data of ``referrals.signal.accepted`` without a family id, as the consumer gets it."""
    return {
        "signal_id": signal_id,
        "district": DISTRICT,
        "priority": "amber",
        "reporter_agency_id": "school-1",
        "triage_due_at": utcnow(),
        "family_id": None,
        "family": {
            "family_id": None,
            "number": None,
            "surname": None,
            "display_name": None,
            "address": None,
            "settlement": None,
            "children": [],
            "note": None,
            **family,
        },
        "observed_at": utcnow(),
        "accepted_by": "coord-1",
        "at": utcnow(),
    }


def types(session: Session) -> list[str]:
    return [e["type"] for e in outbox(session)]


# --- intake: matching the family the signal describes ------------------------------------------


def test_free_text_address_and_children_become_a_report() -> None:
    assert duplicates_signal.parse_address("ул. Советская, д. 1, кв. 5") == {
        "street": "ул. Советская",
        "house": "1",
        "flat": "5",
    }
    assert duplicates_signal.parse_address("Советская 12/2-7") == {
        "street": "Советская",
        "house": "12/2",
        "flat": "7",
    }
    assert duplicates_signal.parse_address(None) == {"street": None, "house": None, "flat": None}
    report = duplicates_signal.report_from_known(
        {
            "surname": "Морозова",
            "display_name": "Морозова Мария Петровна",
            "children": [{"name": "Анна", "birth_date": "2015-02-03", "class": "3Б"}, "junk"],
        },
        district=DISTRICT,
    )
    assert [(m["role"], m["full_name"]) for m in report["members"]] == [
        ("other", "Морозова Мария Петровна"),
        ("child", "Морозова Анна"),
    ]
    assert report["members"][1]["birth_date"] == dt.date(2015, 2, 3)
    assert report["members"][1]["school_class"] == "3Б"


def test_no_candidate_registers_the_family_as_known_and_opens_a_case(session: Session) -> None:
    domain.register_family(session, family_data("Смирнова", "Ольга Игоревна"))  # gives the region
    session.flush()
    outbox_before = len(outbox(session))
    data = signal(
        surname="Морозова",
        address="ул. Советская, д. 7",
        settlement=SETTLEMENT,
        children=[{"name": "Анна", "birth_date": "2015-02-03", "school": "Тарногская СОШ"}],
        note="пропуски занятий",
    )
    found = intake.accept_unmatched(session, data)
    assert found.state == "registered" and found.resolution == "automatic"
    family = session.get(Family, found.family_id)
    assert family is not None
    assert (family.category, family.district, family.region) == (
        "risk_group",
        DISTRICT,
        "Вологодская область",
    )
    assert (family.street, family.house, family.reported_by_agency) == (
        "ул. Советская",
        "7",
        "school-1",
    )
    assert family.missing_fields == ["members.adult", "contacts"]
    assert family.members[0].full_name == "Морозова Анна" and family.members[0].school
    case = domain_cases.open_case_of(session, family.id)
    assert case is not None and case.id == found.case_id
    assert (case.stage, case.source) == ("preparatory", "signal:sig-1")
    assert types(session)[outbox_before:] == ["registry.family.registered", "registry.case.opened"]
    [entry] = session.scalars(select(ContactEntry).where(ContactEntry.case_id == case.id)).all()
    assert entry.kind == "signal" and entry.source_id == "signal:sig-1"

    again = intake.accept_unmatched(session, data)  # the same signal once more
    assert again.id == found.id
    assert session.scalar(select(func.count()).select_from(Family)) == 2
    assert session.scalar(select(func.count()).select_from(Case)) == 2
    assert len(outbox(session)) == outbox_before + 2


def test_a_signal_naming_nobody_still_registers_a_family_with_a_child(session: Session) -> None:
    found = intake.accept_unmatched(session, signal(settlement=SETTLEMENT))
    family = session.get(Family, found.family_id)
    assert found.state == "registered" and family is not None
    assert [m.role for m in family.members] == ["child"]
    assert family.missing_fields is not None
    assert {"address.region", "address.street", "members.adult", "members.child"} <= set(
        family.missing_fields
    )


def test_one_confident_candidate_attaches_to_its_open_case(session: Session) -> None:
    family = domain.register_family(session, family_data("Морозова"))
    case = domain_cases.open_case_of(session, family.id)
    session.flush()
    before = len(outbox(session))
    found = intake.accept_unmatched(
        session,
        signal(
            surname="Morozova",  # the school's system writes in Latin
            children=[{"name": "Anna", "birth_date": "2015-02-03"}],
        ),
    )
    assert found.state == "attached" and found.family_id == family.id
    assert case is not None and found.case_id == case.id
    assert found.candidates[0]["score"] >= intake.CONFIDENT
    assert len(outbox(session)) == before  # no new case, no new family
    assert session.scalar(select(func.count()).select_from(Family)) == 1
    assert session.scalar(select(ContactEntry.id).where(ContactEntry.source_id == "signal:sig-1"))


def test_a_namesake_born_the_same_day_under_another_surname_is_not_attached(
    session: Session,
) -> None:
    """Anna born on the same day in the same settlement, reported under another surname: maybe
    the same child after a change of surname, maybe not. The coordinator decides."""
    domain.register_family(session, family_data("Соколова", "Анна Ивановна"))
    found = intake.accept_unmatched(
        session,
        signal(
            surname="Морозова",
            settlement=SETTLEMENT,
            address="ул. Школьная, д. 4",
            children=[{"name": "Анна", "birth_date": "2015-02-03"}],
        ),
    )
    [candidate] = found.candidates
    assert "members.surname_changed" in candidate["matched_fields"]
    assert "address.house" not in candidate["matched_fields"]  # house 4 is not house 1
    assert found.state == "pending" and found.family_id is None


def test_a_family_out_of_the_bank_gets_a_new_case_by_its_number(session: Session) -> None:
    family = domain.register_family(session, family_data("Морозова"))
    case = domain_cases.open_case_of(session, family.id)
    assert case is not None
    case.closed_on, case.stage, family.in_bank = TODAY, "closed", False
    session.flush()
    found = intake.accept_unmatched(session, signal(number=family.number))
    assert found.state == "attached" and found.candidates[0]["matched_fields"] == ["number"]
    new = domain_cases.open_case_of(session, family.id)
    assert new is not None and new.reentry and new.id == found.case_id
    assert types(session)[-1] == "registry.case.opened"


def test_several_plausible_candidates_wait_for_the_coordinator(session: Session) -> None:
    first = domain.register_family(session, family_data("Морозова"))
    domain.register_family(
        session,
        family_data(
            "Морозова",
            "Кирилл Олегович",
            mother="Елена Викторовна",
            street="ул. Лесная",
            house="5",
            mother_born=dt.date(1980, 1, 1),
            child_born=dt.date(2011, 1, 1),
        ),
    )
    session.flush()
    before = len(outbox(session))
    found = intake.accept_unmatched(session, signal(surname="Морозова", settlement=SETTLEMENT))
    assert found.state == "pending" and len(found.candidates) == 2
    assert all(c["score"] < intake.CONFIDENT for c in found.candidates)
    [pending] = outbox(session)[before:]
    assert pending["type"] == "registry.intake.pending"
    assert pending["data"] == {
        "intake_id": found.id,
        "signal_id": "sig-1",
        "district": DISTRICT,
        "candidates": 2,
    }
    assert "Морозова" not in json.dumps(pending)
    assert session.scalar(select(func.count()).select_from(Family)) == 2

    with pytest.raises(RuleViolation) as info:
        intake.resolve(session, found, family_id="no-such-family", by="coord-2")
    assert "family_id" in (info.value.errors or {})
    intake.resolve(session, found, family_id=first.id, by="coord-2")
    assert (found.state, found.family_id, found.resolution, found.resolved_by) == (
        "attached",
        first.id,
        "coordinator",
        "coord-2",
    )
    with pytest.raises(Conflict):
        intake.resolve(session, found, register=True, by="coord-2")


def test_a_pending_intake_resolved_by_registering_a_new_family(session: Session) -> None:
    domain.register_family(session, family_data("Морозова"))
    found = intake.accept_unmatched(session, signal(surname="Морозова"))
    assert found.state == "pending" and len(found.candidates) == 1  # plausible, not confident
    intake.resolve(session, found, register=True, by="coord-2")
    assert found.state == "registered"
    assert session.scalar(select(func.count()).select_from(Family)) == 2
    assert types(session)[-2:] == ["registry.family.registered", "registry.case.opened"]


def test_completing_a_signal_family_clears_its_missing_fields(session: Session) -> None:
    found = intake.accept_unmatched(
        session,
        signal(surname="Морозова", children=[{"name": "Анна", "birth_date": "2015-02-03"}]),
    )
    family = session.get(Family, found.family_id)
    assert family is not None and family.missing_fields is not None
    assert "address.region" in family.missing_fields
    complete = family_data("Морозова")
    child = family.members[0]
    domain.update_family(
        session,
        family,
        {
            "address": complete["address"],
            "members": [
                complete["members"][0],
                {
                    "id": child.id,
                    "role": "child",
                    "full_name": child.full_name,
                    "birth_date": child.birth_date,
                },
            ],
        },
    )
    assert family.missing_fields == ["contacts"]
    domain.update_family(session, family, {"contacts": complete["contacts"]})
    assert family.missing_fields is None
    session.flush()
    assert session.scalar(select(func.count()).where(Family.missing_fields.is_(None))) == 1


def test_the_intake_decision_rule() -> None:
    def cand(score: float) -> duplicates.Candidate:
        return duplicates.Candidate("f", "F-1", score, [])

    assert intake.decide([]) == intake.REGISTER
    assert intake.decide([cand(0.9)]) == intake.ATTACH
    assert intake.decide([cand(0.7)]) == intake.PENDING
    assert intake.decide([cand(0.9), cand(0.6)]) == intake.PENDING
    assert intake.decide([cand(0.9), cand(0.4)]) == intake.ATTACH


# --- break the glass ----------------------------------------------------------------------------


def staff(subject: str = "inspector-1", role: str = "agency_staff") -> Principal:
    return Principal(subject=subject, roles=frozenset({role}), agency_id="pdn-1")


def test_break_glass_for_the_requested_minutes_within_the_maximum(session: Session) -> None:
    family = domain.register_family(session, family_data())
    now = utcnow()
    with principal_context(staff()):
        default = access.break_glass(session, family, "вызов 112: ребёнок один", now=now)
        longer = access.break_glass(
            session, family, "вызов 112: ребёнок один", 90, now=now, max_minutes=120
        )
        with pytest.raises(RuleViolation) as info:
            access.break_glass(session, family, "вызов 112: ребёнок один", 121, max_minutes=120)
    assert "minutes" in (info.value.errors or {})
    assert default.expires_at - now == dt.timedelta(minutes=30) and default.minutes == 30
    assert longer.expires_at - now == dt.timedelta(minutes=90)
    granted = outbox(session, "registry.access.emergency_granted")
    assert [e["data"]["minutes"] for e in granted] == [30, 90]
    assert access.glass_max_minutes({}) == 120
    assert access.glass_max_minutes({"REGISTRY_BREAK_GLASS_MAX_MINUTES": "240"}) == 240
    for bad in ("two hours", "0"):
        with pytest.raises(ConfigError, match="REGISTRY_BREAK_GLASS_MAX_MINUTES"):
            access.glass_max_minutes({"REGISTRY_BREAK_GLASS_MAX_MINUTES": bad})


def test_the_grantee_or_a_coordinator_ends_the_access_early(session: Session) -> None:
    family = domain.register_family(session, family_data())
    now = utcnow()
    with principal_context(staff()):
        grant = access.break_glass(session, family, "вызов 112: ребёнок один", now=now)
        other = access.break_glass(session, family, "вызов 112: второй вызов", now=now)
    session.flush()
    assert access.active_glass(session, family.id, "inspector-1", now) is not None
    with principal_context(staff("someone-else")), pytest.raises(Forbidden):
        access.end_glass(session, grant, now=now)
    with principal_context(staff()):
        assert access.end_glass(session, grant, now=now + dt.timedelta(minutes=5))
        assert not access.end_glass(session, grant, now=now + dt.timedelta(minutes=6))
    with principal_context(staff("coord-1", "coordinator")):
        assert access.end_glass(session, other, now=now + dt.timedelta(minutes=7))
    assert other.ended_by == "coord-1"
    session.flush()
    assert access.active_glass(session, family.id, "inspector-1", now) is None
    later = now + dt.timedelta(minutes=8)
    assert session.scalars(access.grants(active=True, now=later)).all() == []
    assert len(session.scalars(access.grants(active=False, now=later)).all()) == 2
    assert session.scalars(access.grants(since=later)).all() == []


# --- the address history and statistics by the address at the time ------------------------------


def _address(district: str, house: str = "1") -> dict[str, Any]:
    return {**family_data(district=district)["address"], "house": house}


def test_registration_and_every_move_enter_the_address_history(session: Session) -> None:
    entered = TODAY - dt.timedelta(days=40)
    family = domain.register_family(session, family_data(), on=entered)
    moved = TODAY - dt.timedelta(days=10)
    domain.update_family(
        session, family, {"address": _address("Вожегодский район"), "moved_on": moved}
    )
    coords = {**_address("Вожегодский район"), "latitude": 60.1, "longitude": 44.2}
    domain.update_family(session, family, {"address": coords})  # coordinates only: no move
    session.flush()
    history = addresses.history(session, family.id)
    assert [(h.valid_from, h.district) for h in history] == [
        (entered, DISTRICT),
        (moved, "Вожегодский район"),
    ]
    cases = [("Сокольский район", moved - dt.timedelta(days=1)), ("Бабаевский район", TOMORROW)]
    for district, bad in cases:
        with pytest.raises(RuleViolation) as info:
            domain.update_family(session, family, {"address": _address(district), "moved_on": bad})
        assert "moved_on" in (info.value.errors or {})


def test_statistics_count_a_family_where_it_lived_at_the_moment(session: Session) -> None:
    """A family enters in one district, moves to another the next year and leaves the bank
    there: the entry and the year-end count stay with the first district, the removal goes to
    the second. Years two and one before now, so every date lies in the past."""
    y1, y2 = TODAY.year - 2, TODAY.year - 1
    mover = domain.register_family(session, family_data("Морозова"), on=dt.date(y1, 3, 1))
    stayer = domain.register_family(session, family_data("Петрова"), on=dt.date(y1, 5, 1))
    for family in (mover, stayer):
        for change in domain.category_history(session, family.id):
            change.changed_on = dt.date(y1, 1, 1)
    domain.update_family(
        session, mover, {"address": _address("Вожегодский район"), "moved_on": dt.date(y2, 4, 1)}
    )
    case = domain_cases.open_case_of(session, mover.id)
    assert case is not None and case.opened_on == dt.date(y1, 3, 1)
    case.closed_on, case.stage, case.outcome = dt.date(y2, 9, 1), "closed", "improvement"
    case.close_category = "risk_group"
    mover.in_bank = False
    session.flush()

    stats = statistics.compute(session, year_from=y1, year_to=y2)
    rows = {(r["district"], r["year"]): r for r in stats["rows"]}
    assert set(rows) == {(DISTRICT, y1), (DISTRICT, y2), ("Вожегодский район", y2)}
    first = rows[(DISTRICT, y1)]
    assert first["entered"] == 2 and first["in_bank_at_year_end"]["total"] == 2
    assert rows[(DISTRICT, y2)]["in_bank_at_year_end"]["total"] == 1  # the stayer only
    assert rows[(DISTRICT, y2)]["removed"]["total"] == 0
    moved = rows[("Вожегодский район", y2)]
    assert moved["removed"]["improvement"] == 1 and moved["entered"] == 0
    assert moved["in_bank_at_year_end"]["total"] == 0
    assert moved["average_duration_days"]["risk_group"] == (case.closed_on - case.opened_on).days

    only_new = statistics.compute(session, year_from=y1, year_to=y2, district="Вожегодский район")
    assert [(r["district"], r["year"]) for r in only_new["rows"]] == [("Вожегодский район", y2)]
    only_old = statistics.compute(session, year_from=y1, year_to=y2, district=DISTRICT)
    assert [r["year"] for r in only_old["rows"]] == [y1, y2]
    assert only_old["rows"][0]["entered"] == 2
    region = statistics.compute(session, year_from=y1, year_to=y2, by="region")
    assert [(r["year"], r["entered"], r["removed"]["total"]) for r in region["rows"]] == [
        (y1, 2, 0),
        (y2, 0, 1),
    ]


def test_a_family_without_history_counts_at_its_current_address(session: Session) -> None:
    family = domain.register_family(session, family_data(), on=TODAY)
    session.execute(FamilyAddress.__table__.delete())
    session.flush()
    stats = statistics.compute(session, year_from=TODAY.year, year_to=TODAY.year)
    [row] = stats["rows"]
    assert row["district"] == family.district and row["entered"] == 1
    assert session.scalar(select(func.count()).select_from(Intake)) == 0
