"""The signals API: any agency (staff or system) reports a family in trouble; coordinators
triage. A reporter sees its own agency's signals; coordinators see them all."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.referrals import signals as rules
from services.referrals.models import Signal, tables
from services.referrals.schemas import (
    AcceptSignalIn,
    ReasonIn,
    SignalArgs,
    SignalIn,
    SignalOut,
    SignalPage,
)
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import ADMIN, AGENCY_STAFF, AGENCY_SYSTEM, COORDINATOR, LEAD_SPECIALIST
from shared.db import utcnow
from shared.errors import NotFound
from shared.http import db_session, idempotent, opora_app, paginate

signals = Blueprint("signals", __name__, url_prefix="/signals", description="Signals in")

REPORTERS = (AGENCY_STAFF, AGENCY_SYSTEM, LEAD_SPECIALIST, COORDINATOR)
TRIAGE = (COORDINATOR, ADMIN)
FAMILY_FIELDS = ["family", "observed"]


def _audit(signal: Signal, action: str, reason: str | None = None) -> None:
    audit.record(
        db_session(),
        tables,
        action=action,
        entity="signal",
        entity_id=signal.id,
        family_id=signal.family_id,
        fields=FAMILY_FIELDS,
        reason=reason,
    )


def _visible(signal_id: str, *, for_update: bool = False) -> Signal:
    signal = rules.get_signal(db_session(), signal_id, for_update=for_update)
    principal = current_principal()
    if not principal.has_role(*TRIAGE) and signal.reporter_agency_id != principal.agency_id:
        raise NotFound(f"no signal {signal_id}")
    return signal


@signals.route("", methods=["POST"])
@signals.arguments(SignalIn)
@signals.response(201, SignalOut)
@require(*REPORTERS)
@idempotent
def report_signal(data: dict[str, Any]) -> Any:
    """Red signals are announced to the coordinators at once."""
    principal = current_principal()
    signal = rules.report(
        db_session(),
        data,
        reporter_id=principal.subject,
        reporter_agency_id=principal.agency_id,
        now=utcnow(),
        rules=rules.SignalRules.from_env(opora_app().settings.options),
    )
    _audit(signal, "create")
    return signal, 201, {"Location": f"/signals/{signal.id}"}


@signals.route("", methods=["GET"])
@signals.arguments(SignalArgs, location="query")
@signals.response(200, SignalPage)
@require(*REPORTERS, ADMIN)
def list_signals(args: dict[str, Any]) -> Any:
    """The triage queue: earliest deadline first."""
    principal = current_principal()
    stmt = select(Signal).order_by(Signal.triage_due_at, Signal.id)
    if not principal.has_role(*TRIAGE):
        stmt = stmt.where(Signal.reporter_agency_id == principal.agency_id)
    for name in ("status", "district"):
        if args.get(name):
            stmt = stmt.where(getattr(Signal, name) == args[name])
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    audit.record_families(
        db_session(),
        tables,
        action=audit.LIST,
        entity="signal",
        family_ids=[s.family_id for s in page["items"]],
        fields=FAMILY_FIELDS,
    )
    return page


@signals.route("/<signal_id>", methods=["GET"])
@signals.response(200, SignalOut)
@require(*REPORTERS, ADMIN)
def get_signal(signal_id: str) -> Any:
    signal = _visible(signal_id)
    _audit(signal, "read")
    return signal


@signals.route("/<signal_id>/accept", methods=["POST"])
@signals.arguments(AcceptSignalIn)
@signals.response(200, SignalOut)
@require(COORDINATOR)
@idempotent
def accept_signal(data: dict[str, Any], signal_id: str) -> Any:
    """The registry opens or attaches a case in ``preparatory`` from the published event."""
    signal = _visible(signal_id, for_update=True)
    rules.accept(
        db_session(),
        signal,
        by=current_principal().subject,
        family_id=data.get("family_id"),
        now=utcnow(),
    )
    _audit(signal, "update")
    return signal


@signals.route("/<signal_id>/dismiss", methods=["POST"])
@signals.arguments(ReasonIn)
@signals.response(200, SignalOut)
@require(COORDINATOR)
@idempotent
def dismiss_signal(data: dict[str, Any], signal_id: str) -> Any:
    signal = _visible(signal_id, for_update=True)
    rules.dismiss(
        db_session(), signal, by=current_principal().subject, reason=data["reason"], now=utcnow()
    )
    _audit(signal, "update", data["reason"])
    return signal
