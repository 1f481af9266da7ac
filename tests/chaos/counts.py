"""Counting, per command, the effects in every service and what left the system.

Read once, after the drain: the databases (``books.py``), the SMTP server, the two SMS
gateways, the clinic's webhook endpoint and the dead-letter queues. Each command expects a list
of effects; an effect is *found* when the command has at least one of it and *duplicated* when
it has more than one.

Outside the system delivery is at least once by contract, with a stable id for the receiver:
an email's Message-ID (``<message id@opora>``), an SMS's Idempotency-Key (the message id), a
webhook's X-Opora-Delivery. An email or SMS handed over a second time under its id is allowed
only where a crash explains it: its history says its claim expired and it was sent again, and
the notifications worker was killed between that claim and the expiry (it died between
handing the message over and recording that). Sent again with no crash in between, the
worker lost an outcome it had: a failure. A webhook delivered again
under its delivery id is counted (the receiver deduplicates); a second delivery id for one
referral event is a failure. Anything else twice is a failure.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos.books import Books


@dataclass
class Tally:
    expected: int = 0
    found: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    def add(self, command_id: str, count: int) -> None:
        self.expected += 1
        if count >= 1:
            self.found += 1
        else:
            self.missing.append(command_id)
        if count > 1:
            self.duplicated.append(command_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "found": self.found,
            "duplicated": len(self.duplicated),
            "missing_examples": self.missing[:5],
            "duplicated_examples": self.duplicated[:5],
        }


# --- what left the system ----------------------------------------------------------------------


@dataclass
class Outside:
    emails: Counter[str]  # message id -> emails received with its Message-ID
    sms: dict[str, Counter[str]]  # gateway -> message id -> accepted
    sms_abandoned: dict[str, Counter[str]]  # gateway -> message id -> client gave up
    sms_in_slow_window: dict[str, int]  # gateway -> accepted while gw-a was slow
    webhooks: dict[str, Counter[str]]  # referral id -> delivery id -> calls


def read_outside(
    smtp: Any, gateways: list[Any], webhook: Any, slow_windows: list[tuple[float, float]]
) -> Outside:
    emails: Counter[str] = Counter()
    for mail in list(smtp.received):
        header = email.message_from_bytes(mail.data, policy=email.policy.compat32)["Message-ID"]
        emails[str(header or "").strip().strip("<>").split("@", 1)[0]] += 1
    in_window = {
        g.name: sum(1 for a in g.accepted if any(t0 <= a.at <= t1 for t0, t1 in slow_windows))
        for g in gateways
    }
    webhooks: dict[str, Counter[str]] = defaultdict(Counter)
    for call in list(webhook.calls):
        if call.referral_id:
            webhooks[call.referral_id][call.delivery_id] += 1
    return Outside(
        emails=emails,
        sms={g.name: Counter(a.message_id for a in g.accepted) for g in gateways},
        sms_abandoned={g.name: Counter(g.abandoned) for g in gateways},
        sms_in_slow_window=in_window,
        webhooks=webhooks,
    )


# --- the counts --------------------------------------------------------------------------------


@dataclass
class Counts:
    effects: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    expected_messages: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (cmd, ch)
    problems: list[str] = field(default_factory=list)

    def effect(self, name: str, command_id: str, count: int) -> None:
        self.effects[name].add(command_id, count)


def count_effects(
    commands: list[Any], books: Books, coordinator: str, clinic_intake: str
) -> Counts:
    """Every command's effects in every service; messages are matched to their source event."""
    counts = Counts()
    by_source: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for mid, source, _type, recipient, channel, _state in books.messages:
        by_source[(source, recipient, channel)].append(mid)

    def message(name: str, command_id: str, source: str | None, who: str, channel: str) -> None:
        ids = by_source.get((source or "", who, channel), [])
        counts.effect(f"notifications: {name}", command_id, len(ids))
        for mid in ids:
            counts.expected_messages[mid] = (command_id, channel)

    for command in commands:
        cid = command.id
        if command.kind == "family":
            rows = books.families.get(cid, [])
            counts.effect("registry: family registered", cid, len(rows))
            family = rows[0][0] if rows else command.entity or ""
            counts.effect("registry: first case opened", cid, books.cases[family])
            counts.effect("raids: family read model", cid, int(family in books.raids_families))
            counts.effect(
                "referrals: family read model", cid, int(family in books.referrals_families)
            )
            counts.effect(
                "notifications: case read model",
                cid,
                int(books.case_of.get(family) in books.known_cases),
            )
            message(
                "email to the coordinator (family registered)",
                cid,
                books.registered_event.get(family),
                coordinator,
                "email",
            )
        elif command.kind == "signal":
            rows = books.signals.get(cid, [])
            counts.effect("referrals: signal received", cid, len(rows))
            signal = rows[0][0] if rows else command.entity or ""
            counts.effect(
                "referrals: signal accepted", cid, sum(1 for r in rows if r[2] == "accepted")
            )
            counts.effect(
                "registry: signal logged on the case",
                cid,
                books.contact_entries[f"signal:{signal}"],
            )
            urgent = books.urgent_event.get(signal)
            message("email to the coordinator (red signal)", cid, urgent, coordinator, "email")
            message("SMS to the coordinator (red signal)", cid, urgent, coordinator, "sms")
        else:
            rows = books.referrals.get(cid, [])
            counts.effect("referrals: referral sent", cid, len(rows))
            referral = rows[0][0] if rows else command.entity or ""
            counts.effect(
                "referrals: status history says requested",
                cid,
                books.status_changes[(referral, "requested")],
            )
            counts.effect("referrals: webhook delivery", cid, books.webhook_rows[referral])
            events = books.status_events.get(referral, {})
            handled = bool(events) and all(e in books.registry_inbox for e in events.values())
            counts.effect("registry: referral status events handled", cid, int(handled))
            counts.effect(
                "notifications: referral read model",
                cid,
                int(referral in books.known_referrals),
            )
            requested = events.get("requested")
            message("email to the clinic (referral)", cid, requested, clinic_intake, "email")
            if command.urgent:
                message("SMS to the clinic (urgent referral)", cid, requested, clinic_intake, "sms")
    return counts


