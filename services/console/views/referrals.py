"""Referrals (``/referrals``): agency staff's inbox (addressed to their agency) and the
senders' list, filters in the URL; a referral's page with its history, the comment thread and
the steps its status allows; coordinators' overdue referrals and escalations
(``/referrals/overdue``). The referrals service decides who may see and do what: a step this
person may not take comes back as its refusal, shown next to the form."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from services.console.app import console_clients, current_person
from services.console.clients import ApiError, gather
from services.console.forms import FormState
from services.console.labels import LABELS, label
from services.console.people import staff
from shared.auth.roles import ADMIN, AGENCY_STAFF, COORDINATOR, LEAD_SPECIALIST

referrals = Blueprint("referrals", __name__)

BOXES = ("inbox", "sent")
SENDERS = (COORDINATOR, LEAD_SPECIALIST, ADMIN)
AGENCY_STEPS: dict[str, tuple[str, ...]] = {
    "requested": ("received", "accepted", "rejected"),
    "received": ("accepted", "rejected"),
    "accepted": ("in-progress",),
    "in-progress": ("completed", "on-hold", "failed"),
    "on-hold": ("in-progress", "failed"),
}
"""The receiving agency's next steps by status (FHIR Task; referrals' domain.TRANSITIONS);
``accepted`` from ``requested`` takes ``received`` first, as the signed link does."""
NEEDS_REASON = ("rejected", "failed")
NEEDS_OUTCOME = ("completed",)
STEP_FIELDS = {"reason": _l("Причина"), "outcome": _l("Результат")}
COMMENT_FIELDS = {"body": _l("Комментарий")}
OPEN = ("draft", "requested", "received", "accepted", "in-progress", "on-hold")


@referrals.route("/referrals")
def index() -> Any:
    person = current_person()
    assert person is not None
    view = request.args.get("view")
    if view in ("overdue", "escalated"):  # the home page's counters
        return redirect(
            url_for(
                "referrals.overdue",
                district=request.args.get("district") or None,
                escalated="1" if view == "escalated" else None,
            )
        )
    senders = person.has_role(*SENDERS)
    default = "sent" if senders and not person.agency_id else "inbox"
    box = request.args.get("box") if request.args.get("box") in BOXES else default
    status = request.args.get("status") or None
    if status is not None and status not in LABELS["referral_status"]:
        status = None
    page_no = request.args.get("page", "1")
    filters: dict[str, Any] = {
        "status": status,
        "page": int(page_no) if page_no.isdigit() and 0 < int(page_no) < 10_000 else 1,
        "page_size": 50,
    }
    if box == "inbox":
        if not person.agency_id:
            abort(404)
        filters["agency_id"] = person.agency_id
    clients = console_clients()
    parts = gather({"agencies": clients.referrals.agencies})
    page = clients.referrals.referrals(**filters)
    agencies = parts["agencies"].value if parts["agencies"].ok else []
    return render_template(
        "referrals/index.html",
        page=page,
        box=box,
        boxes=[
            b for b in BOXES if (b == "inbox" and person.agency_id) or (b == "sent" and senders)
        ],
        agency_names={a["id"]: a["name"] for a in agencies or []},
        status_options=[(c, label("referral_status", c)) for c in LABELS["referral_status"]],
        values={"status": status or "", "box": box},
        coordinator=person.has_role(COORDINATOR, ADMIN),
    )


@referrals.route("/referrals/overdue")
def overdue() -> Any:
    """Coordinators: referrals not answered or not done in time, escalated ones marked."""
    kind = (
        request.args.get("kind")
        if request.args.get("kind") in ("acknowledge", "complete")
        else None
    )
    district = request.args.get("district") or None
    clients = console_clients()
    parts = gather({"agencies": clients.referrals.agencies})
    page = clients.referrals.overdue(kind=kind, district=district, page_size=200)
    escalated = request.args.get("escalated") == "1"
    if escalated:  # the API has no such filter: a district's overdue referrals fit one page
        page["items"] = [r for r in page["items"] if r.get("escalated_at")]
        page["total"] = len(page["items"])
    agencies = parts["agencies"].value if parts["agencies"].ok else []
    return render_template(
        "referrals/overdue.html",
        page=page,
        agency_names={a["id"]: a["name"] for a in agencies or []},
        kind_options=[(k, label("overdue_kind", k)) for k in ("acknowledge", "complete")],
        values={"kind": kind or "", "district": district or ""},
        escalated=escalated,
    )


@referrals.route("/referrals/<referral_id>")
def referral(referral_id: str) -> Any:
    return render_referral(referral_id)


def render_referral(
    referral_id: str,
    *,
    step_form: FormState | None = None,
    comment_form: FormState | None = None,
    failed_step: str | None = None,
    status: int = 200,
) -> Any:
    person = current_person()
    assert person is not None
    clients = console_clients()
    parts = gather({"agencies": clients.referrals.agencies})
    item = clients.referrals.referral(referral_id)
    agencies = parts["agencies"].value if parts["agencies"].ok else []
    names = {p["person_id"]: p["name"] for p in staff(agencies or [])}
    ours = person.has_role(AGENCY_STAFF) and person.agency_id == item.get("agency_id")
    steps = AGENCY_STEPS.get(item["status"], ()) if ours else ()
    return (
        render_template(
            "referrals/referral.html",
            referral=item,
            agency_names={a["id"]: a["name"] for a in agencies or []},
            names=names,
            steps=steps,
            needs_reason=NEEDS_REASON,
            needs_outcome=NEEDS_OUTCOME,
            may_claim=ours and item["status"] in OPEN and item.get("owner_id") != person.subject,
            step_form=step_form or FormState.new(STEP_FIELDS),
            blank_form=FormState.new(STEP_FIELDS),
            failed_step=failed_step,
            comment_form=comment_form or FormState.new(COMMENT_FIELDS),
        ),
        status,
    )


@referrals.route("/referrals/<referral_id>/steps", methods=["POST"])
def step(referral_id: str) -> Any:
    """One lifecycle step; ``accepted`` of a ``requested`` referral records ``received`` first."""
    target = request.form.get("status", "")
    if target not in LABELS["referral_status"]:
        abort(400)
    form = FormState.from_request(STEP_FIELDS)
    client = console_clients().referrals
    body: dict[str, Any] = {"status": target}
    if target in NEEDS_REASON:
        body["reason"] = form.value("reason") or None
    if target in NEEDS_OUTCOME:
        body["outcome"] = form.value("outcome") or None
    missing = [
        n
        for n, need in (("reason", NEEDS_REASON), ("outcome", NEEDS_OUTCOME))
        if target in need and not body.get(n)
    ]
    if missing:
        form.errors = {n: [str(_l("Обязательное поле"))] for n in missing}
        return render_referral(referral_id, step_form=form, failed_step=target, status=422)
    try:
        if target in ("accepted", "rejected"):
            current = client.referral(referral_id)
            if current["status"] == "requested":
                client.transition(
                    referral_id,
                    {"status": "received"},
                    idempotency_key=form.idempotency_key + "-received",
                )
        client.transition(referral_id, body, idempotency_key=form.idempotency_key)
    except ApiError as error:
        form.fail(error)
        return render_referral(referral_id, step_form=form, failed_step=target, status=422)
    return redirect(url_for("referrals.referral", referral_id=referral_id))


@referrals.route("/referrals/<referral_id>/claim", methods=["POST"])
def claim(referral_id: str) -> Any:
    form = FormState.from_request({})
    try:
        console_clients().referrals.claim(referral_id, idempotency_key=form.idempotency_key)
    except ApiError as error:
        form.fail(error)
        return render_referral(referral_id, step_form=form, failed_step="claim", status=422)
    return redirect(url_for("referrals.referral", referral_id=referral_id))


@referrals.route("/referrals/<referral_id>/comments", methods=["POST"])
def comment(referral_id: str) -> Any:
    form = FormState.from_request(COMMENT_FIELDS)
    try:
        console_clients().referrals.comment(
            referral_id, form.value("body"), idempotency_key=form.idempotency_key
        )
    except ApiError as error:
        form.fail(error)
        return render_referral(referral_id, comment_form=form, status=422)
    return redirect(url_for("referrals.referral", referral_id=referral_id, _anchor="comments"))
