"""How the scenario acts as each party of the story, and how it sees what reached them.

A ``Party`` is one side of the story (the school's system with its API key, the coordinator
with a bearer token, the charity with nothing but a signed link) as the audit trail names it.
``Story`` sends their HTTP requests to the running services, keeps count of every read of the
family's data it makes (so the audit trail can be held to it), and waits for what happens
eventually: it polls with a deadline, never sleeps a fixed time, never compares clocks.
``Outbox`` is what left the system by email and SMS, from the local SMTP server and SMS gateway
(production mode) or from the files the embedded mode writes instead.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_WAIT = 45.0
# Where a public link (OPORA_PUBLIC_URL + path) is served, as the reverse proxy would route it.
ROUTES = (
    ("/r/", "notifications"),
    ("/messages", "notifications"),
    ("/referrals", "referrals"),
    ("/signals", "referrals"),
    ("/fhir", "referrals"),
    ("/raids", "raids"),
    ("/people", "raids"),
    ("/families", "registry"),
    ("/cases", "registry"),
)


@dataclass(frozen=True)
class Party:
    """``actor`` is how the audit trail names the party (token subject, ``apikey:<id>``,
    ``link:<agency>``); ``headers`` authenticate it."""

    name: str
    actor: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Story:
    """HTTP to the running services on behalf of the parties."""

    def __init__(self, urls: Mapping[str, str], public_url: str) -> None:
        self.urls = dict(urls)
        self.public_url = public_url.rstrip("/")
        self.reads: Counter[tuple[str, str]] = Counter()

    # --- requests ------------------------------------------------------------------------------

    def call(
        self,
        party: Party,
        method: str,
        service: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: int | None = 200,
        reads: int = 0,
    ) -> Reply:
        """One request as ``party``. ``reads``: how many reads of the family's data the
        service must audit for it (counted only when the request succeeds)."""
        url = self.urls[service] + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        data = None
        all_headers = {"Accept": "application/json", **party.headers, **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body, default=str).encode()
            all_headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with _OPENER.open(request, timeout=30) as response:
                reply = Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, dict(exc.headers), exc.read())
        if expect is not None and reply.status != expect:
            raise AssertionError(
                f"{party.name}: {method} {service}{path} answered {reply.status}, "
                f"expected {expect}: {reply.body[:600].decode(errors='replace')}"
            )
        if reads and 200 <= reply.status < 300:
            self.reads[(service, party.actor)] += reads
        return reply

    def get(self, party: Party, service: str, path: str, **kw: Any) -> Any:
        return self.call(party, "GET", service, path, **kw).json()

    def post(self, party: Party, service: str, path: str, body: Any = None, **kw: Any) -> Any:
        expect = kw.pop("expect", 200)
        return self.call(
            party, "POST", service, path, json_body=body or {}, expect=expect, **kw
        ).json()

    def put(self, party: Party, service: str, path: str, body: Any, **kw: Any) -> Any:
        return self.call(party, "PUT", service, path, json_body=body, **kw).json()

    def patch(self, party: Party, service: str, path: str, body: Any, **kw: Any) -> Any:
        return self.call(party, "PATCH", service, path, json_body=body, **kw).json()

    def all_pages(self, party: Party, service: str, path: str, **params: Any) -> list[Any]:
        items: list[Any] = []
        page = 1
        while True:
            body = self.get(party, service, path, params={**params, "page": page, "page_size": 100})
            items += body["items"]
            if len(items) >= body["total"] or not body["items"]:
                return items
            page += 1

    def open_link(self, url: str) -> tuple[str, str]:
        """(service, path?query) serving a public link, following one short-link redirect."""
        assert url.startswith(self.public_url), f"{url} is not a link of this system"
        path = url[len(self.public_url) :]
        service = next(s for prefix, s in ROUTES if path.startswith(prefix))
        if path.startswith("/r/"):
            reply = self.call(Party("a phone", "nobody"), "GET", service, path, expect=None)
            assert reply.status in (301, 302, 303, 307, 308), reply
            return self.open_link(reply.headers["Location"])
        return service, path

    # --- time ----------------------------------------------------------------------------------

    @staticmethod
    def eventually(check: Callable[[], T], what: str, timeout: float = DEFAULT_WAIT) -> T:
        """Poll ``check`` until it returns something truthy without an AssertionError."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                result = check()
                if result:
                    return result
                problem = f"got {result!r}"
            except AssertionError as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:.0f} s: {what} ({problem})")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


# --- what left the system ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    attachments: tuple[tuple[str, str], ...]  # (filename, text)


@dataclass(frozen=True)
class Sms:
    to: str
    text: str


def parse_mail(raw: bytes) -> Mail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain", "html"))
    attachments = tuple(
        (part.get_filename() or "", part.get_content()) for part in message.iter_attachments()
    )
    return Mail(
        to=str(message["To"]),
        subject=str(message["Subject"]),
        text=body.get_content() if body is not None else "",
        attachments=tuple((n, c if isinstance(c, str) else c.decode()) for n, c in attachments),
    )


class Outbox:
    """Emails and SMS as the world outside received them."""

    def emails(self) -> list[Mail]:
        raise NotImplementedError

    def sms(self) -> list[Sms]:
        raise NotImplementedError

    def emails_to(self, address: str) -> list[Mail]:
        return [m for m in self.emails() if address in m.to]

    def sms_to(self, phone: str) -> list[Sms]:
        return [s for s in self.sms() if s.to == phone]


class PeerOutbox(Outbox):
    """Production mode: the aiosmtpd server and the HTTP SMS gateway the services talk to."""

    def __init__(self, smtp: Any, gateway: Any) -> None:
        self.smtp, self.gateway = smtp, gateway

    def emails(self) -> list[Mail]:
        return [parse_mail(mail.data) for mail in list(self.smtp.received)]

    def sms(self) -> list[Sms]:
        return [Sms(r.body["to"], r.body["text"]) for r in self.gateway.sends()]


class FolderOutbox(Outbox):
    """Embedded mode: ``<data dir>/mail/*.eml`` and the test-mode SMS lines in ``sms/``."""

    def __init__(self, data_dir: Path) -> None:
        self.mail, self.texts = data_dir / "mail", data_dir / "sms"

    def emails(self) -> list[Mail]:
        return [parse_mail(path.read_bytes()) for path in sorted(self.mail.glob("*.eml"))]

    def sms(self) -> list[Sms]:
        found = []
        for path in sorted(self.texts.glob("*.jsonl")):
            for line in path.read_text("utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    found.append(Sms(record["to"], record["text"]))
        return found


# --- dates -------------------------------------------------------------------------------------


def local_today(zone: str = "Europe/Moscow") -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(zone)).date()


def at_local(day: dt.date, hh_mm: str, zone: str = "Europe/Moscow") -> dt.datetime:
    """A local clock time on ``day`` as an aware UTC moment."""
    from zoneinfo import ZoneInfo

    hours, minutes = (int(x) for x in hh_mm.split(":"))
    return dt.datetime.combine(day, dt.time(hours, minutes), ZoneInfo(zone)).astimezone(dt.UTC)
