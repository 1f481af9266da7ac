"""Who sees what of a family: casework roles see all; agency staff see families with a measure
assigned to their agency (or, in an emergency, after breaking the glass), and only the fields
their work needs; auditors see statistics only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import events
from services.registry.models import AgencyAccess, Family, GlassBreak
from shared.auth.context import current_principal
from shared.auth.roles import AGENCY_STAFF, AGENCY_SYSTEM, COORDINATOR, LEAD_SPECIALIST
from shared.db import utcnow
from shared.errors import Forbidden, RuleViolation

FULL = "full"
AGENCY = "agency"
EMERGENCY = "emergency"
CASEWORK = (LEAD_SPECIALIST, COORDINATOR)
AGENCY_ROLES = (AGENCY_STAFF, AGENCY_SYSTEM)
GLASS_DURATION = dt.timedelta(minutes=30)
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


def active_glass(session: Session, family_id: str, subject: str) -> GlassBreak | None:
    return session.scalar(
        select(GlassBreak)
        .where(
            GlassBreak.family_id == family_id,
            GlassBreak.subject == subject,
            GlassBreak.expires_at > utcnow(),
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


def break_glass(session: Session, family: Family, reason: str) -> GlassBreak:
    """Emergency access for a short time: the reason is required and the coordinator is told."""
    principal = current_principal()
    if not principal.has_role(AGENCY_STAFF) or principal.has_role(*CASEWORK):
        raise Forbidden("breaking the glass is for agency staff outside the family's scope")
    if len(reason.strip()) < MIN_REASON:
        raise RuleViolation(
            "say why the emergency needs this family's data",
            errors={"reason": [f"at least {MIN_REASON} characters"]},
        )
    now = utcnow()
    grant = GlassBreak(
        family_id=family.id,
        subject=principal.subject,
        agency_id=principal.agency_id,
        reason=reason.strip(),
        granted_at=now,
        expires_at=now + GLASS_DURATION,
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
        },
    )
    return grant
