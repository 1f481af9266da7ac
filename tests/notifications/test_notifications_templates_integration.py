"""Templates on the real PostgreSQL through the wired notifications app: a saved version is what
``render`` uses, a rollback is what it uses next, and a refused one leaves nothing behind."""

from __future__ import annotations

import pytest
from conftest import System

from services.notifications import templates as tpl

pytestmark = pytest.mark.integration

BASE = "/templates/signal.urgent/sms/ru"
CONTEXT = {**tpl.TEMPLATES["signal.urgent"].sample_context(), "surname": "Иванова"}


def current(system: System) -> tpl.Rendered:
    with system.session("notifications") as session:
        return tpl.render(session, "signal.urgent", "sms", "ru", CONTEXT)


def test_save_render_and_roll_back_on_postgresql(system: System) -> None:
    admin = system.client("notifications", "admin")
    assert current(system).version == 0

    first = admin.post(
        BASE + "/versions", json={"text": "СРОЧНО {{ signal_number }}: {{ signal_url }}"}
    )
    assert first.status_code == 201, first.get_json()
    second = admin.post(
        BASE + "/versions", json={"text": "Сигнал {{ signal_number }}! {{ signal_url }}"}
    )
    assert second.get_json()["version"] == 2
    assert current(system).text.startswith("Сигнал S-2026-000077!")

    assert admin.post(BASE + "/versions/1/activate").get_json()["current_version"] == 1
    rendered = current(system)
    assert rendered.version == 1 and rendered.text.startswith("СРОЧНО S-2026-000077:")
    assert "Иванова" not in rendered.text

    refused = admin.post(BASE + "/versions", json={"text": "{{ surname }} {{ signal_url }}"})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"text": ["undeclared placeholder surname"]}
    assert [v["version"] for v in admin.get(BASE).get_json()["versions"]] == [2, 1]

    coordinator = system.client("notifications", "coordinator")
    assert coordinator.post(BASE + "/versions/2/activate").status_code == 403
    preview = coordinator.post(BASE + "/preview", json={}).get_json()
    assert preview["version"] == 1 and preview["sms"]["encoding"] == "UCS-2"
