"""Real local peers for the notification channels: an SMTP server, an SMPP centre, an SMS gateway.

Each starts on a free port of 127.0.0.1, records what it receives, can be told to misbehave,
and works as a context manager (``with SmppPeer() as smsc: ...``) or through the fixtures in
``conftest.py``. The SMPP and HTTP peers are written here from the SMPP 3.4 specification
and the gateway contract, deliberately not with the libraries the code under test uses, so
an encoding mistake on our side cannot be mirrored by the peer and go unnoticed.

Used by the channel tests, by N3's delivery tests, by the chaos suite and by
``bench/notifications_delivery.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import json
import socket
import ssl
import struct
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value (no sleeps in asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(interval)


# --- a self-signed certificate for 127.0.0.1 / localhost (one per process) ------------------

_CERT: tuple[Path, Path] | None = None
_CERT_LOCK = threading.Lock()


def self_signed_certificate() -> tuple[Path, Path]:
    """(certificate PEM, key PEM) for localhost and 127.0.0.1, made with ``cryptography``."""
    global _CERT
    with _CERT_LOCK:
        if _CERT is not None:
            return _CERT
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        folder = Path(tempfile.mkdtemp(prefix="opora-peer-tls-"))
        cert_path, key_path = folder / "cert.pem", folder / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        _CERT = (cert_path, key_path)
        return _CERT


def server_ssl_context() -> ssl.SSLContext:
    cert, key = self_signed_certificate()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def client_ssl_context() -> ssl.SSLContext:
    """A client context that trusts the peers' certificate (and verifies the host name)."""
    cert, _ = self_signed_certificate()
    return ssl.create_default_context(cafile=str(cert))


