"""The registry's tables: the data bank of families, their cases, support plans and assessments,
plus the shared infrastructure tables."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import NAMING_CONVENTION, UTCDateTime, new_id, utcnow
from shared.tables import infrastructure_tables


class Base(DeclarativeBase):
    """One metadata per service: each service has its own database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


tables = infrastructure_tables(Base.metadata)

CATEGORIES = ("sop", "risk_group", "tzhs")
MEMBER_ROLES = ("mother", "father", "guardian", "child", "other")
ADDRESS_FIELDS = (
    "region",
    "district",
    "settlement",
    "street",
    "house",
    "flat",
    "latitude",
    "longitude",
)
CONTACT_KINDS = ("phone", "email")
STAGES = ("preparatory", "support", "final", "closed")
OUTCOMES = (
    "improvement",
    "no_improvement",
    "moved_away",
    "children_came_of_age",
    "transferred",
    "other",
)
MEASURE_STATUSES = ("planned", "referred", "in_progress", "done", "not_done", "cancelled")
OPEN_MEASURE_STATUSES = ("planned", "referred", "in_progress")
CONTACT_LOG_KINDS = (
    "patronage_visit",
    "counselling_individual",
    "counselling_family",
    "conversation",
    "leisure_activity",
    "raid_visit",
    "signal",
    "other",
)
ASSESSMENT_DOMAINS = (
    "child_safety",
    "parenting",
    "material_conditions",
    "housing",
    "health",
    "education",
    "social_ties",
    "parents_employment",
)


class Family(Base):
    """A family in the data bank; ``stage`` and ``lead_specialist`` mirror its open case so that
    lists filter and sort without joins."""

    __tablename__ = "families"
    __table_args__ = (
        # settlement filters and the duplicate check's same-house look-up
        Index("ix_families_address", "settlement", "street", "house"),
        Index(
            "ix_families_search_names_trgm",
            "search_names",
            postgresql_using="gin",
            postgresql_ops={"search_names": "gin_trgm_ops"},
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    category: Mapped[str] = mapped_column(String(20), index=True)
    region: Mapped[str] = mapped_column(String(120))
    district: Mapped[str] = mapped_column(String(120), index=True)
    settlement: Mapped[str] = mapped_column(String(120))
    street: Mapped[str | None] = mapped_column(String(200))
    house: Mapped[str | None] = mapped_column(String(20))
    flat: Mapped[str | None] = mapped_column(String(20))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    notes: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    distance_km: Mapped[float | None] = mapped_column(Float)
    social_environment: Mapped[str | None] = mapped_column(Text)
    display_name: Mapped[str] = mapped_column(String(300), server_default="", index=True)
    search_names: Mapped[str] = mapped_column(Text, server_default="")
    in_bank: Mapped[bool] = mapped_column(Boolean, server_default="1", index=True)
    stage: Mapped[str | None] = mapped_column(String(20), index=True)
    lead_specialist: Mapped[str | None] = mapped_column(String(120), index=True)
    reported_by_agency: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(120))
    # A family registered from an accepted signal: what the coordinator still has to complete
    # (e.g. ``address.house``, ``members.adult``); null once nothing is missing.
    missing_fields: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))

    members: Mapped[list[Member]] = relationship(
        back_populates="family", cascade="all, delete-orphan", order_by="Member.position"
    )
    contacts: Mapped[list[Contact]] = relationship(
        cascade="all, delete-orphan", order_by="Contact.position"
    )


class NameWord(Base):
    """Every name word (as its skeleton) any family has had: where the search looks up typos.
    GiST, not GIN: the planner takes a GiST index for ``word % :typed`` and its nearest-first
    order, where it would scan tens of thousands of words past a GIN one."""

    __tablename__ = "name_words"
    __table_args__ = (
        Index(
            "ix_name_words_word_trgm",
            "word",
            postgresql_using="gist",
            postgresql_ops={"word": "gist_trgm_ops"},
        ),
    )

    word: Mapped[str] = mapped_column(String(120), primary_key=True)


