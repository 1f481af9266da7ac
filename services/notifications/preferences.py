"""Each person's preferences and the time rules built on them: quiet hours in the person's own
time zone, the daily digest hour, opt-out of non-urgent messages. Every function takes ``now``
(aware UTC), so tests drive the clock."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from services.notifications import prefetch
from services.notifications.models import Preference
from shared.db import utcnow

DEFAULT_TIMEZONE = "Europe/Moscow"
LANGUAGES = ("ru", "en")


@dataclass(frozen=True)
class Prefs:
    email: bool = True
    sms: bool = True
    language: str = "ru"
    timezone: str = DEFAULT_TIMEZONE
    quiet_start: dt.time | None = dt.time(21, 0)
    quiet_end: dt.time | None = dt.time(8, 0)
    only_urgent: bool = False
    digest: bool = False
    digest_hour: dt.time = dt.time(8, 0)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)


DEFAULTS = Prefs()


@dataclass(frozen=True)
class Decision:
    """What to do with one message: queue it, hold it (and till when), or drop it (why)."""

    state: str | None  # "queued" | "held" | None (not made)
    hold_reason: str | None = None
    held_until: dt.datetime | None = None
    skipped: str | None = None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_hhmm(raw: str) -> dt.time:
    """ "21:00" -> time(21, 0); raises ValueError with a clear message."""
    try:
        hours, minutes = raw.strip().split(":")
        return dt.time(int(hours), int(minutes))
    except (ValueError, AttributeError):
        raise ValueError(f"expected a time as HH:MM, got {raw!r}") from None


def hhmm(value: dt.time | None) -> str | None:
    return None if value is None else value.strftime("%H:%M")


# --- time rules --------------------------------------------------------------------------------


def in_quiet_hours(prefs: Prefs, now: dt.datetime) -> bool:
    """Whether ``now`` falls in the person's quiet hours (which may span midnight)."""
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is None or end is None or start == end:
        return False
    local = now.astimezone(prefs.zone).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(prefs: Prefs, now: dt.datetime) -> dt.datetime:
    """The UTC moment the current quiet hours end (``now`` itself outside them)."""
    if not in_quiet_hours(prefs, now):
        return now
    assert prefs.quiet_end is not None
    local = now.astimezone(prefs.zone)
    day = local.date()
    if local.time() >= prefs.quiet_end:  # before midnight: they end tomorrow morning
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, prefs.quiet_end, tzinfo=prefs.zone).astimezone(dt.UTC)


def digest_moment(prefs: Prefs, now: dt.datetime) -> tuple[dt.date, dt.datetime]:
    """The latest digest time at or before ``now``: (its local date, the UTC moment)."""
    local = now.astimezone(prefs.zone)
    day = local.date()
    if local.time() < prefs.digest_hour:
        day -= dt.timedelta(days=1)
    moment = dt.datetime.combine(day, prefs.digest_hour, tzinfo=prefs.zone).astimezone(dt.UTC)
    return day, moment


def decide(
    prefs: Prefs, channel: str, priority: str, now: dt.datetime, *, has_attachments: bool = False
) -> Decision:
    """Queue, hold or drop a message for this person.

    Urgent messages pass quiet hours, the digest and the opt-out; a channel the person turned
    off stays off. Digest-priority emails wait for the digest of those who chose one (not those
    carrying an attachment, which a digest cannot carry). Non-urgent SMS wait out the quiet
    hours.
    """
    if not getattr(prefs, channel, True):
        return Decision(None, skipped=f"{channel} is turned off")
    urgent = priority == "urgent"
    if prefs.only_urgent and not urgent:
        return Decision(None, skipped="the person takes urgent messages only")
    if channel == "email" and priority == "digest" and prefs.digest and not has_attachments:
        return Decision("held", hold_reason="digest")
    if channel == "sms" and not urgent and in_quiet_hours(prefs, now):
        return Decision("held", hold_reason="quiet_hours", held_until=quiet_hours_end(prefs, now))
    return Decision("queued")


# --- storage -----------------------------------------------------------------------------------


