"""Operator tools for a service's dead-letter queue: list, show, replay.

Listing takes messages without acking and closes the channel, so the broker
puts them back; replay republishes to the service's queue, then acks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Producer

from shared.messaging.consumer import ATTEMPT, DEAD_AT, DEAD_REASON, ORIGINAL_ROUTING_KEY
from shared.messaging.topology import Names, dead_letter_queue


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    event_type: str | None
    reason: str
    dead_at: str | None
    routing_key: str | None
    headers: dict[str, Any]
    body: bytes

    def summary(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "event_type": self.event_type,
            "reason": self.reason,
            "dead_at": self.dead_at,
            "routing_key": self.routing_key,
        }


def _as_dead_letter(message: Any) -> DeadLetter:
    headers = dict(message.headers or {})
    reason = headers.get(DEAD_REASON)
    if reason is None and headers.get("x-death"):
        death = headers["x-death"][0]
        reason = f"broker: {death.get('reason')} (count {death.get('count')})"
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    return DeadLetter(
        message_id=message.properties.get("message_id"),
        event_type=message.properties.get("type"),
        reason=str(reason or "unknown"),
        dead_at=headers.get(DEAD_AT),
        routing_key=headers.get(ORIGINAL_ROUTING_KEY) or message.delivery_info.get("routing_key"),
        headers=headers,
        body=body,
    )


def list_dead_letters(
    conn: Connection, names: Names, service: str, limit: int = 1000
) -> list[DeadLetter]:
    channel = conn.channel()
    try:
        queue = dead_letter_queue(names, service)(channel)
        queue.declare()
        result: list[DeadLetter] = []
        while len(result) < limit and (message := queue.get(no_ack=False)) is not None:
            result.append(_as_dead_letter(message))
        return result
    finally:
        channel.close()


def replay(
    conn: Connection, names: Names, service: str, message_ids: set[str] | None = None
) -> int:
    """Send dead letters (all, or those ids) back to the service's queue with a fresh attempt count."""
    channel = conn.channel()
    producer = Producer(conn.channel())
    replayed = 0
    try:
        queue = dead_letter_queue(names, service)(channel)
        queue.declare()
        while (message := queue.get(no_ack=False)) is not None:
            letter = _as_dead_letter(message)
            if message_ids is not None and letter.message_id not in message_ids:
                continue
            headers = {k: v for k, v in letter.headers.items() if not k.startswith("x-death")}
            headers.pop(DEAD_REASON, None)
            headers[ATTEMPT] = 1
            headers["x-opora-replayed-from-dlq"] = letter.reason[:200]
            producer.publish(
                message.body,
                exchange="",
                routing_key=names.queue(service),
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
                message_id=letter.message_id,
                type=letter.event_type,
                declare=[],
                retry=False,
            )
            message.ack()
            replayed += 1
    finally:
        channel.close()
    return replayed


def render(letter: DeadLetter) -> str:
    try:
        body: Any = json.loads(letter.body)
    except ValueError:
        body = letter.body.decode("utf-8", "replace")
    return json.dumps(
        {**letter.summary(), "headers": letter.headers, "body": body},
        ensure_ascii=False,
        indent=2,
        default=str,
    )
