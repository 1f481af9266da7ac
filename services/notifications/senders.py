"""A worker's senders, kept between delivery runs: one email sender (an SMTP session,
re-opened when stale) and the SMS providers in failover order with their health (an SMPP
session stays bound to receive its receipts). Built on first use, after fork, never at
import time.

SMS go to the first healthy provider; a provider failing UNHEALTHY_AFTER times in a row is
put last for COOLDOWN seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.notifications import channels as factory
from services.notifications.channels.base import EmailSender, SmsProvider
from shared.worker import JobContext

log = logging.getLogger(__name__)

UNHEALTHY_AFTER = 3
COOLDOWN = 60.0
TIDY_EVERY = 10.0  # seconds between looks for held messages due and claims left behind


@dataclass
class SmsPool:
    """The SMS providers in failover order, with a count of consecutive failures each."""

    providers: Sequence[SmsProvider]
    unhealthy_after: int = UNHEALTHY_AFTER
    cooldown: float = COOLDOWN
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, int] = field(default_factory=dict)
    down_until: dict[str, float] = field(default_factory=dict)
    pending_receipts: list[Any] = field(default_factory=list)

    def healthy(self, provider: SmsProvider) -> bool:
        return self.down_until.get(provider.name, 0.0) <= self.clock()

    def order(self, start: int = 0) -> list[tuple[int, SmsProvider]]:
        """From ``start`` round the list; providers marked unhealthy go last."""
        n = len(self.providers)
        ring = [((start + i) % n, self.providers[(start + i) % n]) for i in range(n)]
        return [p for p in ring if self.healthy(p[1])] + [p for p in ring if not self.healthy(p[1])]

    def succeeded(self, provider: SmsProvider) -> None:
        self.failures[provider.name] = 0
        self.down_until.pop(provider.name, None)

    def failed(self, provider: SmsProvider) -> None:
        count = self.failures.get(provider.name, 0) + 1
        self.failures[provider.name] = count
        if count >= self.unhealthy_after:
            self.down_until[provider.name] = self.clock() + self.cooldown
            log.warning("SMS provider marked unhealthy", extra={"provider": provider.name})

    def close(self) -> None:
        for provider in self.providers:
            try:
                provider.close()
            except Exception:
                log.warning("SMS provider did not close cleanly", extra={"provider": provider.name})


@dataclass
class Senders:
    """A worker's channels, built on first use (after fork, never at import) and kept."""

    email: EmailSender | None = None
    sms: SmsPool | None = None
    tidied_at: dt.datetime | None = None  # the ``now`` of the last release_held/requeue pass

    def due_for_tidying(self, now: dt.datetime) -> bool:
        """Held and stuck messages are looked at every TIDY_EVERY, not on every claim: the
        deliver job claims after every wake-up, and these are two queries each."""
        if self.tidied_at is None or not 0 <= (now - self.tidied_at).total_seconds() < TIDY_EVERY:
            self.tidied_at = now
            return True
        return False

    def close(self) -> None:
        if self.email is not None:
            try:
                self.email.close()
            except Exception:
                log.warning("email sender did not close cleanly")
        if self.sms is not None:
            self.sms.close()


_senders: dict[int, Senders] = {}
_senders_lock = threading.Lock()


def senders_of(ctx: JobContext) -> Senders:
    with _senders_lock:
        held = _senders.get(id(ctx))
        if held is None:
            held = _senders[id(ctx)] = Senders()
            weakref.finalize(ctx, forget_senders, id(ctx))
        return held


def sms_pool(ctx: JobContext) -> SmsPool:
    """The worker's SMS providers, kept so an SMPP session stays bound to receive receipts."""
    held = senders_of(ctx)
    with _senders_lock:
        if held.sms is None:
            held.sms = SmsPool(factory.build_sms_providers(ctx.settings))
        return held.sms


def worker_email_sender(ctx: JobContext) -> EmailSender:
    """The worker's email sender: one SMTP session across runs (a NOOP checks it after idling)."""
    held = senders_of(ctx)
    with _senders_lock:
        if held.email is None:
            held.email = factory.build_email_sender(ctx.settings)
        return held.email


def use_sms_pool(ctx: JobContext, pool: SmsPool) -> None:
    """Tests and tools: give a worker its providers."""
    senders_of(ctx).sms = pool


def forget_senders(key: int) -> None:
    held = _senders.pop(key, None)
    if held is not None:
        held.close()
