"""Duplicate detection for a family as an agency's signal knows it: a surname, perhaps a display
name, a free-text address, a settlement and the children named. Part of ``duplicates``: the
signal's personal data is matched here and nowhere else."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry.duplicates import (
    MAX_CANDIDATES,
    REPORTED,
    Candidate,
    _as_date,
    _candidate_ids,
    _scored,
    surname_key,
)
from services.registry.models import Family, Member

_FLAT = re.compile(r"^(?:кв|квартира|flat|apt)\.?\s*(\S+)$", re.IGNORECASE)
_HOUSE = re.compile(r"^(?:д|дом|house|h)\.?\s*(\S+)$", re.IGNORECASE)
_NUMBER = re.compile(r"^\d+[\wа-яё]?(?:/\d+)?$", re.IGNORECASE)
_STREET_HOUSE = re.compile(r"^(.*\D)\s+(\d+[а-яёa-z]?(?:/\d+)?)(?:\s*-\s*(\d+))?$", re.IGNORECASE)
# Column lengths of the registry's tables: text from another system is cut to fit.
LIMITS = {"street": 200, "house": 20, "flat": 20, "settlement": 120, "district": 120}


def parse_address(text: str | None) -> dict[str, str | None]:
    """Street, house and flat out of a free-text address ("ул. Советская, д. 1, кв. 5",
    "Советская 1-5"); what is not recognised stays with the street."""
    street: str | None = None
    house: str | None = None
    flat: str | None = None
    for raw in (text or "").split(","):
        part = " ".join(raw.split())
        if not part:
            continue
        if (match := _FLAT.match(part)) is not None:
            flat = match.group(1)
        elif (match := _HOUSE.match(part)) is not None:
            house = match.group(1)
        elif _NUMBER.match(part):
            if house is None:
                house = part
            else:
                flat = part
        elif street is None and (match := _STREET_HOUSE.match(part)) is not None:
            street, house = match.group(1).strip(), match.group(2)
            flat = match.group(3) or flat
        elif street is None:
            street = part
    return {
        key: (value[: LIMITS[key]] if value else None)
        for key, value in (("street", street), ("house", house), ("flat", flat))
    }


def _child_name(child: dict[str, Any], surname: str) -> str:
    name = " ".join(str(child.get("name") or child.get("full_name") or "").split())
    if name and surname and len(name.split()) == 1:
        return f"{surname} {name}"  # "Анна" of the family Морозова is Морозова Анна
    return name or surname


def report_from_known(known: dict[str, Any], *, district: str, region: str = "") -> dict[str, Any]:
    """A signal's ``family`` (surname, display name, free-text address, settlement, children) in
    the shape of a registration, for matching and for registering it as it is known.

    ``members`` holds the people as named (a display name of two words or more is an adult);
    ``match_members`` is what is matched: those people, or the bare surname as an adult when the
    signal names nobody (a bare surname against a named person would only add noise).
    """
    display = " ".join(str(known.get("display_name") or "").split())
    surname = " ".join(str(known.get("surname") or "").split()) or (display.split() or [""])[0]
    members: list[dict[str, Any]] = []
    if len(display.split()) >= 2:
        members.append({"role": "other", "full_name": display[:300]})
    for child in known.get("children") or []:
        if not isinstance(child, dict):
            continue
        name = _child_name(child, surname)
        if not name:
            continue
        school = child.get("school")
        school_class = child.get("class") or child.get("school_class")
        members.append(
            {
                "role": "child",
                "full_name": name[:300],
                "birth_date": _as_date(child.get("birth_date")),
                "school": str(school)[:200] if school else None,
                "school_class": str(school_class)[:20] if school_class else None,
            }
        )
    match_members = list(members)
    if surname and not members:
        match_members.append({"role": "other", "full_name": surname[:300]})
    settlement = " ".join(str(known.get("settlement") or "").split())
    return {
        "address": {
            "region": region,
            "district": district[: LIMITS["district"]],
            "settlement": settlement[: LIMITS["settlement"]],
            **parse_address(known.get("address")),
        },
        "surname": surname[:100],
        "members": members,
        "match_members": match_members,
    }


def find_for_report(session: Session, report: dict[str, Any]) -> list[Candidate]:
    """Candidates for a signal's family: the indexed look-ups of :func:`find_candidates`, plus,
    when the signal names nobody but the surname, the families of that surname in the district."""
    data = {"address": report["address"], "members": report["match_members"]}
    if not data["members"]:
        return []  # an address alone scores under REPORTED: nobody to match
    ids = _candidate_ids(session, data)
    surname = surname_key(report["surname"]) if report["surname"] else ""
    if surname and len(ids) < MAX_CANDIDATES:
        ids |= set(
            session.scalars(
                select(Member.family_id)
                .join(Family, Family.id == Member.family_id)
                .where(
                    Member.surname_key == surname, Family.district == report["address"]["district"]
                )
                .distinct()
                .limit(MAX_CANDIDATES)
            )
        )
    return _scored(session, data, ids, REPORTED)
