"""Tables every service has beside its own: outbox, inbox, audit trail, idempotency keys, API keys.

Each service calls :func:`infrastructure_tables` with its own metadata, so the
tables live in that service's database and its Alembic history.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from shared.db import UTCDateTime

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class InfrastructureTables:
    outbox: Table
    inbox: Table
    audit_log: Table
    idempotency_keys: Table
    api_keys: Table


def infrastructure_tables(metadata: MetaData) -> InfrastructureTables:
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("event_type", String(120), nullable=False),
        Column("exchange", String(200), nullable=False),
        Column("routing_key", String(200), nullable=False),
        Column("headers", JSON, nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("available_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
    )
    # The relay only ever looks at unsent rows: keep that index small.
    Index(
        "ix_outbox_unsent",
        outbox.c.available_at,
        outbox.c.id,
        postgresql_where=text("sent_at IS NULL"),
        sqlite_where=text("sent_at IS NULL"),
    )
    Index("ix_outbox_sent_at", outbox.c.sent_at)

    inbox = Table(
        "inbox",
        metadata,
        Column("message_id", String(36), primary_key=True),
        Column("event_type", String(120), nullable=False),
        Column("handled_at", UTCDateTime, nullable=False, index=True),
    )

    audit_log = Table(
        "audit_log",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("at", UTCDateTime, nullable=False, index=True),
        Column("actor", String(120), nullable=False),
        Column("actor_agency", String(120), nullable=True),
        Column("actor_roles", JSON, nullable=False),
        Column("action", String(20), nullable=False),
        Column("entity", String(60), nullable=False),
        Column("entity_id", String(64), nullable=True),
        Column("family_id", String(64), nullable=True, index=True),
        Column("fields", JSON, nullable=True),
        Column("reason", Text, nullable=True),
        Column("correlation_id", String(64), nullable=True),
    )

    idempotency_keys = Table(
        "idempotency_keys",
        metadata,
        Column("principal", String(160), primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("method", String(10), nullable=False),
        Column("path", String(500), nullable=False),
        Column("request_hash", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("response_body", Text, nullable=False),
        Column("response_headers", JSON, nullable=False),
        Column("created_at", UTCDateTime, nullable=False, index=True),
    )

    api_keys = Table(
        "api_keys",
        metadata,
        Column("key_id", String(32), primary_key=True),
        Column("secret_hash", String(128), nullable=False),
        Column("agency_id", String(64), nullable=False, index=True),
        Column("name", String(200), nullable=False),
        Column("roles", JSON, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("revoked_at", UTCDateTime, nullable=True),
        Column("last_used_at", UTCDateTime, nullable=True),
    )
    return InfrastructureTables(outbox, inbox, audit_log, idempotency_keys, api_keys)


AUDIT_GUARD_SQL = """
CREATE OR REPLACE FUNCTION opora_audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION opora_audit_log_is_append_only();
"""


def protect_audit_log(op: object) -> None:
    """Called from each service's first migration: on PostgreSQL nobody edits the audit trail."""
    bind = op.get_bind()  # type: ignore[attr-defined]
    if bind.dialect.name == "postgresql":
        op.execute(AUDIT_GUARD_SQL)  # type: ignore[attr-defined]


SQLITE_AUDIT_GUARDS = {
    "audit_log_no_update": "UPDATE",
    "audit_log_no_delete": "DELETE",
}


def protect_audit_log_in_sqlite(op: object) -> None:
    """The embedded mode's trail is append-only too: SQLite has no functions in triggers, so
    one trigger per statement kind aborts it (called from each service's migration 'audit
    trail append-only in SQLite'; PostgreSQL has had its trigger since the first)."""
    bind = op.get_bind()  # type: ignore[attr-defined]
    if bind.dialect.name != "sqlite":
        return
    for name, statement in SQLITE_AUDIT_GUARDS.items():
        op.execute(  # type: ignore[attr-defined]
            f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {statement} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
        )


def unprotect_audit_log_in_sqlite(op: object) -> None:
    bind = op.get_bind()  # type: ignore[attr-defined]
    if bind.dialect.name != "sqlite":
        return
    for name in SQLITE_AUDIT_GUARDS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")  # type: ignore[attr-defined]
