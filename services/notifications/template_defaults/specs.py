"""The declared placeholders of every template key: a description and a sample value each.

No placeholder carries a family member's name, address or birth date; the free-text ones are
typed by people (and may carry a name by mistake), so they are kept to email bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHANNELS = ("email", "sms")


@dataclass(frozen=True)
class Placeholder:
    name: str
    description: str
    sample: Any
    free_text: bool = False  # typed by people: email bodies only, never a subject or an SMS


@dataclass(frozen=True)
class TemplateSpec:
    key: str
    description: str
    placeholders: dict[str, Placeholder]
    channels: tuple[str, ...] = CHANNELS

    def sample_context(self, channel: str = "email") -> dict[str, Any]:
        """The sample values; an SMS links to its entity through a short link, as it will."""
        samples = {name: p.sample for name, p in self.placeholders.items()}
        if channel == "sms":
            samples.update({name: SHORT_LINK for name in samples if is_entity_link(name)})
        return samples

    def free_text(self) -> frozenset[str]:
        return frozenset(name for name, p in self.placeholders.items() if p.free_text)


_URL = "https://opora.example.ru"
_ID = "3f2a9c1e-8d4b-4e6f-a1b2-c3d4e5f60718"
SHORT_LINK = f"{_URL}/r/Xk3p9Qa"
# links that are not the entity a message is about (a calendar file, a signed answer link)
NOT_LINKS = ("ics_url", "link_url")


def is_entity_link(name: str) -> bool:
    return name.endswith("_url") and name not in NOT_LINKS


_CATALOGUE: dict[str, tuple[str, Any]] = {
    "family_number": ("number of the family in the data bank", "F-3A9C01B2D4"),
    "category": ("the family's registration category, as a label", "группа риска"),
    "district": ("the district", "Тарногский район"),
    "family_url": ("link to the family's card", f"{_URL}/families/{_ID}"),
    "case_number": ("number of the case", "C-2026-000042"),
    "stage": ("the case's stage, as a label", "планирование"),
    "approval_kind": ("what is to be approved", "план реабилитации"),
    "case_url": ("link to the case", f"{_URL}/cases/{_ID}"),
    "actor": ("login of the staff member who used emergency access", "inspector.orlov"),
    "expires_at": ("when the access ends", "10.12.2026 18:00"),
    "audit_url": ("link to the audit entry", f"{_URL}/audit?entity_id={_ID}"),
    "referral_number": ("number of the referral", "R-2026-000123"),
    "service": ("the service asked for, as a label", "консультация психолога"),
    "urgency": ("the referral's urgency, as a label", "срочно"),
    "due_at": ("the due date", "12.12.2026"),
    "referral_url": ("link to the referral", f"{_URL}/referrals/{_ID}"),
    "link_url": ("signed link for a recipient without an account; may be empty", ""),
    "status": ("the new status, as a label", "принято"),
    "previous_status": ("the previous status, as a label", "отправлено"),
    "agency_name": ("name of the agency", "ГБУ СО ВО «Тарногский КЦСОН»"),
    "days_overdue": ("whole days past the due date", 3),
    "measure_kind": ("the measure, as a label", "посещение на дому"),
    "signal_number": ("number of the signal", "S-2026-000077"),
    "priority": ("the signal's priority, as a label", "высокий"),
    "triage_due_at": ("when triage is due", "10.12.2026 14:30"),
    "signal_url": ("link to the signal", f"{_URL}/signals/{_ID}"),
    "raid_title": ("the raid's title", "Рейд «Семья» — Тарногский Городок"),
    "starts_at": ("when the raid starts", "12.12.2026 10:00"),
    "ends_at": ("when the raid ends", "12.12.2026 16:00"),
    "raid_url": ("link to the raid", f"{_URL}/raids/{_ID}"),
    "ics_url": ("link to the raid's calendar file", f"{_URL}/raids/{_ID}.ics"),
    "changes": ("what changed, as written by the coordinator", "время начала — 10:00"),
    "decision": ("the approver's decision, as a label", "согласовано"),
    "refusal": (
        "why the registry refused the accepted signal, as a label",
        "семьи нет в банке данных",
    ),
    "candidates": ("how many families of the data bank may be the signal's", 2),
    "intake_url": ("link to the accepted signal waiting for its family", f"{_URL}/intakes/{_ID}"),
    "date": ("the digest's day", "10.12.2026"),
    "count": ("how many notifications the digest holds", 2),
    "items": (
        "list of {subject, url, at}: the digest's notifications",
        [
            {
                "subject": "Направление R-2026-000123 просрочено",
                "url": f"{_URL}/referrals/{_ID}",
                "at": "09:15",
            },
            {
                "subject": "Завтра рейд: 12.12.2026 10:00",
                "url": f"{_URL}/raids/{_ID}",
                "at": "17:40",
            },
        ],
    ),
}
FREE_TEXT = frozenset({"raid_title", "changes", "agency_name", "items"})

_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "family.registered": ("a family entered the data bank", ("family_number", "category", "district", "family_url")),
    "case.lead_assigned": ("the recipient leads a case now", ("case_number", "family_number", "stage", "case_url")),
    "case.approval_requested": ("a case waits for the recipient's approval", ("case_number", "family_number", "approval_kind", "case_url")),
    "case.approval_decided": ("the plan or the closing of the recipient's case was decided", ("case_number", "family_number", "approval_kind", "decision", "case_url")),
    "intake.pending": ("an accepted signal waits for the recipient to choose its family", ("signal_number", "district", "candidates", "intake_url")),
    "access.emergency_granted": ("someone used emergency access to a family's file", ("family_number", "actor", "expires_at", "audit_url")),
    "referral.received": ("an agency received a referral", ("referral_number", "service", "urgency", "due_at", "referral_url", "link_url")),
    "referral.status_changed": ("a referral changed status", ("referral_number", "status", "previous_status", "agency_name", "referral_url")),
    "referral.claimed": ("a staff member of the agency took a referral on", ("referral_number", "agency_name", "referral_url")),
    "referral.commented": ("a new comment on a referral's thread (read it in the referral)", ("referral_number", "referral_url")),
    "referral.due_soon": ("a referral is due soon", ("referral_number", "due_at", "referral_url")),
    "referral.overdue": ("a referral is overdue", ("referral_number", "due_at", "days_overdue", "referral_url")),
    "referral.escalated": ("an overdue referral was escalated", ("referral_number", "agency_name", "days_overdue", "referral_url")),
    "measure.due_soon": ("a measure of a plan is due soon", ("measure_kind", "case_number", "due_at", "case_url")),
    "measure.overdue": ("a measure of a plan is overdue", ("measure_kind", "case_number", "due_at", "days_overdue", "case_url")),
    "signal.urgent": ("an urgent signal about a child", ("signal_number", "priority", "district", "triage_due_at", "signal_url")),
    "signal.escalated": ("a signal was not triaged in time", ("signal_number", "priority", "district", "triage_due_at", "signal_url")),
    "signal.returned": ("the registry refused an accepted signal: it waits for triage again", ("signal_number", "district", "refusal", "signal_url")),
    "raid.invitation": ("the recipient is invited to a raid", ("raid_title", "starts_at", "ends_at", "district", "raid_url", "ics_url")),
    "raid.updated": ("a raid the recipient is on changed", ("raid_title", "starts_at", "ends_at", "district", "changes", "raid_url", "ics_url")),
    "raid.cancelled": ("a raid the recipient is on was cancelled", ("raid_title", "starts_at", "district", "raid_url")),
    "raid.withdrawn": ("the recipient was taken off a raid", ("raid_title", "starts_at", "district", "raid_url")),
    "raid.reminder": ("a raid the recipient is on is tomorrow", ("raid_title", "starts_at", "district", "raid_url")),
    "raid.concern": ("a raid's visit raised an urgent concern", ("raid_title", "family_number", "raid_url")),
    "digest": ("the daily digest of non-urgent notifications", ("date", "count", "items")),
}  # fmt: skip

TEMPLATES: dict[str, TemplateSpec] = {
    key: TemplateSpec(
        key=key,
        description=description,
        placeholders={
            name: Placeholder(name, *_CATALOGUE[name], free_text=name in FREE_TEXT)
            for name in names
        },
        channels=("email",) if key == "digest" else CHANNELS,
    )
    for key, (description, names) in _KEYS.items()
}
