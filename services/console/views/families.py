"""The data bank: the family list with filters, search, sorting, paging, saved views and the
coordinators' export.

Filters live in the URL, so a view can be bookmarked and shared. The search box holds names and
birth dates, which never go into a URL: the form is POSTed, the text is kept in the person's
server-side session under a random key, and the URL carries only that key (``s=``). Saved
views keep the search text in the console's own database, per person.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, redirect, render_template, request, session
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select

from services.console.app import console, console_clients, current_person
from services.console.clients import ApiError, ServiceDown
from services.console.models import SavedView
from shared.auth.roles import COORDINATOR
from shared.db import transaction

families = Blueprint("families", __name__)

PAGE_SIZE = 25
SEARCHES = "family_searches"
KEPT_SEARCHES = 20
AREA = "families"
CATEGORIES = ("sop", "risk_group", "tzhs")
STAGES = ("preparatory", "support", "final", "closed")
SORTS = {
    "relevance": _l("по совпадению"),
    "-created_at": _l("сначала новые"),
    "created_at": _l("сначала давние"),
    "display_name": _l("по фамилии"),
    "number": _l("по номеру"),
    "district": _l("по району"),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    "stage": STAGES,
    "overdue": ("true",),
    "in_bank": ("true", "false"),
    "sort": tuple(SORTS),
}
TEXT_FILTERS = ("district", "settlement", "lead_specialist")
FILTERS = (*TEXT_FILTERS, "category", "stage", "overdue", "in_bank", "sort")


def filters_of(source: Any) -> dict[str, str]:
    """The known filters of a query or form, unknown choices dropped."""
    out: dict[str, str] = {}
    for key in FILTERS:
        value = str(source.get(key) or "").strip()[:120]
        if value and (key not in CHOICES or value in CHOICES[key]):
            out[key] = value
    return out


def remember_search(text: str) -> str:
    """Keep the search text in the session; the URL gets the key."""
    kept: dict[str, str] = dict(session.get(SEARCHES) or {})
    key = secrets.token_urlsafe(6)
    kept[key] = text[:200]
    session[SEARCHES] = dict(list(kept.items())[-KEPT_SEARCHES:])
    return key


def search_of(key: str | None) -> str:
    return str((session.get(SEARCHES) or {}).get(key or "", ""))


def list_url(
    filters: dict[str, str], key: str | None = None, path: str = "/families", **extra: Any
) -> str:
    params = {**filters, **({"s": key} if key else {}), **extra}
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return path + (f"?{urlencode(clean)}" if clean else "")


def _page(filters: dict[str, str], text: str, key: str | None, page: int) -> dict[str, Any]:
    """What the results part shows: the page, or the API's errors, or the service down."""
    context: dict[str, Any] = {
        "filters": filters,
        "q": text,
        "key": key,
        "errors": {},
        "result": None,
        "down": False,
        "list_url": list_url,
    }
    try:
        context["result"] = console_clients().registry.families(
            q=text or None, page=page, page_size=PAGE_SIZE, **filters
        )
    except ServiceDown:
        context["down"] = True
    except ApiError as error:
        context["errors"] = {name.split(".")[-1]: msgs for name, msgs in error.errors.items()}
        if not context["errors"]:
            context["errors"] = {"q": [error.detail or error.title]}
    return context


def _views() -> list[SavedView]:
    person = current_person()
    if person is None:
        return []
    with console().sessions() as db:
        return list(
            db.scalars(
                select(SavedView)
                .where(SavedView.person_id == person.subject, SavedView.area == AREA)
                .order_by(SavedView.name)
            )
        )


def _render(filters: dict[str, str], text: str, key: str | None, page: int) -> Any:
    context = _page(filters, text, key, page)
    if request.headers.get("HX-Request") and not request.headers.get("HX-Boosted"):
        return render_template("families/_results.html", **context)
    person = current_person()
    status = 422 if context["errors"] else 200
    return (
        render_template(
            "families/index.html",
            **context,
            sorts=SORTS,
            categories=CATEGORIES,
            stages=STAGES,
            views=_views(),
            may_export=person is not None and person.has_role(COORDINATOR),
        ),
        status,
    )


@families.get("/families")
def index() -> Any:
    if request.args.get("intake") == "pending":  # the home page's counter of possible duplicates
        district = request.args.get("district")
        return redirect(
            "/families/intakes" + (f"?{urlencode({'district': district})}" if district else "")
        )
    filters = filters_of(request.args)
    key = request.args.get("s") or None
    text = search_of(key)
    page = request.args.get("page", "1")
    return _render(filters, text, key if text else None, int(page) if page.isdigit() else 1)


@families.post("/families")
def search() -> Any:
    """The filter bar's submit: the search text into the session, the rest into the URL."""
    filters = filters_of(request.form)
    text = " ".join(request.form.get("q", "").split())
    key = remember_search(text) if text else None
    url = list_url(filters, key)
    if request.headers.get("HX-Request"):
        answer = Response(render_template("families/_results.html", **_page(filters, text, key, 1)))
        answer.headers["HX-Push-Url"] = url
        return answer
    return redirect(url, 303)


@families.get("/families/export")
def export() -> Any:
    """The filtered list as CSV or XLSX (the registry allows coordinators only)."""
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "xlsx"):
        abort(404)
    filters = filters_of(request.args)
    text = search_of(request.args.get("s"))
    body, media, disposition = console_clients().registry.export_families(
        fmt, q=text or None, **filters
    )
    return Response(body, headers={"Content-Type": media, "Content-Disposition": disposition})


@families.post("/families/views")
def save_view() -> Any:
    """Save the current filters and search under a name, for this person."""
    person = current_person()
    if person is None:
        abort(403)
    filters = filters_of(request.form)
    text = search_of(request.form.get("s"))
    name = " ".join(request.form.get("name", "").split())[:100] or str(_l("Мой вид"))
    query = {**filters, **({"q": text} if text else {})}
    with transaction(console().sessions) as db:
        db.add(SavedView(person_id=person.subject, area=AREA, name=name, query=query))
    return redirect(list_url(filters, remember_search(text) if text else None), 303)


@families.get("/families/views/<view_id>")
def open_view(view_id: str) -> Any:
    person = current_person()
    with console().sessions() as db:
        view = db.get(SavedView, view_id)
        if view is None or person is None or view.person_id != person.subject:
            abort(404)
        query = dict(view.query)
    text = query.pop("q", "")
    return redirect(list_url(filters_of(query), remember_search(text) if text else None), 303)


@families.post("/families/views/<view_id>/delete")
def delete_view(view_id: str) -> Any:
    person = current_person()
    if person is None:
        abort(403)
    with transaction(console().sessions) as db:
        db.execute(
            delete(SavedView).where(SavedView.id == view_id, SavedView.person_id == person.subject)
        )
    return redirect("/families", 303)
