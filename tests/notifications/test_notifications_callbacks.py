"""The providers' callbacks reach notifications through the one public origin.

``OPORA_PUBLIC_URL`` is the console's address, and the notifications API builds the URLs it
gives the SMS gateway (``/receipts/<provider>?token=``) and the mail system
(``/bounces?token=``) on it. Here both services run as real HTTP servers on loopback, the URL
handed out is resolved to the console (as the public DNS name would be), the HTTP gateway peer
posts its receipt there and the mail system posts its DSN there: the console passes them on and
the messages' states move.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import System
from werkzeug.serving import make_server

from services.console.app import create_app as create_console
from services.notifications import delivery
from services.notifications.channels.http_gateway import HttpGatewayProvider
from services.notifications.models import Message
from shared import db
from shared.config import load_settings

from . import test_notifications_bounces as bounce_tests
from .peers import HOST, HttpGatewayPeer, wait_until
from .test_notifications_bounces import bounce_path, dsn, state_of

pytestmark = pytest.mark.embedded

sent = bounce_tests.sent  # the fixture: an urgent signal's email sent, its SMS queued
PUBLIC = "https://opora.test"  # OPORA_PUBLIC_URL of the test system: the console's address


class _Served:
    """A WSGI app on a loopback port, in a thread of this test."""

    def __init__(self, app: Any) -> None:
        self.server = make_server(HOST, 0, app, threaded=True)
        self.url = f"http://{HOST}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def console_url(embedded_system: System, tmp_path: Any) -> Iterator[str]:
    """The notifications API and a console in front of it, both served on loopback."""
    api = _Served(embedded_system.app("notifications"))
    console_db = f"sqlite:///{tmp_path / 'console.db'}"
    db.upgrade("console", console_db)
    env = embedded_system.env(CONSOLE_DATABASE_URL=console_db, CONSOLE_NOTIFICATIONS_URL=api.url)
    console = _Served(create_console(load_settings("console", env=env)))
    try:
        yield console.url
    finally:
        console.close()
        api.close()


def admin_url(system: System, path: str) -> str:
    admin = system.app("notifications").test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token('admin')}"
    url: str = admin.get(path).get_json()["url"]
    assert url.startswith(PUBLIC + "/")
    return url


def test_an_sms_receipt_posted_to_the_url_given_to_the_gateway_marks_it_delivered(
    embedded_system: System, sent: dict[str, Any], console_url: str
) -> None:
    system = embedded_system
    callback = admin_url(system, "/receipts/gateway/url").replace(PUBLIC, console_url)
    with system.session("notifications") as session, session.begin():
        session.get(Message, sent["sms"]).next_attempt_at = dt.datetime.now(dt.UTC)  # type: ignore[union-attr]
    worker = system.worker("notifications")
    with HttpGatewayPeer() as gateway:
        provider = HttpGatewayProvider(gateway.url, name="gateway", callback_url=callback)
        pool = delivery.SmsPool([provider])
        try:
            assert delivery.deliver_queued(worker.job_context, sms=pool) == 1
        finally:
            pool.close()
        assert gateway.sends()[0].body["callback_url"] == callback
        assert state_of(system, sent["sms"]) == "sent"
        assert wait_until(lambda: state_of(system, sent["sms"]) == "delivered")
        assert gateway.callback_errors == []


def test_a_bounce_posted_to_the_console_marks_the_email_bounced(
    embedded_system: System, sent: dict[str, Any], console_url: str
) -> None:
    system = embedded_system
    path = bounce_path(system)
    headers = {"Content-Type": "message/rfc822"}
    answer = httpx.post(console_url + path, content=dsn(sent["mail"]), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "matched": True, "message_id": sent["email"], "state": "bounced", "action": "failed",
    }  # fmt: skip
    assert state_of(system, sent["email"]) == "bounced"


def test_the_console_passes_refusals_on_and_nothing_else(
    embedded_system: System, console_url: str
) -> None:
    system = embedded_system
    path = bounce_path(system)
    forged = httpx.post(f"{console_url}{path[:-4]}AAAA", content=dsn(None))
    assert forged.status_code == 401  # the API checks the token; its problem comes back
    assert forged.headers["Content-Type"].startswith("application/problem+json")
    assert httpx.post(console_url + "/bounces", content=dsn(None)).status_code == 422
    receipt = admin_url(system, "/receipts/gateway/url").replace(PUBLIC, console_url)
    other = httpx.post(receipt.replace("/gateway?", "/smpp-a?"), json={"id": "x"})
    assert other.status_code == 401  # a token for one provider opens no other
    # only POST, only these two paths: the API's other routes are not reachable this way
    assert httpx.get(receipt.split("?")[0] + "/url").status_code == 404
    assert httpx.get(receipt).status_code == 404
    assert httpx.post(console_url + "/messages", json={}).status_code in (302, 400, 404)