def to_prefs(row: Preference | None) -> Prefs:
    if row is None:
        return DEFAULTS
    return Prefs(
        email=row.email,
        sms=row.sms,
        language=row.language if row.language in LANGUAGES else "ru",
        timezone=row.timezone or DEFAULT_TIMEZONE,
        quiet_start=parse_hhmm(row.quiet_start) if row.quiet_start else None,
        quiet_end=parse_hhmm(row.quiet_end) if row.quiet_end else None,
        only_urgent=row.only_urgent,
        digest=row.digest,
        digest_hour=parse_hhmm(row.digest_hour) if row.digest_hour else DEFAULTS.digest_hour,
    )


def for_person(session: Session, person_id: str) -> Prefs:
    return to_prefs(prefetch.get(session, Preference, person_id))


def as_dict(prefs: Prefs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(prefs):
        value = getattr(prefs, f.name)
        out[f.name] = hhmm(value) if isinstance(value, dt.time) else value
    return out


def _columns(prefs: Prefs) -> dict[str, Any]:
    return as_dict(prefs)


def from_directory(raw: dict[str, Any] | None) -> Prefs:
    """The directory's contact ``preferences`` (``email``, ``sms``, ``quiet_hours`` as
    "21:00-08:00", optionally ``language``, ``timezone``, ``digest``); unknown or bad keys are
    ignored, so one odd contact cannot block its agency's update."""
    prefs = DEFAULTS
    raw = raw or {}
    for key in ("email", "sms", "digest", "only_urgent"):
        if isinstance(raw.get(key), bool):
            prefs = replace(prefs, **{key: raw[key]})
    if raw.get("language") in LANGUAGES:
        prefs = replace(prefs, language=raw["language"])
    if isinstance(raw.get("timezone"), str) and valid_timezone(raw["timezone"]):
        prefs = replace(prefs, timezone=raw["timezone"])
    quiet = raw.get("quiet_hours")
    if quiet is False or quiet == "":
        prefs = replace(prefs, quiet_start=None, quiet_end=None)
    elif isinstance(quiet, str) and "-" in quiet:
        try:
            start, end = (parse_hhmm(part) for part in quiet.split("-", 1))
            prefs = replace(prefs, quiet_start=start, quiet_end=end)
        except ValueError:
            pass
    return prefs


def remember_from_directory(
    session: Session, person_id: str, raw: dict[str, Any] | None, now: dt.datetime | None = None
) -> None:
    """Keep the directory's view unless the person set their own preferences here."""
    row = session.get(Preference, person_id)
    if row is not None and row.source == "self":
        return
    values = _columns(from_directory(raw))
    if row is None:
        session.add(
            Preference(
                person_id=person_id, source="directory", updated_at=now or utcnow(), **values
            )
        )
        return
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = now or utcnow()


def save_own(
    session: Session, person_id: str, changes: dict[str, Any], now: dt.datetime | None = None
) -> Prefs:
    """The person's own choice (already validated by the schema); the directory no longer
    overrides it. ``quiet_hours`` null turns the quiet hours off."""
    current = for_person(session, person_id)
    updates: dict[str, Any] = {}
    for key in ("email", "sms", "language", "timezone", "only_urgent", "digest"):
        if key in changes:
            updates[key] = changes[key]
    if "digest_hour" in changes:
        updates["digest_hour"] = parse_hhmm(changes["digest_hour"])
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        if quiet is None:
            updates["quiet_start"] = updates["quiet_end"] = None
        else:
            updates["quiet_start"] = parse_hhmm(quiet["start"])
            updates["quiet_end"] = parse_hhmm(quiet["end"])
    prefs = replace(current, **updates)
    row = session.get(Preference, person_id)
    values = _columns(prefs)
    if row is None:
        row = Preference(person_id=person_id)
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    row.source = "self"
    row.updated_at = now or utcnow()
    return prefs


def local_text(moment: dt.datetime | None, prefs: Prefs, with_time: bool = True) -> str:
    """A date (and time) pre-formatted in the person's time zone, as the templates expect."""
    if moment is None:
        return ""
    local = moment.astimezone(prefs.zone)
    return local.strftime("%d.%m.%Y %H:%M" if with_time else "%d.%m.%Y")
