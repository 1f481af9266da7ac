"""Events the notifications service consumes (read models and messages) and its jobs.

Read-model-only events are batch handlers (one pass over the batch); events that make messages
update their read model first, then let the rules decide.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from services.notifications import delivery, digests, domain, readmodels, receipts, reminders, rules
from shared.config import ConfigError
from shared.db import transaction, utcnow
from shared.events import Event
from shared.messaging.consumer import Handlers
from shared.worker import Job, JobContext

handlers = Handlers("notifications")

DEFAULT_RETENTION_DAYS = 7


def _notify(session: Session, event: Event) -> None:
    domain.notify(session, handlers.settings, event.id, event.type, event.data, utcnow())


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
@handlers.on("raids.participant.withdrawn")
def participant_changed(session: Session, event: Event) -> None:
    readmodels.remember_participant(session, event)


# --- read model + messages ---------------------------------------------------------------------


@handlers.on("raids.raid.updated")
@handlers.on("raids.raid.cancelled")
def raid_changed_for_attendees(session: Session, event: Event) -> None:
    readmodels.remember_raid(session, event)
    session.flush()
    _notify(session, event)


@handlers.on("raids.participant.invited")
def participant_invited(session: Session, event: Event) -> None:
    readmodels.remember_participant(session, event)
    session.flush()
    _notify(session, event)


@handlers.on("registry.case.lead_assigned")
def lead_assigned(session: Session, event: Event) -> None:
    readmodels.remember_case(session, event)
    session.flush()
    _notify(session, event)


@handlers.on("referrals.referral.status_changed")
def referral_status_changed(session: Session, event: Event) -> None:
    readmodels.remember_referral(session, event.data)
    session.flush()
    _notify(session, event)


# --- messages only -----------------------------------------------------------------------------

_HANDLED = {
    "raids.raid.updated",
    "raids.raid.cancelled",
    "raids.participant.invited",
    "registry.case.lead_assigned",
    "referrals.referral.status_changed",
}
for _event_type in rules.event_types():
    if _event_type not in _HANDLED:
        handlers.on(_event_type)(_notify)


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
    return delivery.deliver_queued(ctx)


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
    Job("deliver", 1.0, deliver),
    Job("sms-receipts", 2.0, poll_receipts),
    Job("digests", 60.0, send_digests),
    Job("reminders", 300.0, make_reminders),
    Job("retention", 3600.0, purge_bodies),
]