# --- SMTP --------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        refusal = self.peer._refusal()
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.peer.rejected:
            return "550 5.1.1 <" + address + ">: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        with self.peer._lock:
            self.peer.received.append(
                ReceivedMail(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(data),
                    tls=server.transport.get_extra_info("ssl_object") is not None,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 2.0.0 accepted"


class _CountingSMTP(SMTP):
    """Counts connections that spoke (EHLO/HELO) so the start-up probe is not counted."""

    peer: SmtpPeer

    async def smtp_EHLO(self, hostname: str) -> None:
        self.peer._saw(self)
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self.peer._saw(self)
        await super().smtp_HELO(hostname)


class _Controller(Controller):
    def __init__(self, peer: SmtpPeer, **kwargs: Any) -> None:
        self.peer = peer
        super().__init__(_Handler(peer), **kwargs)

    def factory(self) -> SMTP:
        server = _CountingSMTP(self.handler, **self.SMTP_kwargs)
        server.peer = self.peer
        return server


class SmtpPeer:
    """aiosmtpd on a free port. ``tls``: None, "starttls" (required) or "implicit".

    ``auth=True`` requires AUTH LOGIN/PLAIN as ``user``/``password``.
    """

    def __init__(
        self,
        *,
        tls: str | None = None,
        auth: bool = False,
        user: str = "opora",
        password: str = "s3cret",
    ) -> None:
        if tls not in (None, "starttls", "implicit"):
            raise ValueError("tls must be None, 'starttls' or 'implicit'")
        self.tls, self.auth = tls, auth
        self.user, self.password = user, password
        self.host = HOST
        self.port = 0
        self.received: list[ReceivedMail] = []
        self.rejected: set[str] = set()
        self.auth_failures = 0
        self._sessions: list[SMTP] = []
        self._refuse_until = 0.0
        self._refuse_code = 451
        self._lock = threading.Lock()
        self._controller: _Controller | None = None

    # controls
    def refuse_for(self, seconds: float, code: int = 451) -> None:
        """Answer MAIL FROM with ``code`` for the next ``seconds``."""
        self._refuse_until = time.monotonic() + seconds
        self._refuse_code = code

    def reject_recipient(self, address: str) -> None:
        self.rejected.add(address.lower())

    def drop_connections(self) -> None:
        """Close every open client connection from the server side."""
        assert self._controller is not None
        with self._lock:
            sessions = list(self._sessions)
        for server in sessions:
            # abort, not close: a TLS close waits for the client's close_notify
            for transport in (server.transport, server._original_transport):
                if transport is not None:
                    self._controller.loop.call_soon_threadsafe(
                        cast(asyncio.Transport, transport).abort
                    )

    # observations
    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sessions)

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [mail.message for mail in self.received]

    def _saw(self, server: SMTP) -> None:
        with self._lock:
            if not any(s is server for s in self._sessions):
                self._sessions.append(server)

    def _refusal(self) -> str | None:
        if time.monotonic() < self._refuse_until:
            code = self._refuse_code
            return f"{code} {code // 100}.3.2 not accepting mail right now"
        return None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user.encode()
            and auth_data.password == self.password.encode()
        )
        if not ok:
            self.auth_failures += 1
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    def start(self) -> SmtpPeer:
        self.port = free_port()
        kwargs: dict[str, Any] = {"hostname": HOST, "port": self.port}
        if self.tls == "implicit":
            kwargs["ssl_context"] = server_ssl_context()
        elif self.tls == "starttls":
            kwargs["tls_context"] = server_ssl_context()
            kwargs["require_starttls"] = True
        if self.auth:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = self.tls is not None
        self._controller = _Controller(self, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            with contextlib.suppress(Exception):
                self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- SMPP 3.4 ----------------------------------------------------------------------------------

BIND_RECEIVER, BIND_TRANSMITTER, SUBMIT_SM, DELIVER_SM = 0x01, 0x02, 0x04, 0x05
UNBIND, BIND_TRANSCEIVER, ENQUIRE_LINK = 0x06, 0x09, 0x15
RESP, GENERIC_NACK = 0x80000000, 0x80000000
ESME_ROK, ESME_RINVCMDID, ESME_RINVBNDSTS, ESME_RBINDFAIL = 0x00, 0x03, 0x04, 0x0D
ESME_RINVDSTADR, ESME_RTHROTTLED = 0x0B, 0x58
TLV_RECEIPTED_MESSAGE_ID, TLV_MESSAGE_STATE = 0x001E, 0x0427
STAT_TO_STATE = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "UNKNOWN": 7, "REJECTD": 8}

# GSM 03.38, written out again on purpose (see the module docstring).
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
                 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}  # fmt: skip


