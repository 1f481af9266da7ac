"""The roles a principal can hold; tokens and API keys carry these names."""

from __future__ import annotations

LEAD_SPECIALIST = "lead_specialist"
COORDINATOR = "coordinator"
AGENCY_STAFF = "agency_staff"
AUDITOR = "auditor"
ADMIN = "admin"
AGENCY_SYSTEM = "agency_system"

ALL_ROLES: frozenset[str] = frozenset(
    {LEAD_SPECIALIST, COORDINATOR, AGENCY_STAFF, AUDITOR, ADMIN, AGENCY_SYSTEM}
)

# Everyone but the auditor, who reads and never acts (not even on their own preferences).
WRITING_ROLES: frozenset[str] = ALL_ROLES - {AUDITOR}
