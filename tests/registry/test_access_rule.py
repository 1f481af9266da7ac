"""The rule that decides an agency's access to a family (services/registry/access.py), on a test
clock: consent covers an agency while the case is open, the agency has a measure that is not
cancelled, and the newest agreement in force shares with its kind; it ends when the agreement
expires, is replaced or withdrawn, or the case closes. Break-the-glass stands beside it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from registry_helpers import TODAY, family_data, sqlite_session
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import access, directory, domain, domain_cases, domain_plan
from services.registry.models import Case, Family, GlassBreak, KnownAgency, Measure
from shared.auth.principal import Principal
from shared.errors import Forbidden

NOW = dt.datetime.combine(TODAY, dt.time(12), dt.UTC)
LATER = TODAY + dt.timedelta(days=30)


def staff(agency: str, subject: str = "staff-1") -> Principal:
    return Principal(subject, frozenset({"agency_staff"}), agency)


@pytest.fixture
def session(tmp_path) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    session = sqlite_session(tmp_path)
    for agency_id, kind in (("school-1", "school"), ("pdn-1", "police_pdn")):
        directory.remember_agency(
            session, {"agency_id": agency_id, "kind": kind, "agency_version": 1}
        )
    yield session
    session.close()


def new_case(session: Session, surname: str = "Иванова") -> tuple[Family, Case]:
    family = domain.register_family(session, family_data(surname), by="spec-1")
    case = domain_cases.open_case_of(session, family.id)
    assert case is not None
    return family, case


def agree(session: Session, case: Case, kinds: list[str], **overrides: object) -> object:
    data = {
        "signed_on": TODAY,
        "valid_until": TODAY + dt.timedelta(days=365),
        "consent_data_processing": True,
        "share_with": kinds,
        **overrides,
    }
    agreement = domain_cases.record_agreement(session, case, data, by="spec-1")
    session.flush()
    return agreement


def measure(session: Session, case: Case, agency: str) -> Measure:
    data = {"title": "Проверка", "kind": "counselling", "deadline": LATER, "agency_id": agency}
    m = domain_plan.add_measure(session, case, data, by="spec-1")
    session.flush()
    return m


def reads(session: Session, family: Family, agency: str, on: dt.date = TODAY) -> bool:
    return access.may_read(session, family.id, access.agency_reads(agency, on))


def why(session: Session, m: Measure, on: dt.date = TODAY) -> object:
    return access.measure_access(session, m, on)


def test_a_measure_grants_nothing_without_consent_and_the_newest_agreement_decides(
    session: Session,
) -> None:
    family, case = new_case(session)
    school = measure(session, case, "school-1")
    police = measure(session, case, "pdn-1")
    assert not reads(session, family, "school-1")
    assert why(session, school) == {"granted": False, "reason": "no_agreement"}
    agree(session, case, ["police_pdn"], signed_on=TODAY - dt.timedelta(days=1))
    assert reads(session, family, "pdn-1") and not reads(session, family, "school-1")
    assert why(session, school) == {"granted": False, "reason": "not_shared"}
    assert why(session, police) == {"granted": True, "reason": None}
    agree(session, case, ["school"])  # the family narrows: the newer agreement replaces
    assert reads(session, family, "school-1") and not reads(session, family, "pdn-1")
    assert why(session, police) == {"granted": False, "reason": "not_shared"}


def test_consent_ends_when_the_agreement_expires_or_is_withdrawn(session: Session) -> None:
    family, case = new_case(session)
    m = measure(session, case, "school-1")
    agree(
        session,
        case,
        ["school"],
        signed_on=TODAY - dt.timedelta(days=1),
        valid_until=TODAY + dt.timedelta(days=10),
    )
    newest = agree(session, case, ["school"], valid_until=TODAY + dt.timedelta(days=5))
    expired = TODAY + dt.timedelta(days=11)
    assert reads(session, family, "school-1", TODAY + dt.timedelta(days=10))
    assert not reads(session, family, "school-1", expired)
    assert why(session, m, expired) == {"granted": False, "reason": "agreement_expired"}
    domain_cases.withdraw_agreement(
        session, newest, "Семья отозвала согласие", by="spec-1", now=NOW
    )  # type: ignore[arg-type]
    session.flush()
    # the older agreement, still in force, does not come back: the withdrawn one replaced it
    assert not reads(session, family, "school-1")
    assert why(session, m) == {"granted": False, "reason": "agreement_withdrawn"}


def test_no_data_processing_consent_unknown_agency_and_cancelled_measure(session: Session) -> None:
    _, case = new_case(session)
    m = measure(session, case, "school-1")
    stranger = measure(session, case, "nobody-1")
    agree(
        session,
        case,
        ["school", "charity"],
        signed_on=TODAY - dt.timedelta(days=1),
        consent_data_processing=False,
    )
    assert why(session, m) == {"granted": False, "reason": "no_data_processing_consent"}
    agree(session, case, ["school", "charity"])
    assert why(session, m) == {"granted": True, "reason": None}
    assert why(session, stranger) == {"granted": False, "reason": "agency_unknown"}
    directory.remember_agency(
        session, {"agency_id": "nobody-1", "kind": "charity", "agency_version": 2}
    )
    session.flush()
    assert why(session, stranger) == {"granted": True, "reason": None}
    # an older snapshot of the directory arriving late changes nothing
    directory.remember_agency(
        session, {"agency_id": "nobody-1", "kind": "health", "agency_version": 1}
    )
    assert session.get(KnownAgency, "nobody-1").kind == "charity"  # type: ignore[union-attr]
    domain_plan.update_measure(session, m, {"status": "cancelled"}, by="spec-1")
    session.flush()
    assert why(session, m) == {"granted": False, "reason": "measure_cancelled"}
    again = measure(session, case, "school-1")
    assert why(session, m) == why(session, again) == {"granted": True, "reason": None}
    own = domain_plan.add_measure(
        session, case, {"title": "Беседа", "kind": "counselling", "deadline": LATER}, by="spec-1"
    )
    assert access.measure_access(session, own, TODAY) is None


def test_break_the_glass_stands_beside_consent_until_it_expires_or_ends(session: Session) -> None:
    family, _ = new_case(session)
    inspector = staff("pdn-1", "inspector-1")
    with pytest.raises(Forbidden):
        access.level_of(session, inspector, family.id, now=NOW)
    grant = GlassBreak(
        family_id=family.id,
        subject="inspector-1",
        agency_id="pdn-1",
        reason="угроза жизни ребёнка",
        granted_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=30),
        minutes=30,
    )
    session.add(grant)
    session.flush()
    assert access.level_of(session, inspector, family.id, now=NOW) == access.EMERGENCY
    with pytest.raises(Forbidden):  # the grant is the person's, not the agency's
        access.level_of(session, staff("pdn-1", "inspector-2"), family.id, now=NOW)
    with pytest.raises(Forbidden):
        access.level_of(session, inspector, family.id, now=NOW + dt.timedelta(minutes=31))
    grant.ended_at = NOW + dt.timedelta(minutes=1)
    session.flush()
    with pytest.raises(Forbidden):
        access.level_of(session, inspector, family.id, now=NOW + dt.timedelta(minutes=2))


def test_the_list_and_the_card_agree_for_every_family(session: Session) -> None:
    """Families in many states; for each caller, the list query holds exactly the families the
    card opens."""
    states = []
    for n, kinds in enumerate((None, ["school"], ["police_pdn"], ["school", "police_pdn"])):
        family, case = new_case(session, f"Семья{n}")
        measure(session, case, "school-1")
        if n % 2:
            measure(session, case, "pdn-1")
        if kinds is not None:
            agree(session, case, kinds)
        states.append(family)
    session.add(
        GlassBreak(
            family_id=states[0].id,
            subject="teacher-1",
            agency_id="school-1",
            reason="срочно нужен адрес семьи",
            granted_at=NOW,
            expires_at=NOW + dt.timedelta(minutes=30),
        )
    )
    session.flush()
    school, police = access.agency_reads("school-1", TODAY), access.agency_reads("pdn-1", TODAY)
    assert set(session.scalars(select(Family.id).where(school))) == {
        states[1].id,
        states[3].id,
    }
    assert set(session.scalars(select(Family.id).where(police))) == {states[3].id}
    for who in (staff("school-1", "teacher-1"), staff("school-1"), staff("pdn-1")):
        for on in (TODAY, TODAY + dt.timedelta(days=400)):
            now = dt.datetime.combine(on, dt.time(12, 10), dt.UTC)
            scope = access.family_scope(who, on=on, now=now)
            assert scope is not None
            listed = set(session.scalars(select(Family.id).where(scope)))
            opened = set()
            for family in states:
                try:
                    access.level_of(session, who, family.id, on=on, now=now)
                    opened.add(family.id)
                except Forbidden:
                    pass
            assert listed == opened
    assert access.family_scope(Principal("c", frozenset({"coordinator"}), None)) is None
    with pytest.raises(Forbidden):
        access.family_scope(Principal("a", frozenset({"auditor"}), None))
