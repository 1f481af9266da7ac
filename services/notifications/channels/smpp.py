"""SMS over SMPP 3.4 (smpplib): one bound transceiver session, submit_sm, deliver_sm receipts.

smpplib is blocking and has no reader thread, so this class owns the socket and reads it
only at two moments, both under one lock:

- ``send``: before submitting, whatever the centre already sent (receipts, enquire_link,
  an unbind, or the end of the stream when it dropped us) is drained with a zero-timeout
  ``select``; then each submit_sm waits for its own submit_sm_resp (matched by sequence
  number) with the socket timeout, handling any deliver_sm that arrives in between.
- ``receipts``: the same zero-timeout drain; it never waits for data that is not there,
  and if a send holds the lock it returns what is already collected instead of waiting.

The receipts read either way are kept in a list until ``receipts()`` hands them over, so
N3 calls ``receipts()`` from a short periodic job. When the session has been idle for
``enquire_every`` seconds an enquire_link checks it (keep-alive). A session found broken
before a submit is re-opened once; a failure during a submit is a TemporaryFailure and
the next send binds afresh. Long texts go as concatenated parts (8-bit reference UDH, the
same layout as ``smpplib.gsm.make_parts``), but are cut by ``sms.split_segments`` so a part
never splits a GSM escape pair or a UTF-16 surrogate pair (make_parts may), and the number
of parts is exactly what ``sms.segments`` counted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import re
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import smpplib.client
import smpplib.consts as c
import smpplib.exceptions
import smpplib.smpp

from services.notifications.channels import sms as sms_rules
from services.notifications.channels.base import (
    PermanentFailure,
    Receipt,
    Sent,
    Sms,
    TemporaryFailure,
    utc_now,
)
from services.notifications.channels.ratelimit import TokenBucket

log = logging.getLogger(__name__)

# Submit statuses that say "this message, to this number, will never go": everything else
# (throttling, queue full, system errors, unknown codes) is worth another try or provider.
PERMANENT_STATUSES = {
    c.SMPP_ESME_RINVMSGLEN,
    c.SMPP_ESME_RINVDSTADR,
    c.SMPP_ESME_RINVDSTTON,
    c.SMPP_ESME_RINVDSTNPI,
    c.SMPP_ESME_RINVESMCLASS,
    c.SMPP_ESME_RX_R_APPN,
}
THROTTLED_RETRY_AFTER = 1.0

# stat: of a delivery receipt -> our state; ENROUTE/ACCEPTD are not final and are skipped.
RECEIPT_STATS = {
    "DELIVRD": "delivered",
    "UNDELIV": "bounced",
    "REJECTD": "bounced",
    "EXPIRED": "failed",
    "DELETED": "failed",
    "UNKNOWN": "failed",
}
# message_state TLV (SMPP 3.4 5.2.28) -> stat
MESSAGE_STATES = {
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    7: "UNKNOWN",
    8: "REJECTD",
}
_FIELD = re.compile(r"\b(id|stat|err):(\S*)", re.IGNORECASE)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.rstrip(b"\x00").decode("latin-1")
    return str(value).rstrip("\x00")


def parse_receipt_text(
    provider: str,
    text: str,
    *,
    receipted_id: str | None = None,
    message_state: int | None = None,
    at: dt.datetime | None = None,
) -> Receipt | None:
    """A Receipt from a deliver_sm receipt ("id:... stat:DELIVRD err:000 ..."); None if not final.

    The receipted_message_id and message_state TLVs, when present, win over the text.
    """
    fields = {k.lower(): v for k, v in _FIELD.findall(text)}
    message_id = receipted_id or fields.get("id")
    stat = MESSAGE_STATES.get(message_state or -1) or fields.get("stat", "").upper()
    state = RECEIPT_STATS.get(stat)
    if not message_id or state is None:
        return None
    error = None if state == "delivered" else f"{stat} err:{fields.get('err', '?')}"
    return Receipt(provider, message_id, state, error, at or utc_now())


class _Broken(Exception):
    """The session is gone (end of stream, reset, unbind from the centre)."""


class SmppProvider:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        system_type: str = "",
        source: str = "Opora",
        name: str = "smpp",
        rate: float | None = None,
        timeout: float = 5.0,
        enquire_every: float = 30.0,
        max_parts: int = 10,
        registered_delivery: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.system_id, self._password, self.system_type = system_id, password, system_type
        self.source = source
        self.timeout = timeout
        self.enquire_every = enquire_every
        self.max_parts = max_parts
        self.registered_delivery = registered_delivery
        self.bucket = TokenBucket(rate) if rate else None
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[Receipt] = []
        self._client: smpplib.client.Client | None = None
        self._last_io = 0.0
        self._expect_receipts = False
        self._next_reconnect = 0.0
        self.binds = 0  # sessions opened so far (tests, benchmark)

    # --- session ---------------------------------------------------------------------------

    def _bind(self) -> smpplib.client.Client:
        client = smpplib.client.Client(
            self.host, self.port, timeout=self.timeout, allow_unknown_opt_params=True
        )
        try:
            client.connect()
            client.bind_transceiver(
                system_id=self.system_id, password=self._password, system_type=self.system_type
            )
        except smpplib.exceptions.PDUError as exc:
            _close(client)
            status = exc.args[1] if len(exc.args) > 1 else "?"
            raise TemporaryFailure(f"SMPP bind refused (status {status})") from exc
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            _close(client)
            raise TemporaryFailure("SMPP centre unreachable") from exc
        self.binds += 1
        self._last_io = self._clock()
        return client

    def _drop(self) -> None:
        if self._client is not None:
            _close(self._client)
            self._client = None

    def _read(self, client: smpplib.client.Client) -> Any:
        try:
            pdu = client.read_pdu()
        except (smpplib.exceptions.ConnectionError, ConnectionError) as exc:
            raise _Broken() from exc
        self._last_io = self._clock()
        return pdu

    def _respond(self, client: smpplib.client.Client, command: str, pdu: Any) -> None:
        reply = smpplib.smpp.make_pdu(command, client=client)
        reply.sequence = pdu.sequence
        try:
            client.send_pdu(reply)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError) as exc:
            raise _Broken() from exc

    def _handle(self, client: smpplib.client.Client, pdu: Any) -> None:
        """A PDU that is not the response being waited for."""
        if pdu.command == "deliver_sm":
            self._respond(client, "deliver_sm_resp", pdu)
            receipt = parse_receipt_text(
                self.name,
                _text(pdu.short_message),
                receipted_id=_text(getattr(pdu, "receipted_message_id", None)) or None,
                message_state=getattr(pdu, "message_state", None),
                at=self._now(),
            )
            if receipt is not None:
                with self._pending_lock:
                    self._pending.append(receipt)
        elif pdu.command == "enquire_link":
            self._respond(client, "enquire_link_resp", pdu)
        elif pdu.command == "unbind":
            self._respond(client, "unbind_resp", pdu)
            raise _Broken()

    def _drain(self, client: smpplib.client.Client, limit: int = 1000) -> None:
        """Handle whatever already arrived, without waiting; _Broken at end of stream."""
        sock = client._socket
        for _ in range(limit):
            if sock is None:
                raise _Broken()
            try:
                readable, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError) as exc:
                raise _Broken() from exc
            if not readable:
                return
            try:
                self._handle(client, self._read(client))
            except TimeoutError as exc:  # half a PDU, then silence
                raise _Broken() from exc

    def _exchange(self, client: smpplib.client.Client, request: Any) -> Any:
        """Send ``request`` and wait for the PDU answering it (same sequence number)."""
        try:
            client.send_pdu(request)
        except smpplib.exceptions.ConnectionError as exc:
            raise _Broken() from exc
        while True:
            pdu = self._read(client)
            if pdu.sequence == request.sequence and (
                pdu.command == request.command + "_resp" or pdu.command == "generic_nack"
            ):
                return pdu
            self._handle(client, pdu)

    def _keepalive(self, client: smpplib.client.Client) -> None:
        if self._clock() - self._last_io < self.enquire_every:
            return
        try:
            self._exchange(client, smpplib.smpp.make_pdu("enquire_link", client=client))
        except TimeoutError as exc:
            raise _Broken() from exc

    def _session(self) -> tuple[smpplib.client.Client, bool]:
        """A live bound session (reused or fresh); one re-bind when the old one is broken."""
        if self._client is not None:
            try:
                self._drain(self._client)
                self._keepalive(self._client)
                return self._client, True
            except _Broken:
                log.info("SMPP session lost; binding again", extra={"provider": self.name})
                self._drop()
        self._client = self._bind()
        return self._client, False

    # --- sending ---------------------------------------------------------------------------

    def _addresses(self, to: str) -> dict[str, Any]:
        numeric = self.source.lstrip("+").isdigit()
        return {
            "source_addr_ton": c.SMPP_TON_INTL if numeric else c.SMPP_TON_ALNUM,
            "source_addr_npi": c.SMPP_NPI_ISDN if numeric else c.SMPP_NPI_UNK,
            "source_addr": self.source.lstrip("+"),
            "dest_addr_ton": c.SMPP_TON_INTL,
            "dest_addr_npi": c.SMPP_NPI_ISDN,
            "destination_addr": to.lstrip("+"),
        }

    def _payloads(self, text: str) -> tuple[int, list[bytes], int]:
        """(data_coding, encoded parts with UDH when concatenated, esm_class)."""
        encoding, chunks = sms_rules.split_segments(text)
        data_coding = c.SMPP_ENCODING_ISO10646 if encoding == sms_rules.UCS2 else 0
        encoded = [sms_rules.encode(chunk, encoding) for chunk in chunks]
        if len(encoded) == 1:
            return data_coding, encoded, c.SMPP_MSGTYPE_DEFAULT
        ref = random.randint(0, 255)
        total = len(encoded)
        parts = [bytes((5, 0, 3, ref, total, i)) + body for i, body in enumerate(encoded, 1)]
        return data_coding, parts, c.SMPP_GSMFEAT_UDHI

    def send(self, sms: Sms) -> Sent:
        try:
            to = sms_rules.normalise_phone(sms.to)
        except ValueError as exc:
            raise PermanentFailure(str(exc)) from exc
        if not sms.text:
            raise PermanentFailure("SMS text is empty")
        sms_rules.fit(sms.text, self.max_parts, "refuse")
        data_coding, parts, esm_class = self._payloads(sms.text)
        if self.bucket is not None:
            # the whole message at once: never half-sent because of our own limit
            self.bucket.acquire(min(float(len(parts)), self.bucket.burst))
        addresses = self._addresses(to)
        with self._lock:
            ids = self._submit_all(parts, addresses, data_coding, esm_class)
        return Sent(self.name, tuple(ids), segments=len(parts))

    def _submit_all(
        self,
        parts: list[bytes],
        addresses: dict[str, Any],
        data_coding: int,
        esm_class: int,
        retry: bool = True,
    ) -> list[str]:
        ids: list[str] = []
        client, reused = self._session()
        for index, part in enumerate(parts):
            request = smpplib.smpp.make_pdu(
                "submit_sm",
                client=client,
                **addresses,
                esm_class=esm_class,
                data_coding=data_coding,
                short_message=part,
                registered_delivery=1 if self.registered_delivery else 0,
            )
            try:
                resp = self._exchange(client, request)
            except TimeoutError as exc:
                self._drop()
                raise TemporaryFailure("SMPP submit timed out") from exc
            except (_Broken, smpplib.exceptions.PDUError) as exc:
                self._drop()
                if index == 0 and reused and retry:  # nothing acknowledged: once more, new session
                    return self._submit_all(parts, addresses, data_coding, esm_class, False)
                raise TemporaryFailure("SMPP session broke during submit") from exc
            status = int(resp.status or 0)
            if status != c.SMPP_ESME_ROK:
                raise _map_status(status, resp.command)
            ids.append(_text(resp.message_id))
        self._expect_receipts = self._expect_receipts or self.registered_delivery
        return ids

    # --- receipts --------------------------------------------------------------------------

    def receipts(self) -> list[Receipt]:
        """Receipts read so far plus what already waits on the socket; never blocks on data."""
        if self._lock.acquire(blocking=False):
            try:
                self._poll()
            finally:
                self._lock.release()
        with self._pending_lock:
            pending, self._pending = self._pending, []
        return pending

    def _poll(self) -> None:
        if self._client is None:
            # receipts of earlier sends arrive on whatever session we bind next
            if not self._expect_receipts or self._clock() < self._next_reconnect:
                return
            try:
                self._client = self._bind()
            except TemporaryFailure:
                self._next_reconnect = self._clock() + self.enquire_every
                return
        try:
            self._drain(self._client)
            self._keepalive(self._client)
        except _Broken:
            self._drop()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            if client is None:
                return
            with contextlib.suppress(TimeoutError, _Broken, smpplib.exceptions.PDUError, OSError):
                self._exchange(client, smpplib.smpp.make_pdu("unbind", client=client))
            _close(client)


def _map_status(status: int, command: str) -> TemporaryFailure | PermanentFailure:
    description = c.DESCRIPTIONS.get(status, "unknown status")
    reason = f"SMPP {command} status 0x{status:02X} ({description})"
    if command == "generic_nack" or status not in PERMANENT_STATUSES:
        retry_after = THROTTLED_RETRY_AFTER if status == c.SMPP_ESME_RTHROTTLED else None
        return TemporaryFailure(reason, retry_after=retry_after)
    return PermanentFailure(reason)


def _close(client: smpplib.client.Client) -> None:
    client.state = c.SMPP_CLIENT_STATE_OPEN  # a dropped session: no "bound state" warning
    with contextlib.suppress(OSError):
        client.disconnect()
    client._socket = None
