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
    """The filtered, sorted list of families as one statement (the export runs it)."""
    stmt, terms = filtered(args, scope=scope, session=session)
    return ordered(with_names(stmt, terms), terms, args.get("sort"), window)


def with_names(stmt: Select[Any], terms: list[name_search.Term]) -> Select[Any]:
    return stmt.where(name_search.name_condition(Family.search_names, terms)) if terms else stmt


def _matches(
    session: Session, base: Select[Any], terms: list[name_search.Term], size: int
) -> list[Any]:
    """Up to ``size`` matches (id, search text, created_at), in no order: the planner takes the
    trigram index and stops at ``size``, as the bounded count does.

    A typo's close words are asked one by one and merged: for an OR of several whole words the
    planner misjudges the matches; for one word it estimates well.
    """

    def some(condition_terms: list[name_search.Term]) -> list[Any]:
        stmt = with_names(base, condition_terms)
        columns = stmt.with_only_columns(Family.id, Family.search_names, Family.created_at)
        return list(session.execute(columns.limit(size)).all())

    typo = next((t for t in terms if t.fuzzy), None)
    if typo is None:
        return some(terms)
    others = [t for t in terms if t is not typo]
    merged: dict[str, Any] = {}
    for word in typo.fuzzy:
        one = name_search.Term(typo.word, prefix=False, fuzzy=[word])
        merged.update((row.id, row) for row in some([*others, one]))
    return list(merged.values())


def ordered(
    stmt: Select[Any], terms: list[name_search.Term], sort: str | None, window: int
) -> Select[Any]:
    """``stmt`` in the asked order; by relevance, the newest ``window`` matches ranked."""
    sort = sort or (RELEVANCE if terms else "-created_at")
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


def find(
    session: Session,
    args: dict[str, Any],
    *,
    scope: ColumnElement[bool] | None = None,
    page: int = 1,
    page_size: int = 50,
) -> dict[str, Any]:
    """A page of the list as ``GET /families`` answers it.

    In relevance order (the default with a name) one query reads up to ``COUNT_CAP + 1``
    matches, unordered (ids and search text): that counts them, as :func:`page_of` does, and
    when they are at most ``COUNT_CAP`` they are ranked here and only the page's families are
    loaded. Past the cap a name is too common for its ranking to help (a thousand Ivanovs): the
    page is then the newest matches, as a column sort would walk them.
    """
    base, terms = filtered(args, scope=scope, session=session)
    if (args.get("sort") or RELEVANCE) != RELEVANCE or not terms:
        listed = ordered(with_names(base, terms), terms, args.get("sort"), COUNT_CAP + 1)
        return page_of(session, listed, page=page, page_size=page_size)
    cap = max(COUNT_CAP, page * page_size)
    rows = _matches(session, base, terms, cap + 1)
    if len(rows) > cap:
        newest = with_names(base, terms).order_by(Family.created_at.desc(), Family.id)
        items = list(session.scalars(newest.limit(page_size).offset((page - 1) * page_size)))
        ids = [f.id for f in items]
        loaded = {f.id: f for f in items}
        total = cap
    else:
        ranked = sorted(
            rows,
            key=lambda r: (
                name_search.rank_of(r.search_names, terms),
                -r.created_at.timestamp(),
                r.id,
            ),
        )
        ids = [r.id for r in ranked[(page - 1) * page_size : page * page_size]]
        loaded = {f.id: f for f in session.scalars(select(Family).where(Family.id.in_(ids)))}
        total = len(rows)
    return {
        "items": [loaded[i] for i in ids if i in loaded],
        "page": page,
        "page_size": page_size,
        "total": total,
        "total_exact": len(rows) <= cap,
        "pages": -(-total // page_size),
    }


def filtered(
    args: dict[str, Any],
    *,
    scope: ColumnElement[bool] | None = None,
    session: Session | None = None,
) -> tuple[Select[Any], list[name_search.Term]]:
    """The filtered families (unordered, without the name condition: :func:`with_names`) and the
    resolved name terms; ``scope`` (``access.family_scope``) limits them to what the caller may
    read. A name in ``q`` needs ``session``: typed words are looked up in the
    lexicon first. In relevance order (the default with a name) the newest ``COUNT_CAP``
    matches are ranked, so a common name costs no more than its first thousand families.
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
    return stmt, terms
