"""Duplicate detection: the same family reported by several agencies, in Cyrillic or Latin, with
typos or a changed surname.

Names are compared as Latin "skeletons": transliterated (ICAO 9303 / GOST R 52535.1 table) and
folded so that the usual spellings of one Russian name meet (Yuriy/Iurii/Юрий, Alexey/Алексей,
Schukowa/Zhukova's vowels). Candidates come from indexed columns (birth dates with a name key,
or the name keys within the district, or the house address); only those few are scored.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import Indel
from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from services.registry.models import Family, Member

CYRILLIC_TO_LATIN = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "д": "d",
    "е": "e",
    "ё": "e",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "й": "i",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ф": "f",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ъ": "ie",
    "ы": "y",
    "ь": "",
    "э": "e",
    "ю": "iu",
    "я": "ia",
    "і": "i",
    "ї": "i",
    "є": "e",
}

# Applied in order to a transliterated, lower-case name: spellings of one sound become one letter.
_FOLDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"shch|sch", "sh"),
        (r"tsch|tch", "ch"),
        (r"kh", "h"),
        (r"ts|tz", "c"),
        (r"x", "ks"),
        (r"ph", "f"),
        (r"w", "v"),
        (r"ck|q", "k"),
        (r"[yj]", "i"),
        (r"(.)\1+", r"\1"),
        (r"(?<=[aeiou])f$", "v"),
        (r"(?<=[aeo])i(?=[aeo])", ""),
        (r"(?<=[bdfgklmnprstvz])i(?=e)", ""),
        (r"(.)\1+", r"\1"),
    )
)
NON_LETTERS = re.compile(r"[^a-zа-яёіїє ]+")
ADDRESS_NOISE = re.compile(r"[^0-9a-zа-яё/]+")

STRONG = 0.75
REPORTED = 0.5
MAX_CANDIDATES = 200


def normalise(text: str) -> str:
    """Lower case, ё as е, letters and single spaces only."""
    lowered = text.lower().replace("ё", "е")
    return " ".join(NON_LETTERS.sub(" ", lowered).split())


def transliterate(text: str) -> str:
    return "".join(CYRILLIC_TO_LATIN.get(ch, ch) for ch in normalise(text))


@functools.lru_cache(maxsize=65536)
def skeleton(word: str) -> str:
    """The folded Latin form of one name word, e.g. ``Юрий`` and ``Yuriy`` both give ``uri``."""
    out = transliterate(word).replace(" ", "")
    for pattern, repl in _FOLDS:
        out = pattern.sub(repl, out)
    return out


def surname_key(surname: str) -> str:
    """The skeleton without the feminine ending, so Иванов and Ivanova share one key."""
    key = skeleton(surname)
    key = re.sub(r"(sk|ck|c)(a|ai|ii|i)$", r"\1i", key)
    return key[:-1] if len(key) > 3 and key.endswith("a") else key


def split_name(full_name: str) -> list[str]:
    return normalise(full_name).split()


def name_keys(full_name: str) -> tuple[str, str]:
    """(surname key, given-name skeleton) of "Фамилия Имя Отчество", as stored on members."""
    words = split_name(full_name)
    return (
        surname_key(words[0]) if words else "",
        skeleton(words[1]) if len(words) > 1 else "",
    )


@functools.lru_cache(maxsize=65536)
def similarity(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    return float(Indel.normalized_similarity(a, b))


@dataclass
class MemberMatch:
    member: int
    matched_member_id: str
    similarity: float
    birth_date: bool
    surname_changed: bool


@dataclass
class Candidate:
    family_id: str
    number: str
    score: float
    matched_fields: list[str]
    members: list[MemberMatch] = field(default_factory=list)


def _name_similarity(new: list[str], old: list[str], former: list[str]) -> tuple[float, float]:
    """(whole-name similarity, surname similarity); tolerates "Given Surname" order in Latin."""
    if not new or not old:
        return 0.0, 0.0
    best = (0.0, 0.0)
    orders = [new] + ([new[1:2] + new[:1] + new[2:]] if len(new) >= 2 else [])
    for words in orders:
        surname = max(similarity(skeleton(words[0]), skeleton(s)) for s in [old[0], *former] if s)
        parts = [(0.5, surname)]
        for index, weight in ((1, 0.35), (2, 0.15)):
            if len(words) > index and len(old) > index:
                parts.append((weight, similarity(skeleton(words[index]), skeleton(old[index]))))
        total = sum(w for w, _ in parts)
        score = sum(w * s for w, s in parts) / total
        if score > best[0]:
            best = (score, surname)
    return best


def _given_similarity(new: list[str], old: list[str]) -> float:
    if len(new) < 2 or len(old) < 2:
        return 0.0
    return max(
        similarity(skeleton(new[1]), skeleton(old[1])),
        similarity(skeleton(new[0]), skeleton(old[1])),
    )


def _address_part(text: str) -> str:
    """A street, house or flat as compared: lower case, digits kept ("12/2а" is not "1")."""
    return ADDRESS_NOISE.sub("", text.lower().replace("ё", "е"))


def _address_score(address: dict[str, Any], family: Family) -> tuple[float, list[str]]:
    if normalise(address.get("district") or "") != normalise(family.district):
        return 0.0, []
    matched = ["address.district"]
    if normalise(address.get("settlement") or "") != normalise(family.settlement):
        return 0.1, matched
    matched.append("address.settlement")
    score = 0.3
    for key, weight in (("street", 0.3), ("house", 0.3), ("flat", 0.1)):
        mine, theirs = address.get(key), getattr(family, key)
        if mine and theirs and _address_part(str(mine)) == _address_part(str(theirs)):
            matched.append(f"address.{key}")
            score += weight
    return min(score, 1.0), matched


def score_family(data: dict[str, Any], family: Family) -> Candidate:
    """How likely the reported ``data`` describes ``family`` (0-1) and which fields agree."""
    members: list[dict[str, Any]] = data["members"]
    matches: list[MemberMatch] = []
    member_total = 0.0
    for index, member in enumerate(members):
        new = split_name(member["full_name"])
        birth = _as_date(member.get("birth_date"))
        best: MemberMatch | None = None
        best_score = 0.0
        for existing in family.members:
            old = split_name(existing.full_name)
            former = [normalise(s) for s in existing.former_surnames or []]
            name_sim, surname_sim = _name_similarity(new, old, former)
            same_birth = birth is not None and birth == existing.birth_date
            changed = False
            if same_birth and _given_similarity(new, old) >= 0.8:
                changed = surname_sim < 0.8
                score = max(name_sim, 0.9)
            elif birth is not None and existing.birth_date is not None:
                score = name_sim * 0.5
            else:
                score = name_sim
            if score > best_score:
                best_score = score
                best = MemberMatch(index, existing.id, round(score, 3), same_birth, changed)
        if best is not None and best_score >= 0.6:
            matches.append(best)
            member_total += best_score
    member_score = member_total / len(members) if members else 0.0

    children = [_as_date(m.get("birth_date")) for m in members if m["role"] == "child"]
    child_dates = [d for d in children if d is not None]
    known = {m.birth_date for m in family.members if m.role == "child" and m.birth_date}
    child_score = (
        sum(1 for d in child_dates if d in known) / len(child_dates) if child_dates else 0.0
    )
    address_score, fields = _address_score(data.get("address") or {}, family)

    matched: list[str] = []
    if matches:
        matched.append("members.full_name")
    if any(m.birth_date for m in matches):
        matched.append("members.birth_date")
    if child_score:
        matched.append("children.birth_date")
    if any(m.surname_changed for m in matches):
        matched.append("members.surname_changed")
    matched += fields
    score = 0.55 * member_score + 0.25 * child_score + 0.2 * address_score
    return Candidate(family.id, family.number, round(min(score, 1.0), 3), matched, matches)


def _candidate_ids(session: Session, data: dict[str, Any]) -> set[str]:
    """Families worth scoring against ``data``, found through indexed columns only."""
    members: list[dict[str, Any]] = data["members"]
    pairs: set[tuple[str, str]] = set()
    for member in members:
        words = split_name(member["full_name"])
        pairs.add(name_keys(member["full_name"]))
        if len(words) > 1:  # "Given Surname" order, as Latin reports often have it
            pairs.add(name_keys(" ".join([words[1], words[0], *words[2:]])))
    surnames = sorted({s for s, _ in pairs if s})
    givens = sorted({g for _, g in pairs if g})
    births = sorted({d for d in (_as_date(m.get("birth_date")) for m in members) if d is not None})
    # A birth date shared with the same surname or given name: the Latin spelling, a typo or a
    # changed surname still meets it. Without any birth date, the same name in the same district.
    if births:
        condition = and_(
            Member.birth_date.in_(births),
            or_(Member.surname_key.in_(surnames), Member.given_key.in_(givens)),
        )
        # Two such members (or one, when the report dates only one): chance coincidences of one
        # common name and one birth date stay out of the scoring.
        dated = sum(1 for m in members if _as_date(m.get("birth_date")) is not None)
        stmt = (
            select(Member.family_id)
            .where(condition)
            .group_by(Member.family_id)
            .having(func.count() >= min(2, dated))
        )
    else:
        district = (data.get("address") or {}).get("district")
        stmt = (
            select(Member.family_id)
            .join(Family, Family.id == Member.family_id)
            .where(
                Member.surname_key.in_(surnames),
                Member.given_key.in_(givens),
                Family.district == district,
            )
            .distinct()
        )
    ids = set(session.scalars(stmt.limit(MAX_CANDIDATES)))
    address = data.get("address") or {}
    if address.get("house") and address.get("settlement"):
        ids |= set(
            session.scalars(
                select(Family.id)
                .where(
                    Family.district == address.get("district"),
                    Family.settlement == address["settlement"],
                    Family.street == address.get("street"),
                    Family.house == address["house"],
                    Family.flat == address.get("flat") if address.get("flat") else true(),
                )
                .limit(MAX_CANDIDATES)
            )
        )
    return ids


def _scored(
    session: Session, data: dict[str, Any], ids: set[str], threshold: float
) -> list[Candidate]:
    if not ids:
        return []
    families = session.scalars(
        select(Family).where(Family.id.in_(sorted(ids))).options(selectinload(Family.members))
    ).all()
    scored = [score_family(data, family) for family in families]
    return sorted((c for c in scored if c.score >= threshold), key=lambda c: (-c.score, c.number))


def find_candidates(
    session: Session,
    data: dict[str, Any],
    *,
    exclude: str | None = None,
    threshold: float = REPORTED,
) -> list[Candidate]:
    """Families that may be the one ``data`` describes, best first, with ``score >= threshold``."""
    ids = _candidate_ids(session, data)
    ids.discard(exclude or "")
    return _scored(session, data, ids, threshold)


def family_as_report(family: Family) -> dict[str, Any]:
    """A stored family in the shape of a registration, to look for its own duplicates."""
    return {
        "address": {
            "district": family.district,
            "settlement": family.settlement,
            "street": family.street,
            "house": family.house,
            "flat": family.flat,
        },
        "members": [
            {"role": m.role, "full_name": m.full_name, "birth_date": m.birth_date}
            for m in family.members
        ],
    }


def _as_date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None
