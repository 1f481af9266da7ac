"""The registry's rules for families, free of HTTP and broker: entering a family in the data bank,
changing its data and category, linking a second report of it, and finding it.

Cases and their stages are in ``domain_cases``, the support plan and assessments in
``domain_plan``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from services.registry import addresses, duplicates, events, name_search
from services.registry.models import (
    ADDRESS_FIELDS,
    Case,
    CategoryChange,
    Contact,
    Family,
    FamilyLink,
    Measure,
    Member,
)
from shared.auth.context import optional_principal
from shared.db import utcnow
from shared.errors import NotFound, RuleViolation

SYSTEM = "system"
MEMBER_FIELDS = ("role", "full_name", "birth_date", "school", "school_class", "former_surnames")
CONTACT_FIELDS = ("kind", "value", "owner", "consent", "consent_on")


def actor(by: str | None = None) -> str:
    """Who acts: the given staff id, else the request's principal, else the system itself."""
    if by:
        return by
    principal = optional_principal()
    return principal.subject if principal is not None else SYSTEM


def today() -> dt.date:
    return utcnow().date()


def display_name(members: list[dict[str, Any]]) -> str:
    """How raids and lists name the family: the first adult's surname (or the first member's)."""
    adults = [m for m in members if m["role"] != "child"] or members
    return adults[0]["full_name"].split()[0]


def get_family(session: Session, family_id: str) -> Family:
    family = session.get(Family, family_id)
    if family is None:
        raise NotFound(f"no family {family_id}")
    return family


def snapshot(family: Family, *, removed: bool = False) -> dict[str, Any]:
    """The data of ``registry.family.registered`` / ``.updated``: what read models keep."""
    return {
        "family_id": family.id,
        "number": family.number,
        "category": family.category,
        "address": {key: getattr(family, key) for key in ADDRESS_FIELDS},
        "display_name": family.display_name,
        "children_count": sum(1 for m in family.members if m.role == "child"),
        "family_version": family.version,
        "removed": removed,
    }


def _check_members(members: list[dict[str, Any]]) -> None:
    if not any(m["role"] == "child" for m in members):
        raise RuleViolation(
            "a family in the data bank has at least one child",
            errors={"members": ["add at least one member with role 'child'"]},
        )
    for index, member in enumerate(members):
        if member["role"] != "child" and (member.get("school") or member.get("school_class")):
            raise RuleViolation(
                "school and class are recorded for children only",
                errors={f"members.{index}.school": ["only for members with role 'child'"]},
            )


def _set_members(session: Session, family: Family, members: list[dict[str, Any]]) -> None:
    """Replace the member list; a member given with its ``id`` keeps its identity."""
    existing = {m.id: m for m in family.members}
    result = []
    for position, data in enumerate(members):
        member = existing.pop(data["id"], None) if data.get("id") else None
        if data.get("id") and member is None:
            raise RuleViolation(
                "a member id does not belong to this family",
                errors={f"members.{position}.id": ["unknown member of this family"]},
            )
        member = member or Member()
        for key in MEMBER_FIELDS:
            setattr(member, key, data.get(key))
        member.position = position
        member.surname_key, member.given_key = duplicates.name_keys(data["full_name"])
        result.append(member)
    family.members = result
    family.display_name = display_name(members)
    family.search_names = name_search.search_names(members)
    name_search.remember(session, family.search_names)


def _set_contacts(family: Family, contacts: list[dict[str, Any]]) -> None:
    family.contacts = [
        Contact(position=i, **{k: c.get(k) for k in CONTACT_FIELDS}) for i, c in enumerate(contacts)
    ]


