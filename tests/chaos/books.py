"""What the databases hold after the run, read once: each service's own rows, its read models,
inbox and outbox; and, while the system drains, what it still has in hand.

Rows are found per command by its marker (``chaos:<command id>``) in a free-text field, so
that a second row a broken retry made is found too; events by their id in the producer's
outbox (kept a day after they are sent).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from services.notifications.models import KnownCase, KnownReferral, Message, MessageHistory
from services.raids.models import KnownFamily as RaidsFamily
from services.referrals.models import KnownFamily as ReferralsFamily
from services.referrals.models import Referral, Signal, StatusChange, WebhookDelivery
from services.registry.models import Family
from services.registry.models_cases import Case, ContactEntry
from shared.config import SERVICES

MARKER = re.compile(r"chaos:([a-z]\d+)")
CLAIM_EXPIRED = "claim expired"  # history details (services/notifications/delivery.py)
TEMPORARY_FAILURE = "temporary failure"
FAILED_OVER = "failed over after"
SENDING = ("queued", "sending")

# id, source event, its type, recipient, channel, state
MessageRow = tuple[str, str, str, str, str, str]


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _data(body: str) -> dict[str, Any]:
    return dict(json.loads(body).get("data") or {})


def _markers(rows: Iterable[tuple[Any, ...]], text_index: int) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        match = MARKER.search(row[text_index] or "")
        if match:
            found[match.group(1)].append(row)
    return found


# --- what the databases hold -------------------------------------------------------------------


@dataclass
class Books:
    families: dict[str, list[tuple[Any, ...]]]  # command id -> (family id, notes)
    cases: Counter[str]  # family id -> cases
    case_of: dict[str, str]  # family id -> a case id
    contact_entries: Counter[str]  # source id -> entries
    registered_event: dict[str, str]  # family id -> event id of registry.family.registered
    registry_inbox: set[str]
    raids_families: set[str]
    signals: dict[str, list[tuple[Any, ...]]]  # command id -> (signal id, observed, status)
    referrals: dict[str, list[tuple[Any, ...]]]  # command id -> (referral id, reason, status)
    status_changes: Counter[tuple[str, str]]  # (referral id, status) -> history rows
    referrals_families: set[str]
    webhook_rows: Counter[str]  # referral id -> webhook deliveries
    urgent_event: dict[str, str]  # signal id -> event id of referrals.signal.urgent
    status_events: dict[str, dict[str, str]]  # referral id -> status -> event id
    messages: list[MessageRow]
    resent: set[str]  # message ids whose claim expired and that were sent again
    expired_claims: dict[str, list[tuple[dt.datetime, dt.datetime]]]  # id -> (claimed, expired)
    retried: set[str]  # message ids that had a temporary failure (SMTP refusing, both gateways)
    failed_over: set[str]  # SMS sent by a later gateway after an earlier one failed
    known_cases: set[str]
    known_referrals: set[str]


def read_books(urls: Mapping[str, str]) -> Books:
    def outbox_events(conn: sa.Connection, service: str, types: list[str]) -> list[Any]:
        outbox = _tables(service).outbox
        return list(
            conn.execute(
                sa.select(outbox.c.event_id, outbox.c.event_type, outbox.c.body).where(
                    outbox.c.event_type.in_(types)
                )
            )
        )

    engines = {service: _engine(url) for service, url in urls.items()}
    try:
        with engines["registry"].connect() as conn:
            families = _markers(conn.execute(sa.select(Family.id, Family.notes)), 1)
            case_rows = list(conn.execute(sa.select(Case.family_id, Case.id)))
            contact_entries = Counter(
                r[0]
                for r in conn.execute(
                    sa.select(ContactEntry.source_id).where(ContactEntry.source_id.like("signal:%"))
                )
            )
            registered = {
                _data(r.body)["family_id"]: r.event_id
                for r in outbox_events(conn, "registry", ["registry.family.registered"])
            }
            inbox = _tables("registry").inbox
            registry_inbox = {r[0] for r in conn.execute(sa.select(inbox.c.message_id))}
        with engines["raids"].connect() as conn:
            raids_families = {r[0] for r in conn.execute(sa.select(RaidsFamily.family_id))}
        with engines["referrals"].connect() as conn:
            signals = _markers(
                conn.execute(sa.select(Signal.id, Signal.observed, Signal.status)), 1
            )
            referrals = _markers(
                conn.execute(sa.select(Referral.id, Referral.reason, Referral.status)), 1
            )
            status_changes = Counter(
                (r[0], r[1])
                for r in conn.execute(sa.select(StatusChange.referral_id, StatusChange.to_status))
            )
            referrals_families = {r[0] for r in conn.execute(sa.select(ReferralsFamily.family_id))}
            webhook_rows = Counter(
                r[0]
                for r in conn.execute(
                    sa.select(WebhookDelivery.referral_id).where(
                        WebhookDelivery.event == "referrals.referral.status_changed"
                    )
                )
            )
            urgent_event: dict[str, str] = {}
            status_events: dict[str, dict[str, str]] = defaultdict(dict)
            for row in outbox_events(
                conn, "referrals", ["referrals.signal.urgent", "referrals.referral.status_changed"]
            ):
                data = _data(row.body)
                if row.event_type == "referrals.signal.urgent":
                    urgent_event[data["signal_id"]] = row.event_id
                else:
                    status_events[data["referral_id"]][data["status"]] = row.event_id
        with engines["notifications"].connect() as conn:
            messages: list[MessageRow] = [
                (r[0], r[1], r[2], r[3], r[4], r[5])
                for r in conn.execute(
                    sa.select(
                        Message.id,
                        Message.source_event_id,
                        Message.source_event_type,
                        Message.recipient_id,
                        Message.channel,
                        Message.state,
                    )
                )
            ]
            history: dict[str, set[str]] = defaultdict(set)
            for phrase in (CLAIM_EXPIRED, TEMPORARY_FAILURE, FAILED_OVER):
                history[phrase] = {
                    r[0]
                    for r in conn.execute(
                        sa.select(MessageHistory.message_id).where(
                            MessageHistory.detail.like(f"%{phrase}%")
                        )
                    )
                }
            claims = _expired_claims(conn, history[CLAIM_EXPIRED])
            known_cases = {r[0] for r in conn.execute(sa.select(KnownCase.case_id))}
            known_referrals = {r[0] for r in conn.execute(sa.select(KnownReferral.referral_id))}
    finally:
        for engine in engines.values():
            engine.dispose()
    return Books(
        families=families,
        cases=Counter(r[0] for r in case_rows),
        case_of={r[0]: r[1] for r in case_rows},
        contact_entries=contact_entries,
        registered_event=registered,
        registry_inbox=registry_inbox,
        raids_families=raids_families,
        signals=signals,
        referrals=referrals,
        status_changes=status_changes,
        referrals_families=referrals_families,
        webhook_rows=webhook_rows,
        urgent_event=urgent_event,
        status_events=status_events,
        messages=messages,
        resent=history[CLAIM_EXPIRED],
        expired_claims=claims,
        retried=history[TEMPORARY_FAILURE],
        failed_over=history[FAILED_OVER],
        known_cases=known_cases,
        known_referrals=known_referrals,
    )


def _expired_claims(
    conn: sa.Connection, message_ids: set[str]
) -> dict[str, list[tuple[dt.datetime, dt.datetime]]]:
    """When each expired claim was taken and when it was found expired, from the history."""
    rows = conn.execute(
        sa.select(
            MessageHistory.message_id,
            MessageHistory.at,
            MessageHistory.to_state,
            MessageHistory.detail,
        )
        .where(MessageHistory.message_id.in_(message_ids))
        .order_by(MessageHistory.message_id, MessageHistory.at, MessageHistory.id)
    )
    claims: dict[str, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    claimed: dict[str, dt.datetime] = {}
    for message_id, at, to_state, detail in rows:
        if to_state == "sending":
            claimed[message_id] = at
        elif CLAIM_EXPIRED in (detail or "") and message_id in claimed:
            claims[message_id].append((claimed[message_id], at))
    return claims


def _tables(service: str) -> Any:
    return importlib.import_module(f"services.{service}.models").tables


def outstanding(urls: Mapping[str, str]) -> dict[str, int]:
    """Work the system still has in hand, per place (empty outboxes, nothing left to send)."""
    left: dict[str, int] = {}
    for service in SERVICES:
        engine = _engine(urls[service])
        try:
            with engine.connect() as conn:
                outbox = _tables(service).outbox
                left[f"{service} outbox"] = conn.execute(
                    sa.select(sa.func.count()).where(outbox.c.sent_at.is_(None))
                ).scalar_one()
                if service == "notifications":
                    left["notifications messages queued or sending"] = conn.execute(
                        sa.select(sa.func.count()).where(Message.state.in_(SENDING))
                    ).scalar_one()
                if service == "referrals":
                    left["referrals webhooks pending"] = conn.execute(
                        sa.select(sa.func.count()).where(WebhookDelivery.status == "pending")
                    ).scalar_one()
        finally:
            engine.dispose()
    return left
