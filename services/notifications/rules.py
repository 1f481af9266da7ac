"""Who is told what: one rule per event type (a few event types have one per case).

A rule is plain data (template key, channels, priority) plus three small functions: who the
recipients are (``recipients.py``: from the event and the local read models), the template's
placeholders for a recipient (``contexts.py``), and the attachments. Priorities:

- ``urgent``: sent at once on every channel of the rule, SMS in quiet hours too, never
  digested, not dropped by the opt-out of non-urgent messages;
- ``normal``: sent singly; non-urgent SMS wait out the person's quiet hours;
- ``digest``: informational; for those who chose a daily digest the email waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.notifications import readmodels
from services.notifications.contexts import (
    approval_decided,
    case_context,
    concern_context,
    emergency_access,
    family_registered,
    ics,
    intake_pending,
    raid_context,
    referral_claimed,
    referral_commented,
    referral_overdue,
    referral_received,
    referral_status,
    signal_context,
    signal_returned,
)
from services.notifications.preferences import Prefs
from services.notifications.recipients import (
    Addressee,
    RuleInput,
    attendees,
    comment_readers,
    coordinators_of,
    except_,
    referral_handlers,
    referral_watchers,
    the_person,
)

URGENT_REFERRALS = ("urgent", "asap", "stat")


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
    channels_for: Callable[[RuleInput], tuple[str, ...]] | None = None
    priority_for: Callable[[dict[str, Any]], str] | None = None
    attachments: Callable[[RuleInput], list[dict[str, str]]] = field(default=lambda inp: [])

    def channels_of(self, inp: RuleInput) -> tuple[str, ...]:
        return self.channels_for(inp) if self.channels_for else self.channels

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


def _urgent_referral(data: dict[str, Any]) -> bool:
    return data["urgency"] in URGENT_REFERRALS


def _referral_channels(inp: RuleInput) -> tuple[str, ...]:
    """SMS too for an urgent referral, and for an agency without a system of its own: its
    staff answer through the signed link, and the SMS carries it."""
    linked = readmodels.agency_delivery(inp.session, inp.data.get("agency_id")) == "link"
    return BOTH if _urgent_referral(inp.data) or linked else EMAIL


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
        "case-approval-decided", "registry.case.approval_decided", "case.approval_decided",
        EMAIL, "normal", "the case's lead specialist (unless they decided it themselves)",
        except_(the_person("lead_specialist"), "decided_by"), approval_decided,
    ),
    Rule(
        "intake-pending", "registry.intake.pending", "intake.pending", EMAIL, "normal",
        "the district's coordinators (an accepted signal waits for them to choose the family)",
        coordinators_of(lambda d: d["district"]), intake_pending,
    ),
    Rule(
        "emergency-access", "registry.access.emergency_granted", "access.emergency_granted",
        BOTH, "urgent", "the district's coordinators",
        coordinators_of(lambda d: d["district"]), emergency_access,
    ),
    Rule(
        "referral-received", "referrals.referral.status_changed", "referral.received",
        BOTH, "normal",
        "the agency's contacts handling referrals (SMS and urgent for urgent referrals; for "
        "agencies without a system, SMS too, and the email and SMS carry a signed link)",
        referral_handlers, referral_received,
        applies=lambda d: d["status"] == "requested",
        channels_for=_referral_channels,
        priority_for=lambda d: "urgent" if _urgent_referral(d) else "normal",
    ),
    Rule(
        "referral-status-changed", "referrals.referral.status_changed", "referral.status_changed",
        EMAIL, "digest", "the referral's sender and the case's lead (not who made the change)",
        except_(referral_watchers, "by"), referral_status,
        applies=lambda d: d["status"] not in ("requested", "draft") and d["previous_status"] is not None,
    ),
    Rule(
        "referral-claimed", "referrals.referral.claimed", "referral.claimed", EMAIL, "digest",
        "the referral's sender and the case's lead (not who took it on)",
        except_(referral_watchers, "owner_id"), referral_claimed,
    ),
    Rule(
        "referral-commented", "referrals.referral.commented", "referral.commented", EMAIL,
        "normal",
        "the other side of the thread: the agency's owner or referral handlers for a comment "
        "from the sending side; the sender and the case's lead for one from the agency",
        except_(comment_readers, "author_id"), referral_commented,
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
        "signal-returned", "referrals.signal.returned", "signal.returned", EMAIL, "normal",
        "the district's coordinators (the registry refused an accepted signal: triage it again)",
        coordinators_of(lambda d: d["district"]), signal_returned,
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
        "raid-withdrawn", "raids.participant.withdrawn", "raid.withdrawn", BOTH, "normal",
        "the person taken off the raid (with the METHOD:CANCEL .ics)",
        the_person("person_id", "email"), raid_context, attachments=ics("CANCEL"),
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
