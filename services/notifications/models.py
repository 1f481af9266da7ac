"""The notifications service's tables.

Read models kept from other services' events (recipients, raids and their attendees, cases,
measures, referrals), each person's preferences, and the messages with their history. A
message is one (source event, recipient, channel); its bodies are purged after the retention
period, its status and history stay.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UTCDateTime, new_id, utcnow
from shared.tables import infrastructure_tables


class Base(DeclarativeBase):
    """One metadata per service: each service has its own database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


tables = infrastructure_tables(Base.metadata)

MESSAGE_STATES = ("queued", "held", "sending", "sent", "delivered", "failed", "bounced")
CHANNELS = ("email", "sms")
PRIORITIES = ("urgent", "normal", "digest")
HOLD_REASONS = ("quiet_hours", "digest")


# --- read models -------------------------------------------------------------------------------


class Recipient(Base):
    """A staff member who can be notified, as the agency directory describes them.

    Coordinators are recipients with the role ``coordinator`` and their districts.
    """

    __tablename__ = "recipients"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_id: Mapped[str | None] = mapped_column(String(64), index=True)
    agency_kind: Mapped[str | None] = mapped_column(String(30))
    agency_name: Mapped[str | None] = mapped_column(String(200))
    # how the agency gets referrals: "link" = no account, its contacts answer by signed links
    agency_delivery: Mapped[str | None] = mapped_column(String(10))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    districts: Mapped[list[str]] = mapped_column(JSON, default=list)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    agency_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Preference(Base):
    """How a person wants to be told. ``source`` "directory" rows follow the agency directory's
    contact preferences; once the person sets their own ("self"), the directory's stop."""

    __tablename__ = "preferences"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[bool] = mapped_column(Boolean, default=True)
    sms: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str] = mapped_column(String(5), default="ru")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # None: no quiet hours
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    only_urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    digest_hour: Mapped[str] = mapped_column(String(5), default="08:00")
    source: Mapped[str] = mapped_column(String(10), default="directory")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnownRaid(Base):
    """A raid as its events describe it; ``sequence`` orders them (higher wins)."""

    __tablename__ = "known_raids"

    raid_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(120))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="planned")
    coordinator_id: Mapped[str | None] = mapped_column(String(120))
    raid_url: Mapped[str | None] = mapped_column(String(500))
    ics_url: Mapped[str | None] = mapped_column(String(500))
    ics: Mapped[str | None] = mapped_column(Text)
    sequence: Mapped[int] = mapped_column(Integer, default=-1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RaidAttendee(Base):
    """A person on a raid and their invitation's state."""

    __tablename__ = "raid_attendees"

    raid_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    participant_id: Mapped[str | None] = mapped_column(String(64))
    agency_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    state: Mapped[str] = mapped_column(String(12))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnownCase(Base):
    """A case and its lead specialist, for lead messages and measure reminders."""

    __tablename__ = "known_cases"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64))
    family_number: Mapped[str] = mapped_column(String(20))
    district: Mapped[str] = mapped_column(String(120))
    lead_person_id: Mapped[str | None] = mapped_column(String(120), index=True)
    stage: Mapped[str | None] = mapped_column(String(20))
    # the moment of the stage event applied (stage events may arrive out of order)
    stage_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnownMeasure(Base):
    """A plan measure's deadline and status, for due-soon and overdue reminders."""

    __tablename__ = "known_measures"

    measure_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    family_number: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(60))
    deadline: Mapped[dt.date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(20))
    measure_version: Mapped[int] = mapped_column(Integer)


class KnownReferral(Base):
    """A referral's status and due date, for reminders and status messages."""

    __tablename__ = "known_referrals"

    referral_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[str | None] = mapped_column(String(30))
    family_id: Mapped[str] = mapped_column(String(64))
    agency_id: Mapped[str | None] = mapped_column(String(64), index=True)
    measure_id: Mapped[str | None] = mapped_column(String(64))
    sender_id: Mapped[str | None] = mapped_column(String(120))
    service_code: Mapped[str] = mapped_column(String(60))
    urgency: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    referral_version: Mapped[int] = mapped_column(Integer)


class ReferralOwner(Base):
    """Who at the agency took a referral on (``referrals.referral.claimed``); a table of its
    own because a claim may arrive before the referral's first status event."""

    __tablename__ = "referral_owners"

    referral_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(120))
    referral_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- messages ----------------------------------------------------------------------------------


class Message(Base):
    """One message per (source event, recipient, channel), however often the event arrives.

    Bodies are rendered when the message is made (template key, version and language kept),
    so a later template edit does not change what was decided; they are purged after the
    retention period (``purged_at``).
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("source_event_id", "recipient_id", "channel"),
        Index(
            "ix_messages_due",
            "next_attempt_at",
            postgresql_where=text("state = 'queued'"),
            sqlite_where=text("state = 'queued'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source_event_id: Mapped[str] = mapped_column(String(120), index=True)
    source_event_type: Mapped[str] = mapped_column(String(120))
    recipient_id: Mapped[str] = mapped_column(String(64), index=True)
    # The one family the message concerns, when there is one: reading it is audited for it.
    family_id: Mapped[str | None] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(254))
    priority: Mapped[str] = mapped_column(String(10), default="normal", server_default="normal")
    template_key: Mapped[str | None] = mapped_column(String(60))
    template_version: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(5))
    subject: Mapped[str | None] = mapped_column(String(300))
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    # [{"filename", "content_type", "text"}]: the raid's .ics, purged with the bodies
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    link: Mapped[str | None] = mapped_column(String(500))  # what a digest lists
    # an SMS links to /r/<short_code>, which redirects to ``link`` (one UCS-2 segment)
    short_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    # capability links (signed links, short links to them), Fernet-sealed: the bodies carry
    # markers and get the links back only at delivery (capabilities.py)
    sealed_links: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default="queued", index=True)
    hold_reason: Mapped[str | None] = mapped_column(String(12))
    held_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    provider_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    provider: Mapped[str | None] = mapped_column(String(120))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    segments: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    resend_of: Mapped[str | None] = mapped_column(String(36), index=True)
    digest_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    body_purged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @property
    def body(self) -> str | None:
        """The text body under its name before 0003 (read-only, for older callers)."""
        return self.text


# the table itself, for the Core statements of the delivery's hot paths
MESSAGES = cast(Table, Message.__table__)


class MessageHistory(Base):
    """Every state change of a message: when, from, to, through which provider, and why."""

    __tablename__ = "message_history"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    provider: Mapped[str | None] = mapped_column(String(120))
    detail: Mapped[str | None] = mapped_column(String(500))


class ProviderRef(Base):
    """A provider's id of (a part of) a message, for receipts; one row per SMS segment id."""

    __tablename__ = "provider_refs"

    provider: Mapped[str] = mapped_column(String(120), primary_key=True)
    provider_message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    state: Mapped[str | None] = mapped_column(String(12))
    at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# The template store (N2's) shares this metadata, so migrations and the app see its table.
from services.notifications import models_templates as _templates  # noqa: E402,F401
