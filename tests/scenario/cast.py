"""The cast of the story as parties the test can act as, the police system in each mode, and the
notification jobs driven by a clock the test controls."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from scenario.parties import Party, Story
from scenario.world import World
from shared import demo


@dataclass(frozen=True)
class Cast:
    school: Party
    coordinator: Party
    specialist: Party
    inspector: Party
    pedagogue: Party
    doctor: Party
    clinic: Party
    region: Party
    admin: Party


def cast_of(world: World) -> Cast:
    return Cast(
        school=world.system("the school's system", "SCHOOL_KEY"),
        coordinator=world.person(
            "the coordinator", "demo-coordinator", "coordinator", agency=demo.FAMILY_CENTRE
        ),
        specialist=world.person(
            "the lead specialist", "demo-specialist", "lead_specialist", agency=demo.FAMILY_CENTRE
        ),
        inspector=world.person(
            "the police inspector", "demo-inspector", "agency_staff", agency=demo.POLICE
        ),
        pedagogue=world.person(
            "the social pedagogue", "demo-pedagogue", "agency_staff", agency=demo.SCHOOL
        ),
        doctor=world.person(
            "the clinic's doctor", "demo-doctor", "agency_staff", agency=demo.CLINIC
        ),
        clinic=world.system("the clinic's system", "CLINIC_KEY"),
        region=world.person("the regional office", "demo-region", "auditor"),
        admin=world.person("the administrator", "demo-admin", "admin"),
    )


# --- the police system -------------------------------------------------------------------------


class PoliceSystem:
    """The police juvenile unit's own system: it learns of referrals and answers them.

    ``seen`` holds the id of every referral it was shown: the scope check is that this is its
    own referral and nothing else.
    """

    seen: set[str]

    def wait_for(self, referral_id: str, status: str) -> dict[str, Any]:
        raise NotImplementedError

    def answer(self, referral_id: str, status: str, **kw: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class PoliceOverHttp(PoliceSystem):
    """Embedded mode (no RabbitMQ to connect to): it polls ``GET /referrals/changes`` with its
    API key and answers with ``POST /referrals/<id>/transitions``."""

    story: Story
    party: Party
    family_id: str
    seen: set[str] = field(default_factory=set)
    cursor: str | None = None

    def _poll(self) -> list[dict[str, Any]]:
        params = {"since": self.cursor} if self.cursor else {}
        feed = self.story.get(self.party, "referrals", "/referrals/changes", params=params)
        items = feed["items"]
        self.story.reads[("referrals", self.party.actor)] += sum(
            1 for item in items if item["family_id"] == self.family_id
        )
        self.cursor = feed["next_cursor"]
        self.seen |= {item["id"] for item in items}
        return items

    def wait_for(self, referral_id: str, status: str) -> dict[str, Any]:
        def arrived() -> dict[str, Any] | None:
            return next(
                (i for i in self._poll() if i["id"] == referral_id and i["status"] == status),
                None,
            )

        return self.story.eventually(arrived, f"the police system sees {referral_id} {status}")

    def answer(self, referral_id: str, status: str, **kw: str) -> None:
        self.story.post(
            self.party,
            "referrals",
            f"/referrals/{referral_id}/transitions",
            {"status": status, **kw},
        )


class PoliceOverAmqp(PoliceSystem):
    """Production mode: its own queue, read with the pika client of agency_client.py as its
    RabbitMQ user; its answers go to the ingress exchange (the user id proves the sender)."""

    def __init__(self, world: World) -> None:
        from services.referrals.agency_client import AgencyClient

        self.client = AgencyClient(
            world.env["BROKER_URL"],
            demo.POLICE,
            password=world.police_password,
            prefix=world.env["OPORA_BROKER_PREFIX"],
        )
        self.seen = set()
        self.formats: set[str] = set()

    def _messages(self) -> Iterator[dict[str, Any]]:
        for message in self.client.iter_messages(inactivity_timeout=0.5):
            message.ack()
            self.formats.add(message.body.get("format", ""))
            referral = message.body.get("referral") or {}
            self.seen.add(referral.get("id", "?"))
            yield referral

    def wait_for(self, referral_id: str, status: str, timeout: float = 45.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for referral in self._messages():
                if referral.get("id") == referral_id and referral.get("status") == status:
                    return referral
        raise AssertionError(f"the police inbox got no {status} message for {referral_id}")

    def answer(self, referral_id: str, status: str, **kw: str) -> None:
        self.client.send_status(referral_id, status, **kw)

    def close(self) -> None:
        self.client.close()


def police_of(world: World, story: Story, family_id: str) -> PoliceSystem:
    if world.production:
        return PoliceOverAmqp(world)
    return PoliceOverHttp(story, world.system("the police system", "POLICE_KEY"), family_id)


# --- jobs on a controlled clock ----------------------------------------------------------------


class NotificationJobs:
    """The notification worker's time-driven jobs, run in the test process on the same database
    with a clock the test sets: the reminder of a raid "the day before" and the quiet hours
    cannot wait for the calendar. Delivery goes through the same channels the worker uses
    (the SMTP server and SMS gateway in production, the mail and sms folders in embedded).

    A context manager: the worker is stopped (SIGTERM: it finishes what it holds) while the
    test drives its jobs, and started again after."""

    WORKER = "notifications-worker"

    def __init__(self, world: World) -> None:
        from services.notifications.models import tables
        from shared.db import make_sessionmaker
        from shared.worker import JobContext

        self.settings = world.settings("notifications")
        self.processes = world.processes
        sessions = make_sessionmaker(world.engine("notifications"))
        self.context = JobContext(self.settings, sessions, tables)

    def __enter__(self) -> NotificationJobs:
        self.processes.kill(self.WORKER, signal.SIGTERM)
        self.processes.running[self.WORKER].wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.processes.start(self.WORKER)

    def raid_reminders(self, now: dt.datetime) -> int:
        from services.notifications import reminders
        from shared.db import transaction

        with transaction(self.context.sessions) as session:
            return reminders.raid_reminders(session, self.settings, now)

    def deliver(self, now: dt.datetime) -> int:
        from services.notifications import delivery

        total = 0
        while claimed := delivery.deliver_queued(self.context, now=now):
            total += claimed
        return total
