"""Events the registry consumes: raids' visit acts become contact-log entries, and a referral's
status moves the plan's measure it came from (the closed loop).

``referrals.signal.accepted`` (open or attach a case) is handled by
``domain_contact_log.accept_signal`` once signals carry a registry family id on acceptance.
"""

from sqlalchemy.orm import Session

from services.registry import domain_contact_log, domain_plan
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
