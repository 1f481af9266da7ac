"""Cases through their stages, approvals, the plan's closed loop, assessments, the contact log
and statistics, in the domain layer (SQLite, no HTTP, no broker)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from registry_helpers import TODAY, family_data, outbox, scores, sqlite_session
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import (
    access,
    domain,
    domain_approvals,
    domain_assessments,
    domain_cases,
    domain_contact_log,
    domain_plan,
    statistics,
)
from services.registry.models import Case, ContactEntry, Family, KnownAgency, Measure
from shared.db import utcnow
from shared.errors import Conflict, RuleViolation

LATER = TODAY + dt.timedelta(days=30)


@pytest.fixture
def session(tmp_path) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    session = sqlite_session(tmp_path)
    yield session
    session.close()


def new_case(session: Session, surname: str = "Иванова") -> tuple[Family, Case]:
    family = domain.register_family(session, family_data(surname), by="spec-1")
    case = domain_cases.open_case_of(session, family.id)
    assert case is not None
    return family, case


def agreement(session: Session, case: Case, **overrides: object) -> None:
    data = {
        "signed_on": TODAY,
        "valid_until": TODAY + dt.timedelta(days=365),
        "consent_data_processing": True,
        "share_with": ["school", "police_pdn"],
        **overrides,
    }
    domain_cases.record_agreement(session, case, data, by="spec-1")


def measure(session: Session, case: Case, agency: str | None = None, **kw: object) -> Measure:
    data = {"title": "Консультация психолога", "kind": "counselling", "deadline": LATER, **kw}
    if agency:
        data["agency_id"] = agency
    return domain_plan.add_measure(session, case, data, by="spec-1")


def approve_plan(session: Session, case: Case) -> None:
    approval = domain_approvals.request_approval(session, case, "plan", by="spec-1")
    domain_approvals.decide_approval(session, approval, approve=True, by="coord")


def to_support(session: Session, case: Case) -> None:
    agreement(session, case)
    measure(session, case)
    approve_plan(session, case)
    domain_cases.change_stage(session, case, "support", by="spec-1")


def test_support_needs_agreement_plan_and_approval_and_says_what_is_missing(
    session: Session,
) -> None:
    _, case = new_case(session)
    with pytest.raises(RuleViolation) as info:
        domain_cases.change_stage(session, case, "support")
    missing = (info.value.errors or {})["stage"]
    assert len(missing) == 3
    assert any("agreement" in m for m in missing) and any("measure" in m for m in missing)
    assert any("approved" in m for m in missing)
    assert case.stage == "preparatory"


def test_agreement_without_consent_or_expired_blocks_support(session: Session) -> None:
    _, case = new_case(session)
    agreement(
        session,
        case,
        signed_on=TODAY - dt.timedelta(days=400),
        valid_until=TODAY - dt.timedelta(days=1),
        consent_data_processing=False,
    )
    measure(session, case)
    approve_plan(session, case)
    with pytest.raises(RuleViolation) as info:
        domain_cases.change_stage(session, case, "support")
    missing = (info.value.errors or {})["stage"]
    assert any("consent" in m for m in missing) and any("expired" in m for m in missing)


def test_agreement_is_published_with_the_agency_kinds(session: Session) -> None:
    _, case = new_case(session)
    agreement(session, case)
    [event] = outbox(session, "registry.agreement.recorded")
    assert event["data"]["share_with"] == ["police_pdn", "school"]
    assert event["data"]["consent_data_processing"] is True
    with pytest.raises(RuleViolation):
        agreement(session, case, valid_until=TODAY)


def test_changing_the_plan_in_preparatory_withdraws_its_approval(session: Session) -> None:
    _, case = new_case(session)
    measure(session, case)
    approve_plan(session, case)
    assert case.plan_approved_at is not None
    measure(session, case, title="Ещё одна")
    assert case.plan_approved_at is None


def test_refused_approval_returns_with_a_comment_and_can_be_asked_again(
    session: Session,
) -> None:
    _, case = new_case(session)
    measure(session, case)
    approval = domain_approvals.request_approval(session, case, "plan", by="spec-1")
    with pytest.raises(Conflict):
        domain_approvals.request_approval(session, case, "plan", by="spec-1")
    with pytest.raises(RuleViolation) as info:
        domain_approvals.decide_approval(session, approval, approve=False, by="coord")
    assert "comment" in (info.value.errors or {})
    with pytest.raises(RuleViolation):
        domain_approvals.decide_approval(
            session, approval, approve=True, by="spec-1"
        )  # own request
    domain_approvals.decide_approval(
        session, approval, approve=False, comment="добавьте занятость отца", by="coord"
    )
    assert approval.state == "refused" and case.plan_approved_at is None
    with pytest.raises(Conflict):
        domain_approvals.decide_approval(session, approval, approve=True, by="coord")
    again = domain_approvals.request_approval(session, case, "plan", by="spec-1")
    assert again.state == "pending"
    kinds = [e["data"]["decision"] for e in outbox(session, "registry.case.approval_decided")]
    assert kinds == ["refused"]
    assert len(outbox(session, "registry.case.approval_requested")) == 2


def test_the_whole_path_to_closed_removes_the_family_from_the_bank(session: Session) -> None:
    family, case = new_case(session)
    to_support(session, case)
    session.add(KnownAgency(id="school-1", kind="school", agency_version=1))
    open_measure = measure(session, case, agency="school-1")
    school_reads = access.agency_reads("school-1", TODAY)
    assert access.may_read(session, family.id, school_reads)
    with pytest.raises(RuleViolation) as info:
        domain_cases.change_stage(session, case, "final")
    assert "still open" in info.value.errors["stage"][0]  # type: ignore[index]
    with pytest.raises(RuleViolation):
        domain_plan.update_measure(session, open_measure, {"status": "not_done"})
    domain_plan.update_measure(
        session, open_measure, {"status": "not_done", "not_done_reason": "семья отказалась"}
    )
    first = session.scalars(select(Measure).where(Measure.agency_id.is_(None))).one()
    domain_plan.update_measure(session, first, {"status": "done", "result_note": "проведена"})
    domain_cases.change_stage(session, case, "final")
    with pytest.raises(RuleViolation):
        domain_approvals.request_approval(session, case, "closing")
    domain_cases.record_closing(session, case, analysis="работа проведена", outcome="improvement")
    approval = domain_approvals.request_approval(session, case, "closing", by="spec-1")
    with pytest.raises(RuleViolation) as info:
        domain_approvals.decide_approval(session, approval, approve=True, by="coord")
    assert "decision_ref" in (info.value.errors or {})
    domain_approvals.decide_approval(
        session,
        approval,
        approve=True,
        decision_ref="КДН № 12/3",
        decision_date=TODAY,
        by="coord",
    )
    assert case.stage == "closed" and case.closed_on == TODAY and case.decision_ref == "КДН № 12/3"
    assert not family.in_bank and family.stage == "closed"
    assert not access.may_read(session, family.id, school_reads)  # the closed case ends it
    [closed] = outbox(session, "registry.case.closed")
    assert closed["data"]["outcome"] == "improvement"
    assert outbox(session, "registry.family.updated")[-1]["data"]["removed"] is True
    stages = [e["data"]["stage_to"] for e in outbox(session, "registry.case.stage_changed")]
    assert stages == ["support", "final", "closed"]
    with pytest.raises(Conflict):
        domain_contact_log.log_contact(
            session, case, {"occurred_on": TODAY, "kind": "conversation"}
        )


def test_a_family_reported_again_gets_a_new_case_counted_as_reentry(session: Session) -> None:
    family, case = new_case(session)
    to_support(session, case)
    for m in session.scalars(select(Measure)):
        domain_plan.update_measure(session, m, {"status": "done"})
    domain_cases.change_stage(session, case, "final")
    domain_cases.record_closing(session, case, analysis="переезд", outcome="moved_away")
    approval = domain_approvals.request_approval(session, case, "closing", by="spec-1")
    domain_approvals.decide_approval(
        session, approval, approve=True, decision_ref="№ 1", by="coord"
    )
    second = domain_cases.open_case(session, family, source="report", by="spec-2")
    assert second.reentry and family.in_bank and family.stage == "preparatory"
    first, again = outbox(session, "registry.case.opened")
    assert first["data"]["case_id"] == case.id and first["data"]["reentry"] is False
    assert again["data"]["case_id"] == second.id and again["data"]["reentry"] is True
    assert outbox(session, "registry.family.updated")[-1]["data"]["removed"] is False


def test_next_stage_says_what_is_missing_with_the_rule_that_refuses_the_move(
    session: Session,
) -> None:
    """The case's ``next_stage`` and a refused stage change come from one rule: as many codes
    as sentences at every step, and none once the move is allowed."""

    def both(stage: str) -> tuple[list[str], list[str]]:
        upcoming = domain_cases.next_stage(session, case)
        assert upcoming is not None and upcoming["stage"] == stage
        try:
            with session.begin_nested():
                domain_cases.change_stage(session, case, stage)
        except RuleViolation as refused:
            return upcoming["missing"], (refused.errors or {})["stage"]
        return upcoming["missing"], []

    family, case = new_case(session)
    assert domain_cases.next_stage(session, case) == {
        "stage": "support",
        "missing": ["agreement", "plan_measure", "plan_approved"],
    }
    agreement(
        session,
        case,
        signed_on=TODAY - dt.timedelta(days=400),
        valid_until=TODAY - dt.timedelta(days=1),
        consent_data_processing=False,
    )
    codes, sentences = both("support")
    assert codes == ["agreement_consent", "agreement_valid", "plan_measure", "plan_approved"]
    assert len(sentences) == len(codes) and "expired" in sentences[1]
    agreement(session, case)
    open_measure = measure(session, case)
    approve_plan(session, case)
    assert both("support") == ([], [])
    assert case.stage == "support"
    codes, sentences = both("final")
    assert codes == ["measures_finished"] and "1 still open" in sentences[0]
    domain_plan.update_measure(session, open_measure, {"status": "done"})
    assert both("final") == ([], [])
    codes, sentences = both("closed")
    assert codes == ["analysis", "outcome", "closing_approved"] and len(sentences) == 3
    domain_cases.record_closing(session, case, analysis="работа проведена", outcome="improvement")
    assert domain_cases.next_stage(session, case) == {
        "stage": "closed",
        "missing": ["closing_approved"],
    }
    approval = domain_approvals.request_approval(session, case, "closing", by="spec-1")
    domain_approvals.decide_approval(
        session, approval, approve=True, decision_ref="КДН № 1/1", by="coord"
    )
    assert case.stage == "closed" and domain_cases.next_stage(session, case) is None
    assert not family.in_bank


def test_stage_moves_outside_the_technology_are_refused(session: Session) -> None:
    _, case = new_case(session)
    with pytest.raises(RuleViolation) as info:
        domain_cases.change_stage(session, case, "closed")
    assert info.value.errors == {"stage": ["one of: support"]}


def test_lead_specialist_history(session: Session) -> None:
    family, case = new_case(session)
    domain_approvals.assign_lead(session, case, "spec-1", by="coord")
    domain_approvals.assign_lead(session, case, "spec-2", by="coord", reason="отпуск")
    with pytest.raises(RuleViolation):
        domain_approvals.assign_lead(session, case, "spec-2", by="coord")
    history = domain_approvals.lead_history(session, case)
    assert [(h.specialist, h.ended_at is None) for h in history] == [
        ("spec-1", False),
        ("spec-2", True),
    ]
    assert family.lead_specialist == "spec-2" and case.lead_specialist == "spec-2"


def test_measure_status_moves(session: Session) -> None:
    _, case = new_case(session)
    m = measure(session, case)
    domain_plan.update_measure(session, m, {"status": "cancelled"})
    with pytest.raises(RuleViolation):
        domain_plan.update_measure(session, m, {"status": "in_progress"})
    with pytest.raises(RuleViolation):
        measure(session, case, kind="astrology")
    with pytest.raises(RuleViolation):
        measure(session, case, deadline=TODAY - dt.timedelta(days=1))


def test_measure_for_an_agency_is_assigned(session: Session) -> None:
    family, case = new_case(session)
    measure(session, case, agency="pdn-1")
    [assigned] = outbox(session, "registry.measure.assigned")
    assert assigned["data"]["agency_id"] == "pdn-1" and assigned["data"]["number"] == family.number


def test_referral_outcomes_move_the_measure_and_ignore_stale_news(session: Session) -> None:
    _, case = new_case(session)
    m = measure(session, case, agency="school-1")
    now = utcnow()
    domain_plan.apply_referral_status(session, m.id, "received", None, now, referral_id="r-1")
    assert m.status == "referred" and m.referral_id == "r-1"
    domain_plan.apply_referral_status(session, m.id, "accepted", None, now)
    assert m.status == "in_progress"
    assert domain_plan.apply_referral_status(session, m.id, "requested", None, now) is None
    assert m.status == "in_progress"  # a late "requested" does not step back
    domain_plan.apply_referral_status(session, m.id, "completed", "проверка проведена", now)
    assert m.status == "done" and m.result_note == "проверка проведена"
    assert domain_plan.apply_referral_status(session, m.id, "rejected", "нет", now) is None
    assert m.status == "done"
    assert domain_plan.apply_referral_status(session, "no-such", "accepted", None, now) is None
    statuses = [e["data"]["status"] for e in outbox(session, "registry.measure.updated")]
    assert statuses == ["referred", "in_progress", "done"]


def test_rejected_referral_leaves_the_measure_not_done_with_the_reason(session: Session) -> None:
    _, case = new_case(session)
    m = measure(session, case, agency="charity-1")
    domain_plan.apply_referral_status(session, m.id, "rejected", "нет средств", utcnow())
    assert m.status == "not_done" and m.not_done_reason == "referral rejected: нет средств"


def test_overdue_per_case_specialist_and_district(session: Session) -> None:
    _, case = new_case(session)
    domain_approvals.assign_lead(session, case, "spec-1", by="coord")
    measure(session, case, deadline=TODAY)
    _, other = new_case(session, "Петрова")
    measure(session, other, deadline=LATER)
    session.flush()
    tomorrow = TODAY + dt.timedelta(days=1)
    rows = session.execute(domain_plan.overdue_measures({"today": tomorrow})).all()
    assert [r.case_id for r in rows] == [case.id]
    assert session.execute(domain_plan.overdue_measures({"lead_specialist": "x"})).all() == []
    assert domain_plan.overdue_summary(session, "lead_specialist", tomorrow) == [
        {"lead_specialist": "spec-1", "overdue": 1}
    ]
    assert domain_plan.overdue_summary(session, "district", tomorrow)[0]["overdue"] == 1


def test_assessment_dynamics_first_to_latest(session: Session) -> None:
    _, case = new_case(session)
    with pytest.raises(RuleViolation) as info:
        domain_assessments.record_assessment(
            session, case, {"assessed_on": TODAY, "scores": {"housing": 2}}
        )
    assert "scores.child_safety" in (info.value.errors or {})
    domain_assessments.record_assessment(
        session, case, {"assessed_on": TODAY, "scores": scores(2, child_safety=1)}
    )
    domain_assessments.record_assessment(
        session, case, {"assessed_on": TODAY, "scores": scores(3, child_safety=4)}
    )
    dyn = domain_assessments.dynamics(domain_assessments.assessments_of(session, case.id))
    assert dyn["domains"]["child_safety"] == {"first": 1, "latest": 4, "change": 3}
    assert dyn["domains"]["housing"]["change"] == 1 and dyn["count"] == 2
    assert dyn["average"]["change"] > 0
    assert len(outbox(session, "registry.assessment.recorded")) == 2


def test_problems_and_strengths_come_from_extendable_catalogues(session: Session) -> None:
    _, case = new_case(session)
    with pytest.raises(RuleViolation):
        domain_plan.add_finding(
            session, case, "problem", {"code": "gambling", "identified_on": TODAY}
        )
    domain_plan.add_catalogue_entry(
        session, "problem", {"code": "gambling", "title_ru": "Лудомания", "title_en": "Gambling"}
    )
    with pytest.raises(Conflict):
        domain_plan.add_catalogue_entry(
            session, "problem", {"code": "debts", "title_ru": "x", "title_en": "x"}
        )
    problem = domain_plan.add_finding(
        session, case, "problem", {"code": "gambling", "identified_on": TODAY}
    )
    domain_plan.add_finding(
        session, case, "strength", {"code": "supportive_relatives", "identified_on": TODAY}
    )
    domain_plan.resolve_finding(session, problem, TODAY)
    with pytest.raises(RuleViolation):
        domain_plan.resolve_finding(session, problem, TODAY - dt.timedelta(days=1))


def _visit(family_id: str, visit_id: str = "v-1") -> dict:  # type: ignore[type-arg]
    return {
        "visit_id": visit_id,
        "raid_id": "raid-1",
        "family_id": family_id,
        "visited_on": TODAY,
        "outcome": "visited",
        "urgent_concern": True,
        "participants": ["pdn-7", "spec-1"],
        "agencies": ["pdn", "centre"],
        "summary": "в доме холодно",
        "recorded_by": "pdn-7",
    }


def test_a_raid_visit_lands_in_the_contact_log_once(session: Session) -> None:
    family, case = new_case(session)
    entry = domain_contact_log.record_visit(session, _visit(family.id), "event-1")
    assert entry is not None and entry.case_id == case.id and entry.kind == "raid_visit"
    assert entry.staff == ["pdn-7", "spec-1"] and "URGENT" in (entry.note or "")
    session.flush()
    assert domain_contact_log.record_visit(session, _visit(family.id), "event-2") is None
    assert domain_contact_log.record_visit(session, _visit("unknown-family"), "event-3") is None


def test_a_visit_after_closing_goes_to_the_latest_case(session: Session) -> None:
    family, case = new_case(session)
    case.closed_on = TODAY
    case.stage = "closed"
    session.flush()
    entry = domain_contact_log.record_visit(session, _visit(family.id, "v-2"), "event-4")
    assert entry is not None and entry.case_id == case.id


def test_an_accepted_signal_attaches_to_the_open_case_or_opens_one(session: Session) -> None:
    family, case = new_case(session)
    attached, opened = domain_contact_log.accept_signal(
        session, signal_id="s-1", family_id=family.id, accepted_by="coord", at=utcnow()
    )
    assert attached.id == case.id and not opened
    case.closed_on = TODAY
    family.in_bank = False
    session.flush()
    new, opened = domain_contact_log.accept_signal(
        session, signal_id="s-2", family_id=family.id, accepted_by="coord", at=utcnow()
    )
    assert opened and new.reentry and new.stage == "preparatory" and new.source == "signal:s-2"
    session.flush()
    signals = session.scalars(select(ContactEntry).where(ContactEntry.kind == "signal")).all()
    assert {s.source_id for s in signals} == {"signal:s-1", "signal:s-2"}


def test_statistics_per_year(session: Session) -> None:
    year = TODAY.year
    a, case_a = new_case(session, "Иванова")
    b, case_b = new_case(session, "Петрова")
    case_a.opened_on = dt.date(year - 1, 3, 1)
    for change in domain.category_history(session, a.id):
        change.changed_on = case_a.opened_on
    case_b.opened_on = dt.date(year - 1, 6, 1)
    case_b.closed_on = dt.date(year, 2, 1)
    case_b.outcome = "improvement"
    case_b.close_category = "risk_group"
    domain.change_category(session, a, "sop", justification="ухудшение", changed_on=TODAY)
    again = Case(
        family_id=b.id,
        stage="preparatory",
        opened_on=dt.date(year, 5, 1),
        reentry=True,
        source="report",
        entry_category="tzhs",
        opened_by="x",
    )
    session.add(again)
    session.flush()
    stats = statistics.compute(session, year_from=year - 1, year_to=year)
    last, this = stats["rows"]
    assert last["year"] == year - 1 and last["entered"] == 2 and last["re_entered"] == 0
    assert last["in_bank_at_year_end"] == {"sop": 0, "risk_group": 2, "tzhs": 0, "total": 2}
    assert this["entered"] == 1 and this["re_entered"] == 1
    assert this["removed"]["improvement"] == 1 and this["removed"]["total"] == 1
    # the category at year end comes from the family's dated history, not the case's entry
    assert this["in_bank_at_year_end"] == {"sop": 1, "risk_group": 1, "tzhs": 0, "total": 2}
    assert this["average_duration_days"]["risk_group"] == 245.0
    assert statistics.to_csv(stats).decode("utf-8-sig").splitlines()[0].startswith("Регион")
    assert statistics.to_xlsx(stats)[:2] == b"PK"
    assert statistics.to_png(stats)[:8] == b"\x89PNG\r\n\x1a\n"
