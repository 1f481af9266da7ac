"""The contact log of a Case, and what arrives from other services into it: raids' visit acts and
referrals' accepted signals."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry.domain import actor, get_family, today
from services.registry.domain_cases import latest_case_of, open_case, open_case_of, require_open
from services.registry.models import Case, ContactEntry
from shared.errors import RuleViolation

log = logging.getLogger(__name__)


def log_contact(
    session: Session,
    case: Case,
    data: dict[str, Any],
    *,
    by: str | None = None,
    source_id: str | None = None,
    allow_closed: bool = False,
) -> ContactEntry:
    """A contact-log entry: patronage visit, counselling, conversation, leisure activity..."""
    if not allow_closed:
        require_open(case)
    if data["occurred_on"] > today():
        raise RuleViolation(
            "a contact is logged after it happened", errors={"occurred_on": ["today or earlier"]}
        )
    who = actor(by)
    entry = ContactEntry(
        case_id=case.id,
        occurred_on=data["occurred_on"],
        kind=data["kind"],
        staff=list(data.get("staff") or [who]),
        note=data.get("note"),
        source_id=source_id,
        recorded_by=who,
    )
    session.add(entry)
    session.flush()  # the answer carries the id and time stored
    return entry


def record_visit(
    session: Session, data: dict[str, Any], visit_event_id: str
) -> ContactEntry | None:
    """A raid's visit act becomes a contact-log entry on the family's open case, or, after the
    family left the data bank, on its latest case; an unknown family is logged and skipped."""
    case = open_case_of(session, data["family_id"]) or latest_case_of(session, data["family_id"])
    if case is None:
        log.warning(
            "visit for a family the registry does not know; skipped",
            extra={"event_id": visit_event_id},
        )
        return None
    source = f"visit:{data['visit_id']}"
    if session.scalar(select(ContactEntry.id).where(ContactEntry.source_id == source)):
        return None
    note = f"{data['outcome']}{'; URGENT CONCERN' if data['urgent_concern'] else ''}: {data['summary']}"
    return log_contact(
        session,
        case,
        {
            "occurred_on": min(data["visited_on"], today()),
            "kind": "raid_visit",
            "staff": data["participants"],
            "note": note[:2000],
        },
        by=data["recorded_by"],
        source_id=source,
        allow_closed=True,
    )


def accept_signal(
    session: Session,
    *,
    signal_id: str,
    family_id: str,
    accepted_by: str,
    at: dt.datetime,
    agency_id: str | None = None,
) -> tuple[Case, bool]:
    """A coordinator accepted an agency's signal about a known family: attach it to the open case,
    or open a new case in ``preparatory``. Returns the case and whether it was opened."""
    family = get_family(session, family_id)
    source = f"signal:{signal_id}"
    case = open_case_of(session, family_id)
    opened = case is None
    if case is None:
        case = open_case(session, family, source=source, by=accepted_by, on=at.date())
    if not session.scalar(select(ContactEntry.id).where(ContactEntry.source_id == source)):
        log_contact(
            session,
            case,
            {
                "occurred_on": min(at.date(), today()),
                "kind": "signal",
                "staff": [accepted_by],
                "note": f"signal {signal_id} accepted"
                + (f" (agency {agency_id})" if agency_id else ""),
            },
            by=accepted_by,
            source_id=source,
        )
    return case, opened
