"""The case workspace (``/cases/<id>``, what emails link to): the stages as a stepper that says
what is missing for the next one, problems and strengths, the agreement with its consents, the
plan with each agency measure's referral, approvals, assessments with their dynamics as a
chart, the contact log and the closing.

Every form posts to its own URL here and works without JavaScript: on success the answer is a
303 back to the workspace; on a refusal the workspace is rendered again with the form as typed
and the API's field errors (422). With htmx the same form posts in the background and swaps
the workspace (a refusal then answers 200, as htmx swaps only successful answers).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from services.console import charts
from services.console.app import console_clients, current_person
from services.console.clients import ApiError
from services.console.forms import FormState
from services.console.labels import catalogue_title, label
from services.console.people import staff
from services.console.workspace import ASSESSMENT_DOMAINS, STAGES, load
from shared.agencies import AGENCY_KINDS
from shared.auth.roles import COORDINATOR, LEAD_SPECIALIST

cases = Blueprint("cases", __name__)

CASEWORK = (LEAD_SPECIALIST, COORDINATOR)
FINDING = {"code": _l("Что"), "identified_on": _l("Дата"), "note": _l("Примечание")}
AGREEMENT = {
    "signed_on": _l("Дата подписания"),
    "valid_until": _l("Действует до"),
    "consent_data_processing": _l("Согласие на обработку персональных данных"),
    "share_with": _l("С какими ведомствами семья разрешила делиться данными"),
}
MEASURE = {
    "kind": _l("Вид мероприятия"),
    "title": _l("Содержание"),
    "agency_id": _l("Ответственное ведомство"),
    "deadline": _l("Срок"),
}
MEASURE_RESULT = {
    "status": _l("Отметка"),
    "result_note": _l("Результат"),
    "not_done_reason": _l("Причина невыполнения"),
}
APPROVAL = {"kind": _l("Что утвердить")}
DECISION = {
    "decision": _l("Решение"),
    "comment": _l("Комментарий"),
    "decision_ref": _l("Реквизиты решения (номер постановления КДН и ЗП)"),
    "decision_date": _l("Дата решения"),
}
CONTACT = {"occurred_on": _l("Дата"), "kind": _l("Вид контакта"), "note": _l("Содержание")}
STAGE = {"stage": _l("Этап")}
CLOSING = {"analysis": _l("Анализ проделанной работы"), "outcome": _l("Итог")}
OUTCOMES = (
    "improvement",
    "no_improvement",
    "moved_away",
    "children_came_of_age",
    "transferred",
    "other",
)
CONTACT_KINDS = (
    "patronage_visit",
    "counselling_individual",
    "counselling_family",
    "conversation",
    "leisure_activity",
    "other",
)
MEASURE_MARKS = ("done", "not_done", "in_progress", "cancelled")
"""What a person marks on an open measure (referrals' answers move agency measures too)."""


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def assessment_fields() -> dict[str, str]:
    """Each score's field is named by its domain (the error summary says which)."""
    return {
        "assessed_on": str(_l("Дата оценки")),
        **{f"score_{d}": label("assessment_domain", d) for d in ASSESSMENT_DOMAINS},
        "note": str(_l("Примечание")),
    }


def blank_forms(case: dict[str, Any]) -> dict[str, FormState]:
    today = _today()
    return {
        "problem": FormState.new(FINDING, {"identified_on": today}),
        "strength": FormState.new(FINDING, {"identified_on": today}),
        "assessment": FormState.new(assessment_fields(), {"assessed_on": today}),
        "agreement": FormState.new(
            AGREEMENT,
            {
                "signed_on": today,
                "valid_until": today + dt.timedelta(days=365),
                "consent_data_processing": "on",
            },
        ),
        "measure": FormState.new(MEASURE),
        "contact": FormState.new(CONTACT, {"occurred_on": today}),
        "stage": FormState.new(STAGE),
        "closing": FormState.new(
            CLOSING, {"analysis": case.get("analysis"), "outcome": case.get("outcome")}
        ),
        "approval": FormState.new(APPROVAL),
    }


def _htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render_workspace(case_id: str, failed: dict[str, FormState] | None = None) -> Any:
    """The workspace; ``failed``: forms the API refused, shown as typed with their errors."""
    person = current_person()
    workspace = load(console_clients(), case_id)
    forms = blank_forms(workspace.case)
    forms.update(failed or {})
    names = {p["person_id"]: p["name"] for p in staff(workspace.value("agencies", []))}
    titles = workspace.titles
    agencies = workspace.agencies

    def title_of(catalogue: str, code: str) -> str:
        entry = titles.get(catalogue, {}).get(code)
        return catalogue_title(entry) if entry else label(catalogue, code)

    def catalogue_options(catalogue: str) -> list[tuple[str, str]]:
        return [(code, catalogue_title(entry)) for code, entry in titles[catalogue].items()]

    def agency_name(agency_id: str) -> str:
        agency = agencies.get(agency_id)
        return str(agency["name"]) if agency else agency_id

    agency_options = [
        (a["id"], f"{a['name']} ({label('agency_kind', a.get('kind'))})")
        for a in sorted(agencies.values(), key=lambda a: str(a.get("name")))
    ]
    status = 422 if failed and not _htmx() else 200
    return render_template(
        "cases/case.html",
        ws=workspace,
        case=workspace.case,
        forms=forms,
        stages=STAGES,
        missing=[label("stage_missing", code) for code in workspace.missing],
        domains=ASSESSMENT_DOMAINS,
        agency_kinds=AGENCY_KINDS,
        chart=charts,
        title_of=title_of,
        catalogue_options=catalogue_options,
        agency_name=agency_name,
        agency_options=agency_options,
        marks=[(code, label("measure_status", code)) for code in MEASURE_MARKS],
        mark_form=lambda _measure: FormState.new(MEASURE_RESULT, {"status": "done"}),
        decision_form=lambda: FormState.new(DECISION),
        contact_options=[(code, label("contact_kind", code)) for code in CONTACT_KINDS],
        outcome_options=[(code, label("outcome", code)) for code in OUTCOMES],
        score_options=[(str(n), str(n)) for n in range(1, 6)],
        casework=person is not None and person.has_role(*CASEWORK),
        coordinator=person is not None and person.has_role(COORDINATOR),
        me=person.subject if person else None,
        names=names,
    ), status


@cases.route("/cases/<case_id>")
def case(case_id: str) -> Any:
    return render_workspace(case_id)


def act(
    case_id: str,
    name: str,
    fields: dict[str, Any],
    write: Callable[[FormState], tuple[str, str, Any]],
    anchor: str,
) -> Any:
    """Post one form to the registry: (method, path, body) from ``write``; back to the
    workspace at ``anchor`` on success, the workspace with the form's errors on a refusal."""
    form = FormState.from_request(fields)
    try:
        method, path, body = write(form)
        console_clients().registry.case_write(
            method, path, body, idempotency_key=form.idempotency_key
        )
    except ApiError as error:
        form.fail(_flatten(error))
        return render_workspace(case_id, {name: form})
    return redirect(url_for("cases.case", case_id=case_id, _anchor=anchor), 303)


def _flatten(error: ApiError) -> ApiError:
    """``scores.housing`` names the form's ``score_housing`` field."""
    renamed: dict[str, list[str]] = {}
    for path, messages in error.errors.items():
        bare = path.split(".", 1)[1] if path.startswith("json.") else path
        if bare.startswith("scores."):
            bare = "score_" + bare.split(".", 1)[1].split(".", 1)[0]
        renamed.setdefault(bare, []).extend(messages)
    error.errors = renamed
    return error


def _or_none(value: str) -> str | None:
    return value or None


@cases.route("/cases/<case_id>/problems", methods=["POST"])
def add_problem(case_id: str) -> Any:
    return act(case_id, "problem", FINDING, _finding(case_id, "problems"), "findings")


@cases.route("/cases/<case_id>/strengths", methods=["POST"])
def add_strength(case_id: str) -> Any:
    return act(case_id, "strength", FINDING, _finding(case_id, "strengths"), "findings")


def _finding(case_id: str, plural: str) -> Callable[[FormState], tuple[str, str, Any]]:
    def write(form: FormState) -> tuple[str, str, Any]:
        return "POST", f"/cases/{case_id}/{plural}", form.payload()

    return write


@cases.route("/cases/<case_id>/assessments", methods=["POST"])
def record_assessment(case_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        scores: dict[str, Any] = {}
        for domain in ASSESSMENT_DOMAINS:
            raw = form.value(f"score_{domain}")
            scores[domain] = int(raw) if raw.isdigit() else raw or None
        body = {
            "assessed_on": _or_none(form.value("assessed_on")),
            "scores": {k: v for k, v in scores.items() if v is not None},
            "note": _or_none(form.value("note")),
        }
        return "POST", f"/cases/{case_id}/assessments", body

    return act(case_id, "assessment", assessment_fields(), write, "assessments")


@cases.route("/cases/<case_id>/agreements", methods=["POST"])
def record_agreement(case_id: str) -> Any:
    kinds = [k for k in request.form.getlist("share_with") if k]

    def write(form: FormState) -> tuple[str, str, Any]:
        form.values["share_with"] = ",".join(kinds)
        body = {
            "signed_on": _or_none(form.value("signed_on")),
            "valid_until": _or_none(form.value("valid_until")),
            "consent_data_processing": form.value("consent_data_processing") == "on",
            "share_with": kinds,
        }
        return "POST", f"/cases/{case_id}/agreements", body

    return act(case_id, "agreement", AGREEMENT, write, "agreement")


@cases.route("/cases/<case_id>/measures", methods=["POST"])
def add_measure(case_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        return "POST", f"/cases/{case_id}/measures", form.payload()

    return act(case_id, "measure", MEASURE, write, "plan")


@cases.route("/cases/<case_id>/measures/<measure_id>", methods=["POST"])
def mark_measure(case_id: str, measure_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        body = {k: v for k, v in form.payload().items() if v is not None}
        return "PATCH", f"/measures/{measure_id}", body

    return act(case_id, f"measure-{measure_id}", MEASURE_RESULT, write, f"measure-{measure_id}")


@cases.route("/cases/<case_id>/approvals", methods=["POST"])
def request_approval(case_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        return "POST", f"/cases/{case_id}/approvals", form.payload()

    return act(case_id, "approval", APPROVAL, write, "approvals")


@cases.route("/cases/<case_id>/approvals/<approval_id>/decision", methods=["POST"])
def decide(case_id: str, approval_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        return "POST", f"/approvals/{approval_id}/decision", form.payload()

    return act(case_id, f"decide-{approval_id}", DECISION, write, "approvals")


@cases.route("/cases/<case_id>/contacts", methods=["POST"])
def log_contact(case_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        return "POST", f"/cases/{case_id}/contacts", form.payload()

    return act(case_id, "contact", CONTACT, write, "contacts")


@cases.route("/cases/<case_id>/stage", methods=["POST"])
def change_stage(case_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        return "POST", f"/cases/{case_id}/stage", form.payload()

    return act(case_id, "stage", STAGE, write, "stage")


@cases.route("/cases/<case_id>/closing", methods=["POST"])
def record_closing(case_id: str) -> Any:
    def write(form: FormState) -> tuple[str, str, Any]:
        return "PUT", f"/cases/{case_id}/closing", form.payload()

    return act(case_id, "closing", CLOSING, write, "closing")
