"""Who is told what: one rule per event type (a few event types have one per case).

A rule is plain data (template key, channels, priority) plus three small functions: who the
recipients are (from the event and the local read models), the template's placeholders for a
recipient, and the attachments. Priorities:

- ``urgent``: sent at once on every channel of the rule, SMS in quiet hours too, never
  digested, not dropped by the opt-out of non-urgent messages;
- ``normal``: sent singly; non-urgent SMS wait out the person's quiet hours;
- ``digest``: informational; for those who chose a daily digest the email waits for it.

Numbers: the entity's human number when the event carries one, else the first 8 characters
of its id. Nothing here puts a family member's name, address or birth date in a context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from services.notifications import readmodels
from services.notifications.labels import label
from services.notifications.models import KnownCase, KnownRaid, KnownReferral, Recipient
from services.notifications.preferences import Prefs, local_text
from shared.auth.links import issue_link_token
from shared.config import Settings

URGENT_REFERRALS = ("urgent", "asap", "stat")
# contact roles that handle incoming referrals (an agency without them: all its contacts)
REFERRAL_ROLES = ("referrals", "head", "coordinator", "intake", "manager")
REFERRAL_LINK = "referral"


@dataclass(frozen=True)
class Addressee:
    """A person to tell and where; ``email`` from the event wins over the directory's."""

    person_id: str
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class RuleInput:
    session: Session
    settings: Settings
    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    name: str
    event_type: str
    template: str
    channels: tuple[str, ...]
    priority: str
    audience: str  # for GET /rules
    recipients: Callable[[RuleInput], list[Addressee]]
    context: Callable[[RuleInput, Prefs], dict[str, Any]]
    applies: Callable[[dict[str, Any]], bool] = lambda data: True
    # e.g. an urgent referral goes by SMS too, and as urgent
    channels_for: Callable[[dict[str, Any]], tuple[str, ...]] | None = None
    priority_for: Callable[[dict[str, Any]], str] | None = None
    attachments: Callable[[RuleInput], list[dict[str, str]]] = field(default=lambda inp: [])

    def channels_of(self, data: dict[str, Any]) -> tuple[str, ...]:
        return self.channels_for(data) if self.channels_for else self.channels

    def priority_of(self, data: dict[str, Any]) -> str:
        return self.priority_for(data) if self.priority_for else self.priority

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "event_type": self.event_type,
            "template": self.template,
            "channels": list(self.channels),
            "priority": self.priority,
            "audience": self.audience,
        }


# --- recipients --------------------------------------------------------------------------------


def addressee(recipient: Recipient, email: str | None = None) -> Addressee:
    return Addressee(recipient.person_id, email or recipient.email, recipient.phone)


def person(session: Session, person_id: str | None, email: str | None = None) -> list[Addressee]:
    """One person from the directory; someone the directory does not know yet can still get
    the email the event names."""
    if not person_id:
        return []
    recipient = session.get(Recipient, person_id)
    if recipient is None:
        return [Addressee(person_id, email, None)] if email else []
    if not recipient.active:
        return []
    return [addressee(recipient, email)]


def coordinators_of(
    key: Callable[[dict[str, Any]], str | None],
) -> Callable[[RuleInput], list[Addressee]]:
    def resolve(inp: RuleInput) -> list[Addressee]:
        return [addressee(r) for r in readmodels.district_coordinators(inp.session, key(inp.data))]

    return resolve


def the_person(key: str, email_key: str | None = None) -> Callable[[RuleInput], list[Addressee]]:
    def resolve(inp: RuleInput) -> list[Addressee]:
        email = inp.data.get(email_key) if email_key else None
        return person(inp.session, inp.data.get(key), email)

    return resolve


def referral_handlers(inp: RuleInput) -> list[Addressee]:
    contacts = readmodels.agency_contacts(inp.session, inp.data.get("agency_id"), REFERRAL_ROLES)
    return [addressee(c) for c in contacts]


def referral_watchers(inp: RuleInput) -> list[Addressee]:
    referral = inp.session.get(KnownReferral, inp.data["referral_id"])
    if referral is None:
        return person(inp.session, inp.data.get("by"))
    people = [p for p in readmodels.referral_watchers(inp.session, referral) if p != inp.data["by"]]
    return [a for p in people for a in person(inp.session, p)]


ACTIVE_ATTENDEES = ("invited", "confirmed")


def attendees(inp: RuleInput) -> list[Addressee]:
    found = []
    for attendee in inp.data.get("attendees") or []:
        if attendee["state"] in ACTIVE_ATTENDEES:
            found += person(inp.session, attendee["person_id"], attendee.get("email"))
    return found


# --- contexts ----------------------------------------------------------------------------------


