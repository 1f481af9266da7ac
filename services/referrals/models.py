"""The referrals service's tables: the agency directory (agencies, contacts, routing rules),
referrals with their status history and comments, signals in, and the read model of the
families' consents learned from the registry's agreement events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.referrals.changes import ChangeMark
from shared.db import NAMING_CONVENTION, UTCDateTime, new_id, utcnow
from shared.tables import infrastructure_tables


class Base(DeclarativeBase):
    """One metadata per service: each service has its own database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


tables = infrastructure_tables(Base.metadata)

# FHIR ServiceRequest.priority, so a health agency reads it without a mapping table.
URGENCIES = ("routine", "urgent", "asap", "stat")
SIGNAL_PRIORITIES = ("red", "amber", "green")
SIGNAL_STATUSES = ("new", "accepted", "dismissed")
# How an agency gets its referrals: it pulls over the HTTP API, we POST to its webhooks, its
# system reads an AMQP queue, or (no system, no account) its contacts get signed links.
DELIVERIES = ("api", "webhook", "amqp", "link")
OVERDUE_KINDS = ("acknowledge", "complete")


class Agency(Base):
    """An agency of the prevention system; its id is what tokens carry as ``agency``."""

    __tablename__ = "agencies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(30), index=True)
    districts: Mapped[list[str]] = mapped_column(JSON)
    services: Mapped[list[str]] = mapped_column(JSON)
    working_hours: Mapped[dict[str, Any]] = mapped_column(JSON)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    delivery: Mapped[str] = mapped_column(String(10), default="api", server_default="api")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="agency", cascade="all, delete-orphan", order_by="Contact.person_id"
    )


