"""Who sees what of a family: casework roles see all; agency staff see families with a measure
assigned to their agency (or, in an emergency, after breaking the glass), and only the fields
their work needs; auditors see statistics only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from services.registry import events
from services.registry.models import AgencyAccess, Family, GlassBreak
from shared.auth.context import current_principal
from shared.auth.roles import AGENCY_STAFF, AGENCY_SYSTEM, COORDINATOR, LEAD_SPECIALIST
from shared.config import ConfigError
from shared.db import utcnow
from shared.errors import Forbidden, NotFound, RuleViolation

FULL = "full"
AGENCY = "agency"
EMERGENCY = "emergency"
CASEWORK = (LEAD_SPECIALIST, COORDINATOR)
AGENCY_ROLES = (AGENCY_STAFF, AGENCY_SYSTEM)
GLASS_MINUTES = 30  # when the request names no duration
GLASS_MAX_MINUTES = 120  # unless REGISTRY_BREAK_GLASS_MAX_MINUTES says otherwise
GLASS_MAX_ENV = "REGISTRY_BREAK_GLASS_MAX_MINUTES"
MIN_REASON = 10

# The family fields each view shows (the audit names them).
FIELDS = {
    FULL: [
        "number",
        "category",
        "address",
        "members",
        "contacts",
        "notes",
        "social_environment",
        "category_history",
    ],
    AGENCY: ["number", "category", "address", "members", "measures_of_agency"],
    EMERGENCY: ["number", "category", "address", "members", "contacts", "lead_specialist"],
}


def agency_scope() -> str | None:
    """The agency a list is limited to; None for casework roles. Others may not list families."""
    principal = current_principal()
    if principal.has_role(*CASEWORK):
        return None
    if principal.has_role(*AGENCY_ROLES) and principal.agency_id:
        return principal.agency_id
    raise Forbidden("families are shown to casework roles and to agencies with a referral")


def glass_max_minutes(env: Mapping[str, str]) -> int:
    """The longest emergency access one may ask for, from REGISTRY_BREAK_GLASS_MAX_MINUTES
    (default 120) in ``Settings.options``. The app reads it at start-up too, so a wrong value
    stops the start."""
    raw = env.get(GLASS_MAX_ENV)
    if raw in (None, ""):
        return GLASS_MAX_MINUTES
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{GLASS_MAX_ENV} must be a whole number, got {raw!r}") from None
    if not 1 <= value <= 24 * 60:
        raise ConfigError(f"{GLASS_MAX_ENV} must be between 1 and 1440 minutes, got {value}")
    return value


def active_glass(
    session: Session, family_id: str, subject: str, now: dt.datetime | None = None
) -> GlassBreak | None:
    return session.scalar(
        select(GlassBreak)
        .where(
            GlassBreak.family_id == family_id,
            GlassBreak.subject == subject,
            GlassBreak.expires_at > (now or utcnow()),
            GlassBreak.ended_at.is_(None),
        )
        .order_by(GlassBreak.expires_at.desc())
        .limit(1)
    )


def access_level(session: Session, family_id: str) -> str:
    """FULL, AGENCY or EMERGENCY for the current principal; Forbidden when outside the scope."""
    principal = current_principal()
    if principal.has_role(*CASEWORK):
        return FULL
    if principal.has_role(*AGENCY_ROLES) and principal.agency_id:
        if session.get(AgencyAccess, (family_id, principal.agency_id)) is not None:
            return AGENCY
        if active_glass(session, family_id, principal.subject) is not None:
            return EMERGENCY
        raise Forbidden(
            "this family has no referral to your agency; in an emergency, break the glass "
            "(POST /families/{id}/break-glass with a reason)"
        )
    raise Forbidden("family records are not shown to this role")


def require_casework() -> None:
    if not current_principal().has_role(*CASEWORK):
        raise Forbidden("requires one of: lead_specialist, coordinator")


def break_glass(
    session: Session,
    family: Family,
    reason: str,
    minutes: int | None = None,
    *,
    now: dt.datetime | None = None,
    max_minutes: int = GLASS_MAX_MINUTES,
) -> GlassBreak:
    """Emergency access for a short time (``minutes``, default 30, at most the configured
    maximum): the reason is required and the coordinator is told."""
    principal = current_principal()
    if not principal.has_role(AGENCY_STAFF) or principal.has_role(*CASEWORK):
        raise Forbidden("breaking the glass is for agency staff outside the family's scope")
    if len(reason.strip()) < MIN_REASON:
        raise RuleViolation(
            "say why the emergency needs this family's data",
            errors={"reason": [f"at least {MIN_REASON} characters"]},
        )
    limit = max_minutes
    minutes = GLASS_MINUTES if minutes is None else minutes
    if not 1 <= minutes <= limit:
        raise RuleViolation(
            "emergency access is granted for a short time",
            errors={"minutes": [f"between 1 and {limit}"]},
        )
    now = now or utcnow()
    grant = GlassBreak(
        family_id=family.id,
        subject=principal.subject,
        agency_id=principal.agency_id,
        reason=reason.strip(),
        granted_at=now,
        expires_at=now + dt.timedelta(minutes=minutes),
        minutes=minutes,
    )
    session.add(grant)
    session.flush()
    events.publish(
        session,
        "registry.access.emergency_granted",
        {
            "grant_id": grant.id,
            "family_id": family.id,
            "number": family.number,
            "district": family.district,
            "subject": principal.subject,
            "agency_id": principal.agency_id,
            "expires_at": grant.expires_at.isoformat(),
            "minutes": minutes,
        },
    )
    return grant


def get_grant(session: Session, grant_id: str, family_id: str | None = None) -> GlassBreak:
    grant = session.get(GlassBreak, grant_id)
    if grant is None or (family_id is not None and grant.family_id != family_id):
        raise NotFound(f"no emergency access {grant_id}")
    return grant


def end_glass(session: Session, grant: GlassBreak, *, now: dt.datetime | None = None) -> bool:
    """The grantee, or a coordinator, ends the access before it expires. Ending one that has
    already ended or expired changes nothing (False); another staff member may not."""
    principal = current_principal()
    if principal.subject != grant.subject and not principal.has_role(COORDINATOR):
        raise Forbidden("only the grantee or a coordinator ends an emergency access")
    now = now or utcnow()
    if grant.ended_at is not None or grant.expires_at <= now:
        return False
    grant.ended_at = now
    grant.ended_by = principal.subject
    return True


def grants_scope() -> str | None:
    """Whose emergency accesses the current principal may list: everyone's for a coordinator
    (None), one's own for agency staff."""
    principal = current_principal()
    if principal.has_role(COORDINATOR):
        return None
    if principal.has_role(AGENCY_STAFF):
        return principal.subject
    raise Forbidden("emergency accesses are listed for coordinators and their grantees")


def grants(
    *,
    active: bool | None = None,
    since: dt.datetime | None = None,
    subject: str | None = None,
    now: dt.datetime | None = None,
) -> Select[Any]:
    """Emergency accesses, newest first: ``active`` only those in force, ``since`` those granted
    from then on (the recent ones), ``subject`` only that person's."""
    now = now or utcnow()
    stmt = select(GlassBreak)
    if subject is not None:
        stmt = stmt.where(GlassBreak.subject == subject)
    in_force = (GlassBreak.ended_at.is_(None)) & (GlassBreak.expires_at > now)
    if active is True:
        stmt = stmt.where(in_force)
    elif active is False:
        stmt = stmt.where(~in_force)
    if since is not None:
        stmt = stmt.where(GlassBreak.granted_at >= since)
    return stmt.order_by(GlassBreak.granted_at.desc(), GlassBreak.id)