def unexpected_messages(books: Books, counts: Counts) -> Counter[str]:
    """Messages no command explains (other rules may exist): per source event type."""
    return Counter(
        f"{row[2]} ({row[4]})" for row in books.messages if row[0] not in counts.expected_messages
    )


CRASH_SLACK = dt.timedelta(seconds=1)  # between a kill and the clock of the history rows


def count_deliveries(
    counts: Counts, books: Books, outside: Outside, crashes: list[dt.datetime]
) -> dict[str, Any]:
    """Each expected message delivered once; a resend only where a crash of the notifications
    worker (``crashes``) fell between the message's claim and its expiry."""

    def crashed(message_id: str) -> bool:
        return any(
            claimed - CRASH_SLACK <= crash <= expired + CRASH_SLACK
            for claimed, expired in books.expired_claims.get(message_id, [])
            for crash in crashes
        )

    report: dict[str, Any] = {}
    for channel in ("email", "sms"):
        tally = Tally()
        resent = 0
        unrecorded: list[str] = []
        per_gateway: Counter[str] = Counter()
        for mid, (command_id, ch) in counts.expected_messages.items():
            if ch != channel:
                continue
            if channel == "email":
                got = outside.emails[mid]
            else:
                got = sum(accepted[mid] for accepted in outside.sms.values())
                for name, accepted in outside.sms.items():
                    per_gateway[name] += accepted[mid] > 0
            tally.expected += 1
            if got:
                tally.found += 1
            else:
                tally.missing.append(f"{command_id}/{mid}")
            if got > 1:
                if crashed(mid):
                    resent += 1
                elif mid in books.resent:
                    unrecorded.append(f"{command_id}/{mid}")
                else:
                    tally.duplicated.append(f"{command_id}/{mid}")
        mine = {mid for mid, (_, ch) in counts.expected_messages.items() if ch == channel}
        entry = {
            **tally.as_dict(),
            "resent_after_a_crash": resent,
            "resent_though_the_worker_lived": len(unrecorded),
            "sent_after_a_temporary_failure": len(mine & books.retried),
        }
        if channel == "sms":
            entry["accepted_per_gateway"] = dict(per_gateway)
            entry["abandoned_by_the_client"] = {
                name: sum(c.values()) for name, c in outside.sms_abandoned.items()
            }
            entry["accepted_while_gw_a_slow"] = outside.sms_in_slow_window
            entry["failed_over"] = len(mine & books.failed_over)
        report[channel] = entry
        if tally.missing:
            counts.problems.append(
                f"{len(tally.missing)} {channel} message(s) never handed over, e.g. {tally.missing[:3]}"
            )
        if tally.duplicated:
            counts.problems.append(
                f"{len(tally.duplicated)} {channel} message(s) handed over twice with no crash "
                f"to explain it, e.g. {tally.duplicated[:3]}"
            )
        if unrecorded:
            counts.problems.append(
                f"{len(unrecorded)} {channel} message(s) handed over twice: their claim expired "
                f"and they were sent again, though no notifications worker died in between "
                f"(the outcome was never recorded), e.g. {unrecorded[:3]}"
            )
    return report


