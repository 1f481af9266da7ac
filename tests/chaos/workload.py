"""The commands the fault suite drives over HTTP, as the parties would send them.

Three kinds, each with effects in several services and messages to the outside:

- ``family``: a coordinator registers a family (registry) -> raids' and referrals' read models,
  notifications' case read model and an email to the district's coordinator.
- ``signal``: the school's system reports a red signal with its API key (referrals) -> an
  urgent email and SMS to the coordinator; the coordinator accepts it for a registered family
  -> the registry logs it on the family's case.
- ``referral``: a coordinator refers a family to the clinic (referrals) -> a webhook to the
  clinic's system, notifications' referral read model and an email to the clinic's intake
  contact (and an SMS when urgent); the registry takes the status events.

Every write carries an Idempotency-Key, and a call that fails in a fault (connection refused,
5xx, a timeout) is sent again with the same key until it is answered: the system must still
do it once. Each command's marker (in the family's notes, the signal's text, the referral's
reason) lets the counts find every row a command made, even one a broken retry made twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.client import Answer, CommandFailed
from chaos.parties import CLINIC, COORDINATOR, DISTRICT, SERVICE_CODE, Parties

KINDS = ("family", "signal", "referral")


def marker(command_id: str) -> str:
    return f"chaos:{command_id}"


# --- commands ----------------------------------------------------------------------------------


@dataclass
class Command:
    id: str
    kind: str
    family: int = -1  # index into the pool of families (signals and referrals)
    urgent: bool = False
    started: float = 0.0
    done: float = 0.0
    entity: str | None = None  # family, signal or referral id
    calls: int = 0
    attempts: int = 0
    replayed: int = 0
    troubles: list[str] = field(default_factory=list)
    error: str | None = None
    lost_answer: bool = False  # the first answer is lost: the client sends the request again
    twice_at_once: bool = False  # the first request goes out twice at the same moment


def plan(rng: random.Random, count: int, pool: int) -> list[Command]:
    """``count`` commands, half families, a quarter signals, a quarter referrals (half of those
    urgent), in a seeded order. One in twenty loses its first answer and one in fifty sends its
    first request twice at once: the Idempotency-Key must make each still happen once."""
    commands = []
    for index in range(count):
        kind = rng.choices(KINDS, weights=(2, 1, 1))[0]
        commands.append(
            Command(
                id=f"c{index:05d}",
                kind=kind,
                family=rng.randrange(pool) if kind != "family" else -1,
                urgent=kind == "referral" and rng.random() < 0.5,
                lost_answer=rng.random() < 0.05,
                twice_at_once=rng.random() < 0.02,
            )
        )
    return commands


_LETTERS = "бвгдклмнпрстфхцчшщ"


def surname(index: int) -> str:
    """A distinct surname per index, so duplicate detection has nothing to match."""
    word = ""
    index += 1
    while index:
        index, digit = divmod(index, len(_LETTERS))
        word += _LETTERS[digit] + "а"
    return "Хаос" + word + "ова"


def family_payload(command_id: str, index: int) -> dict[str, Any]:
    name = surname(index)
    mother = dt.date(1975, 1, 1) + dt.timedelta(days=index)
    child = dt.date(2008, 1, 1) + dt.timedelta(days=index)
    return {
        "category": "risk_group",
        "address": {
            "region": "Вологодская область",
            "district": DISTRICT,
            "settlement": "с. Тарногский Городок",
            "street": "ул. Советская",
            "house": str(index + 1),
        },
        "members": [
            {
                "role": "mother",
                "full_name": f"{name} Мария Петровна",
                "birth_date": mother.isoformat(),
            },
            {
                "role": "child",
                "full_name": f"{name} Анна Ивановна",
                "birth_date": child.isoformat(),
            },
        ],
        "notes": marker(command_id),
    }


@dataclass
class Pool:
    """Families registered before the faults; signals and referrals name them."""

    ids: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)


class Workload:
    def __init__(self, parties: Parties, pool: Pool) -> None:
        self.parties = parties
        self.http = parties.http
        self.pool = pool
        self._family_index = 0
        self._lock = threading.Lock()

    def next_family_index(self) -> int:
        with self._lock:
            self._family_index += 1
            return self._family_index

    def run(self, command: Command) -> None:
        command.started = time.monotonic()
        try:
            getattr(self, f"_{command.kind}")(command)
        except CommandFailed as exc:
            command.error = str(exc)
        command.done = time.monotonic()

    def _call(
        self,
        command: Command,
        service: str,
        method: str,
        path: str,
        *,
        first: bool = False,
        **kwargs: Any,
    ) -> Answer:
        """One call; the command's first also suffers its client-side fault, if it has one."""
        send = functools.partial(
            self.http.call, service, method, path, correlation=command.id, **kwargs
        )
        if first and command.twice_at_once:
            answers = self._at_once(send)
            if _entity(answers[0]) != _entity(answers[1]):
                raise CommandFailed(
                    f"{command.id}: two requests with one key made two things: "
                    f"{_entity(answers[0])} and {_entity(answers[1])}"
                )
        else:
            answers = [send()]
        if first and command.lost_answer and answers[0].status < 300:
            again = send()
            if not again.replayed or _entity(again) != _entity(answers[0]):
                raise CommandFailed(
                    f"{command.id}: the retry of a lost answer was not the replay of the first "
                    f"(HTTP {again.status}, replayed {again.replayed})"
                )
            answers.append(again)
        for answer in answers:
            command.calls += 1
            command.attempts += answer.attempts
            command.replayed += answer.replayed
            command.troubles += answer.troubles
        return answers[0]

    @staticmethod
    def _at_once(send: Callable[[], Answer]) -> list[Answer]:
        barrier = threading.Barrier(2)
        answers: list[Answer | BaseException] = [CommandFailed("no answer")] * 2

        def one(index: int) -> None:
            barrier.wait()
            try:
                answers[index] = send()
            except BaseException as exc:  # handed to the caller's thread
                answers[index] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return answers  # type: ignore[return-value]

    def register(self, command: Command) -> dict[str, Any]:
        answer = self._call(
            command,
            "registry",
            "POST",
            "/families",
            auth=self.parties.coordinator,
            body=family_payload(command.id, self.next_family_index()),
            key=command.id,
            first=True,
        )
        family = self.http.expect(201, answer, f"{command.id} register")
        command.entity = family["id"]
        return family

    def _family(self, command: Command) -> None:
        self.register(command)

    def _signal(self, command: Command) -> None:
        family_id = self.pool.ids[command.family]
        body = {
            "district": DISTRICT,
            "observed": f"пропуски занятий, признаки безнадзорности ({marker(command.id)})",
            "observed_at": dt.datetime.now(dt.UTC).isoformat(),
            "priority": "red",
            "family": {"family_id": family_id, "number": self.pool.numbers[command.family]},
        }
        answer = self._call(
            command,
            "referrals",
            "POST",
            "/signals",
            auth=self.parties.school,
            body=body,
            key=f"{command.id}-report",
            first=True,
        )
        signal_id = self.http.expect(201, answer, f"{command.id} report")["id"]
        command.entity = signal_id
        accepted = self._call(
            command,
            "referrals",
            "POST",
            f"/signals/{signal_id}/accept",
            auth=self.parties.coordinator,
            body={"family_id": family_id},
            key=f"{command.id}-accept",
        )
        self.http.expect(200, accepted, f"{command.id} accept")

    def _referral(self, command: Command) -> None:
        body = {
            "family_id": self.pool.ids[command.family],
            "family_number": self.pool.numbers[command.family],
            "district": DISTRICT,
            "service_code": SERVICE_CODE,
            "agency_id": CLINIC,
            "reason": f"медосмотр детей ({marker(command.id)})",
            "urgency": "urgent" if command.urgent else "routine",
            "contact": {"person_id": COORDINATOR},
            "consent_override_reason": "согласие получено устно, документ в пути",
        }
        answer = self._call(
            command,
            "referrals",
            "POST",
            "/referrals",
            auth=self.parties.coordinator,
            body=body,
            key=command.id,
            first=True,
        )
        command.entity = self.http.expect(201, answer, f"{command.id} refer")["id"]


