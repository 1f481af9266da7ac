"""A token bucket per provider: at most ``rate`` sends a second, bursts up to ``burst``.

Providers throttle us anyway (ESME_RTHROTTLED, HTTP 429); staying under their limit
costs less than being refused. A caller that finds the bucket empty waits for its token
if that takes at most ``max_wait`` seconds, else gets a TemporaryFailure with
``retry_after`` so the delivery loop moves on instead of blocking a worker.

Thread-safe: a token is reserved under the lock (the balance may go below zero), and the
wait happens outside it, so concurrent callers queue up in order without over-spending.
The clock and the sleep are parameters so tests count tokens instead of timing them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from services.notifications.channels.base import TemporaryFailure


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        max_wait: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be a positive number of sends per second")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``; returns the seconds waited. Raises TemporaryFailure when too far off."""
        with self._lock:
            self._refill()
            deficit = tokens - self._tokens
            wait = deficit / self.rate if deficit > 0 else 0.0
            if wait > self.max_wait:
                raise TemporaryFailure("provider rate limit reached", retry_after=wait)
            self._tokens -= tokens
        if wait > 0:
            self._sleep(wait)
        return wait

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens
