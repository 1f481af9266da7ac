"""The demo data `opora up` seeds (shared/demo.py): the district README's walkthrough follows."""

from __future__ import annotations

import pytest
from conftest import System
from sqlalchemy import func, select

from services.notifications.delivery import deliver_queued
from services.notifications.models import Message, Recipient
from services.referrals.models import Agency, RoutingRule
from services.referrals.models import tables as referral_tables
from services.registry.models import CatalogueEntry, Family
from shared import demo
from shared.auth.apikeys import verify_api_key

pytestmark = pytest.mark.embedded


def count(system: System, service: str, model: type) -> int:
    with system.session(service) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_demo_seeds_once_and_its_keys_open_the_agency_systems(
    embedded_system: System,
) -> None:
    system = embedded_system
    keys = demo.seed(system.env())
    assert demo.seed(system.env()) == keys  # a restart seeds nothing twice
    assert demo.read_keys(system.settings("referrals").data_dir / demo.KEYS_FILE) == keys
    assert count(system, "referrals", Agency) == len(demo.AGENCIES)
    assert count(system, "referrals", RoutingRule) == len(demo.ROUTING)
    assert count(system, "registry", Family) == len(demo.FAMILIES)
    with system.session("registry") as session:
        assert session.get(CatalogueEntry, ("measure_kind", demo.PDN_CHECK["code"])) is not None
    with system.session("referrals") as session:
        for variable, (agency_id, _) in demo.API_KEYS.items():
            assert verify_api_key(session, referral_tables, keys[variable]).agency_id == agency_id
        police = session.get(Agency, demo.POLICE)
        assert police is not None and police.delivery == "api"  # no RabbitMQ to take it from


def test_the_demo_families_emails_find_their_coordinator_whatever_comes_first(
    embedded_system: System,
) -> None:
    """The families' events may reach notifications before the directory's: the coordinator is
    known from the start, so each family's email is made and sent."""
    system = embedded_system
    demo.seed(system.env())
    with system.session("notifications") as session:
        coordinator = session.get(Recipient, "demo-coordinator")
        assert coordinator is not None and coordinator.districts == [demo.DISTRICT]
    system.relay("registry")  # the directory's own events stay in the referrals outbox
    system.consume("notifications")
    deliver_queued(system.worker("notifications").job_context)
    with system.session("notifications") as session:
        sent = session.scalars(
            select(Message).where(
                Message.recipient_id == "demo-coordinator",
                Message.template_key == "family.registered",
            )
        ).all()
    assert len(sent) == len(demo.FAMILIES) and {m.state for m in sent} == {"sent"}
    system.relay("referrals")
    system.consume("notifications")  # the directory's events come later and change nothing
    with system.session("notifications") as session:
        assert session.get(Recipient, "demo-coordinator").email == "coordinator@tarnoga.example"


def test_the_registry_knows_the_agencies_kinds_however_old_the_data_folder(
    embedded_system: System,
) -> None:
    """The police read the walkthrough's family under its consent only if the registry knows the
    police's kind: the demo hands it over at once, and again at the next start of a data folder
    seeded before the registry kept kinds; `opora directory republish` tells a running system."""
    from click.testing import CliRunner

    from services.registry.models import KnownAgency
    from shared.cli import cli

    system = embedded_system
    demo.seed(system.env())
    assert count(system, "registry", KnownAgency) == len(demo.AGENCIES)
    with system.session("registry") as session, session.begin():
        session.query(KnownAgency).delete()  # a registry from before the upgrade
    demo.seed(system.env())
    with system.session("registry") as session:
        police = session.get(KnownAgency, demo.POLICE)
        assert police is not None and police.kind == "police_pdn"
    with system.session("registry") as session, session.begin():
        session.query(KnownAgency).delete()
    system.relay("referrals")  # the seeding's own events, already known
    system.consume("registry")
    with system.session("registry") as session, session.begin():
        session.query(KnownAgency).delete()
    answer = CliRunner().invoke(cli, ["directory", "republish"], env=system.env())
    assert answer.exit_code == 0 and f"republished {len(demo.AGENCIES)}" in answer.output
    system.relay("referrals")
    system.consume("registry")
    assert count(system, "registry", KnownAgency) == len(demo.AGENCIES)