def _entity(answer: Answer) -> Any:
    return answer.body.get("id") if isinstance(answer.body, dict) else answer.body


class Driver:
    """Client threads working through the commands; ``progress`` is what faults wait for.

    Past ``deadline`` (monotonic) no command starts any more: those left are reported as not
    started, and the progress reads 1, so that the remaining faults still happen.
    """

    def __init__(
        self, workload: Workload, commands: list[Command], threads: int, deadline: float
    ) -> None:
        self.workload = workload
        self.commands = commands
        self.threads = threads
        self.deadline = deadline
        self.started = 0
        self._queue: queue.Queue[Command] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._over = threading.Event()

    @property
    def progress(self) -> float:
        if self._over.is_set():
            return 1.0
        return self.started / max(1, len(self.commands))

    def start(self) -> None:
        for command in self.commands:
            self._queue.put(command)
        for index in range(self.threads):
            thread = threading.Thread(target=self._work, name=f"client-{index}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def _work(self) -> None:
        while True:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                return
            if time.monotonic() > self.deadline:
                self._over.set()
                command.error = "not started: the load ran past its deadline"
                continue
            with self._lock:
                self.started += 1
            self.workload.run(command)

    def join(self) -> None:
        for thread in self._workers:
            thread.join()
        self._over.set()