def register_family(
    session: Session, data: dict[str, Any], *, by: str | None = None, on: dt.date | None = None
) -> Family:
    """Enter a family in the data bank, with its first case in ``preparatory``.

    Publishes ``registry.family.registered``, then ``registry.case.opened`` for that first case:
    every case opening is an event of its own, whatever opened it.
    """
    from services.registry import domain_cases

    members = data["members"]
    _check_members(members)
    who = actor(by)
    address = data["address"]
    family = Family(
        number=f"F-{secrets.token_hex(5).upper()}",
        category=data["category"],
        notes=data.get("notes"),
        social_environment=data.get("social_environment"),
        distance_km=data.get("distance_km"),
        reported_by_agency=data.get("reported_by_agency"),
        created_by=who,
        version=1,
        in_bank=True,
        **{key: address.get(key) for key in ADDRESS_FIELDS},
    )
    _set_members(session, family, members)
    _set_contacts(family, data.get("contacts") or [])
    session.add(family)
    session.flush()
    entered = on or today()
    addresses.record(session, family, since=entered, by=who, today=today())
    session.add(
        CategoryChange(
            family_id=family.id,
            category_from=None,
            category_to=family.category,
            changed_on=entered,
            justification=data.get("category_justification") or "entered the data bank",
            changed_by=who,
        )
    )
    case = domain_cases.open_case(
        session,
        family,
        source=data.get("source") or "registration",
        by=who,
        on=entered,
        lead=data.get("lead_specialist"),
        announce=False,
        first=True,
    )
    registered = snapshot(family)
    registered.pop("removed")
    events.publish(session, "registry.family.registered", registered)
    domain_cases.announce_opened(session, case, family)
    return family


def bump(session: Session, family: Family, *, removed: bool = False) -> None:
    """A change other services' read models must learn: new version, ``family.updated``."""
    family.version += 1
    family.updated_at = utcnow()
    session.flush()
    events.publish(session, "registry.family.updated", snapshot(family, removed=removed))


def update_family(
    session: Session, family: Family, changes: dict[str, Any], *, by: str | None = None
) -> list[str]:
    """Change the family's data; returns the names of the fields changed (for the audit).

    A new address (other than its coordinates) is a move: it enters the address history from
    ``changes["moved_on"]`` (default today).
    """
    changed: list[str] = []
    announce = False
    if "address" in changes:
        address = changes["address"]
        for key in ADDRESS_FIELDS:
            if getattr(family, key) != address.get(key):
                setattr(family, key, address.get(key))
                changed.append(f"address.{key}")
                announce = True
        if any(f"address.{key}" in changed for key in addresses.HISTORY_FIELDS):
            since = changes.get("moved_on") or today()
            addresses.record(session, family, since=since, by=actor(by), today=today())
    if "members" in changes:
        _check_members(changes["members"])
        before = [(m.role, m.full_name, m.birth_date) for m in family.members]
        _set_members(session, family, changes["members"])
        changed.append("members")
        announce = announce or before != [
            (m.role, m.full_name, m.birth_date) for m in family.members
        ]
    if "contacts" in changes:
        _set_contacts(family, changes["contacts"])
        changed.append("contacts")
    for key in ("notes", "social_environment", "distance_km"):
        if key in changes and getattr(family, key) != changes[key]:
            setattr(family, key, changes[key])
            changed.append(key)
    if family.missing_fields and changed:
        from services.registry import intake

        family.missing_fields = intake.missing_fields(family) or None
    if announce:
        bump(session, family, removed=not family.in_bank)
    elif changed:
        family.updated_at = utcnow()
    return changed


def change_category(
    session: Session,
    family: Family,
    category: str,
    *,
    justification: str,
    changed_on: dt.date | None = None,
    by: str | None = None,
) -> CategoryChange:
    """Escalation or improvement: dated, justified, kept; announced to the other services."""
    if category == family.category:
        raise RuleViolation(
            "the family is already in this category",
            errors={"category": ["differs from the current category"]},
        )
    if not justification.strip():
        raise RuleViolation(
            "a category change needs a justification",
            errors={"justification": ["required"]},
        )
    when = changed_on or today()
    last = session.scalar(
        select(CategoryChange.changed_on)
        .where(CategoryChange.family_id == family.id)
        .order_by(CategoryChange.changed_on.desc())
        .limit(1)
    )
    if last is not None and when < last:
        raise RuleViolation(
            "a category change cannot predate the previous one",
            errors={"changed_on": [f"on or after {last.isoformat()}"]},
        )
    if when > today():
        raise RuleViolation(
            "a category change cannot be dated in the future",
            errors={"changed_on": ["today or earlier"]},
        )
    change = CategoryChange(
        family_id=family.id,
        category_from=family.category,
        category_to=category,
        changed_on=when,
        justification=justification,
        changed_by=actor(by),
    )
    session.add(change)
    family.category = category
    bump(session, family, removed=not family.in_bank)
    events.publish(
        session,
        "registry.family.category_changed",
        {
            "family_id": family.id,
            "number": family.number,
            "district": family.district,
            "category_from": change.category_from,
            "category_to": category,
            "changed_on": when.isoformat(),
            "family_version": family.version,
        },
    )
    return change


