"""iCalendar (RFC 5545) for raids: the invitation each participant's calendar understands.

An entry carries no family's personal data: the location is the meeting point (the district
centre) and the description counts families without naming them, because the ``.ics`` travels
by email. A change raises SEQUENCE so calendars replace the old entry; a cancellation is
METHOD:CANCEL with STATUS:CANCELLED.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import icalendar

PRODID = "-//Opora//Raids//RU"
UID_DOMAIN = "raids.opora"
PARTSTAT = {
    "invited": "NEEDS-ACTION",
    "confirmed": "ACCEPTED",
    "declined": "DECLINED",
    "withdrawn": "DECLINED",
}
STATUS = {
    "planned": "TENTATIVE",
    "confirmed": "CONFIRMED",
    "in_progress": "CONFIRMED",
    "completed": "CONFIRMED",
    "cancelled": "CANCELLED",
}
PURPOSE_TEXT = {
    "planned_check": "плановая проверка / planned check",
    "complaint_followup": "проверка по сигналу / complaint follow-up",
    "seasonal_operation": "сезонная профилактическая операция / seasonal prevention operation",
}
ALARMS = (dt.timedelta(days=-1), dt.timedelta(hours=-1))


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str
    state: str
    role: str


@dataclass(frozen=True)
class CalendarEntry:
    raid_id: str
    sequence: int
    title: str
    purpose: str
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    timezone: str
    location: str
    organizer_email: str
    organizer_name: str | None
    attendees: Sequence[Attendee]
    family_count: int
    url: str
    updated_at: dt.datetime


def uid(raid_id: str) -> str:
    return f"raid-{raid_id}@{UID_DOMAIN}"


def _event(entry: CalendarEntry, stamp: dt.datetime, cancel: bool) -> icalendar.Event:
    zone = ZoneInfo(entry.timezone)
    event = icalendar.Event()
    event.add("uid", uid(entry.raid_id))
    event.add("dtstamp", stamp)
    event.add("last-modified", entry.updated_at.astimezone(dt.UTC))
    event.add("sequence", entry.sequence)
    event.add("summary", entry.title)
    event.add("dtstart", entry.starts_at.astimezone(zone))
    event.add("dtend", entry.ends_at.astimezone(zone))
    event.add("location", entry.location)
    event.add("status", "CANCELLED" if cancel else STATUS[entry.status])
    event.add("url", entry.url)
    event.add("categories", ["Opora", "межведомственный рейд"])
    event.add(
        "description",
        (
            f"Межведомственный рейд: {PURPOSE_TEXT.get(entry.purpose, entry.purpose)}.\n"
            f"Семей к посещению: {entry.family_count}. Маршрут и адреса — в Opora: {entry.url}\n"
            f"Joint interagency raid; {entry.family_count} families to visit. "
            f"Route and addresses in Opora: {entry.url}"
        ),
    )
    organizer = icalendar.vCalAddress(f"mailto:{entry.organizer_email}")
    if entry.organizer_name:
        organizer.params["cn"] = entry.organizer_name
    organizer.params["role"] = "CHAIR"
    event.add("organizer", organizer, encode=False)
    for person in entry.attendees:
        attendee = icalendar.vCalAddress(f"mailto:{person.email}")
        attendee.params["cn"] = person.name
        attendee.params["role"] = "REQ-PARTICIPANT"
        attendee.params["partstat"] = PARTSTAT.get(person.state, "NEEDS-ACTION")
        attendee.params["cutype"] = "INDIVIDUAL"
        if person.state == "invited" and not cancel:
            attendee.params["rsvp"] = "TRUE"
        event.add("attendee", attendee, encode=False)
    if not cancel:
        for trigger in ALARMS:
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("trigger", trigger)
            alarm.add("description", f"Рейд / raid: {entry.title}")
            event.add_component(alarm)
    return event


def render(
    entries: Sequence[CalendarEntry],
    *,
    method: str = "REQUEST",
    name: str | None = None,
    stamp: dt.datetime | None = None,
) -> str:
    """One VCALENDAR; METHOD:CANCEL marks every entry cancelled, PUBLISH is for feeds."""
    if method not in ("REQUEST", "CANCEL", "PUBLISH"):
        raise ValueError(f"unsupported iTIP method {method}")
    stamp = (stamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    if name:
        calendar.add("x-wr-calname", name)
    for entry in entries:
        cancel = method == "CANCEL" or (method == "PUBLISH" and entry.status == "cancelled")
        calendar.add_component(_event(entry, stamp, cancel))
    calendar.add_missing_timezones()
    return str(calendar.to_ical().decode("utf-8"))
