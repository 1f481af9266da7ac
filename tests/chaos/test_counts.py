"""The fault suite's own judgement, without servers: what counts as lost, twice, or explained.

The suite's verdict is only as good as its counting, so the rules that decide a resend is
allowed, a poison message is where it belongs, and an SMS was accepted rather than abandoned
are held here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass

import pytest
import urllib3
from notifications.peers import wait_until

from chaos.books import Books
from chaos.counts import Counts, Outside, Tally, check_dead_letters, count_deliveries
from chaos.faults import Poison
from chaos.receivers import CountingGateway

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def books(**changes: object) -> Books:
    empty: dict[str, object] = {
        name: (set() if name in {"registry_inbox", "raids_families", "referrals_families",
                                 "resent", "retried", "failed_over", "known_cases",
                                 "known_referrals"} else {})
        for name in Books.__dataclass_fields__
    }  # fmt: skip
    empty.update(cases=Counter(), contact_entries=Counter(), status_changes=Counter())
    empty.update(webhook_rows=Counter(), messages=[])
    empty.update(changes)
    return Books(**empty)  # type: ignore[arg-type]


def outside(emails: dict[str, int]) -> Outside:
    return Outside(Counter(emails), {}, {}, {}, {})


def test_a_tally_tells_missing_from_twice() -> None:
    tally = Tally()
    for command, count in (("c1", 1), ("c2", 0), ("c3", 2)):
        tally.add(command, count)
    assert (tally.expected, tally.found, tally.missing, tally.duplicated) == (3, 2, ["c2"], ["c3"])


def test_an_email_sent_again_is_allowed_only_when_the_worker_died_during_its_claim() -> None:
    counts = Counts(expected_messages={"m1": ("c1", "email"), "m2": ("c2", "email")})
    claim = (T0, T0 + dt.timedelta(seconds=20))
    held = books(resent={"m1", "m2"}, expired_claims={"m1": [claim], "m2": [claim]})
    crash_in_m1s_claim = [T0 + dt.timedelta(seconds=5)]

    report = count_deliveries(counts, held, outside({"m1": 2, "m2": 1}), crash_in_m1s_claim)
    assert report["email"]["resent_after_a_crash"] == 1
    assert counts.problems == []

    late_crash = [T0 + dt.timedelta(minutes=5)]
    report = count_deliveries(counts, held, outside({"m1": 2, "m2": 1}), late_crash)
    assert report["email"]["resent_though_the_worker_lived"] == 1
    assert "though no notifications worker died" in counts.problems[0]


def test_an_email_twice_without_an_expired_claim_and_one_never_sent_are_problems() -> None:
    counts = Counts(expected_messages={"m1": ("c1", "email"), "m2": ("c2", "email")})
    report = count_deliveries(counts, books(), outside({"m1": 2}), [])
    assert report["email"]["duplicated"] == 1 and report["email"]["missing_examples"]
    assert len(counts.problems) == 2


@dataclass
class Letter:
    message_id: str
    reason: str
    event_type: str | None = None


def test_each_poison_message_must_be_in_every_bound_service_dlq_with_its_reason() -> None:
    poison = Poison("p1", "registry.family.registered", "not JSON", ("not JSON",))
    bindings = {"raids": ["registry.family.registered"], "registry": ["raids.visit.recorded"]}
    right = {"raids": [Letter("p1", "body is not JSON: ...")], "registry": []}
    assert check_dead_letters(right, [poison], bindings)[1] == []

    wrong_reason = {"raids": [Letter("p1", "gave up after 6 attempts")], "registry": []}
    assert "with reason" in check_dead_letters(wrong_reason, [poison], bindings)[1][0]
    a_good_one_too = {"raids": right["raids"], "registry": [Letter("e1", "gave up", "x.y.z")]}
    [problem] = check_dead_letters(a_good_one_too, [poison], bindings)[1]
    assert "not poison" in problem

    twice = {"raids": [Letter("p1", "body is not JSON: ..."), Letter("p1", "body is not JSON")]}
    assert check_dead_letters(twice, [poison], bindings, interrupted=["raids"])[1] == []
    [problem] = check_dead_letters(twice, [poison], bindings)[1]
    assert "2 in raids's DLQ" in problem
    assert (
        "0 in raids's DLQ" in check_dead_letters({"raids": []}, [poison], bindings, ["raids"])[1][0]
    )


def test_a_gateway_counts_an_sms_the_client_gave_up_on_apart_from_one_it_took() -> None:
    gateway = CountingGateway("gw-a").start()
    client = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=0.3))
    try:

        def send(message_id: str) -> None:
            body = json.dumps({"to": "+79001000001", "text": "hi", "message_id": message_id})
            client.request("POST", gateway.url, body=body.encode())

        send("fast")
        gateway.slow(0.8)
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            send("slow")
        gateway.slow(0)
        assert wait_until(lambda: gateway.abandoned, timeout=5)
        assert [a.message_id for a in gateway.accepted] == ["fast"]
        assert gateway.abandoned == ["slow"]
    finally:
        gateway.stop()