def decode_gsm7(data: bytes) -> str:
    out, escape = [], False
    for byte in data:
        if escape:
            out.append(GSM_EXTENSION.get(byte, "?"))
            escape = False
        elif byte == 0x1B:
            escape = True
        else:
            out.append(GSM_BASIC[byte & 0x7F])
    return "".join(out)


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def cstring(self) -> str:
        end = self.body.index(b"\x00", self.pos)
        value = self.body[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return value

    def byte(self) -> int:
        value = self.body[self.pos]
        self.pos += 1
        return value

    def octets(self, n: int) -> bytes:
        value = self.body[self.pos : self.pos + n]
        self.pos += n
        return value


def pdu(command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def cstr(text: str) -> bytes:
    return text.encode("latin-1") + b"\x00"


@dataclass
class SubmittedPart:
    source: str
    destination: str
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    message_id: str | None
    udh: tuple[int, int, int] | None  # (reference, total, sequence) of a concatenated part
    text: str
    received_at: float = 0.0  # time.perf_counter() when its submit_sm was read (latency bench)


@dataclass
class ReceivedSms:
    destination: str
    text: str
    parts: int
    data_coding: int
    message_ids: list[str] = field(default_factory=list)


@dataclass
class _Session:
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    bound: bool = False
    system_id: str = ""
    sequence: int = 0

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def next_sequence(self) -> int:
        with self.lock:
            self.sequence += 1
            return self.sequence


class SmppPeer:
    """A small SMSC: bind_transceiver, submit_sm, enquire_link, unbind, deliver_sm receipts."""

    def __init__(
        self,
        *,
        system_id: str = "opora",
        password: str = "secret",
        receipt_delay: float = 0.05,
        receipt_stat: str = "DELIVRD",
    ) -> None:
        self.system_id, self.password = system_id, password
        self.receipt_delay = receipt_delay
        self.receipt_stat = receipt_stat
        self.host, self.port = HOST, 0
        self.parts: list[SubmittedPart] = []
        self.messages: list[ReceivedSms] = []
        self.binds = 0
        self.enquire_links = 0
        self.enquire_link_resps = 0
        self.deliver_sm_resps = 0
        self.receipts_sent: list[str] = []
        self._delay = 0.0
        self._fail: list[int] = []
        self._concat: dict[tuple[str, int], dict[int, SubmittedPart]] = {}
        self._undelivered: list[bytes] = []  # receipts waiting for a bound session
        self._sessions: list[_Session] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._running = False
        self._ids = 0

    # controls
    def slow(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each submit_sm."""
        self._delay = seconds

    def fail_next(self, n: int, status: int) -> None:
        """Answer the next ``n`` submit_sm with ``status`` (e.g. 0x58 throttled)."""
        with self._lock:
            self._fail.extend([status] * n)

    def drop_sessions(self) -> None:
        """Close every client session from the server side; keep listening."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            with contextlib.suppress(OSError):
                session.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                session.sock.close()

    def enquire_all(self) -> None:
        """Send enquire_link to every bound session (the client must answer)."""
        for session in self._bound():
            session.send(pdu(ENQUIRE_LINK, session.next_sequence()))

    def stop(self) -> None:
        self._running = False
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        self.drop_sessions()

    # observations
    @property
    def sessions(self) -> int:
        return len(self._bound())

    def _bound(self) -> list[_Session]:
        with self._lock:
            return [s for s in self._sessions if s.bound]

    # server
    def start(self) -> SmppPeer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running = True
        threading.Thread(target=self._accept, name="smpp-peer", daemon=True).start()
        return self

    def _accept(self) -> None:
        while self._running and self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(sock)
            with self._lock:
                self._sessions.append(session)
            threading.Thread(target=self._serve, args=(session,), daemon=True).start()

    @staticmethod
    def _recv(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _serve(self, session: _Session) -> None:
        try:
            while self._running:
                length, command, _status, sequence = struct.unpack(
                    ">IIII", self._recv(session.sock, 16)
                )
                body = self._recv(session.sock, length - 16) if length > 16 else b""
                if not self._dispatch(session, command, sequence, body):
                    break
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            with self._lock:
                if session in self._sessions:
                    self._sessions.remove(session)
            with contextlib.suppress(OSError):
                session.sock.close()

    def _dispatch(self, session: _Session, command: int, sequence: int, body: bytes) -> bool:
        if command == BIND_TRANSCEIVER:
            reader = _Reader(body)
            system_id, password = reader.cstring(), reader.cstring()
            if system_id != self.system_id or password != self.password:
                session.send(pdu(command | RESP, sequence, cstr("peer"), ESME_RBINDFAIL))
                return True
            session.bound, session.system_id = True, system_id
            with self._lock:
                self.binds += 1
                waiting, self._undelivered = self._undelivered, []
            session.send(pdu(command | RESP, sequence, cstr("peer")))
            for receipt in waiting:
                session.send(pdu(DELIVER_SM, session.next_sequence(), receipt))
        elif command in (BIND_TRANSMITTER, BIND_RECEIVER):
            session.send(pdu(command | RESP, sequence, cstr("peer"), ESME_RBINDFAIL))
        elif command == SUBMIT_SM:
            if not session.bound:
                session.send(pdu(command | RESP, sequence, cstr(""), ESME_RINVBNDSTS))
            else:
                self._submit(session, sequence, body)
        elif command == ENQUIRE_LINK:
            self.enquire_links += 1
            session.send(pdu(ENQUIRE_LINK | RESP, sequence))
        elif command == ENQUIRE_LINK | RESP:
            self.enquire_link_resps += 1
        elif command == DELIVER_SM | RESP:
            self.deliver_sm_resps += 1
        elif command == UNBIND:
            session.send(pdu(UNBIND | RESP, sequence))
            return False
        elif command & RESP:
            pass  # other responses: nothing to answer
        else:
            session.send(pdu(GENERIC_NACK, sequence, status=ESME_RINVCMDID))
        return True

    def _submit(self, session: _Session, sequence: int, body: bytes) -> None:
        received_at = time.perf_counter()
        r = _Reader(body)
        r.cstring()  # service_type
        r.byte(), r.byte()
        source = r.cstring()
        r.byte(), r.byte()
        destination = r.cstring()
        esm_class, _pid, _priority = r.byte(), r.byte(), r.byte()
        r.cstring(), r.cstring()  # schedule_delivery_time, validity_period
        registered, _replace, data_coding, _default_id, sm_length = (r.byte() for _ in range(5))
        short_message = r.octets(sm_length)
        if self._delay:
            time.sleep(self._delay)
        with self._lock:
            status = self._fail.pop(0) if self._fail else ESME_ROK
        if status != ESME_ROK:
            session.send(pdu(SUBMIT_SM | RESP, sequence, cstr(""), status))
            return
        udh = None
        payload = short_message
        if esm_class & 0x40 and len(payload) >= 6 and payload[1] == 0x00:
            udh = (payload[3], payload[4], payload[5])
            payload = payload[1 + payload[0] :]
        text = payload.decode("utf-16-be") if data_coding == 8 else decode_gsm7(payload)
        with self._lock:
            self._ids += 1
            message_id = f"{self._ids:08X}"
            part = SubmittedPart(
                source, destination, esm_class, data_coding, registered, short_message,
                message_id, udh, text, received_at,
            )  # fmt: skip
            self.parts.append(part)
            self._assemble(part)
        session.send(pdu(SUBMIT_SM | RESP, sequence, cstr(message_id)))
        if registered & 0x01:
            timer = threading.Timer(
                self.receipt_delay, self._send_receipt, (session, part, self.receipt_stat)
            )
            timer.daemon = True
            timer.start()

    def _assemble(self, part: SubmittedPart) -> None:
        assert part.message_id is not None
        if part.udh is None:
            self.messages.append(
                ReceivedSms(part.destination, part.text, 1, part.data_coding, [part.message_id])
            )
            return
        reference, total, _ = part.udh
        key = (part.destination, reference)
        parts = self._concat.setdefault(key, {})
        parts[part.udh[2]] = part
        if len(parts) == total:
            ordered = [parts[i] for i in sorted(parts)]
            del self._concat[key]
            self.messages.append(
                ReceivedSms(
                    part.destination,
                    "".join(p.text for p in ordered),
                    total,
                    part.data_coding,
                    [p.message_id for p in ordered if p.message_id],
                )
            )

    def _receipt_body(self, part: SubmittedPart, stat: str) -> bytes:
        stamp = dt.datetime.now(dt.UTC).strftime("%y%m%d%H%M")
        delivered = "001" if stat == "DELIVRD" else "000"
        error = "000" if stat == "DELIVRD" else "001"
        text = (
            f"id:{part.message_id} sub:001 dlvrd:{delivered} submit date:{stamp} "
            f"done date:{stamp} stat:{stat} err:{error} text:"
        ).encode("ascii")
        mid = cstr(part.message_id or "")
        tlvs = struct.pack(">HH", TLV_RECEIPTED_MESSAGE_ID, len(mid)) + mid
        tlvs += struct.pack(">HHB", TLV_MESSAGE_STATE, 1, STAT_TO_STATE.get(stat, 7))
        body = (
            cstr("")  # service_type
            + bytes((1, 1)) + cstr(part.destination)
            + bytes((5, 0)) + cstr(part.source)
            + bytes((0x04, 0, 0)) + cstr("") + cstr("")
            + bytes((0, 0, 0, 0, len(text))) + text
        )  # fmt: skip
        return body + tlvs

    def _send_receipt(self, session: _Session, part: SubmittedPart, stat: str) -> None:
        body = self._receipt_body(part, stat)
        targets = [session] if session.bound and session in self._bound() else self._bound()
        for target in targets:
            try:
                target.send(pdu(DELIVER_SM, target.next_sequence(), body))
                self.receipts_sent.append(part.message_id or "")
                return
            except OSError:
                continue
        with self._lock:
            self._undelivered.append(body)  # goes out on the next bind

    def __enter__(self) -> SmppPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- HTTP SMS gateway --------------------------------------------------------------------------


@dataclass
class GatewayRequest:
    path: str
    headers: dict[str, str]
    body: Any
    client: tuple[str, int]


class HttpGatewayPeer:
    """POST /send {to, text, message_id, callback_url?} -> {"id"}; receipts POSTed to the callback.

    It also accepts receipts itself on POST /receipts (``callbacks``), so a test can point
    ``callback_url`` at it and check the callback without N3's API.
    """

    def __init__(self, *, receipt_delay: float = 0.05, receipt_status: str = "delivered") -> None:
        self.receipt_delay = receipt_delay
        self.receipt_status = receipt_status
        self.requests: list[GatewayRequest] = []
        self.callbacks: list[Any] = []
        self.callback_errors: list[str] = []
        self.connections = 0
        self._delay = 0.0
        self._fail: list[tuple[int, dict[str, str]]] = []
        self._ids = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/send"

    @property
    def callback_url(self) -> str:
        return f"http://{HOST}:{self.port}/receipts"

    def slow(self, seconds: float) -> None:
        self._delay = seconds

    def fail_next(self, n: int, status: int, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._fail.extend([(status, headers)] * n)

    def sends(self) -> list[GatewayRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/send")]

    @property
    def send_connections(self) -> int:
        """Distinct client connections that carried sends (callbacks not counted)."""
        return len({r.client for r in self.sends()})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def setup(self) -> None:
                super().setup()
                with peer._lock:
                    peer.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(
                self, status: int, body: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
                with peer._lock:
                    peer.requests.append(
                        GatewayRequest(self.path, dict(self.headers), body, self.client_address)
                    )
                if self.path.startswith("/receipts"):
                    with peer._lock:
                        peer.callbacks.append(body)
                    self._answer(200, {"ok": True})
                    return
                if peer._delay:
                    time.sleep(peer._delay)
                with peer._lock:
                    failure = peer._fail.pop(0) if peer._fail else None
                if failure is not None:
                    self._answer(failure[0], {"error": "failing on request"}, failure[1])
                    return
                if not isinstance(body, dict) or not body.get("to") or not body.get("text"):
                    self._answer(400, {"error": "to and text are required"})
                    return
                with peer._lock:
                    peer._ids += 1
                    gateway_id = f"gw-{peer._ids}"
                self._answer(200, {"id": gateway_id})
                if body.get("callback_url"):
                    peer._schedule_receipt(str(body["callback_url"]), gateway_id, body)

        return Handler

    def _schedule_receipt(self, url: str, gateway_id: str, body: dict[str, Any]) -> None:
        payload = {
            "id": gateway_id,
            "message_id": body.get("message_id"),
            "status": self.receipt_status,
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        if self.receipt_status != "delivered":
            payload["error"] = "absent subscriber"

        def post() -> None:
            request = urllib.request.Request(
                url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
            except OSError as exc:
                self.callback_errors.append(type(exc).__name__)

        timer = threading.Timer(self.receipt_delay, post)
        timer.daemon = True
        timer.start()

    def start(self) -> HttpGatewayPeer:
        self._server = ThreadingHTTPServer((HOST, 0), self._handler())
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

    def __enter__(self) -> HttpGatewayPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
