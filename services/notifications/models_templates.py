"""Stored versions of the message templates; the built-in defaults live in template_defaults/."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.notifications.models import Base
from shared.db import UTCDateTime, utcnow


class TemplateVersion(Base):
    """One saved version of a (key, channel, language) template; rows are never edited in place.

    At most one version per (key, channel, language) is active; none active means the
    built-in default (version 0) is used.
    """

    __tablename__ = "template_versions"
    __table_args__ = (
        UniqueConstraint("key", "channel", "language", "version"),
        Index("ix_template_versions_lookup", "key", "channel", "language", "active"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(60))
    channel: Mapped[str] = mapped_column(String(10))
    language: Mapped[str] = mapped_column(String(5))
    version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(String(500))
