"""What each rule hands its template: the declared placeholders, from the event and the read
models, in the reader's language and time zone.

Numbers: the entity's human number when the event carries one, else the first 8 characters of
its id. Nothing here puts a family member's name, address or birth date in a context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.notifications import capabilities, prefetch, readmodels
from services.notifications.labels import label
from services.notifications.models import KnownCase, KnownRaid, KnownReferral
from services.notifications.preferences import Prefs, local_text
from services.notifications.recipients import RuleInput

REFERRAL_LINK = "referral"


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
    case = prefetch.get(inp.session, KnownCase, d["case_id"])
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
        known = prefetch.get(inp.session, KnownReferral, inp.data["referral_id"])
        number = known.number if known else None
    return number or short(inp.data["referral_id"])


def referral_url(inp: RuleInput) -> str:
    return url(inp, f"/referrals/{inp.data['referral_id']}")


def referral_received(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    link: str = ""
    if readmodels.agency_delivery(inp.session, d.get("agency_id")) == "link":
        path = f"/referrals/{d['referral_id']}/respond"
        link = capabilities.signed_link(inp.settings, REFERRAL_LINK, d["referral_id"], path)
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


def signal_returned(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    """The registry refused an accepted signal: why, as a label (the detail is in the signal)."""
    return {
        **signal_context(inp, prefs),
        "refusal": label("refusal", inp.data["reason"], prefs.language),
    }


def raid_context(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    known = prefetch.get(inp.session, KnownRaid, d["raid_id"])
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


def approval_decided(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    context = case_context(inp, prefs)
    context["decision"] = label("decision", inp.data["decision"], prefs.language)
    return context


def referral_claimed(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    return {
        "referral_number": referral_number(inp),
        "agency_name": readmodels.agency_name(inp.session, inp.data.get("agency_id")),
        "referral_url": referral_url(inp),
    }


def referral_commented(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    return {"referral_number": referral_number(inp), "referral_url": referral_url(inp)}


def intake_pending(inp: RuleInput, prefs: Prefs) -> dict[str, Any]:
    d = inp.data
    return {
        "signal_number": short(d["signal_id"]),
        "district": d["district"],
        "candidates": d["candidates"],
        "intake_url": url(inp, f"/intakes/{d['intake_id']}"),
    }


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
