"""Events the referrals service consumes, and its periodic jobs.

``registry.measure.assigned`` becomes a referral (once per measure); ``registry.agreement
.recorded`` feeds the consent read model. The signal escalation job runs every minute.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.referrals import directory, domain, signals
from shared.db import transaction, utcnow
from shared.events import Event
from shared.messaging.consumer import Handlers
from shared.worker import Job, JobContext

handlers = Handlers("referrals")


@handlers.on("registry.measure.assigned")
def measure_assigned(session: Session, event: Event) -> None:
    domain.referral_from_measure(session, event.data, event.occurred_at)


@handlers.on("registry.agreement.recorded")
def agreement_recorded(session: Session, event: Event) -> None:
    directory.remember_agreement(session, event.data)


def escalate_signals(ctx: JobContext) -> None:
    with transaction(ctx.sessions) as session:
        signals.escalate_overdue(session, utcnow())


jobs = [Job("escalate-signals", 60, escalate_signals)]
