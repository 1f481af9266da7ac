"""The SupportPlan (individual plan / IPR) of a case: its Measures and their statuses, the
closed loop with referrals, problems and strengths found, and Assessments over time."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, cast

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from services.registry import events
from services.registry.domain import actor, get_family, today
from services.registry.domain_cases import get_case, require_open
from services.registry.models import (
    OPEN_MEASURE_STATUSES,
    Case,
    CatalogueEntry,
    Family,
    Finding,
    Measure,
)
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation

log = logging.getLogger(__name__)

BUILT_IN: dict[str, dict[str, tuple[str, str]]] = {
    "problem": {
        "alcohol_abuse": ("Злоупотребление алкоголем", "Alcohol abuse"),
        "child_neglect": (
            "Ненадлежащее исполнение родительских обязанностей",
            "Neglect of children",
        ),
        "domestic_violence": ("Домашнее насилие", "Domestic violence"),
        "unemployment": ("Безработица", "Unemployment"),
        "debts": ("Долги", "Debts"),
        "poor_housing": ("Неудовлетворительные жилищные условия", "Poor housing"),
        "truancy": ("Пропуски занятий", "Truancy"),
        "child_offences": ("Правонарушения детей", "Child offences"),
        "health": ("Проблемы со здоровьем", "Health"),
        "disability": ("Инвалидность", "Disability"),
        "other": ("Другое", "Other"),
    },
    "strength": {
        "motivation_to_change": ("Мотивация к изменениям", "Motivation to change"),
        "supportive_relatives": ("Поддержка родственников", "Supportive relatives"),
        "employed_parent": ("Работающий родитель", "An employed parent"),
        "attachment_to_children": ("Привязанность к детям", "Attachment to the children"),
        "stable_housing": ("Стабильное жильё", "Stable housing"),
        "child_doing_well_at_school": ("Ребёнок успевает в школе", "A child doing well at school"),
        "community_ties": ("Связи с соседями и общиной", "Community ties"),
        "other": ("Другое", "Other"),
    },
    "measure_kind": {
        "counselling": ("Консультирование", "Counselling"),
        "patronage_visit": ("Социальный патронаж", "Patronage visit"),
        "leisure_involvement": ("Вовлечение в досуг", "Leisure involvement"),
        "material_aid": ("Материальная помощь", "Material aid"),
        "medical_examination": ("Медицинское обследование", "Medical examination"),
        "school_check": ("Контроль посещения школы", "School check"),
        "employment_help": ("Содействие в трудоустройстве", "Employment help"),
        "legal_help": ("Юридическая помощь", "Legal help"),
        "other": ("Другое", "Other"),
    },
}
CATALOGUES = tuple(BUILT_IN)
FINAL_STATUSES = ("done", "not_done", "cancelled")
# Moves a person may make on a measure; referral outcomes arrive through apply_referral_status.
STATUS_MOVES = {
    "planned": {"referred", "in_progress", "done", "not_done", "cancelled"},
    "referred": {"in_progress", "done", "not_done", "cancelled"},
    "in_progress": {"done", "not_done", "cancelled"},
}


def catalogue(
    session: Session, name: str, *, include_inactive: bool = False
) -> dict[str, dict[str, Any]]:
    """The built-in codes of a catalogue plus those admins added."""
    if name not in BUILT_IN:
        raise NotFound(f"no catalogue {name}")
    items = {
        code: {"code": code, "title_ru": ru, "title_en": en, "built_in": True, "active": True}
        for code, (ru, en) in BUILT_IN[name].items()
    }
    for entry in session.scalars(select(CatalogueEntry).where(CatalogueEntry.catalogue == name)):
        if entry.active or include_inactive:
            items[entry.code] = {
                "code": entry.code,
                "title_ru": entry.title_ru,
                "title_en": entry.title_en,
                "built_in": False,
                "active": entry.active,
            }
    return items


def add_catalogue_entry(
    session: Session, name: str, data: dict[str, Any], *, by: str | None = None
) -> CatalogueEntry:
    if name not in BUILT_IN:
        raise NotFound(f"no catalogue {name}")
    existing = session.scalar(
        select(CatalogueEntry.code).where(
            CatalogueEntry.catalogue == name, CatalogueEntry.code == data["code"]
        )
    )
    if data["code"] in BUILT_IN[name] or existing is not None:
        raise Conflict("this code is already in the catalogue")
    entry = CatalogueEntry(catalogue=name, active=True, created_by=actor(by), **data)
    session.add(entry)
    return entry


def _check_code(session: Session, name: str, code: str, field: str) -> None:
    if code not in catalogue(session, name):
        raise RuleViolation(
            f"unknown {name} code", errors={field: [f"not in the {name} catalogue"]}
        )


def _measure_event(measure: Measure, family: Family) -> dict[str, Any]:
    return {
        "measure_id": measure.id,
        "case_id": measure.case_id,
        "family_id": family.id,
        "number": family.number,
        "district": family.district,
        "agency_id": measure.agency_id,
        "kind": measure.kind,
        "title": measure.title,
        "deadline": measure.deadline.isoformat(),
        "status": measure.status,
        "measure_version": measure.version,
    }


def add_measure(
    session: Session, case: Case, data: dict[str, Any], *, by: str | None = None
) -> Measure:
    """Add a measure to the plan; one for another agency is announced (``measure.assigned``) so
    referrals turns it into a referral. Changing a plan in preparatory withdraws its approval."""
    require_open(case)
    if case.stage == "final":
        raise RuleViolation(
            "the plan is closed in the final stage",
            errors={"stage": ["move the case back to support"]},
        )
    _check_code(session, "measure_kind", data["kind"], "kind")
    if data["deadline"] < today():
        raise RuleViolation(
            "a new measure's deadline is not in the past", errors={"deadline": ["today or later"]}
        )
    family = get_family(session, case.family_id)
    measure = Measure(
        case_id=case.id,
        family_id=family.id,
        title=data["title"],
        kind=data["kind"],
        agency_id=data.get("agency_id"),
        deadline=data["deadline"],
        status="planned",
        created_by=actor(by),
        version=1,
    )
    session.add(measure)
    session.flush()
    if case.stage == "preparatory" and case.plan_approved_at is not None:
        case.plan_approved_at = None
        case.plan_approved_by = None
    if measure.agency_id:  # it grants the agency nothing: the family's consent decides (access)
        events.publish(session, "registry.measure.assigned", _measure_event(measure, family))
    return measure


def get_measure(session: Session, measure_id: str) -> Measure:
    measure = session.get(Measure, measure_id)
    if measure is None:
        raise NotFound(f"no measure {measure_id}")
    return measure


def update_measure(
    session: Session, measure: Measure, changes: dict[str, Any], *, by: str | None = None
) -> Measure:
    """Change a measure's status, deadline or result; ``not_done`` needs a reason."""
    case = get_case(session, measure.case_id)
    require_open(case)
    status = changes.get("status", measure.status)
    if status != measure.status and status not in STATUS_MOVES.get(measure.status, set()):
        raise RuleViolation(
            f"a {measure.status} measure cannot become {status}",
            errors={
                "status": [
                    f"one of: {', '.join(sorted(STATUS_MOVES.get(measure.status, set()))) or 'none'}"
                ]
            },
        )
    if measure.status in FINAL_STATUSES and set(changes) - {"result_note"}:
        raise RuleViolation(
            f"a {measure.status} measure only takes a result note", errors={"status": ["final"]}
        )
    reason = changes.get("not_done_reason", measure.not_done_reason)
    if status == "not_done" and not (reason or "").strip():
        raise RuleViolation(
            "a measure not done says why", errors={"not_done_reason": ["required for not_done"]}
        )
    if (
        "deadline" in changes
        and changes["deadline"] != measure.deadline
        and changes["deadline"] < today()
    ):
        raise RuleViolation(
            "a new deadline is not in the past", errors={"deadline": ["today or later"]}
        )
    for key in ("deadline", "result_note", "not_done_reason", "title"):
        if key in changes:
            setattr(measure, key, changes[key])
    if status != measure.status:
        measure.status = status
        measure.status_changed_at = utcnow()
    measure.version += 1
    family = get_family(session, measure.family_id)
    events.publish(session, "registry.measure.updated", _measure_event(measure, family))
    return measure


