"""A batch of events read in a few queries before the handlers run.

The consumer hands up to 300 events to the handlers in one transaction. Looked up one event at
a time, the recipients, preferences, raids, cases, referrals, active template versions and the
messages already made cost a database round trip each, and a round trip costs more than the
email's own MIME. ``batch`` reads them for the whole batch up front and keeps them on the
session until the batch is handled; :func:`get` and :func:`add` answer from there (rows found,
rows known to be absent, rows added by this batch) and fall back to the database outside a
batch, so the handlers' code is the same for one event and for three hundred.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import insert, inspect, select
from sqlalchemy.orm import Session

from services.notifications import states
from services.notifications.models import (
    Base,
    KnownCase,
    KnownMeasure,
    KnownRaid,
    KnownReferral,
    Message,
    MessageHistory,
    Preference,
    RaidAttendee,
    Recipient,
    ReferralOwner,
)
from services.notifications.models_templates import TemplateVersion
from shared.events import Event

KEY = "notifications.batch"
# the keys of event data that name a person of the directory
PERSON_KEYS = (
    "person_id", "lead_specialist", "coordinator_id", "owner_id", "sender_id", "author_id",
    "decided_by", "by",
)  # fmt: skip

M = TypeVar("M", bound=Base)


@dataclass
class Batch:
    """What the batch's handlers look up, read once."""

    rows: dict[tuple[type, Any], Any] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    made: set[tuple[str, str, str]] = field(default_factory=set)  # (source, recipient, channel)
    coordinators: list[Recipient] | None = None
    templates: dict[tuple[str, str, str], TemplateVersion] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)  # written once, at the end
    history: list[dict[str, Any]] = field(default_factory=list)


def current(session: Session) -> Batch | None:
    batch = session.info.get(KEY)
    return batch if isinstance(batch, Batch) else None


def get(session: Session, model: type[M], key: Any) -> M | None:
    """``session.get`` that knows what the batch read (absent rows included)."""
    batch = current(session)
    if batch is not None and (model, key) in batch.rows:
        found: M | None = batch.rows[(model, key)]
        return found
    return session.get(model, key)


def add(session: Session, row: M, key: Any) -> M:
    """``session.add`` that the batch's :func:`get` sees before the flush."""
    session.add(row)
    batch = current(session)
    if batch is not None:
        batch.rows[(type(row), key)] = row
    return row


def _key(row: Base) -> Any:
    """The primary key as ``session.get`` takes it: the value, or a tuple when composite."""
    identity = inspect(row).identity or ()
    return identity[0] if len(identity) == 1 else identity


def _load(
    session: Session, batch: Batch, model: type[M], column: Any, keys: Iterable[Any]
) -> list[M]:
    wanted = {k for k in keys if k is not None}
    if not wanted:
        return []
    found = list(session.scalars(select(model).where(column.in_(wanted))))
    for row in found:
        batch.rows[(model, _key(row))] = row
    return found


def _absent(batch: Batch, model: type, keys: Iterable[Any]) -> None:
    for key in keys:
        if key is not None:
            batch.rows.setdefault((model, key), None)


def _people(data: dict[str, Any]) -> set[str]:
    people = {str(data[k]) for k in PERSON_KEYS if data.get(k)}
    for attendee in data.get("attendees") or data.get("participants") or []:
        people.add(attendee["person_id"])
    return people


def read(session: Session, batch: Batch, events: list[Event]) -> None:
    """Recipients and their preferences, raids and attendees, cases, referrals (with their
    measures and owners) and the messages already made of these events."""
    data = [e.data for e in events]
    people = set().union(*(_people(d) for d in data))
    raids = {d["raid_id"] for d in data if d.get("raid_id")}
    cases = {d["case_id"] for d in data if d.get("case_id")}
    referrals = {d["referral_id"] for d in data if d.get("referral_id")}
    for model, column, keys in (
        (Recipient, Recipient.person_id, people),
        (Preference, Preference.person_id, people),
        (KnownRaid, KnownRaid.raid_id, raids),
        (KnownReferral, KnownReferral.referral_id, referrals),
        (ReferralOwner, ReferralOwner.referral_id, referrals),
    ):
        _load(session, batch, model, column, keys)
        _absent(batch, model, keys)
    attendees = _load(session, batch, RaidAttendee, RaidAttendee.raid_id, raids)
    named = {
        (d["raid_id"], d["person_id"]) for d in data if d.get("raid_id") and d.get("person_id")
    }
    _absent(batch, RaidAttendee, named - {(a.raid_id, a.person_id) for a in attendees})
    measures = {
        r.measure_id
        for (model, _), r in list(batch.rows.items())
        if model is KnownReferral and r is not None and r.measure_id
    }
    found = _load(session, batch, KnownMeasure, KnownMeasure.measure_id, measures)
    cases |= {m.case_id for m in found}
    _load(session, batch, KnownCase, KnownCase.case_id, cases)
    _absent(batch, KnownCase, cases)
    batch.sources = {e.id for e in events}
    batch.made = {
        (s, r, c)
        for s, r, c in session.execute(
            select(Message.source_event_id, Message.recipient_id, Message.channel).where(
                Message.source_event_id.in_(batch.sources)
            )
        )
    }


@contextlib.contextmanager
def batch(session: Session, events: list[Event]) -> Iterator[Batch]:
    """Read what ``events`` need; :func:`get` answers from it until the block ends."""
    found = Batch()
    read(session, found, events)
    session.info[KEY] = found
    try:
        yield found
        if found.messages:
            session.execute(insert(Message), found.messages)
        states.insert_history(session, found.history)
    finally:
        session.info.pop(KEY, None)


def coordinators(session: Session, load: Callable[[], list[Recipient]]) -> list[Recipient]:
    """The active coordinators, read once a batch (with their preferences)."""
    batch = current(session)
    if batch is None:
        return load()
    if batch.coordinators is None:
        batch.coordinators = load()
        ids = [r.person_id for r in batch.coordinators]
        _load(session, batch, Preference, Preference.person_id, ids)
        _absent(batch, Preference, ids)
    return batch.coordinators


def active_templates(
    session: Session, load: Callable[[], dict[tuple[str, str, str], TemplateVersion]]
) -> dict[tuple[str, str, str], TemplateVersion] | None:
    """The active stored template versions, read once a batch; None outside a batch."""
    batch = current(session)
    if batch is None:
        return None
    if batch.templates is None:
        batch.templates = load()
    return batch.templates


def already_made(session: Session, source_id: str, recipient_id: str, channel: str) -> bool | None:
    """Whether the batch knows this message exists (None: the batch cannot tell)."""
    batch = current(session)
    if batch is None or source_id not in batch.sources:
        return None
    return (source_id, recipient_id, channel) in batch.made


def made(session: Session, row: dict[str, Any], history: dict[str, Any]) -> Message | None:
    """A new message and its first history row: added to the session as objects, or in a
    batch kept as rows for the batch's end (then None)."""
    batch = current(session)
    if batch is None:
        message = Message(**row)
        session.add(message)
        session.add(MessageHistory(**history))
        return message
    batch.made.add((row["source_event_id"], row["recipient_id"], row["channel"]))
    batch.messages.append(row)
    batch.history.append(history)
    return None
