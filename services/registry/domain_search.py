"""Finding families: filters, the name and birth-date search (``name_search``), sorting by
relevance or a column, and a page with a bounded count."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from services.registry import name_search
from services.registry.domain import today
from services.registry.models import OPEN_MEASURE_STATUSES, Family, Measure

SORTS = {
    "number": Family.number,
    "created_at": Family.created_at,
    "updated_at": Family.updated_at,
    "display_name": Family.display_name,
    "category": Family.category,
    "district": Family.district,
    "settlement": Family.settlement,
    "stage": Family.stage,
}

COUNT_CAP = 1000
RELEVANCE = "relevance"


def search_text(args: dict[str, Any]) -> str:
    """The search box's text: ``q``, and ``surname`` (its older name) if given."""
    return " ".join(str(args[key]) for key in ("q", "surname") if args.get(key))


def page_of(session: Session, stmt: Select[Any], *, page: int, page_size: int) -> dict[str, Any]:
    """A page of families with the total counted up to a cap: past it, ``total_exact`` is false
    and ``total`` a lower bound. A common surname's prefix can match a tenth of a million-family
    bank; counting all of them would cost more than the page itself, and nobody reads on."""
    cap = max(COUNT_CAP, page * page_size)
    limited = stmt.order_by(None).limit(cap + 1).subquery()
    counted = int(session.scalar(select(func.count()).select_from(limited)) or 0)
    items = list(session.scalars(stmt.limit(page_size).offset((page - 1) * page_size)))
    total = min(counted, cap)
    return {
        "items": items,
        "page": page,
        "page_size": page_size,
        "total": total,
        "total_exact": counted <= cap,
        "pages": -(-total // page_size),
    }


def search_families(
    args: dict[str, Any],
    *,
    scope: ColumnElement[bool] | None = None,
    session: Session | None = None,
    window: int = COUNT_CAP + 1,
) -> Select[Any]:
    """The filtered, sorted list of families; ``scope`` (``access.family_scope``) limits it to
    what the caller may read.

    A name in ``q`` needs ``session``: typed words are looked up in the lexicon first. Sorted
    by relevance (the default with a name), the newest ``window`` matches are ranked, so a
    common name costs no more than its first thousand families.
    """
    stmt = select(Family)
    for key in ("district", "settlement", "category", "stage", "lead_specialist", "region"):
        if args.get(key):
            stmt = stmt.where(getattr(Family, key) == args[key])
    if args.get("in_bank") is not None:
        stmt = stmt.where(Family.in_bank.is_(args["in_bank"]))
    if args.get("incomplete") is not None:
        stmt = stmt.where(
            Family.missing_fields.is_not(None)
            if args["incomplete"]
            else Family.missing_fields.is_(None)
        )
    query = name_search.parse(search_text(args))
    if args.get("birth_date"):
        query.dates.append(args["birth_date"])
    for day in query.dates:
        stmt = stmt.where(name_search.born_on(day))
    terms: list[name_search.Term] = []
    if query.words:
        if session is None:
            raise ValueError("a name search needs the session to look words up")
        terms = name_search.resolve(session, query.words)
        stmt = stmt.where(name_search.name_condition(Family.search_names, terms))
    if args.get("overdue"):
        stmt = stmt.where(
            exists().where(
                and_(
                    Measure.family_id == Family.id,
                    Measure.status.in_(OPEN_MEASURE_STATUSES),
                    Measure.deadline < (args.get("today") or today()),
                )
            )
        )
    if scope is not None:
        stmt = stmt.where(scope)
    sort = args.get("sort") or (RELEVANCE if terms else "-created_at")
    if sort == RELEVANCE:
        if not terms:
            return stmt.order_by(Family.created_at.desc(), Family.id)
        newest = stmt.order_by(Family.created_at.desc(), Family.id).limit(window).subquery()
        ranked = aliased(Family, newest)
        best = name_search.rank(ranked.search_names, terms)
        return select(ranked).order_by(best, ranked.created_at.desc(), ranked.id)
    column = SORTS[sort.lstrip("-")]
    order = column.desc() if sort.startswith("-") else column.asc()
    return stmt.order_by(order, Family.id)