# The referral's status (HL7 FHIR Task vocabulary, as the referrals service publishes it) -> the
# measure's. ``draft`` and ``entered-in-error`` leave the measure alone.
REFERRAL_TO_MEASURE = {
    "requested": "referred",
    "received": "referred",
    "accepted": "in_progress",
    "in-progress": "in_progress",
    "on-hold": "in_progress",
    "completed": "done",
    "rejected": "not_done",
    "failed": "not_done",
    "cancelled": "cancelled",
}
REFERRAL_STATUSES_IGNORED = frozenset({"draft", "entered-in-error"})
_RANK = {"planned": 0, "referred": 1, "in_progress": 2, "done": 3, "not_done": 3, "cancelled": 3}


def apply_referral_status(
    session: Session,
    measure_id: str,
    status: str,
    outcome: str | None,
    at: dt.datetime,
    *,
    referral_id: str | None = None,
) -> Measure | None:
    """The closed loop: a referral's status moves its measure. Stale or out-of-order news (older
    than the measure's last change, or a step back) changes nothing; returns None then."""
    if status in REFERRAL_STATUSES_IGNORED:
        return None
    if status not in REFERRAL_TO_MEASURE:
        raise ValueError(f"unknown referral status {status!r}")
    measure = session.get(Measure, measure_id)
    if measure is None:
        log.warning(
            "referral status for an unknown measure; skipped", extra={"measure_id": measure_id}
        )
        return None
    target = REFERRAL_TO_MEASURE[status]
    if measure.status in FINAL_STATUSES or _RANK[target] < _RANK[measure.status]:
        return None
    if target == measure.status and (not referral_id or referral_id == measure.referral_id):
        return None
    if referral_id:
        measure.referral_id = referral_id
    if target == "done":
        measure.result_note = outcome or measure.result_note
    elif target == "not_done":
        measure.not_done_reason = f"referral {status}" + (f": {outcome}" if outcome else "")
    elif target == "cancelled" and outcome:
        measure.result_note = outcome
    if target != measure.status:
        measure.status = target
        measure.status_changed_at = at
    measure.version += 1
    family = get_family(session, measure.family_id)
    events.publish(session, "registry.measure.updated", _measure_event(measure, family))
    return measure


