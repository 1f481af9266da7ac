"""The agency directory and what hangs on it: agencies and their staff, routing rules, and the
read model of families' consents (per agency kind) learned from the registry.

Every change of an agency or a contact is published as a whole snapshot with a version, so
that the notifications service builds its recipients without calling back.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, event, select
from sqlalchemy.orm import Session, make_transient_to_detached, object_session
from sqlalchemy.orm.util import identity_key

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


def republish_agencies(session: Session) -> int:
    """Publish every agency's snapshot again (``referrals.agency.updated``, changes
    ``["republished"]``), for a consumer that came later: the registry decides an agency's
    access by its kind (``opora directory republish`` after the upgrade that added that). The
    versions stay, so a consumer that knew the agency changes nothing."""
    count = 0
    for agency in session.scalars(select(Agency).order_by(Agency.id)):
        snapshot = {**agency_snapshot(agency), "changes": ["republished"]}
        publish(session, "referrals.agency.updated", snapshot)
        count += 1
    return count


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
    routes = _current_routes(session)
    if routes is not None:
        agency_id = routes.rules.get((service_code, district)) or routes.rules.get(
            (service_code, ANY_DISTRICT)
        )
        if agency_id is not None:
            return _attach(session, routes, agency_id)
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
        routes = _current_routes(session)
        if routes is not None and agency_id in routes.agencies:
            return _attach(session, routes, agency_id)
        return get_agency(session, agency_id)
    return route(session, service_code, district)


# Routing a new referral reads the rules and the agency each time, and they change rarely: each
# process keeps a copy per database for at most ROUTES_TTL_SECONDS. A write of an agency or a rule
# through the ORM in this process drops the copy at once (at the flush and again at the commit),
# and a session that has written one does not use the copy until it commits, so it sees its own
# changes. Another process sees a change within the TTL: a referral sent in those seconds goes
# where it would have gone a moment earlier. What is not in the copy (an agency or a rule created
# elsewhere since) is read from the database, so a new rule or agency takes effect at once.
# Consents are never cached: they are the family's, checked for every sending.
ROUTES_TTL_SECONDS = 10.0
_WROTE_DIRECTORY = "referrals.directory_written"


@dataclass(frozen=True)
class _Routes:
    loaded_at: float
    agencies: dict[str, Agency]  # detached copies, merged into a session without a query
    rules: dict[tuple[str, str], str]  # (service code, district) -> agency id


_routes: weakref.WeakKeyDictionary[Engine, _Routes] = weakref.WeakKeyDictionary()


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


def _current_routes(session: Session) -> _Routes | None:
    if _WROTE_DIRECTORY in session.info or any(
        isinstance(obj, Agency | RoutingRule)
        for obj in (*session.new, *session.dirty, *session.deleted)
    ):
        return None
    engine = _engine(session)
    routes = _routes.get(engine)
    if routes is None or time.monotonic() - routes.loaded_at > ROUTES_TTL_SECONDS:
        routes = _load_routes(session)
        _routes[engine] = routes
    return routes


def _load_routes(session: Session) -> _Routes:
    started = time.monotonic()
    agencies = {a.id: _detached_copy(a) for a in session.scalars(select(Agency))}
    rows = session.execute(
        select(RoutingRule.service_code, RoutingRule.district, RoutingRule.agency_id)
    )
    return _Routes(started, agencies, {(code, d): agency for code, d, agency in rows})


def _detached_copy(agency: Agency) -> Agency:
    columns = Agency.__mapper__.column_attrs
    twin = Agency(**{c.key: copy.copy(getattr(agency, c.key)) for c in columns})
    make_transient_to_detached(twin)
    return twin


def _attach(session: Session, routes: _Routes, agency_id: str) -> Agency | None:
    present = session.identity_map.get(identity_key(Agency, agency_id))
    if present is not None:
        return present
    cached = routes.agencies.get(agency_id)
    if cached is None:
        return session.get(Agency, agency_id)
    return session.merge(cached, load=False)


def _directory_written(_mapper: Any, connection: Connection, target: Any) -> None:
    _routes.pop(connection.engine, None)
    session = object_session(target)
    if session is not None:
        session.info[_WROTE_DIRECTORY] = connection.engine


def _directory_committed(session: Session) -> None:
    engine = session.info.pop(_WROTE_DIRECTORY, None)
    if engine is not None:
        _routes.pop(engine, None)


for _model in (Agency, RoutingRule):
    for _name in ("after_insert", "after_update", "after_delete"):
        event.listen(_model, _name, _directory_written)
event.listen(Session, "after_commit", _directory_committed)


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


def remember_agreement(session: Session, data: dict[str, Any]) -> Consent:
    """Upsert an agreement (the registry re-publishes one when it changes). A withdrawal stays
    whichever of the two events comes first: ``registry.agreement.withdrawn`` carries the whole
    agreement too."""
    consent = session.get(Consent, data["agreement_id"]) or Consent(
        agreement_id=data["agreement_id"]
    )
    consent.family_id = data["family_id"]
    consent.case_id = data["case_id"]
    consent.signed_on = data["signed_on"]
    consent.valid_until = data["valid_until"]
    consent.data_processing = data["consent_data_processing"]
    consent.share_with = list(data["share_with"])
    if data.get("withdrawn_at") is not None:
        consent.withdrawn_at = consent.withdrawn_at or data["withdrawn_at"]
    session.add(consent)
    return consent


# Built once: checked for every referral sent.
_CURRENT_CONSENT = (
    select(Consent.data_processing, Consent.share_with, Consent.withdrawn_at)
    .where(
        Consent.family_id == bindparam("family_id"),
        Consent.signed_on <= bindparam("on"),
        Consent.valid_until >= bindparam("on"),
    )
    .order_by(Consent.signed_on.desc(), Consent.recorded_at.desc())
    .limit(1)
)


def has_consent(session: Session, family_id: str, agency_kind: str, on: dt.date) -> bool:
    """The newest agreement in force decides: a family may narrow its consent later, or
    withdraw it (then no older agreement comes back into force)."""
    if agency_kind in CONSENT_EXEMPT:
        return True
    current = session.execute(_CURRENT_CONSENT, {"family_id": family_id, "on": on}).first()
    if current is None or not current.data_processing or current.withdrawn_at is not None:
        return False
    return agency_kind in current.share_with
