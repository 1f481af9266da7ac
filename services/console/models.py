"""The console's own tables: server-side sessions and each person's saved views of lists (it
keeps no copy of the services' data)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Index, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UTCDateTime, new_id, utcnow


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class WebSession(Base):
    """One signed-in browser. ``id`` is a hash of the cookie's value, so a copy of this table
    does not let anyone take over a session."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_web_sessions_expires_at", "expires_at"),)


class SavedView(Base):
    """A list's filters and search saved under a name by one person (the data bank's "my
    district's overdue families"). The search text stays here, never in a URL."""

    __tablename__ = "saved_views"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(String(120), index=True)
    area: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
