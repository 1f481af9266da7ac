"""Events the registry consumes: raids' visit acts become contact-log entries, and a referral's
status moves the plan's measure it came from (the closed loop). The directory's agency events
tell each agency's kind, which the family's consent names (``access``).

An accepted signal opens or attaches a case in ``preparatory``. One accepted without a registry
family id goes through duplicate detection (``intake``): attached to the one confident match,
registered when nothing matches, or held as a pending intake for the coordinator; it never
blocks the queue or goes to the dead-letter queue for want of a family id. One the registry
cannot act on (a family id it does not hold) is answered with ``registry.signal.refused``, which
returns the signal to triage: dead letters are for broken messages, not business refusals.
"""

from sqlalchemy.orm import Session

from services.registry import directory, domain_contact_log, domain_plan, events, intake
from shared.errors import Conflict, NotFound, RuleViolation
from shared.events import Event
from shared.messaging.consumer import Handlers

handlers = Handlers("registry")


@handlers.on("raids.visit.recorded")
def visit_recorded(session: Session, event: Event) -> None:
    domain_contact_log.record_visit(session, event.data, event.id)


@handlers.on("referrals.referral.status_changed")
def referral_status_changed(session: Session, event: Event) -> None:
    data = event.data
    if data["measure_id"] is None:
        return  # a referral made by hand, not from a plan measure
    domain_plan.apply_referral_status(
        session,
        data["measure_id"],
        data["status"],
        data["outcome"] or data["reason"],
        data["at"],
        referral_id=data["referral_id"],
    )


@handlers.on("referrals.agency.created")
@handlers.on("referrals.agency.updated")
def agency_changed(session: Session, event: Event) -> None:
    directory.remember_agency(session, event.data)


@handlers.on("referrals.signal.accepted")
def signal_accepted(session: Session, event: Event) -> None:
    data = event.data
    try:
        with session.begin_nested():  # a refusal keeps nothing of what was begun
            if not data["family_id"]:
                intake.accept_unmatched(session, data)
            else:
                domain_contact_log.accept_signal(
                    session,
                    signal_id=data["signal_id"],
                    family_id=data["family_id"],
                    accepted_by=data["accepted_by"],
                    at=data["at"],
                    agency_id=data["reporter_agency_id"],
                )
    except (NotFound, Conflict, RuleViolation) as exc:
        # A business refusal, not a broken message: it goes back to the coordinator's triage.
        events.publish(
            session,
            "registry.signal.refused",
            {
                "signal_id": data["signal_id"],
                "family_id": data["family_id"],
                "reason": "family-unknown" if isinstance(exc, NotFound) else "case-refused",
                "detail": exc.detail,
                "accepted_at": data["at"].isoformat(),
            },
        )
