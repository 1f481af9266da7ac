"""Test mode: what would have been sent, as JSON lines, for training and staging set-ups.

A provider configured with ``mode=test`` (or no provider at all) checks the message exactly
like a real one (number, length, rate limit), appends one line to
``<data_dir>/sms/<provider>.jsonl`` and reports it delivered on the next ``receipts()``,
so the whole state machine runs without a phone ever ringing.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from services.notifications.channels import sms as sms_rules
from services.notifications.channels.base import (
    PermanentFailure,
    Receipt,
    Sent,
    Sms,
    utc_now,
)
from services.notifications.channels.ratelimit import TokenBucket


class TestModeProvider:
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        rate: float | None = None,
        max_parts: int = 10,
        now: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.name = name
        self.folder = Path(folder)
        self.path = self.folder / f"{name}.jsonl"
        self.max_parts = max_parts
        self.bucket = TokenBucket(rate) if rate else None
        self._now = now
        self._lock = threading.Lock()
        self._pending: list[Receipt] = []

    def send(self, sms: Sms) -> Sent:
        try:
            to = sms_rules.normalise_phone(sms.to)
        except ValueError as exc:
            raise PermanentFailure(str(exc)) from exc
        if not sms.text:
            raise PermanentFailure("SMS text is empty")
        sms_rules.fit(sms.text, self.max_parts, "refuse")
        if self.bucket is not None:
            self.bucket.acquire()
        info = sms_rules.segments(sms.text)
        provider_id = f"test-{uuid.uuid4().hex[:16]}"
        at = self._now()
        line = {
            "at": at.isoformat(),
            "provider": self.name,
            "provider_message_id": provider_id,
            "message_id": sms.message_id,
            "to": to,
            "text": sms.text,
            "urgent": sms.urgent,
            "encoding": info.encoding,
            "segments": info.parts,
        }
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:  # one write per line: whole lines in the file
                f.write(data)
            self._pending.append(Receipt(self.name, provider_id, "delivered", None, at))
        return Sent(self.name, (provider_id,), segments=info.parts)

    def receipts(self) -> list[Receipt]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def recorded(self) -> list[dict[str, object]]:
        """The lines written so far (for tests and the training set-up's own checks)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]

    def close(self) -> None:
        pass
