"""What every channel speaks: the messages handed to it, what it answers, how it fails.

N3's delivery loop only sees these types, so an SMTP server, an SMPP centre, an HTTP
gateway and the test-mode recorder are interchangeable. Failures carry a ``reason`` that
is safe to store and log: never an address, a phone number or a server's echo of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

RECEIPT_STATES = ("delivered", "failed", "bounced")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Email:
    message_id: str
    to: str
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Sms:
    message_id: str
    to: str
    text: str
    urgent: bool = False


@dataclass(frozen=True)
class Sent:
    """The provider took the message; ``provider_message_ids`` match later receipts."""

    provider: str
    provider_message_ids: tuple[str, ...]
    segments: int = 1


@dataclass(frozen=True)
class Receipt:
    """A final delivery report: ``state`` is one of RECEIPT_STATES."""

    provider: str
    provider_message_id: str
    state: str
    error: str | None
    at: dt.datetime


class DeliveryError(Exception):
    """A send that did not go through; ``reason`` holds no personal data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemporaryFailure(DeliveryError):
    """Try again later (or on the next provider); ``retry_after`` in seconds if known."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    """Retrying this message cannot help: the address or the content is refused."""


@runtime_checkable
class EmailSender(Protocol):
    name: str

    def send(self, email: Email) -> Sent: ...

    def close(self) -> None: ...


@runtime_checkable
class SmsProvider(Protocol):
    name: str

    def send(self, sms: Sms) -> Sent: ...

    def receipts(self) -> list[Receipt]: ...

    def close(self) -> None: ...


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
