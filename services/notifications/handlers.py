"""Events the notifications service consumes (read models and messages) and its jobs.

Read-model-only events update their read model; events that make messages are handled a
consumer batch at a time (``notify_all``): each updates its read model first, then the rules
decide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy.orm import Session

from services.notifications import (
    delivery,
    digests,
    domain,
    prefetch,
    readmodels,
    receipts,
    reminders,
    rules,
)
from shared.config import ConfigError
from shared.db import transaction, utcnow
from shared.events import Event
from shared.messaging.consumer import Handlers
from shared.worker import Job, JobContext

handlers = Handlers("notifications")

DEFAULT_RETENTION_DAYS = 7
WAKE_WAIT = 1.0  # seconds the deliver job waits for a new message before looking again


# --- read models -------------------------------------------------------------------------------


@handlers.on_batch("referrals.agency.created")
@handlers.on_batch("referrals.agency.updated")
def agencies_changed(session: Session, events: list[Event]) -> None:
    readmodels.remember_agencies(session, events)


@handlers.on_batch("referrals.contact.changed")
def contacts_changed(session: Session, events: list[Event]) -> None:
    for event in events:
        readmodels.remember_contact(session, event.data, event.occurred_at)
        session.flush()


@handlers.on_batch("registry.measure.assigned")
@handlers.on_batch("registry.measure.updated")
def measures_changed(session: Session, events: list[Event]) -> None:
    readmodels.remember_measures(session, events)


@handlers.on("registry.case.opened")
@handlers.on("registry.case.stage_changed")
def case_changed(session: Session, event: Event) -> None:
    readmodels.remember_case(session, event)


@handlers.on("raids.raid.scheduled")
@handlers.on("raids.raid.completed")
def raid_changed(session: Session, event: Event) -> None:
    readmodels.remember_raid(session, event)


@handlers.on("raids.participant.confirmed")
@handlers.on("raids.participant.declined")
def participant_changed(session: Session, event: Event) -> None:
    readmodels.remember_participant(session, event)


# --- read model + messages ---------------------------------------------------------------------
# Batch handlers: the consumer hands each all the batch's events of its types at once, and
# prefetch reads what they need in a few queries (see prefetch.py); the read model moves first,
# then the rules make the messages.

READ_MODEL: dict[str, Callable[[Session, Event], object]] = {
    "raids.raid.updated": readmodels.remember_raid,
    "raids.raid.cancelled": readmodels.remember_raid,
    "raids.participant.invited": readmodels.remember_participant,
    "raids.participant.withdrawn": readmodels.remember_participant,
    "registry.case.lead_assigned": readmodels.remember_case,
    "referrals.referral.status_changed": lambda s, e: readmodels.remember_referral(s, e.data),
    "referrals.referral.claimed": lambda s, e: readmodels.remember_owner(s, e.data, e.occurred_at),
}


def notify_all(session: Session, events: list[Event]) -> None:
    """The batch's events in order: each one's read model, then its messages."""
    now = utcnow()
    with prefetch.batch(session, events):
        for event in events:
            remember = READ_MODEL.get(event.type)
            if remember is not None:
                remember(session, event)
            domain.notify(session, handlers.settings, event.id, event.type, event.data, now)
    session.flush()


for _event_type in sorted(set(rules.event_types()) | set(READ_MODEL)):
    handlers.on_batch(_event_type)(notify_all)


# --- jobs --------------------------------------------------------------------------------------


def retention_days(env: Mapping[str, str]) -> int:
    """NOTIFICATIONS_RETENTION_DAYS from ``Settings.options`` (default 7)."""
    raw = env.get("NOTIFICATIONS_RETENTION_DAYS") or ""
    if not raw:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(raw)
    except ValueError:
        raise ConfigError(
            f"NOTIFICATIONS_RETENTION_DAYS must be a whole number, got {raw!r}"
        ) from None
    if days < 1:
        raise ConfigError("NOTIFICATIONS_RETENTION_DAYS must be at least 1")
    return days


def deliver(ctx: JobContext) -> int:
    """Drain the queue, then wait (up to WAKE_WAIT) until a transaction queues a message; the
    wait comes after a failed run too, so a database outage is not retried in a tight loop."""
    try:
        return delivery.deliver_due(ctx)
    finally:
        delivery.wait_for_work(WAKE_WAIT)


def poll_receipts(ctx: JobContext) -> int:
    return receipts.poll_receipts(ctx)


def send_digests(ctx: JobContext) -> int:
    with transaction(ctx.sessions) as session:
        return digests.send_digests(session, utcnow())


def make_reminders(ctx: JobContext) -> int:
    with transaction(ctx.sessions) as session:
        return reminders.all_reminders(session, ctx.settings, utcnow())


def purge_bodies(ctx: JobContext) -> int:
    with transaction(ctx.sessions) as session:
        return delivery.purge_bodies(session, utcnow(), retention_days(ctx.settings.options))


jobs = [
    Job("deliver", 0.0, deliver),  # paced by its own wait
    Job("sms-receipts", 2.0, poll_receipts),
    Job("digests", 60.0, send_digests),
    Job("reminders", 300.0, make_reminders),
    Job("retention", 3600.0, purge_bodies),
]
