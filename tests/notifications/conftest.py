"""Fixtures for the notification tests: the local peers of ``peers.py``, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .peers import HttpGatewayPeer, SmppPeer, SmtpPeer


@pytest.fixture
def smtp_server() -> Iterator[SmtpPeer]:
    """Plain SMTP, no TLS, no AUTH (the embedded-style relay)."""
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture
def smtp_tls_server() -> Iterator[SmtpPeer]:
    """STARTTLS required, then AUTH as opora/s3cret; trust it with peers.client_ssl_context()."""
    with SmtpPeer(tls="starttls", auth=True) as peer:
        yield peer


@pytest.fixture
def smpp_server() -> Iterator[SmppPeer]:
    """An SMSC accepting system_id opora / password secret; receipts after 50 ms."""
    with SmppPeer() as peer:
        yield peer


@pytest.fixture
def sms_gateway() -> Iterator[HttpGatewayPeer]:
    with HttpGatewayPeer() as peer:
        yield peer
