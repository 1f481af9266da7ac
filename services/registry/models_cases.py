"""Tables of a family's support episodes: cases, approvals, agreements, the plan's measures,
problems and strengths, the contact log and assessments. Import them from ``models``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from services.registry.models import Base
from shared.db import UTCDateTime, new_id, utcnow


class Case(Base):
    """One support episode; at most one per family is open (``closed_on`` is null)."""

    __tablename__ = "cases"
    __table_args__ = (
        Index(
            "uq_cases_one_open_per_family",
            "family_id",
            unique=True,
            postgresql_where=text("closed_on IS NULL"),
            sqlite_where=text("closed_on IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(20), index=True)
    opened_on: Mapped[dt.date] = mapped_column(Date, index=True)
    closed_on: Mapped[dt.date | None] = mapped_column(Date, index=True)
    reentry: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(80))
    entry_category: Mapped[str] = mapped_column(String(20))
    close_category: Mapped[str | None] = mapped_column(String(20))
    lead_specialist: Mapped[str | None] = mapped_column(String(120), index=True)
    opened_by: Mapped[str] = mapped_column(String(120))
    analysis: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(30))
    decision_ref: Mapped[str | None] = mapped_column(String(120))
    decision_date: Mapped[dt.date | None] = mapped_column(Date)
    plan_approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    plan_approved_by: Mapped[str | None] = mapped_column(String(120))
    stage_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Approval(Base):
    """A request to approve the plan or the closing, and the approver's decision."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    requested_by: Mapped[str] = mapped_column(String(120))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(120))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(Text)
    decision_ref: Mapped[str | None] = mapped_column(String(120))
    decision_date: Mapped[dt.date | None] = mapped_column(Date)


class LeadAssignment(Base):
    """Who led the case when; the open row (``ended_at`` null) is the current lead."""

    __tablename__ = "lead_assignments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    specialist: Mapped[str] = mapped_column(String(120))
    assigned_by: Mapped[str] = mapped_column(String(120))
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class Agreement(Base):
    """The family's signed agreement, with the kinds of agencies its data may be shared with.
    A newer one replaces it; the family may withdraw it (``withdrawn_at``), which ends every
    consent it gave."""

    __tablename__ = "agreements"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    signed_on: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    consent_data_processing: Mapped[bool] = mapped_column(Boolean)
    share_with: Mapped[list[str]] = mapped_column(JSON)
    recorded_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    withdrawn_by: Mapped[str | None] = mapped_column(String(120))
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)


class Measure(Base):
    """One action of the support plan (IPR), assigned to an agency or to the centre itself."""

    __tablename__ = "measures"
    __table_args__ = (Index("ix_measures_status_deadline", "status", "deadline"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(60))
    agency_id: Mapped[str | None] = mapped_column(String(64), index=True)
    deadline: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="planned")
    result_note: Mapped[str | None] = mapped_column(Text)
    not_done_reason: Mapped[str | None] = mapped_column(Text)
    referral_id: Mapped[str | None] = mapped_column(String(64))
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Finding(Base):
    """A problem identified or an internal resource (strength) found, per case, dated."""

    __tablename__ = "findings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    code: Mapped[str] = mapped_column(String(60))
    note: Mapped[str | None] = mapped_column(Text)
    identified_on: Mapped[dt.date] = mapped_column(Date)
    resolved_on: Mapped[dt.date | None] = mapped_column(Date)
    recorded_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=utcnow)


class ContactEntry(Base):
    """The contact log: patronage visits, counselling, conversations, leisure, raid visits."""

    __tablename__ = "contact_entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    occurred_on: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(30))
    staff: Mapped[list[str]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    source_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    recorded_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Assessment(Base):
    """A dated score 1-5 in each of the eight domains of the family's situation."""

    __tablename__ = "assessments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    assessed_on: Mapped[dt.date] = mapped_column(Date)
    scores: Mapped[dict[str, int]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    assessed_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
