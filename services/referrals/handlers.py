"""Events the referrals service consumes, and its periodic jobs.

``registry.measure.assigned`` and raids' ``followup.requested`` become referrals (once each);
``registry.agreement.recorded`` and ``.withdrawn`` feed the consent read model (and send the
drafts that waited for it, or cancel unanswered referrals it no longer covers: ``consent.py``),
the registry's family events the number and district of families, and
``registry.signal.refused`` returns an accepted signal to triage; ``notifications.link.reissued``
retires a referral's answer links older than a resend's fresh one. Jobs: the signal escalation,
the referral SLA check (overdue reminders, escalations) and the consent calendar (expiries)
every minute; webhook deliveries every few seconds; the queues of agencies that connect over
AMQP declared every minute. A second consumer reads the agency ingress (``agency_ingress.py``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.referrals import (
    agency_ingress,
    consent,
    directory,
    intake,
    links,
    signals,
    sla,
    webhook_delivery,
)
from shared.db import transaction, utcnow
from shared.events import Event
from shared.messaging.consumer import Handlers
from shared.worker import Job, JobContext

handlers = Handlers("referrals")


@handlers.on("registry.measure.assigned")
def measure_assigned(session: Session, event: Event) -> None:
    intake.referral_from_measure(session, event.data, event.occurred_at)


@handlers.on("registry.agreement.recorded")
@handlers.on("registry.agreement.withdrawn")
def agreement_changed(session: Session, event: Event) -> None:
    """The read model and what follows from it, in one transaction: waiting drafts the consent
    now covers are sent, unanswered referrals it no longer covers are cancelled."""
    directory.remember_agreement(session, event.data)
    session.flush()
    consent.follow_consent(session, event.data["family_id"], utcnow())


@handlers.on("registry.signal.refused")
def signal_refused(session: Session, event: Event) -> None:
    signals.return_to_triage(session, event.data, utcnow())


@handlers.on("raids.followup.requested")
def followup_requested(session: Session, event: Event) -> None:
    intake.referral_from_followup(session, event.data, event.occurred_at)


@handlers.on("registry.family.registered")
@handlers.on("registry.family.updated")
def family_changed(session: Session, event: Event) -> None:
    intake.remember_family(session, event.data)


@handlers.on("notifications.link.reissued")
def link_reissued(session: Session, event: Event) -> None:
    if event.data["purpose"] == links.PURPOSE:
        links.raise_floor(session, event.data["subject"], event.data["issued_from"])


def escalate_signals(ctx: JobContext) -> None:
    with transaction(ctx.sessions) as session:
        signals.escalate_overdue(session, utcnow())


def follow_consent_calendar(ctx: JobContext) -> None:
    with transaction(ctx.sessions) as session:
        consent.follow_calendar(session, utcnow())


def check_referral_sla(ctx: JobContext) -> None:
    with transaction(ctx.sessions) as session:
        sla.check_overdue(session, sla.SlaRules.current(), utcnow())


def deliver_webhooks(ctx: JobContext) -> None:
    policy = webhook_delivery.DeliveryPolicy.from_env(
        ctx.settings.options, embedded=ctx.settings.embedded
    )
    while webhook_delivery.deliver_due(ctx.sessions, ctx.settings, policy) >= policy.batch_size:
        pass  # a full batch: more may be due


jobs = [
    Job("escalate-signals", 60, escalate_signals),
    Job("check-referral-sla", 60, check_referral_sla),
    Job("follow-consent-calendar", 60, follow_consent_calendar),
    Job("deliver-webhooks", 5, deliver_webhooks),
    Job("declare-agency-queues", 60, agency_ingress.declare_agency_queues),
]

# Agency systems' messages (status, comment, signal) arrive on their own ingress queue.
consumers = [agency_ingress.ingress_consumer]
