"""The raids service's tables: its read model of families, learned from registry events."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Float, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UTCDateTime
from shared.tables import infrastructure_tables


class Base(DeclarativeBase):
    """One metadata per service: each service has its own database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


tables = infrastructure_tables(Base.metadata)


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
    family_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