def count_webhooks(
    commands: list[Any], books: Books, outside: Outside, counts: Counts
) -> dict[str, Any]:
    tally = Tally()
    redelivered = 0
    for command in commands:
        if command.kind != "referral":
            continue
        rows = books.referrals.get(command.id, [])
        referral = rows[0][0] if rows else command.entity or ""
        calls = outside.webhooks.get(referral, Counter())
        tally.add(command.id, len(calls))
        redelivered += sum(n - 1 for n in calls.values())
    if tally.missing:
        counts.problems.append(
            f"{len(tally.missing)} webhook(s) never received, e.g. {tally.missing[:3]}"
        )
    if tally.duplicated:
        counts.problems.append(
            f"{len(tally.duplicated)} referral(s) with two webhook deliveries, e.g. {tally.duplicated[:3]}"
        )
    return {**tally.as_dict(), "redelivered_same_id": redelivered}


def check_dead_letters(
    letters: Mapping[str, list[Any]],
    poison: list[Any],
    bindings: Mapping[str, Iterable[str]],
    interrupted: Iterable[str] = (),
) -> tuple[dict[str, Any], list[str]]:
    """Every poison message in the dead-letter queue of every service bound to its routing key,
    with a reason that says what is wrong; nothing else dead-lettered.

    Dead-lettering is at-least-once, like the hand-over to SMTP: the copy is confirmed by the
    broker before the original is acked, so a worker killed (or a broker restarted) between the
    two sees the original again and dead-letters it a second time. A second copy is therefore
    counted apart, and is a problem only in a service whose worker was never ``interrupted``."""
    problems: list[str] = []
    by_id = {p.message_id: p for p in poison}
    report: dict[str, Any] = {}
    for service, found in letters.items():
        report[service] = Counter(
            (by_id[x.message_id].kind if x.message_id in by_id else "NOT POISON")
            + ": "
            + x.reason[:90]
            for x in found
        )
        for letter in found:
            if letter.message_id not in by_id:
                problems.append(
                    f"{service} dead-lettered a message that is not poison: {letter.event_type} "
                    f"{letter.message_id}: {letter.reason[:200]}"
                )
    for p in poison:
        for service, keys in bindings.items():
            if p.routing_key not in set(keys):
                continue
            mine = [x for x in letters.get(service, []) if x.message_id == p.message_id]
            if len(mine) > 1 and service in interrupted:
                report[service]["again after a crash"] += len(mine) - 1
            if not mine or (len(mine) > 1 and service not in interrupted):
                problems.append(f"poison {p.kind} {p.message_id}: {len(mine)} in {service}'s DLQ")
            elif not any(part in mine[0].reason for part in p.reason_has):
                problems.append(
                    f"poison {p.kind} in {service}'s DLQ with reason {mine[0].reason[:200]!r}"
                )
    return {s: dict(c) for s, c in report.items()}, problems
