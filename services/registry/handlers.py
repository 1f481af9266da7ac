"""Events the registry consumes: raids' visit acts become contact-log entries.

Referrals' events (an accepted signal, a referral's status) are handled by
``domain_contact_log.accept_signal`` and ``domain_plan.apply_referral_status``; they are wired here once
the referrals service publishes them.
"""

from sqlalchemy.orm import Session

from services.registry import domain_contact_log
from shared.events import Event
from shared.messaging.consumer import Handlers

handlers = Handlers("registry")


@handlers.on("raids.visit.recorded")
def visit_recorded(session: Session, event: Event) -> None:
    domain_contact_log.record_visit(session, event.data, event.id)
