"""Email: one reused SMTP session (STARTTLS or implicit TLS, AUTH), or a folder of .eml files.

The MIME is the same for both: text and HTML as multipart/alternative, attachments after
it, a raid's .ics as ``text/calendar; method=...`` so mail clients offer to accept the
invitation. The Message-ID is ours (``<message_id@opora>``), so a resend after a crash is
recognisable as the same message by the recipient's client.

SMTP replies are mapped, never echoed (they often quote the address): 4xx and connection
trouble are TemporaryFailure, 5xx and refused recipients PermanentFailure. Authentication
refusals (530/534/535/538) are temporary on purpose: they are our configuration, not the
message, and the message should go once the password is fixed.
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import functools
import os
import re
import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from email import encoders
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.utils import formatdate
from pathlib import Path
from typing import Literal

import icalendar

from services.notifications.channels.base import (
    Attachment,
    DeliveryError,
    Email,
    PermanentFailure,
    Sent,
    TemporaryFailure,
)

Security = Literal["starttls", "tls", "none"]
# compat32 classes: the same MIME as EmailMessage at a third of the CPU (the default policy
# parses every header it sets), which is what lets SmtpSender keep up with a raw smtplib loop.


class _WirePolicy(email.policy.Compat32):
    """compat32 with CRLF, and our headers written as they are.

    Compat32 runs every header through email.header.Header to fold it; ours are short
    ASCII, or already encoded and folded (a non-ASCII Subject, see ``encoded_header``), so
    that work is skipped.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if isinstance(value, str) and _written_as_is(name, value):
            return f"{name}: {value}\r\n".encode("ascii")
        return super().fold_binary(name, value)


def _written_as_is(name: str, value: str) -> bool:
    """ASCII, no bare CR or LF, and folded already: continuation lines start with a blank."""
    if not value.isascii():
        return False
    if "\r" not in value and "\n" not in value:  # the usual case: one short line
        return len(name) + len(value) + 2 <= 78
    first, *rest = value.split("\r\n")
    lines = [f"{name}: {first}", *rest]
    return all(len(line) <= 78 and "\r" not in line and "\n" not in line for line in lines) and all(
        line[:1] in (" ", "\t") for line in rest
    )


_WIRE = _WirePolicy(linesep="\r\n")
_AUTH_CODES = {530, 534, 535, 538}
_RECONNECT_CODES = {421}  # "service not available, closing channel": a stale session
_LONGEST_7BIT_LINE = 900  # RFC 5321 allows 998; longer lines go base64
_NEWLINES = re.compile(r"\r\n|\r|\n")  # what the generator splits body lines on


def header_message_id(message_id: str) -> str:
    return f"<{message_id}@opora>"


