"""Events the referrals service consumes, and its periodic jobs.

``registry.measure.assigned`` and raids' ``followup.requested`` become referrals (once each);
``registry.agreement.recorded`` feeds the consent read model and the registry's family events
the number and district of families. The signal escalation job runs every minute.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.referrals import directory, intake, signals
from shared.db import transaction, utcnow
from shared.events import Event
from shared.messaging.consumer import Handlers
from shared.worker import Job, JobContext

handlers = Handlers("referrals")


@handlers.on("registry.measure.assigned")
def measure_assigned(session: Session, event: Event) -> None:
    intake.referral_from_measure(session, event.data, event.occurred_at)


@handlers.on("registry.agreement.recorded")
def agreement_recorded(session: Session, event: Event) -> None:
    directory.remember_agreement(session, event.data)


@handlers.on("raids.followup.requested")
def followup_requested(session: Session, event: Event) -> None:
    intake.referral_from_followup(session, event.data, event.occurred_at)


@handlers.on("registry.family.registered")
@handlers.on("registry.family.updated")
def family_changed(session: Session, event: Event) -> None:
    intake.remember_family(session, event.data)


def escalate_signals(ctx: JobContext) -> None:
    with transaction(ctx.sessions) as session:
        signals.escalate_overdue(session, utcnow())


jobs = [Job("escalate-signals", 60, escalate_signals)]
