"""Server-side sessions in the console's database, shared by every console process.

A small store of our own rather than Flask-Session: Flask-Session's SQLAlchemy backend needs
Flask-SQLAlchemy and creates its table itself, outside Alembic, while every database here is a
plain SQLAlchemy 2 engine migrated by Alembic (shared.db). The cookie carries a random id only;
the table keys sessions by that id's SHA-256 and keeps the data as JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any

from flask import Flask, Request
from flask.sessions import SessionInterface, SessionMixin
from flask.wrappers import Response
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict

from services.console.models import WebSession
from shared.db import transaction, utcnow

COOKIE = "opora_session"
TOUCH_AFTER = dt.timedelta(minutes=5)
"""An unchanged session's expiry moves on at most this often (not one write per request)."""


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None) -> None:
        def on_update(_self: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.new = sid is None
        self.modified = False
        self.rotate = False
        self.touched_at: dt.datetime | None = None

    def regenerate(self) -> None:
        """A new id at sign-in and sign-out, so an id planted before sign-in is worth nothing."""
        self.rotate = True
        self.modified = True


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class DatabaseSessionInterface(SessionInterface):
    def __init__(self, sessions: sessionmaker[Session], lifetime: dt.timedelta) -> None:
        self.sessions = sessions
        self.lifetime = lifetime

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(COOKIE)
        if not sid or len(sid) > 100 or request.endpoint == "static":
            return ServerSession()  # a static file needs no session: no database read
        with transaction(self.sessions) as db:
            row = db.get(WebSession, _key(sid))
            if row is None or row.expires_at <= utcnow():
                return ServerSession()
            session = ServerSession(json.loads(row.data), sid=sid)
            session.touched_at = row.updated_at
            return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        now = utcnow()
        if session.rotate and session.sid:
            self._delete(session.sid)
            session.sid = None
        if not session:
            if session.sid:
                self._delete(session.sid)
                response.delete_cookie(COOKIE, domain=domain, path=path)
            return
        fresh = session.touched_at is not None and now - session.touched_at < TOUCH_AFTER
        if session.sid and not session.modified and fresh:
            return
        sid = session.sid or secrets.token_urlsafe(32)
        expires = now + self.lifetime
        with transaction(self.sessions) as db:
            db.merge(
                WebSession(
                    id=_key(sid),
                    data=json.dumps(dict(session), ensure_ascii=False),
                    expires_at=expires,
                    updated_at=now,
                )
            )
        response.set_cookie(
            COOKIE,
            sid,
            expires=expires,
            httponly=True,
            secure=self.get_cookie_secure(app),
            samesite="Lax",
            domain=domain,
            path=path,
        )
        response.vary.add("Cookie")

    def _delete(self, sid: str) -> None:
        with transaction(self.sessions) as db:
            db.execute(delete(WebSession).where(WebSession.id == _key(sid)))


def purge_expired(sessions: sessionmaker[Session]) -> int:
    """Drop sessions past their expiry (run at start-up; expired ones are ignored anyway)."""
    with transaction(sessions) as db:
        result = db.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
        return int(getattr(result, "rowcount", 0) or 0)
