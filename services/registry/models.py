"""The registry's tables: families and their members, plus the shared infrastructure tables."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, Float, ForeignKey, Integer, MetaData, String, Text
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


class Family(Base):
    __tablename__ = "families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    category: Mapped[str] = mapped_column(String(20), index=True)
    region: Mapped[str] = mapped_column(String(120))
    district: Mapped[str] = mapped_column(String(120), index=True)
    settlement: Mapped[str] = mapped_column(String(120), index=True)
    street: Mapped[str | None] = mapped_column(String(200))
    house: Mapped[str | None] = mapped_column(String(20))
    flat: Mapped[str | None] = mapped_column(String(20))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    notes: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    members: Mapped[list[Member]] = relationship(
        back_populates="family", cascade="all, delete-orphan", order_by="Member.position"
    )


class Member(Base):
    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    full_name: Mapped[str] = mapped_column(String(300))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    school: Mapped[str | None] = mapped_column(String(200))

    family: Mapped[Family] = relationship(back_populates="members")