def category_history(session: Session, family_id: str) -> list[CategoryChange]:
    return list(
        session.scalars(
            select(CategoryChange)
            .where(CategoryChange.family_id == family_id)
            .order_by(CategoryChange.changed_on, CategoryChange.recorded_at)
        )
    )


def _same_person(member: Member, data: dict[str, Any]) -> bool:
    words = duplicates.split_name(data["full_name"])
    old = duplicates.split_name(member.full_name)
    birth = duplicates._as_date(data.get("birth_date"))
    if birth is not None and member.birth_date is not None and birth != member.birth_date:
        return False
    given = len(words) > 1 and len(old) > 1
    return bool(given) and (
        duplicates.similarity(duplicates.skeleton(words[1]), duplicates.skeleton(old[1])) >= 0.8
    )


def link_report(
    session: Session,
    family: Family,
    data: dict[str, Any],
    *,
    by: str | None = None,
    score: float | None = None,
    merged_family_id: str | None = None,
) -> FamilyLink:
    """A second report of a known family: add the members and contacts it did not have, and if
    the family had left the data bank, take it back with a new case (a re-entry)."""
    from services.registry import domain_cases

    who = actor(by)
    added = [
        m for m in data.get("members") or [] if not any(_same_person(x, m) for x in family.members)
    ]
    if added:
        current = [{k: getattr(m, k) for k in ("id", *MEMBER_FIELDS)} for m in family.members]
        _set_members(session, family, current + added)
    known = {(c.kind, c.value) for c in family.contacts}
    for contact in data.get("contacts") or []:
        if (contact["kind"], contact["value"]) not in known:
            family.contacts.append(
                Contact(
                    position=len(family.contacts), **{k: contact.get(k) for k in CONTACT_FIELDS}
                )
            )
    link = FamilyLink(
        family_id=family.id,
        merged_family_id=merged_family_id,
        reported_by_agency=data.get("reported_by_agency"),
        score=score,
        members_added=len(added),
        linked_by=who,
    )
    session.add(link)
    if not family.in_bank:
        domain_cases.open_case(session, family, source=data.get("source") or "report", by=who)
    elif added:
        bump(session, family)
    return link


def merge_record(
    session: Session, duplicate: Family, into: Family, *, by: str | None = None
) -> FamilyLink:
    """Fold a record registered twice into the family it duplicates; the duplicate is deleted.

    Only before work on it started: a case with a plan, agreement or log stays a family of its own.
    """
    from services.registry.models import Agreement, Assessment, ContactEntry, Finding

    if duplicate.id == into.id:
        raise RuleViolation(
            "a family cannot be linked to itself", errors={"family_id": ["differs"]}
        )
    case_ids = list(session.scalars(select(Case.id).where(Case.family_id == duplicate.id)))
    for model in (Measure, Agreement, Assessment, ContactEntry, Finding):
        if case_ids and session.scalar(select(exists().where(model.case_id.in_(case_ids)))):
            raise RuleViolation(
                "the record already has casework; link only a record whose work has not started",
                errors={"family_id": ["has casework"]},
            )
    report = {
        "members": [{k: getattr(m, k) for k in MEMBER_FIELDS} for m in duplicate.members],
        "contacts": [{k: getattr(c, k) for k in CONTACT_FIELDS} for c in duplicate.contacts],
        "reported_by_agency": duplicate.reported_by_agency,
    }
    score = duplicates.score_family(duplicates.family_as_report(duplicate), into).score
    gone = snapshot(duplicate, removed=True)
    gone["family_version"] = duplicate.version + 1
    session.delete(duplicate)
    session.flush()
    events.publish(session, "registry.family.updated", gone)
    return link_report(
        session, into, report, by=by, score=score, merged_family_id=gone["family_id"]
    )
