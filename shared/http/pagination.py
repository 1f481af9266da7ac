"""One way to page every list: ``?page=&page_size=`` in, ``{items, page, page_size, total,
pages}`` out."""

from __future__ import annotations

import math
from typing import Any

import marshmallow as ma
from sqlalchemy import Select, func, inspect, select
from sqlalchemy.orm import Session

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
# Far past any real list; the bound keeps the row offset within a 64-bit integer.
MAX_PAGE = 100_000


class PageArgs(ma.Schema):
    """Query arguments of a list; use with ``@blp.arguments(PageArgs, location="query")``."""

    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=MAX_PAGE))
    page_size = ma.fields.Integer(
        load_default=DEFAULT_PAGE_SIZE, validate=ma.validate.Range(min=1, max=MAX_PAGE_SIZE)
    )


def paginate(session: Session, stmt: Select[Any], *, page: int, page_size: int) -> dict[str, Any]:
    """One page of ``stmt``, which must have an ``order_by`` so that pages do not overlap.

    Items are ORM objects when ``stmt`` selects one mapped entity, row mappings otherwise.
    """
    if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"1 <= page <= {MAX_PAGE} and 1 <= page_size <= {MAX_PAGE_SIZE}")
    counted = select(func.count()).select_from(stmt.order_by(None).subquery())
    total = session.execute(counted).scalar_one()
    window = stmt.limit(page_size).offset((page - 1) * page_size)
    result = session.execute(window)
    items: list[Any] = (
        list(result.scalars().all()) if _selects_one_entity(stmt) else list(result.mappings())
    )
    return {
        "items": items,
        "page": page,
        "page_size": page_size,
        "total": total,
        "pages": math.ceil(total / page_size),
    }


def _selects_one_entity(stmt: Select[Any]) -> bool:
    columns = stmt.column_descriptions
    if len(columns) != 1:
        return False
    info = inspect(columns[0]["expr"], raiseerr=False)
    return bool(getattr(info, "is_mapper", False) or getattr(info, "is_aliased_class", False))


_page_schemas: dict[type[ma.Schema], type[ma.Schema]] = {}


def page_schema(item_schema: type[ma.Schema]) -> type[ma.Schema]:
    """The response schema of a page of ``item_schema``; one class per item schema, so the
    OpenAPI document names it once (``FamilyPage`` for ``FamilySchema``)."""
    cached = _page_schemas.get(item_schema)
    if cached is not None:
        return cached
    base = item_schema.__name__.removesuffix("Schema")
    schema = ma.Schema.from_dict(
        {
            "items": ma.fields.Nested(item_schema, many=True, required=True),
            "page": ma.fields.Integer(required=True),
            "page_size": ma.fields.Integer(required=True),
            "total": ma.fields.Integer(required=True),
            "pages": ma.fields.Integer(required=True),
        },
        name=f"{base}PageSchema",
    )
    _page_schemas[item_schema] = schema
    return schema