class FamilyAddress(Base):
    """Where the family lived from ``valid_from`` on: statistics count a family in the district
    it lived in at the moment that counts, not where it lives now."""

    __tablename__ = "family_addresses"
    __table_args__ = (Index("ix_family_addresses_family_from", "family_id", "valid_from"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(ForeignKey("families.id", ondelete="CASCADE"))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    region: Mapped[str] = mapped_column(String(120))
    district: Mapped[str] = mapped_column(String(120), index=True)
    settlement: Mapped[str] = mapped_column(String(120))
    street: Mapped[str | None] = mapped_column(String(200))
    house: Mapped[str | None] = mapped_column(String(20))
    flat: Mapped[str | None] = mapped_column(String(20))
    recorded_by: Mapped[str | None] = mapped_column(String(120))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Member(Base):
    """A person of the household; the name keys let duplicate detection find them by index."""

    __tablename__ = "members"
    __table_args__ = (Index("ix_members_surname_given", "surname_key", "given_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    full_name: Mapped[str] = mapped_column(String(300))
    birth_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    school: Mapped[str | None] = mapped_column(String(200))
    school_class: Mapped[str | None] = mapped_column(String(20))
    former_surnames: Mapped[list[str] | None] = mapped_column(JSON)
    surname_key: Mapped[str] = mapped_column(String(120), server_default="")
    given_key: Mapped[str] = mapped_column(String(120), server_default="")

    family: Mapped[Family] = relationship(back_populates="members")


class Contact(Base):
    """A phone or email; ``consent`` says whether the family agreed to be notified there."""

    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_on: Mapped[dt.date | None] = mapped_column(Date)


class CategoryChange(Base):
    """Every category a family has had: dated, justified, by whom (the first one at entry)."""

    __tablename__ = "category_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    category_from: Mapped[str | None] = mapped_column(String(20))
    category_to: Mapped[str] = mapped_column(String(20))
    changed_on: Mapped[dt.date] = mapped_column(Date)
    justification: Mapped[str] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FamilyLink(Base):
    """A report of a family that was linked to the existing record instead of creating another."""

    __tablename__ = "family_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    merged_family_id: Mapped[str | None] = mapped_column(String(36))
    reported_by_agency: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    members_added: Mapped[int] = mapped_column(Integer, default=0)
    linked_by: Mapped[str] = mapped_column(String(120))
    linked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnownAgency(Base):
    """Read model of the referrals directory: an agency's kind, which the family's consent names.
    Learned from ``referrals.agency.created``/``updated``; the newest ``agency_version`` wins."""

    __tablename__ = "known_agencies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    agency_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class GlassBreak(Base):
    """An emergency access outside one's scope: reason required, short-lived, coordinator told."""

    __tablename__ = "glass_breaks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(120), index=True)
    agency_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    minutes: Mapped[int | None] = mapped_column(Integer)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(120))

    family: Mapped[Family] = relationship()


INTAKE_STATES = ("pending", "attached", "registered")


class Intake(Base):
    """An accepted signal that came without a registry family id, and what became of it: attached
    to a matched family, registered as a new one, or pending a coordinator's choice among
    several candidates. One per signal, which makes the consumer idempotent by signal."""

    __tablename__ = "intakes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    signal_id: Mapped[str] = mapped_column(String(64), unique=True)
    district: Mapped[str] = mapped_column(String(120), index=True)
    priority: Mapped[str | None] = mapped_column(String(10))
    reporter_agency_id: Mapped[str | None] = mapped_column(String(64))
    accepted_by: Mapped[str] = mapped_column(String(120))
    accepted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    known: Mapped[dict[str, object]] = mapped_column(JSON)
    candidates: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), index=True)
    resolution: Mapped[str | None] = mapped_column(String(20))
    family_id: Mapped[str | None] = mapped_column(String(36))
    case_id: Mapped[str | None] = mapped_column(String(36))
    resolved_by: Mapped[str | None] = mapped_column(String(120))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class CatalogueEntry(Base):
    """Codes admins add to the built-in catalogues (problems, strengths, measure kinds)."""

    __tablename__ = "catalogue_entries"

    catalogue: Mapped[str] = mapped_column(String(20), primary_key=True)
    code: Mapped[str] = mapped_column(String(60), primary_key=True)
    title_ru: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


from services.registry.models_cases import (  # noqa: E402  (tables of the same metadata)
    Agreement,
    Approval,
    Assessment,
    Case,
    ContactEntry,
    Finding,
    LeadAssignment,
    Measure,
)

__all__ = [
    "Agreement",
    "Approval",
    "Assessment",
    "Case",
    "ContactEntry",
    "Finding",
    "LeadAssignment",
    "Measure",
]
