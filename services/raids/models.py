"""The raids service's tables: raids, their participants, families and visit acts, declared
absences, recurring series, and the read model of families learned from registry events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import NAMING_CONVENTION, UTCDateTime, new_id, utcnow
from shared.tables import infrastructure_tables


class Base(DeclarativeBase):
    """One metadata per service: each service has its own database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


tables = infrastructure_tables(Base.metadata)

PURPOSES = ("planned_check", "complaint_followup", "seasonal_operation")
RAID_STATUSES = ("planned", "confirmed", "in_progress", "completed", "cancelled")
ACTIVE_STATUSES = ("planned", "confirmed", "in_progress")
INVITATION_STATES = ("invited", "confirmed", "declined", "withdrawn")
ABSENCE_KINDS = ("leave", "sick", "training", "other")
DEFAULT_TIMEZONE = "Europe/Moscow"


class KnownFamily(Base):
    """What raids needs to plan a visit; the registry stays the owner of the family."""

    __tablename__ = "known_families"

    family_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(20))
    district: Mapped[str] = mapped_column(String(120), index=True)
    settlement: Mapped[str] = mapped_column(String(120))
    address: Mapped[dict[str, object]] = mapped_column(JSON)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    display_name: Mapped[str] = mapped_column(String(300))
    children_count: Mapped[int | None] = mapped_column(Integer)
    removed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    family_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class RaidSeries(Base):
    """A recurring operation (e.g. monthly in a district); each occurrence is a raid of its own."""

    __tablename__ = "raid_series"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(120), index=True)
    frequency: Mapped[str] = mapped_column(String(10))
    interval: Mapped[int] = mapped_column(Integer)
    occurrences: Mapped[int] = mapped_column(Integer)
    first_date: Mapped[dt.date] = mapped_column(Date)
    coordinator_id: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Raid(Base):
    """A joint interagency home-visit raid. Times are UTC; ``timezone`` is for display and ICS."""

    __tablename__ = "raids"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(30))
    district: Mapped[str] = mapped_column(String(120), index=True)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    timezone: Mapped[str] = mapped_column(String(60), default=DEFAULT_TIMEZONE)
    status: Mapped[str] = mapped_column(String(20), default="planned", index=True)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    completion_note: Mapped[str | None] = mapped_column(Text)
    coordinator_id: Mapped[str] = mapped_column(String(120), index=True)
    organizer_name: Mapped[str | None] = mapped_column(String(200))
    organizer_email: Mapped[str] = mapped_column(String(254))
    centre_name: Mapped[str] = mapped_column(String(200))
    centre_latitude: Mapped[float] = mapped_column(Float)
    centre_longitude: Mapped[float] = mapped_column(Float)
    minutes_per_visit: Mapped[int] = mapped_column(Integer, default=30)
    speed_kmh: Mapped[float] = mapped_column(Float, default=50.0)
    road_factor: Mapped[float] = mapped_column(Float, default=1.3)
    route: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    series_id: Mapped[str | None] = mapped_column(ForeignKey("raid_series.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    participants: Mapped[list[Participant]] = relationship(
        back_populates="raid", cascade="all, delete-orphan", order_by="Participant.invited_at"
    )
    stops: Mapped[list[RaidFamily]] = relationship(
        back_populates="raid", cascade="all, delete-orphan", order_by="RaidFamily.position"
    )
    visits: Mapped[list[VisitAct]] = relationship(
        back_populates="raid", cascade="all, delete-orphan", order_by="VisitAct.recorded_at"
    )


class RaidFamily(Base):
    """A family on a raid, at its place in the visit order."""

    __tablename__ = "raid_families"

    raid_id: Mapped[str] = mapped_column(
        ForeignKey("raids.id", ondelete="CASCADE"), primary_key=True
    )
    family_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)

    raid: Mapped[Raid] = relationship(back_populates="stops")


class Participant(Base):
    """A person from an agency taking part in a raid; ids come from the referrals directory."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("raid_id", "person_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    raid_id: Mapped[str] = mapped_column(ForeignKey("raids.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[str] = mapped_column(String(120), index=True)
    agency_id: Mapped[str] = mapped_column(String(120))
    agency_kind: Mapped[str] = mapped_column(String(60))
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(60))
    state: Mapped[str] = mapped_column(String(20), default="invited")
    decline_reason: Mapped[str | None] = mapped_column(Text)
    replaces_id: Mapped[str | None] = mapped_column(String(36))
    invited_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    responded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    raid: Mapped[Raid] = relationship(back_populates="participants")


class Absence(Base):
    """A declared absence (leave, sick days) of a person: no raid may count on them then."""

    __tablename__ = "absences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(String(120), index=True)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(500))
    recorded_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class VisitAct(Base):
    """The findings of one visit to one family on one raid (акт обследования)."""

    __tablename__ = "visit_acts"
    __table_args__ = (UniqueConstraint("raid_id", "family_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    raid_id: Mapped[str] = mapped_column(ForeignKey("raids.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    visited_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    conditions: Mapped[dict[str, object]] = mapped_column(JSON)
    children_seen: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[str | None] = mapped_column(Text)
    actions_taken: Mapped[str | None] = mapped_column(Text)
    urgent_concern: Mapped[bool] = mapped_column(Boolean, default=False)
    urgent_reason: Mapped[str | None] = mapped_column(Text)
    followups: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    participant_ids: Mapped[list[str]] = mapped_column(JSON)
    recorded_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    raid: Mapped[Raid] = relationship(back_populates="visits")
