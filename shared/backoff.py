"""Exponential back-off with jitter, the one formula behind every retry: the outbox relay,
notification delivery, webhook delivery and the agency client."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: tuple[float, float] = (0.5, 1.5),
    draw: float | None = None,
) -> float:
    """``base * 2**attempt`` seconds, at most ``cap``, times a factor drawn from ``jitter``
    (``draw`` in [0, 1) for tests), so that clients failing together do not retry together."""
    low, high = jitter
    factor = low + (high - low) * (random.random() if draw is None else draw)
    return min(cap, base * 2**attempt) * factor
