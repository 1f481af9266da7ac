"""The agency directory and what hangs on it: agencies and their staff, routing rules, and the
read model of families' consents (per agency kind) learned from the registry.

Every change of an agency or a contact is published as a whole snapshot with a version, so
that the notifications service builds its recipients without calling back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.referrals.events import publish
from services.referrals.models import Agency, Consent, Contact, RoutingRule
from shared.errors import Conflict, NotFound, RuleViolation

ANY_DISTRICT = "*"
AGENCY_FIELDS = (
    "name",
    "kind",
    "districts",
    "services",
    "working_hours",
    "email",
    "phone",
    "active",
    "delivery",
)
CONTACT_FIELDS = ("name", "role", "email", "phone", "preferences", "active")
# The registry names agency kinds in consents; where the two vocabularies differ, map ours.
CONSENT_KIND = {"church": "clergy"}
# The family centre runs the family's case under the agreement itself: no separate consent.
CONSENT_EXEMPT = frozenset({"family_centre"})


# --- agencies and contacts ---------------------------------------------------------------------


def get_agency(session: Session, agency_id: str) -> Agency:
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"no agency {agency_id}", errors={"agency_id": ["unknown agency"]})
    return agency


def contact_snapshot(contact: Contact) -> dict[str, Any]:
    return {
        "person_id": contact.person_id,
        "name": contact.name,
        "role": contact.role,
        "email": contact.email,
        "phone": contact.phone,
        "preferences": dict(contact.preferences or {}),
        "active": contact.active,
    }


def agency_snapshot(agency: Agency) -> dict[str, Any]:
    return {
        "agency_id": agency.id,
        "name": agency.name,
        "kind": agency.kind,
        "districts": list(agency.districts),
        "services": list(agency.services),
        "email": agency.email,
        "phone": agency.phone,
        "active": agency.active,
        "contacts": [contact_snapshot(c) for c in agency.contacts],
        "delivery": agency.delivery,
        "agency_version": agency.version,
    }


def create_agency(session: Session, data: dict[str, Any], now: dt.datetime) -> Agency:
    if data.get("id") and session.get(Agency, data["id"]) is not None:
        raise Conflict("an agency with this id exists", errors={"id": ["taken"]})
    agency = Agency(
        id=data.get("id") or None,
        name=data["name"],
        kind=data["kind"],
        districts=data.get("districts", []),
        services=data.get("services", []),
        working_hours=data.get("working_hours", {}),
        email=data.get("email"),
        phone=data.get("phone"),
        active=data.get("active", True),
        delivery=data.get("delivery") or "api",
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(agency)
    for contact in data.get("contacts", []):
        agency.contacts.append(_new_contact(contact))
    session.flush()
    publish(session, "referrals.agency.created", agency_snapshot(agency))
    return agency


def update_agency(
    session: Session, agency: Agency, data: dict[str, Any], now: dt.datetime
) -> list[str]:
    changes = [f for f in AGENCY_FIELDS if f in data and getattr(agency, f) != data[f]]
    for name in changes:
        setattr(agency, name, data[name])
    if changes:
        _bump(session, agency, now, changes)
    return changes


def _new_contact(data: dict[str, Any]) -> Contact:
    return Contact(
        person_id=data["person_id"],
        name=data["name"],
        role=data["role"],
        email=data.get("email"),
        phone=data.get("phone"),
        preferences=data.get("preferences") or {},
        active=data.get("active", True),
    )


def upsert_contact(
    session: Session, agency: Agency, data: dict[str, Any], now: dt.datetime
) -> Contact:
    contact = next((c for c in agency.contacts if c.person_id == data["person_id"]), None)
    if contact is None:
        contact = _new_contact(data)
        agency.contacts.append(contact)
        change = "added"
    else:
        changed = [f for f in CONTACT_FIELDS if f in data and getattr(contact, f) != data[f]]
        if not changed:
            return contact
        for name in changed:
            setattr(contact, name, data[name])
        change = "updated"
    _bump(session, agency, now, ["contacts"])
    _contact_event(session, agency, contact, change)
    return contact


def remove_contact(session: Session, agency: Agency, person_id: str, now: dt.datetime) -> None:
    contact = next((c for c in agency.contacts if c.person_id == person_id), None)
    if contact is None:
        raise NotFound(f"agency {agency.id} has no contact {person_id}")
    agency.contacts.remove(contact)
    _bump(session, agency, now, ["contacts"])
    _contact_event(session, agency, contact, "removed")


def _bump(session: Session, agency: Agency, now: dt.datetime, changes: list[str]) -> None:
    agency.version += 1
    agency.updated_at = now
    session.flush()
    publish(session, "referrals.agency.updated", {**agency_snapshot(agency), "changes": changes})


def _contact_event(session: Session, agency: Agency, contact: Contact, change: str) -> None:
    publish(
        session,
        "referrals.contact.changed",
        {
            "agency_id": agency.id,
            "agency_kind": agency.kind,
            "districts": list(agency.districts),
            "change": change,
            "contact": contact_snapshot(contact),
            "agency_version": agency.version,
        },
    )


# --- routing -----------------------------------------------------------------------------------


def route(session: Session, service_code: str, district: str) -> Agency | None:
    """The rule for this district wins over a rule for any district (``*``)."""
    rules = session.scalars(
        select(RoutingRule).where(
            RoutingRule.service_code == service_code,
            RoutingRule.district.in_([district, ANY_DISTRICT]),
        )
    ).all()
    rules = sorted(rules, key=lambda r: r.district == ANY_DISTRICT)
    return session.get(Agency, rules[0].agency_id) if rules else None


def resolve_agency(
    session: Session, agency_id: str | None, service_code: str, district: str
) -> Agency | None:
    """An agency named by the sender is a manual override of the routing rules."""
    if agency_id:
        return get_agency(session, agency_id)
    return route(session, service_code, district)


def add_rule(session: Session, data: dict[str, Any], by: str, now: dt.datetime) -> RoutingRule:
    agency = get_agency(session, data["agency_id"])
    if data["service_code"] not in agency.services:
        raise RuleViolation(
            "the agency does not offer this service",
            errors={"service_code": [f"not among agency {agency.id}'s services"]},
        )
    rule = session.scalars(
        select(RoutingRule).where(
            RoutingRule.service_code == data["service_code"],
            RoutingRule.district == data["district"],
        )
    ).first()
    if rule is None:
        rule = RoutingRule(
            service_code=data["service_code"], district=data["district"], created_at=now
        )
        session.add(rule)
    rule.agency_id = agency.id
    rule.created_by = by
    session.flush()
    return rule


# --- consents ----------------------------------------------------------------------------------


def remember_agreement(session: Session, data: dict[str, Any]) -> None:
    """Upsert an agreement (the registry re-publishes one when it changes)."""
    consent = session.get(Consent, data["agreement_id"]) or Consent(
        agreement_id=data["agreement_id"]
    )
    consent.family_id = data["family_id"]
    consent.case_id = data["case_id"]
    consent.signed_on = data["signed_on"]
    consent.valid_until = data["valid_until"]
    consent.data_processing = data["consent_data_processing"]
    consent.share_with = list(data["share_with"])
    session.add(consent)


def has_consent(session: Session, family_id: str, agency_kind: str, on: dt.date) -> bool:
    """The newest agreement in force decides: a family may narrow its consent later."""
    if agency_kind in CONSENT_EXEMPT:
        return True
    current = session.scalars(
        select(Consent)
        .where(
            Consent.family_id == family_id,
            Consent.signed_on <= on,
            Consent.valid_until >= on,
        )
        .order_by(Consent.signed_on.desc(), Consent.recorded_at.desc())
    ).first()
    if current is None or not current.data_processing:
        return False
    return CONSENT_KIND.get(agency_kind, agency_kind) in current.share_with
