"""What the outside world received: SMS gateways that tell an accepted SMS from one the client
gave up on, an SMTP server that counts what it refused, and an agency's webhook endpoint.

``CountingGateway`` is the HTTP gateway peer of ``tests/notifications/peers.py`` with one
addition: when it answers, it looks whether the client is still there. A request that the
client abandoned (it timed out while the gateway was slow) is not counted as accepted: the
client saw a failure and went on to the next provider. A real gateway might still send such an
SMS (the Idempotency-Key does not span two providers); the report counts them apart.
"""

from __future__ import annotations

import contextlib
import io
import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from notifications.peers import HOST, HttpGatewayPeer, SmtpPeer


@dataclass(frozen=True)
class Accepted:
    """An SMS the gateway answered 200 to, with the client waiting for the answer."""

    message_id: str
    gateway: str
    at: float  # monotonic


def client_gone(sock: socket.socket) -> bool:
    """The client closed its end (an EOF waits to be read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class CountingGateway(HttpGatewayPeer):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.accepted: list[Accepted] = []
        self.abandoned: list[str] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base: Any = super()._handler()
        peer = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                # Read the body here too: the base handler keeps it to itself.
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                original, self.rfile = self.rfile, io.BytesIO(raw)
                try:
                    self.chaos_body = json.loads(raw or b"null")
                except ValueError:
                    self.chaos_body = None
                try:
                    super().do_POST()
                finally:
                    self.rfile = original

            def _answer(
                self, status: int, body: Any, headers: dict[str, str] | None = None
            ) -> None:
                sms = self.chaos_body
                if self.path.startswith("/send") and status == 200 and isinstance(sms, dict):
                    peer._record(str(sms.get("message_id")), client_gone(self.connection))
                super()._answer(status, body, headers)

        return Handler

    def _record(self, message_id: str, gone: bool) -> None:
        with self._lock:
            if gone:
                self.abandoned.append(message_id)
            else:
                self.accepted.append(Accepted(message_id, self.name, time.monotonic()))

    def send_url(self, timeout: float) -> str:
        """This gateway as an entry of NOTIFICATIONS_SMS_PROVIDERS."""
        return f"{self.url}?name={self.name}&timeout={timeout:g}"


class CountingSmtp(SmtpPeer):
    """The SMTP peer, counting the MAIL commands it refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 0

    def _refusal(self) -> str | None:
        refusal = super()._refusal()
        if refusal:
            with self._lock:
                self.refusals += 1
        return refusal


@dataclass(frozen=True)
class WebhookCall:
    delivery_id: str
    event: str
    referral_id: str | None
    status: str | None


class WebhookReceiver:
    """An agency system's webhook endpoint: answers 200 and keeps what it got."""

    def __init__(self) -> None:
        self.calls: list[WebhookCall] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/opora/webhook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with contextlib.suppress(ValueError):
                    body = json.loads(raw or b"null")
                    data = body.get("data") or {}
                    with receiver._lock:
                        receiver.calls.append(
                            WebhookCall(
                                self.headers.get("X-Opora-Delivery", ""),
                                str(body.get("event")),
                                data.get("referral_id"),
                                data.get("status"),
                            )
                        )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