def short(entity_id: str) -> str:
    return entity_id[:8]


def url(inp: RuleInput, path: str) -> str:
    return f"{inp.settings.public_url}{path}"


def family_registered(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    return {
        "family_number": d["number"],
        "category": label("category", d["category"], prefs.language),
        "district": d["address"]["district"],
        "family_url": url(inp, f"/families/{d['family_id']}"),
    }


def case_context(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    case = inp.session.get(KnownCase, d["case_id"])
    return {
        "case_number": short(d["case_id"]),
        "family_number": d["number"],
        "stage": label("stage", case.stage if case else None, prefs.language),
        "approval_kind": label("approval_kind", d.get("kind"), prefs.language),
        "case_url": url(inp, f"/cases/{d['case_id']}"),
    }


def emergency_access(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    return {
        "family_number": d["number"],
        "actor": d["subject"],
        "expires_at": local_text(d["expires_at"], prefs),
        "audit_url": url(inp, f"/audit?entity_id={d['grant_id']}"),
    }


def referral_number(inp: RuleInput) -> str:
    number = inp.data.get("number")
    if not number:
        known = inp.session.get(KnownReferral, inp.data["referral_id"])
        number = known.number if known else None
    return number or short(inp.data["referral_id"])


def referral_url(inp: RuleInput) -> str:
    return url(inp, f"/referrals/{inp.data['referral_id']}")


def referral_received(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    link = ""
    if readmodels.agency_delivery(inp.session, d.get("agency_id")) == "link":
        token = issue_link_token(inp.settings, REFERRAL_LINK, d["referral_id"])
        link = url(inp, f"/referrals/{d['referral_id']}/respond?token={token}")
    return {
        "referral_number": referral_number(inp),
        "service": d["service_code"].replace("_", " "),
        "urgency": label("urgency", d["urgency"], prefs.language),
        "due_at": local_text(d.get("due_at"), prefs, with_time=False),
        "referral_url": referral_url(inp),
        "link_url": link,
    }


def referral_status(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    return {
        "referral_number": referral_number(inp),
        "status": label("status", d["status"], prefs.language),
        "previous_status": label("status", d.get("previous_status"), prefs.language),
        "agency_name": readmodels.agency_name(inp.session, d.get("agency_id")),
        "referral_url": referral_url(inp),
    }


def referral_overdue(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    return {
        "referral_number": referral_number(inp),
        "due_at": local_text(d["due_at"], prefs, with_time=False),
        "days_overdue": d["days_overdue"],
        "agency_name": readmodels.agency_name(inp.session, d.get("agency_id")),
        "referral_url": referral_url(inp),
    }


def signal_context(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    return {
        "signal_number": short(d["signal_id"]),
        "priority": label("priority", d["priority"], prefs.language),
        "district": d["district"],
        "triage_due_at": local_text(d["triage_due_at"], prefs),
        "signal_url": url(inp, f"/signals/{d['signal_id']}"),
    }


def raid_context(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    known = inp.session.get(KnownRaid, d["raid_id"])
    district = d.get("district") or (known.district if known else "")
    return {
        "raid_title": d.get("title") or (known.title if known else ""),
        "starts_at": local_text(d.get("starts_at") or (known.starts_at if known else None), prefs),
        "ends_at": local_text(d.get("ends_at") or (known.ends_at if known else None), prefs),
        "district": district,
        "changes": ", ".join(d.get("changes") or []),
        "raid_url": d.get("raid_url") or (known.raid_url if known else "") or "",
        "ics_url": d.get("ics_url") or (known.ics_url if known else "") or "",
        "family_number": d.get("family_number", ""),
    }


def concern_context(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    context = raid_context(inp, prefs)
    context["raid_url"] = context["raid_url"] or inp.data["visit_url"]
    return context


def ics(method: str) -> Callable[[RuleInput], list[dict[str, str]]]:
    def attach(inp: RuleInput) -> list[dict[str, str]]:
        text = inp.data.get("ics")
        if not text:
            return []
        name = "cancel.ics" if method == "CANCEL" else "invite.ics"
        return [
            {
                "filename": name,
                "content_type": f"text/calendar; method={method}; charset=utf-8",
                "text": text,
            }
        ]

    return attach


def _urgent_referral(data: dict[str, Any]) -> bool:
    return data["urgency"] in URGENT_REFERRALS


# --- the rules ---------------------------------------------------------------------------------

EMAIL = ("email",)
BOTH = ("email", "sms")

RULES: tuple[Rule, ...] = (
    Rule(
        "family-registered", "registry.family.registered", "family.registered", EMAIL, "digest",
        "the district's coordinators",
        coordinators_of(lambda d: d["address"]["district"]), family_registered,
    ),
    Rule(
        "case-lead-assigned", "registry.case.lead_assigned", "case.lead_assigned", EMAIL, "normal",
        "the new lead specialist", the_person("lead_specialist"), case_context,
    ),
    Rule(
        "case-approval-requested", "registry.case.approval_requested", "case.approval_requested",
        EMAIL, "normal", "the district's coordinators",
        coordinators_of(lambda d: d["district"]), case_context,
    ),
    Rule(
        "emergency-access", "registry.access.emergency_granted", "access.emergency_granted",
        BOTH, "urgent", "the district's coordinators",
        coordinators_of(lambda d: d["district"]), emergency_access,
    ),
    Rule(
        "referral-received", "referrals.referral.status_changed", "referral.received",
        BOTH, "normal",
        "the agency's contacts handling referrals (SMS and urgent for urgent referrals; a signed "
        "link for agencies without accounts)",
        referral_handlers, referral_received,
        applies=lambda d: d["status"] == "requested",
        channels_for=lambda d: BOTH if _urgent_referral(d) else EMAIL,
        priority_for=lambda d: "urgent" if _urgent_referral(d) else "normal",
    ),
    Rule(
        "referral-status-changed", "referrals.referral.status_changed", "referral.status_changed",
        EMAIL, "digest", "the referral's sender and the case's lead (not who made the change)",
        referral_watchers, referral_status,
        applies=lambda d: d["status"] not in ("requested", "draft") and d["previous_status"] is not None,
    ),
    Rule(
        "referral-overdue", "referrals.referral.overdue", "referral.overdue", EMAIL, "normal",
        "the agency's contacts handling referrals", referral_handlers, referral_overdue,
    ),
    Rule(
        "referral-escalated", "referrals.referral.escalated", "referral.escalated", BOTH, "normal",
        "the district's coordinators", coordinators_of(lambda d: d["district"]), referral_overdue,
    ),
    Rule(
        "signal-urgent", "referrals.signal.urgent", "signal.urgent", BOTH, "urgent",
        "the district's coordinators", coordinators_of(lambda d: d["district"]), signal_context,
    ),
    Rule(
        "signal-escalated", "referrals.signal.escalated", "signal.escalated", BOTH, "urgent",
        "the district's coordinators", coordinators_of(lambda d: d["district"]), signal_context,
    ),
    Rule(
        "raid-invitation", "raids.participant.invited", "raid.invitation", EMAIL, "normal",
        "the invited person (with the raid's .ics)", the_person("person_id", "email"),
        raid_context, attachments=ics("REQUEST"),
    ),
    Rule(
        "raid-updated", "raids.raid.updated", "raid.updated", EMAIL, "normal",
        "every invited or confirmed attendee (with the new .ics)", attendees, raid_context,
        attachments=ics("REQUEST"),
    ),
    Rule(
        "raid-cancelled", "raids.raid.cancelled", "raid.cancelled", BOTH, "normal",
        "every invited or confirmed attendee (with the METHOD:CANCEL .ics)", attendees,
        raid_context, attachments=ics("CANCEL"),
    ),
    Rule(
        "raid-concern", "raids.concern.raised", "raid.concern", BOTH, "urgent",
        "the raid's coordinator", the_person("coordinator_id"), concern_context,
    ),
)  # fmt: skip

# Reminders are made by jobs from time, not from events (see reminders.py); listed for admins.
REMINDERS: tuple[dict[str, Any], ...] = (
    {"name": "raid-reminder", "event_type": "(time) a raid tomorrow", "template": "raid.reminder",
     "channels": list(BOTH), "priority": "normal", "audience": "invited and confirmed attendees"},
    {"name": "referral-due-soon", "event_type": "(time) a referral due within 2 days",
     "template": "referral.due_soon", "channels": list(EMAIL), "priority": "normal",
     "audience": "the agency's contacts handling referrals"},
    {"name": "measure-due-soon", "event_type": "(time) a measure due within 2 days",
     "template": "measure.due_soon", "channels": list(EMAIL), "priority": "normal",
     "audience": "the case's lead specialist"},
    {"name": "measure-overdue", "event_type": "(time) a measure past its deadline",
     "template": "measure.overdue", "channels": list(EMAIL), "priority": "normal",
     "audience": "the case's lead specialist"},
)  # fmt: skip


def rules_for(event_type: str, data: dict[str, Any]) -> list[Rule]:
    return [r for r in RULES if r.event_type == event_type and r.applies(data)]


def event_types() -> list[str]:
    return sorted({r.event_type for r in RULES})


def describe_all() -> list[dict[str, Any]]:
    return [r.describe() for r in RULES] + [dict(r) for r in REMINDERS]
