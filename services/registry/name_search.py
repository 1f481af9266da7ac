"""The data bank's search box: any member's name (children included) in Cyrillic or Latin and
with typos, and birth dates.

The surname, the given name and former surnames of every member are stored on the family as its folded
Latin skeleton (``duplicates.skeleton``: Юрий, Yuriy and Iurii are all ``iuri``), space-framed in
``families.search_names``. A typed word matches the start of such a word (a trigram index on
PostgreSQL serves the ``LIKE``). A word that starts no known word is taken as a typo: it is
replaced by the closest words of the lexicon (``name_words``, every skeleton ever stored; a
trigram GiST index on PostgreSQL, a length window on SQLite), scored by rapidfuzz, and those whole
words are matched instead. Looking typos up in the small lexicon, not in the families, keeps a
typo as fast as an exact name at a million families.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import process
from rapidfuzz.distance import Indel
from sqlalchemy import ColumnElement, and_, case, exists, false, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.registry.duplicates import normalise, skeleton, split_name
from services.registry.models import Family, Member, NameWord

DATE_FORMATS = (
    (re.compile(r"^\d{1,2}\.\d{1,2}\.\d{4}$"), "%d.%m.%Y"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
)
TOKEN = re.compile(r"[\s,;]+")
MIN_FUZZY = 4  # shorter words are prefixes being typed, not typos
FUZZY_SIMILARITY = 0.8  # rapidfuzz Indel: one slip in a 5-letter name is 0.8, two are 0.6
FUZZY_WORDS = 5


def search_names(members: Iterable[dict[str, Any]]) -> str:
    """The text the name search runs on: the skeletons of each member's surname, given name and
    former surnames, space-framed. Patronymics stay out: "Иванов" would otherwise find every
    Ивановна and Иванович."""
    words: list[str] = []
    for member in members:
        spelled = split_name(member["full_name"])[:2]
        for former in member.get("former_surnames") or []:
            spelled += split_name(former)
        for word in spelled:
            key = skeleton(word)
            if key and key not in words:
                words.append(key)
    return " " + " ".join(words) + " "


def remember(session: Session, names: str) -> None:
    """Add a family's name words to the lexicon the typo look-up reads."""
    words = sorted(set(names.split()))
    if not words:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(NameWord).values([{"word": w} for w in words]).on_conflict_do_nothing())


def parse_date(token: str) -> dt.date | None:
    """``dd.mm.yyyy`` or ``yyyy-mm-dd``; ``ValueError`` for a date-shaped token that is no date."""
    for pattern, fmt in DATE_FORMATS:
        if pattern.match(token):
            return dt.datetime.strptime(token, fmt).date()
    return None


@dataclass
class Query:
    """What the search box asked for: name words as skeletons, and birth dates."""

    words: list[str] = field(default_factory=list)
    dates: list[dt.date] = field(default_factory=list)


def parse(text: str) -> Query:
    """Split the search box's text into birth dates and name words (order does not matter)."""
    query = Query()
    for token in TOKEN.split(text.strip()):
        date = parse_date(token)
        if date is not None:
            query.dates.append(date)
            continue
        for word in normalise(token).split():
            key = skeleton(word)
            if key and key not in query.words:
                query.words.append(key)
    return query


@dataclass
class Term:
    """One typed word as matched: the start of a name word, or (a typo) close whole words."""

    word: str
    prefix: bool
    fuzzy: list[str] = field(default_factory=list)


def _close_words(session: Session, word: str) -> list[str]:
    column = NameWord.word
    if session.get_bind().dialect.name == "postgresql":
        stmt = select(column).where(column.op("%")(word)).order_by(column.op("<->")(word)).limit(50)
    else:
        stmt = select(column).where(func.length(column).between(len(word) - 2, len(word) + 2))
    choices = list(session.scalars(stmt))
    found = process.extract(
        word,
        choices,
        scorer=Indel.normalized_similarity,
        score_cutoff=FUZZY_SIMILARITY,
        limit=FUZZY_WORDS,
    )
    return [choice for choice, _score, _index in found]


def _after_prefix(word: str) -> str | None:
    """The first string past every word starting with ``word`` (words are a-z only, so the
    order is the same in every collation); None when there is none (``zz``)."""
    stem = word.rstrip("z")
    return stem[:-1] + chr(ord(stem[-1]) + 1) if stem else None


def _starts_a_word(session: Session, word: str) -> bool:
    """Some known word starts with ``word``: a range scan of the lexicon's primary key."""
    column = NameWord.word
    stmt = select(column).where(column >= word)
    after = _after_prefix(word)
    if after is not None:
        stmt = stmt.where(column < after)
    return session.scalar(stmt.limit(1)) is not None


def resolve(session: Session, words: list[str]) -> list[Term]:
    """Each typed word as the search runs it: a prefix when some name starts so, else a typo."""
    terms = []
    for word in words:
        known = _starts_a_word(session, word)
        if known or len(word) < MIN_FUZZY:
            terms.append(Term(word, prefix=known))
        else:
            terms.append(Term(word, prefix=False, fuzzy=_close_words(session, word)))
    return terms


def name_condition(column: Any, terms: list[Term]) -> ColumnElement[bool]:
    """Every term matches some name word of the family (each may be a different member)."""
    parts: list[ColumnElement[bool]] = []
    for term in terms:
        if term.prefix:
            parts.append(column.like(f"% {term.word}%"))
        elif term.fuzzy:
            parts.append(or_(*(column.like(f"% {word} %") for word in term.fuzzy)))
        else:
            parts.append(false())
    return and_(*parts)


def rank(column: Any, terms: list[Term]) -> ColumnElement[Any]:
    """Lower is better: a whole word 0, the start of a word 1, a typo 2 and up by closeness."""
    total: ColumnElement[Any] = literal(0)
    for term in terms:
        if term.prefix:
            total = total + case((column.like(f"% {term.word} %"), 0), else_=1)
        elif term.fuzzy:
            whens = [(column.like(f"% {w} %"), 2 + i) for i, w in enumerate(term.fuzzy)]
            total = total + case(*whens, else_=2 + len(term.fuzzy))
    return total


def rank_of(names: str, terms: list[Term]) -> int:
    """:func:`rank` of one family's search text, computed here."""
    total = 0
    for term in terms:
        if term.prefix:
            total += 0 if f" {term.word} " in names else 1
        elif term.fuzzy:
            hits = [i for i, word in enumerate(term.fuzzy) if f" {word} " in names]
            total += 2 + (hits[0] if hits else len(term.fuzzy))
    return total


def born_on(day: dt.date) -> ColumnElement[bool]:
    """A member of the family was born on ``day`` (served by ``ix_members_birth_date``)."""
    return exists().where(and_(Member.family_id == Family.id, Member.birth_date == day))
