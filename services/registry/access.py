"""Who sees what of a family, in one place.

Casework roles see all; auditors see statistics only. An agency (its staff, its system) reads a
family only while **the family's consent covers it or its staff member broke the glass**:

* consent: the family's open case has a measure for the agency that is not cancelled, and the
  case's newest agreement in force on the caller's date (signed, not past ``valid_until``) is not
  withdrawn, consents to data processing and shares with the agency's kind (the kind as the
  referrals directory gives it, ``known_agencies``; ``family_centre`` runs the case under the
  agreement itself and needs no sharing, as in referrals). A newer agreement replaces the older;
  closing the case ends it all.
* break-the-glass: an emergency grant of the staff member, in force (not expired, not ended).

``agency_reads`` and ``glass_reads`` are that rule as SQL over ``Family``; the card
(``access_level``), the list and the search all filter by them, so a single family and a list
cannot disagree. ``measure_access`` tells the plan why an agency cannot act yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, cast, exists, literal, or_, select
from sqlalchemy.orm import Session, aliased

from services.registry import events
from services.registry.models import (
    Agreement,
    Case,
    Family,
    GlassBreak,
    KnownAgency,
    Measure,
)
from shared.auth.context import current_principal
from shared.auth.principal import Principal
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
# Kinds that need no sharing in the agreement (referrals' CONSENT_EXEMPT says the same).
CONSENT_EXEMPT = ("family_centre",)

# Why an agency cannot act on a family yet (the plan's ``agency_access.reason``).
ACCESS_REASONS = {
    "case_closed": "the case is closed: the family left the data bank",
    "measure_cancelled": "the measure is cancelled and the agency has no other one",
    "agency_unknown": "the agency is not (yet) in the directory, so its kind is unknown",
    "no_agreement": "the family has signed no agreement for this case",
    "agreement_expired": "the family's agreement is past its valid_until",
    "agreement_withdrawn": "the family withdrew its agreement",
    "no_data_processing_consent": "the agreement does not consent to data processing",
    "not_shared": "the agreement does not share the family's data with this kind of agency",
}

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


# --- the rule, as SQL over Family --------------------------------------------------------------


def _current_agreement_id(on: dt.date) -> Any:
    """The newest agreement of the enclosing query's case that is in force on ``on``."""
    newer = aliased(Agreement)
    return (
        select(newer.id)
        .where(newer.case_id == Case.id, newer.signed_on <= on, newer.valid_until >= on)
        .order_by(newer.signed_on.desc(), newer.recorded_at.desc(), newer.id.desc())
        .limit(1)
        .correlate(Case)  # the enclosing query's case: never a second FROM of all cases
        .scalar_subquery()
    )


def _consented(on: dt.date) -> ColumnElement[bool]:
    """The enclosing query's case's current agreement shares with the enclosing agency's kind.
    ``share_with`` is a JSON list of kinds (identifiers without quotes), so its text holds
    ``"kind"`` exactly when the list does, on PostgreSQL and SQLite alike."""
    current = aliased(Agreement)
    shares = exists().where(
        current.id == _current_agreement_id(on),
        current.withdrawn_at.is_(None),
        current.consent_data_processing.is_(True),
        cast(current.share_with, Text).like(literal('%"') + KnownAgency.kind + literal('"%')),
    )
    return or_(KnownAgency.kind.in_(CONSENT_EXEMPT), shares)


def agency_reads(agency_id: str, on: dt.date) -> ColumnElement[bool]:
    """True for the families (``Family``) agency ``agency_id`` reads under consent on ``on``."""
    return exists(
        select(Measure.id)
        .join(Case, Case.id == Measure.case_id)
        .join(KnownAgency, KnownAgency.id == Measure.agency_id)
        .where(
            Measure.family_id == Family.id,
            Measure.agency_id == agency_id,
            Measure.status != "cancelled",
            Case.closed_on.is_(None),
            _consented(on),
        )
    )