def overdue_measures(args: dict[str, Any]) -> Select[Any]:
    """Measures past their deadline and not finished, with their case, family and lead."""
    on = args.get("today") or today()
    stmt = (
        select(
            Measure.id.label("measure_id"),
            Measure.case_id,
            Measure.family_id,
            Family.number,
            Family.district,
            Case.lead_specialist,
            Measure.title,
            Measure.kind,
            Measure.agency_id,
            Measure.deadline,
            Measure.status,
        )
        .join(Case, Case.id == Measure.case_id)
        .join(Family, Family.id == Measure.family_id)
        .where(
            and_(
                Measure.status.in_(OPEN_MEASURE_STATUSES),
                Measure.deadline < on,
                Case.closed_on.is_(None),
            )
        )
    )
    for key, column in (
        ("district", Family.district),
        ("lead_specialist", Case.lead_specialist),
        ("case_id", Measure.case_id),
        ("agency_id", Measure.agency_id),
    ):
        if args.get(key):
            stmt = stmt.where(column == args[key])
    return cast("Select[Any]", stmt.order_by(Measure.deadline, Measure.id))


def overdue_summary(
    session: Session, group_by: str, on: dt.date | None = None
) -> list[dict[str, Any]]:
    """How many overdue measures per district or per lead specialist."""
    column = {"district": Family.district, "lead_specialist": Case.lead_specialist}[group_by]
    stmt = (
        select(column.label("key"), func.count().label("overdue"))
        .select_from(Measure)
        .join(Case, Case.id == Measure.case_id)
        .join(Family, Family.id == Measure.family_id)
        .where(
            Measure.status.in_(OPEN_MEASURE_STATUSES),
            Measure.deadline < (on or today()),
            Case.closed_on.is_(None),
        )
        .group_by(column)
        .order_by(func.count().desc(), column)
    )
    return [{group_by: row.key, "overdue": row.overdue} for row in session.execute(stmt)]


def add_finding(
    session: Session, case: Case, kind: str, data: dict[str, Any], *, by: str | None = None
) -> Finding:
    """A problem identified or a strength found, from the catalogue."""
    require_open(case)
    _check_code(session, "problem" if kind == "problem" else "strength", data["code"], "code")
    if data["identified_on"] > today():
        raise RuleViolation(
            "a finding is dated today or earlier", errors={"identified_on": ["today or earlier"]}
        )
    finding = Finding(
        case_id=case.id,
        kind=kind,
        code=data["code"],
        note=data.get("note"),
        identified_on=data["identified_on"],
        recorded_by=actor(by),
    )
    session.add(finding)
    session.flush()  # the answer carries the id and time stored
    return finding


def resolve_finding(session: Session, finding: Finding, on: dt.date) -> Finding:
    if on < finding.identified_on:
        raise RuleViolation(
            "resolved before it was identified",
            errors={"resolved_on": ["on or after identified_on"]},
        )
    finding.resolved_on = on
    return finding