class Contact(Base):
    """A staff member of an agency: the person id is a token's subject."""

    __tablename__ = "agency_contacts"
    __table_args__ = (UniqueConstraint("agency_id", "person_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[str] = mapped_column(String(120), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(60))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    agency: Mapped[Agency] = relationship(back_populates="contacts")


class RoutingRule(Base):
    """Which agency receives a referral for a service in a district (``*`` = any district)."""

    __tablename__ = "routing_rules"
    __table_args__ = (UniqueConstraint("service_code", "district"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    service_code: Mapped[str] = mapped_column(String(60))
    district: Mapped[str] = mapped_column(String(120))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnswerLinkFloor(Base):
    """A referral's answer links issued before ``issued_from`` no longer open it: notifications
    sent the link again (``notifications.link.reissued``) and the old one may be in wrong
    hands. Kept apart from the referral, which did not change."""

    __tablename__ = "answer_link_floors"

    referral_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    issued_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Consent(Base):
    """Read model of a family's agreement (registry): to which agency kinds data may go."""

    __tablename__ = "consents"

    agreement_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    case_id: Mapped[str] = mapped_column(String(36))
    signed_on: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    data_processing: Mapped[bool] = mapped_column(Boolean)
    share_with: Mapped[list[str]] = mapped_column(JSON)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the family withdrew it: none of its consents holds from then on
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Referral(Base):
    """A request to an agency to act for a family. It carries only what the agency needs: the
    family's registry id and number, never the family file."""

    __tablename__ = "referrals"
    __table_args__ = (Index("ix_referrals_change", "change_seq", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # "R-2026-000123": per-year sequence from ``referral_counters`` (see numbering.py)
    number: Mapped[str | None] = mapped_column(String(20), unique=True)
    measure_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    followup_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    family_number: Mapped[str] = mapped_column(String(20))
    district: Mapped[str] = mapped_column(String(120))
    agency_id: Mapped[str | None] = mapped_column(String(64), index=True)
    service_code: Mapped[str] = mapped_column(String(60))
    reason: Mapped[str] = mapped_column(Text)
    urgency: Mapped[str] = mapped_column(String(10))
    deadline: Mapped[dt.date | None] = mapped_column(Date)
    contact: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    hold_note: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[str | None] = mapped_column(String(120))
    sender_id: Mapped[str] = mapped_column(String(120), index=True)
    sender_agency_id: Mapped[str | None] = mapped_column(String(64))
    consent_override: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    consent_override_reason: Mapped[str | None] = mapped_column(Text)
    # SLA (sla.py): set when the referral is sent; the overdue job keeps one notice per
    # threshold: level 1 = reminded (referral.overdue), 2 = escalated to the coordinator.
    acknowledge_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    overdue_kind: Mapped[str | None] = mapped_column(String(12))
    overdue_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Set by every insert and update, in commit order: the changes feed's position (changes.py).
    change_seq: Mapped[int] = mapped_column(BigInteger, default=ChangeMark(), onupdate=ChangeMark())

    history: Mapped[list[StatusChange]] = relationship(
        back_populates="referral", cascade="all, delete-orphan", order_by="StatusChange.seq"
    )
    comments: Mapped[list[Comment]] = relationship(
        back_populates="referral", cascade="all, delete-orphan", order_by="Comment.at"
    )


class StatusChange(Base):
    """One dated step of a referral's life, by whom and why; never changed afterwards."""

    __tablename__ = "referral_status_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    referral_id: Mapped[str] = mapped_column(
        ForeignKey("referrals.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(120))

    referral: Mapped[Referral] = relationship(back_populates="history")


class Comment(Base):
    """The thread between the sending specialist and the agency."""

    __tablename__ = "referral_comments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    referral_id: Mapped[str] = mapped_column(
        ForeignKey("referrals.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[str] = mapped_column(String(120))
    author_agency_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    referral: Mapped[Referral] = relationship(back_populates="comments")


class Signal(Base):
    """An agency's report of a family in trouble, waiting for a coordinator's triage."""

    __tablename__ = "signals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    reporter_id: Mapped[str] = mapped_column(String(120))
    reporter_agency_id: Mapped[str | None] = mapped_column(String(64), index=True)
    district: Mapped[str] = mapped_column(String(120), index=True)
    observed: Mapped[str] = mapped_column(Text)
    observed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    family: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    triage_due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(120))
    dismiss_reason: Mapped[str | None] = mapped_column(Text)
    family_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The registry refused the acceptance (``registry.signal.refused``): back in triage, why.
    refusal_reason: Mapped[str | None] = mapped_column(String(40))
    refusal_detail: Mapped[str | None] = mapped_column(Text)
    refused_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class KnownFamily(Base):
    """What a referral needs of a family it was not handed: the registry number and district,
    learned from the registry's family events (follow-ups from raids carry only the id)."""

    __tablename__ = "known_families"

    family_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str] = mapped_column(String(20))
    district: Mapped[str] = mapped_column(String(120))
    family_version: Mapped[int] = mapped_column(Integer)


class ReferralCounter(Base):
    """The last referral number given in a year: one row per year, bumped atomically."""

    __tablename__ = "referral_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer)


WEBHOOK_STATUSES = ("pending", "delivered", "failed")


class WebhookSubscription(Base):
    """An agency's endpoint for referral events. The signing secret is kept encrypted (see
    webhooks.py): HMAC needs the secret itself, so a hash could not sign."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    secret_encrypted: Mapped[str] = mapped_column(Text)
    secret_hint: Mapped[str] = mapped_column(String(12))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    secret_rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """The outbox of webhooks: one event for one subscription; its id is the receiver's
    dedup key (``X-Opora-Delivery``) and stays the same across retries."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    agency_id: Mapped[str] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(80))
    event_id: Mapped[str] = mapped_column(String(36))
    referral_id: Mapped[str | None] = mapped_column(String(36))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    log: Mapped[list[WebhookAttempt]] = relationship(
        cascade="all, delete-orphan", order_by="WebhookAttempt.number"
    )


class WebhookAttempt(Base):
    """One POST of a delivery: when, how long, what came back."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