@functools.lru_cache(maxsize=64)  # one raid's .ics goes to every participant
def calendar_method(data: bytes) -> str:
    """METHOD of an iCalendar object (REQUEST, CANCEL, PUBLISH...); PUBLISH when absent."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise PermanentFailure("calendar attachment is not valid iCalendar") from exc
    method = calendar.get("METHOD")
    return str(method).strip().upper() if method else "PUBLISH"


def _is_calendar(attachment: Attachment) -> bool:
    kind = attachment.content_type.split(";", 1)[0].strip().lower()
    return kind == "text/calendar" or attachment.filename.lower().endswith(".ics")


def _part(content_type: str, encoding: str, payload: str) -> Message:
    """A leaf part with its headers set as text: what MIMEText writes, without the parameter
    parsing and charset machinery it runs for every part."""
    part = Message()
    part["Content-Type"] = content_type
    part["Content-Transfer-Encoding"] = encoding
    part.set_payload(payload)
    return part


def _base64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")  # lines of 76, as MIME wants


def _text_part(text: str, subtype: str) -> Message:
    """7bit when ASCII with short lines, else UTF-8 in base64 (passes any relay)."""
    plain = text.isascii() and all(len(line) <= _LONGEST_7BIT_LINE for line in text.splitlines())
    if plain:
        return _part(f'text/{subtype}; charset="us-ascii"', "7bit", text)
    return _part(f'text/{subtype}; charset="utf-8"', "base64", _base64(text.encode("utf-8")))


def _calendar_part(attachment: Attachment) -> Message:
    """``text/calendar; method=REQUEST; charset=UTF-8``, unquoted as iMIP (RFC 6047) writes it.

    Base64 keeps the CRLF line ends iCalendar requires.
    """
    method = calendar_method(attachment.data)
    try:
        attachment.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentFailure("calendar attachment is not UTF-8") from exc
    part = _part(
        f"text/calendar; method={method}; charset=UTF-8", "base64", _base64(attachment.data)
    )
    part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
    return part


def _attachment_part(attachment: Attachment) -> Message:
    if _is_calendar(attachment):
        return _calendar_part(attachment)
    maintype, _, subtype = attachment.content_type.split(";", 1)[0].strip().partition("/")
    if not maintype or not subtype or "/" in subtype:
        maintype, subtype = "application", "octet-stream"
    part = MIMEBase(maintype, subtype)
    del part["MIME-Version"]
    part.set_payload(attachment.data)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
    return part


def _header(value: str, name: str) -> str:
    """The value, RFC 2047-encoded when not ASCII."""
    if "\r" in value or "\n" in value:
        raise PermanentFailure(f"the email's {name} header contains a line break")
    return value if value.isascii() else encoded_header(value, name)


@functools.lru_cache(maxsize=256)  # a raid's invitation, a signal: one subject, many people
def encoded_header(value: str, name: str) -> str:
    """``=?utf-8?b?...?=`` words, folded with CRLF as compat32 would fold the Header."""
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _boundary() -> str:
    """Random, and with "-" and "_" it can never occur in base64 (saves the generator's scan)."""
    return f"=_opora-{uuid.uuid4().hex}_"


def _multipart(subtype: str, parts: list[Message | str]) -> Message:
    """A multipart container, its Content-Type folded as compat32 folds it (written as is)."""
    container = Message()
    container["Content-Type"] = f'multipart/{subtype};\r\n boundary="{_boundary()}"'
    container.set_payload(parts)
    return container


def build_mime(mail: Email, sender: str) -> Message:
    """The MIME message for ``mail``; PermanentFailure when its headers or parts are unusable."""
    root: Message = _text_part(mail.text, "plain")
    if mail.html is not None:
        root = _multipart("alternative", [root, _text_part(mail.html, "html")])
    if mail.attachments:
        root = _multipart("mixed", [root, *(_attachment_part(a) for a in mail.attachments)])
    root["MIME-Version"] = "1.0"
    root["From"] = _header(sender, "From")
    root["To"] = _header(mail.to, "To")
    root["Subject"] = _header(mail.subject, "Subject")
    root["Date"] = formatdate(localtime=False)
    root["Message-ID"] = header_message_id(mail.message_id)
    root["Auto-Submitted"] = "auto-generated"
    return root


def wire_bytes(message: Message) -> bytes:
    """The message as sent: CRLF line ends, no From-mangling.

    The bytes ``BytesGenerator(policy=_WIRE)`` writes for what ``build_mime`` builds (a test
    holds them equal), written a part at a time: the generator writes every line of a body
    through its own ``write``, and a base64 body is fifty lines.
    """
    out = bytearray()
    _flatten(message, out)
    return bytes(out)


def _flatten(part: Message, out: bytearray) -> None:
    for name, value in part.raw_items():
        out += _WIRE.fold_binary(name, value)
    out += b"\r\n"
    payload = part.get_payload()
    if isinstance(payload, list):
        boundary = f"--{part.get_boundary()}".encode("ascii")
        bodies = []
        for sub in payload:
            assert isinstance(sub, Message)
            body = bytearray()
            _flatten(sub, body)
            bodies.append(bytes(body))
        out += boundary + b"\r\n"
        out += (b"\r\n" + boundary + b"\r\n").join(bodies)
        out += b"\r\n" + boundary + b"--\r\n"
    elif isinstance(payload, str) and payload:
        crlf = (
            payload.replace("\n", "\r\n") if "\r" not in payload else _NEWLINES.sub("\r\n", payload)
        )
        out += crlf.encode("ascii", "surrogateescape")


def map_smtp_error(exc: BaseException) -> DeliveryError:
    """Temporary or permanent, with a reason that never quotes the server's reply."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()] or [550]
        code = codes[0]
        if 400 <= code < 500:
            return TemporaryFailure(f"recipient deferred ({code})")
        return PermanentFailure(f"recipient refused ({code})")
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        if isinstance(exc, smtplib.SMTPAuthenticationError) or code in _AUTH_CODES:
            return TemporaryFailure(f"SMTP authentication failed ({code})")
        if 500 <= code < 600:
            return PermanentFailure(f"SMTP refused the message ({code})")
        return TemporaryFailure(f"SMTP deferred the message ({code})")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TemporaryFailure("SMTP server lacks a required extension (STARTTLS or AUTH)")
    return TemporaryFailure(f"SMTP connection failed: {type(exc).__name__}")


class SmtpSender:
    """One SMTP session reused across sends, re-opened once when it turns out stale.

    A session idle for more than ``idle_check`` seconds gets a NOOP first. A session that
    drops during a send (SMTPServerDisconnected, reset, 421) is re-opened and the send
    retried once; a failure on a fresh session is reported as is. Thread-safe (one lock).
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        user: str | None = None,
        password: str | None = None,
        security: Security = "starttls",
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "smtp",
        idle_check: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError("security must be 'starttls', 'tls' or 'none'")
        self.name = name
        self.host, self.port, self.sender = host, port, sender
        self.user, self._password = user, password
        self.security = security
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.idle_check = idle_check
        self._clock = clock
        self._client: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._lock = threading.Lock()
        self.connections = 0  # sessions opened so far: tests and the benchmark read it

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            client.ehlo()
            if self.security == "starttls":
                client.starttls(context=self._context())
                client.ehlo()
            if self.user:
                client.login(self.user, self._password or "")
        except BaseException:
            _quietly_close(client)
            raise
        self.connections += 1
        return client

    def _session(self) -> tuple[smtplib.SMTP, bool]:
        """The open session (reused or not) after a NOOP if it sat idle too long."""
        client = self._client
        if client is not None and self._clock() - self._last_used > self.idle_check:
            try:
                code, _ = client.noop()
                if code != 250:
                    raise smtplib.SMTPServerDisconnected("NOOP refused")
            except (smtplib.SMTPException, OSError):
                self._drop()
                client = None
        if client is not None:
            return client, True
        self._client = self._connect()
        return self._client, False

    def _drop(self) -> None:
        if self._client is not None:
            _quietly_close(self._client)
            self._client = None

    def send(self, email: Email) -> Sent:
        if not email.to.isascii():
            raise PermanentFailure("recipient address is not ASCII (SMTPUTF8 is not used)")
        data = wire_bytes(build_mime(email, self.sender))
        with self._lock:
            try:
                for attempt in (1, 2):
                    client, reused = self._session()
                    try:
                        client.sendmail(self.sender, [email.to], data)
                        break
                    except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                        self._drop()
                        if not reused or attempt == 2:
                            raise map_smtp_error(exc) from exc
                    except smtplib.SMTPResponseException as exc:
                        if exc.smtp_code in _RECONNECT_CODES and reused and attempt == 1:
                            self._drop()
                            continue
                        if exc.smtp_code in _RECONNECT_CODES:
                            self._drop()
                        raise map_smtp_error(exc) from exc
                self._last_used = self._clock()
            except DeliveryError:
                raise
            except smtplib.SMTPRecipientsRefused as exc:
                raise map_smtp_error(exc) from exc
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                raise map_smtp_error(exc) from exc
        return Sent(self.name, (header_message_id(email.message_id),))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    self._client.quit()
                self._drop()


def _quietly_close(client: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        client.close()


class FolderSender:
    """The embedded mode and test mode: each email a ``<message_id>@opora.eml`` file."""

    def __init__(self, folder: Path, sender: str, name: str = "folder") -> None:
        self.name = name
        self.folder = Path(folder)
        self.sender = sender

    def send(self, email: Email) -> Sent:
        data = wire_bytes(build_mime(email, self.sender))
        self.folder.mkdir(parents=True, exist_ok=True)
        message_id = header_message_id(email.message_id)
        path = self.folder / f"{message_id.strip('<>')}.eml"
        tmp = self.folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a reader never sees half a file; a resend overwrites
        return Sent(self.name, (message_id,))

    def close(self) -> None:
        pass