def glass_reads(subject: str, now: dt.datetime) -> ColumnElement[bool]:
    """True for the families (``Family``) ``subject`` broke the glass for, while it is in force."""
    return exists().where(
        GlassBreak.family_id == Family.id,
        GlassBreak.subject == subject,
        GlassBreak.expires_at > now,
        GlassBreak.ended_at.is_(None),
    )


def _agency_of(principal: Principal) -> str | None:
    if principal.has_role(*AGENCY_ROLES) and principal.agency_id:
        return principal.agency_id
    return None


def family_scope(
    principal: Principal, *, on: dt.date | None = None, now: dt.datetime | None = None
) -> ColumnElement[bool] | None:
    """The families ``principal`` may list: None (no limit) for casework roles; for an agency,
    those it reads under consent or by its staff member's glass. Others may not list families."""
    if principal.has_role(*CASEWORK):
        return None
    agency_id = _agency_of(principal)
    if agency_id is None:
        raise Forbidden("families are shown to casework roles and to agencies with a referral")
    now = now or utcnow()
    return or_(agency_reads(agency_id, on or now.date()), glass_reads(principal.subject, now))


def agency_scope() -> ColumnElement[bool] | None:
    """``family_scope`` of the request's principal, today."""
    return family_scope(current_principal())


def may_read(session: Session, family_id: str, clause: ColumnElement[bool]) -> bool:
    return session.scalar(select(Family.id).where(Family.id == family_id, clause)) is not None


def level_of(
    session: Session,
    principal: Principal,
    family_id: str,
    *,
    on: dt.date | None = None,
    now: dt.datetime | None = None,
) -> str:
    """FULL, AGENCY or EMERGENCY for ``principal``; Forbidden when outside the scope."""
    if principal.has_role(*CASEWORK):
        return FULL
    agency_id = _agency_of(principal)
    if agency_id is None:
        raise Forbidden("family records are not shown to this role")
    now = now or utcnow()
    if may_read(session, family_id, agency_reads(agency_id, on or now.date())):
        return AGENCY
    if may_read(session, family_id, glass_reads(principal.subject, now)):
        return EMERGENCY
    raise Forbidden(
        "the family's consent does not cover your agency; in an emergency, break the glass "
        "(POST /families/{id}/break-glass with a reason)"
    )


def access_level(session: Session, family_id: str) -> str:
    """``level_of`` the request's principal, now."""
    return level_of(session, current_principal(), family_id)


def measure_access(session: Session, measure: Measure, on: dt.date) -> dict[str, Any] | None:
    """For the plan: whether the measure's agency can act (reads the family) on ``on``, and if
    not, why (a code of ``ACCESS_REASONS``). None for the centre's own measures."""
    if not measure.agency_id:
        return None
    if may_read(session, measure.family_id, agency_reads(measure.agency_id, on)):
        return {"granted": True, "reason": None}
    return {"granted": False, "reason": _why_not(session, measure, on)}


def _why_not(session: Session, measure: Measure, on: dt.date) -> str:
    """The first condition of the rule that fails, in the order a specialist would fix them."""
    case = session.get(Case, measure.case_id)
    if case is None or case.closed_on is not None:
        return "case_closed"
    if measure.status == "cancelled":
        return "measure_cancelled"
    agency = session.get(KnownAgency, measure.agency_id)
    if agency is None:
        return "agency_unknown"
    agreements = list(
        session.scalars(
            select(Agreement)
            .where(Agreement.case_id == case.id, Agreement.signed_on <= on)
            .order_by(Agreement.signed_on.desc(), Agreement.recorded_at.desc(), Agreement.id.desc())
        )
    )
    current = next((a for a in agreements if a.valid_until >= on), None)
    if current is None:
        return "agreement_expired" if agreements else "no_agreement"
    if current.withdrawn_at is not None:
        return "agreement_withdrawn"
    if not current.consent_data_processing:
        return "no_data_processing_consent"
    return "not_shared"


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
