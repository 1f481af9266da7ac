"""Register a family, searching before creating: the form is checked against the data bank
(the registry's ``POST /families/duplicates``) and the candidates are shown side by side with
why they match; a coordinator links the report to one of them (``link_to``) instead of
creating a second record. The form keeps what was typed and shows the API's field errors."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request
from flask_babel import lazy_gettext as _l

from services.console.app import console_clients, current_person
from services.console.clients import ApiError
from services.console.forms import FORM_ERRORS, FormState
from shared.auth.roles import COORDINATOR

family_new = Blueprint("family_new", __name__)

MEMBER_ROWS = 4
ROLES = ("mother", "father", "guardian", "child", "other")
CATEGORIES = ("sop", "risk_group", "tzhs")
ADDRESS = {
    "region": _l("Регион"),
    "district": _l("Район"),
    "settlement": _l("Населённый пункт"),
    "street": _l("Улица"),
    "house": _l("Дом"),
    "flat": _l("Квартира"),
}
FIELDS: dict[str, Any] = {"category": _l("Категория"), **ADDRESS}
for _i in range(MEMBER_ROWS):
    FIELDS[f"member_{_i}_role"] = _l("Роль")
    FIELDS[f"member_{_i}_full_name"] = _l("Фамилия Имя Отчество")
    FIELDS[f"member_{_i}_birth_date"] = _l("Дата рождения")
INITIAL = {
    "region": "Вологодская область",
    "member_0_role": "mother",
    **{f"member_{i}_role": "child" for i in range(1, MEMBER_ROWS)},
}


def _report(form: FormState) -> dict[str, Any]:
    """The form as the registry's report: the address and the members typed in."""
    address = {key: form.value(key) or None for key in ADDRESS}
    members = []
    for i in range(MEMBER_ROWS):
        name = form.value(f"member_{i}_full_name")
        if name:
            members.append(
                {
                    "role": form.value(f"member_{i}_role") or "other",
                    "full_name": name,
                    "birth_date": form.value(f"member_{i}_birth_date") or None,
                }
            )
    return {"address": address, "members": members}


def _member_rows(members_sent: list[int]) -> dict[int, int]:
    """Index in the report -> row of the form (empty rows are not sent)."""
    return dict(enumerate(members_sent))


def _fail(form: FormState, error: ApiError, rows: dict[int, int]) -> None:
    """Put the API's field errors on the form's fields: ``members.1.full_name`` goes to the row
    that member came from, ``address.district`` to ``district``."""
    for path, messages in error.errors.items():
        parts = path.split(".")
        if parts[0] in ("json", "form"):
            parts = parts[1:]
        name = FORM_ERRORS
        if parts and parts[0] == "address" and len(parts) > 1 and parts[1] in ADDRESS:
            name = parts[1]
        elif parts and parts[0] == "members" and len(parts) > 2 and parts[1].isdigit():
            row = rows.get(int(parts[1]), int(parts[1]))
            candidate = f"member_{row}_{parts[2]}"
            name = candidate if candidate in form.fields else f"member_{row}_full_name"
        elif parts and parts[0] in form.fields:
            name = parts[0]
        form.errors.setdefault(name, []).extend(messages)
    if not error.errors:
        form.errors.setdefault(FORM_ERRORS, []).append(error.detail or error.title)


def _page(form: FormState, candidates: list[dict[str, Any]] | None, status: int = 200) -> Any:
    person = current_person()
    return (
        render_template(
            "families/new.html",
            form=form,
            rows=range(MEMBER_ROWS),
            roles=ROLES,
            categories=CATEGORIES,
            candidates=candidates,
            may_link=person is not None and person.has_role(COORDINATOR),
        ),
        status,
    )


@family_new.get("/families/new")
def new() -> Any:
    return _page(FormState.new(FIELDS, INITIAL), None)


@family_new.post("/families/new")
def submit() -> Any:
    """``check``: show the candidates; ``register``: create; a candidate's ``link_to`` button:
    add the report to that family instead."""
    form = FormState.from_request(FIELDS)
    report = _report(form)
    rows = _member_rows([i for i in range(MEMBER_ROWS) if form.value(f"member_{i}_full_name")])
    registry = console_clients().registry
    link_to = request.form.get("link_to") or None
    action = "link" if link_to else request.form.get("action", "check")
    try:
        if action == "check":
            return _page(form, registry.check_duplicates(report))
        body = {**report, "category": form.value("category") or None}
        if link_to:
            body["link_to"] = link_to
        family = registry.register_family(body, idempotency_key=form.idempotency_key)
    except ApiError as error:
        _fail(form, error, rows)
        return _page(form, None, 422)
    return redirect(f"/families/{family['id']}", 303)
