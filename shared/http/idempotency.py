"""``Idempotency-Key`` for writes, so an agency system on a poor connection can retry safely.

The first answer to a key is stored with the business change, in the same transaction; a retry
with the same key and request gets that answer again without running the view. Keys are scoped
by principal, so two agencies cannot collide.

A request claims its key before the view runs, with one ``INSERT .. ON CONFLICT DO NOTHING``
(PostgreSQL and SQLite alike) that writes the key's row with the answer still blank; the answer
is filled in at the end, in the same transaction. No row claimed means the key has an answer:
it is replayed. The claim is the look-up, so a first request costs no separate SELECT; and two
concurrent first requests with one key no longer both run: the second waits on the first's
uncommitted row, then finds its answer and replays it (or claims the key itself if the first
rolled back). A refusal rolls the claim back with everything else and is stored on its own.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import request
from flask.wrappers import Response
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.auth.context import current_principal
from shared.db import utcnow
from shared.errors import BadRequest, Conflict, RuleViolation
from shared.http.app import add_response_hook, db_session, opora_app
from shared.tables import InfrastructureTables

F = TypeVar("F", bound=Callable[..., Any])

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = re.compile(r"^[\x20-\x7e]{1,200}$")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REPLAYED_HEADERS = ("Location", "Content-Type")
RETENTION = dt.timedelta(hours=24)
# Answers that depend on who asks or on load, not on the request: a retry must be re-evaluated.
NOT_STORED = frozenset({401, 403, 408, 429})
# What filling a claim in sets: not ``created_at`` (the claim's moment will do), so that no
# indexed column changes and PostgreSQL updates the row in place (a HOT update).
ANSWER_COLUMNS = ("status", "response_body", "response_headers")

_PARAMETER_DOC = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    "description": "Retry-safe key: a repeated request with the same key gets the first answer.",
}


def idempotent(view: F) -> F:
    """Decorate a write view. It works at any place in the decorator stack: the answer stored
    is the final response, taken after the view, its serialisation and its error handling.

    Above ``@blp.arguments``, invalid bodies are answered and stored like any refusal; below
    it, they are refused before the key is looked at, and nothing is stored.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None or request.method not in WRITE_METHODS:
            return view(*args, **kwargs)
        if not KEY_PATTERN.match(key):
            raise BadRequest(
                "invalid Idempotency-Key header",
                errors={HEADER: ["must be 1-200 printable ASCII characters"]},
            )
        table = opora_app().tables.idempotency_keys
        session = db_session()
        record = {
            "principal": current_principal().subject,
            "key": key,
            "method": request.method,
            "path": request.path,
            "request_hash": _request_hash(),
        }
        if session.execute(_claim(table, _dialect(session)), _blank(record)).first() is None:
            stored = (
                session.execute(_stored(table), {"principal": record["principal"], "key": key})
                .mappings()
                .first()
            )
            if stored is None:  # purged between the two statements: a retry runs afresh
                raise Conflict("the Idempotency-Key's stored answer expired just now; retry")
            if stored["status"] == 0:  # a claim committed without its answer: never replay it
                raise Conflict("the first request with this Idempotency-Key has no answer")
            if (stored["method"], stored["path"], stored["request_hash"]) != (
                record["method"],
                record["path"],
                record["request_hash"],
            ):
                raise RuleViolation(
                    "Idempotency-Key reused with a different request",
                    errors={HEADER: ["already used for a different request"]},
                    code="idempotency-key-reused",
                )
            return _replay(stored)
        add_response_hook(functools.partial(_store, table, record))
        return view(*args, **kwargs)

    docs = wrapper.__dict__.get("_apidoc", {})
    wrapper._apidoc = {  # type: ignore[attr-defined]
        **docs,
        "arguments": {
            **docs.get("arguments", {}),
            "parameters": [*docs.get("arguments", {}).get("parameters", []), _PARAMETER_DOC],
        },
    }
    return cast(F, wrapper)


def _store(table: Table, record: dict[str, Any], response: Response, session: Session) -> None:
    """Store the final answer: a success on the claimed row, in the request's transaction, with
    the business write; a refusal on its own after the rollback, since a refusal changes nothing
    else."""
    status = response.status_code
    if status >= 500 or status in NOT_STORED:
        return
    values = {
        **record,
        "status": status,
        "response_body": response.get_data(as_text=True),
        "response_headers": {
            h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers
        },
        "created_at": utcnow(),
    }
    if status < 400:
        answer = {name: values[name] for name in ANSWER_COLUMNS}
        filled = session.execute(
            _answer(table), {"b_principal": record["principal"], "b_key": record["key"], **answer}
        )
        if filled.rowcount == 0:  # type: ignore[attr-defined]  # the view rolled it back
            session.execute(table.insert(), values)
        return
    session.rollback()
    session.execute(_claim(table, _dialect(session)), values)
    session.commit()


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _blank(record: dict[str, Any]) -> dict[str, Any]:
    """The claim: the request's key and fingerprint, its answer not yet known."""
    return {
        **record,
        "status": 0,
        "response_body": "",
        "response_headers": {},
        "created_at": utcnow(),
    }


@functools.cache
def _claim(table: Table, dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=[table.c.principal, table.c.key])
        .returning(table.c.key)
    )


@functools.cache
def _stored(table: Table) -> Any:
    return select(table).where(
        table.c.principal == bindparam("principal"), table.c.key == bindparam("key")
    )


@functools.cache
def _answer(table: Table) -> Any:
    """Fill the claimed row in: the parameters not named ``b_..`` are the columns set."""
    return update(table).where(
        table.c.principal == bindparam("b_principal"), table.c.key == bindparam("b_key")
    )


def _replay(stored: Any) -> Response:
    response = Response(stored["response_body"], status=stored["status"])
    for name, value in (stored["response_headers"] or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _request_hash() -> str:
    digest = hashlib.sha256()
    digest.update(request.query_string)
    digest.update(b"\n")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def purge_idempotency_keys(
    session: Session, tables: InfrastructureTables, older_than: dt.timedelta = RETENTION
) -> int:
    """Delete stored answers older than ``older_than``; returns how many went."""
    table = tables.idempotency_keys
    result = session.execute(delete(table).where(table.c.created_at < utcnow() - older_than))
    return int(result.rowcount)  # type: ignore[attr-defined]
