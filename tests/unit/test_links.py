"""Signed capability links: purpose, subject and age all bind."""

from __future__ import annotations

import pytest

from shared.auth.links import check_link_token, issue_link_token
from shared.config import load_settings
from shared.errors import ServiceUnavailable, Unauthorized


@pytest.fixture
def settings(tmp_path):  # type: ignore[no-untyped-def]
    return load_settings("raids", env={"OPORA_DATA_DIR": str(tmp_path)})


def test_a_link_opens_only_its_purpose_and_subject(settings) -> None:  # type: ignore[no-untyped-def]
    token = issue_link_token(settings, "raids-feed", "p-1")
    check_link_token(settings, token, "raids-feed", "p-1", 60)
    with pytest.raises(Unauthorized):
        check_link_token(settings, token, "raids-feed", "p-2", 60)
    with pytest.raises(Unauthorized):
        check_link_token(settings, token, "referral-answer", "p-1", 60)


def test_an_old_link_has_expired(settings) -> None:  # type: ignore[no-untyped-def]
    token = issue_link_token(settings, "raids-feed", "p-1")
    with pytest.raises(Unauthorized, match="expired"):
        check_link_token(settings, token, "raids-feed", "p-1", -1)


def test_production_without_a_link_secret_issues_no_links(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        "raids",
        env={
            "OPORA_MODE": "production",
            "RAIDS_DATABASE_URL": "sqlite://",
            "BROKER_URL": "memory://",
            "OPORA_JWKS_URL": "https://idp.test/jwks",
            "OPORA_JWT_ISSUER": "https://idp.test",
            "OPORA_JWT_AUDIENCE": "opora",
        },
    )
    with pytest.raises(ServiceUnavailable):
        issue_link_token(settings, "raids-feed", "p-1")
