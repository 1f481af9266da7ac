"""Steps 5-6 of the story: the joint raid, its reminder the day before, the visit and its
follow-up to the clinic."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from scenario.cast import NotificationJobs
from scenario.parties import at_local
from scenario.scene import RAID_DAY, Scene
from shared import demo

# --- 5. the raid --------------------------------------------------------------------------------


def raid(scene: Scene) -> None:
    story, cast, plot = scene.story, scene.cast, scene.plot

    def known() -> list[dict[str, Any]] | None:
        families = story.get(
            cast.coordinator, "raids", "/families", params={"district": demo.DISTRICT}
        )["items"]
        ours = [f for f in families if f["family_id"] == plot.family_id]
        if ours and ours[0]["latitude"] is not None and len(families) == 4:
            return families
        return None

    families = story.eventually(known, "raids knows the district's four families")
    plot.others = [f["family_id"] for f in families if f["family_id"] != plot.family_id]
    order = [plot.others[0], plot.family_id, *plot.others[1:]]
    people = [
        ("demo-specialist", demo.FAMILY_CENTRE, "family_centre", "lead_specialist"),
        ("demo-inspector", demo.POLICE, "police_pdn", "inspector"),
        ("demo-pedagogue", demo.SCHOOL, "school", "social_pedagogue"),
    ]
    scheduled = story.post(
        cast.coordinator,
        "raids",
        "/raids",
        {
            "title": "Межведомственный рейд по Тарногскому району",
            "purpose": "planned_check",
            "district": demo.DISTRICT,
            "date": RAID_DAY.isoformat(),
            "start_time": "09:00",
            "end_time": "17:00",
            "timezone": "Europe/Moscow",
            "centre": demo.CENTRE,
            "family_ids": order,
            "participants": [
                {
                    "person_id": person,
                    "agency_id": agency,
                    "agency_kind": kind,
                    "role": role,
                    "display_name": person,
                }
                for person, agency, kind, role in people
            ],
        },
        expect=201,
    )
    plot.raid_id = scheduled["id"]
    plot.participants = {p["person_id"]: p["id"] for p in scheduled["participants"]}
    assert_order_is_optimised(scheduled, families, order)

    for person, address in (
        ("demo-specialist", "specialist@tarnoga.example"),
        ("demo-inspector", "inspector@tarnoga.example"),
        ("demo-pedagogue", "pedagogue@tarnoga.example"),
    ):
        invitation = story.eventually(
            lambda address=address: [
                m
                for m in scene.world.outbox.emails_to(address)
                if any(name.endswith(".ics") for name, _ in m.attachments)
            ],
            f"{person} is invited with an .ics",
        )[-1]
        [(_, ics)] = invitation.attachments
        assert "METHOD:REQUEST" in ics and plot.raid_id in ics
    for person, party in (
        ("demo-specialist", cast.specialist),
        ("demo-inspector", cast.inspector),
        ("demo-pedagogue", cast.pedagogue),
    ):
        path = f"/raids/{plot.raid_id}/participants/{plot.participants[person]}/confirm"
        assert story.post(party, "raids", path)["state"] == "confirmed"
    confirmed = story.post(cast.coordinator, "raids", f"/raids/{plot.raid_id}/confirm", reads=1)
    assert confirmed["status"] == "confirmed"
    # A participant sees the raid; the doctor, who is not on it, does not.
    scene.read(cast.pedagogue, "raids", f"/raids/{plot.raid_id}")
    story.call(cast.doctor, "GET", "raids", f"/raids/{plot.raid_id}", expect=403)
    reminded_the_day_before(scene)


def assert_order_is_optimised(
    raid_: dict[str, Any], families: list[dict[str, Any]], asked: list[str]
) -> None:
    """The route is the shortest round trip from the centre (all 4! orders checked), and no
    longer than the order the coordinator listed the families in."""
    from services.raids import routing

    where = {f["family_id"]: routing.Point(f["latitude"], f["longitude"]) for f in families}
    centre = routing.Point(demo.CENTRE["latitude"], demo.CENTRE["longitude"])
    ids = list(where)
    matrix = routing.road_matrix([centre, *(where[i] for i in ids)], raid_["road_factor"])

    def length(order: list[str]) -> float:
        return routing.tour_length(matrix, [ids.index(i) + 1 for i in order])

    route = raid_["route"]
    planned = [s["family_id"] for s in sorted(route["stops"], key=lambda s: s["position"])]
    assert sorted(planned) == sorted(ids)
    best = min(length(list(p)) for p in itertools.permutations(ids))
    assert length(planned) == pytest.approx(best, abs=0.05)
    assert route["total_km"] == pytest.approx(best, abs=0.05)
    assert length(planned) <= length(asked) + 1e-6
    assert [f["family_id"] for f in raid_["families"]] == planned


def reminded_the_day_before(scene: Scene) -> None:
    """The evening before the raid (22:30 in Moscow, within everyone's quiet hours 21-08) the
    reminder emails go out and the SMS wait; at 08:00 the SMS go. The notification worker is
    stopped meanwhile, so that its own jobs on the real clock do not race the test's."""
    with NotificationJobs(scene.world) as jobs:
        _remind(scene, jobs)


def _remind(scene: Scene, jobs: NotificationJobs) -> None:
    outbox = scene.world.outbox
    phones = ("+79110000002", "+79110000004", "+79110000003")
    texted = [s for s in outbox.sms() if s.to in phones]
    evening = at_local(RAID_DAY - dt.timedelta(days=1), "22:30")
    assert jobs.raid_reminders(evening) == 6  # an email and an SMS for each of the three
    jobs.deliver(evening)
    reminders = [
        m
        for m in outbox.emails()
        if m.subject.startswith("Напоминание") and scene.plot.raid_id in m.text
    ]
    assert len(reminders) == 3
    assert [s for s in outbox.sms() if s.to in phones] == texted  # quiet hours: no SMS yet
    held = scene.story.get(
        scene.cast.admin, "notifications", "/messages", params={"state": "held", "channel": "sms"}
    )["items"]
    source = f"reminder:raid:{scene.plot.raid_id}:"
    quiet = [m for m in held if m["source_event_id"].startswith(source)]
    assert {m["hold_reason"] for m in quiet} == {"quiet_hours"}
    assert sorted(m["recipient_id"] for m in quiet) == [
        "demo-inspector",
        "demo-pedagogue",
        "demo-specialist",
    ]
    jobs.deliver(at_local(RAID_DAY, "08:01"))
    texts = [s for s in outbox.sms() if s.to in phones and s not in texted]
    assert sorted(s.to for s in texts) == sorted(phones), texts


# --- 6. the visit -------------------------------------------------------------------------------


def visit(scene: Scene) -> None:
    story, cast, plot = scene.story, scene.cast, scene.plot
    conditions = {
        "food": "adequate",
        "cleanliness": "satisfactory",
        "heating": "adequate",
        "children_present": True,
        "children_state": "good",
        "adults_state": "adequate",
    }
    act = story.post(
        cast.inspector,
        "raids",
        f"/raids/{plot.raid_id}/visits",
        {
            "family_id": plot.family_id,
            "outcome": "visited",
            "conditions": conditions,
            "children_seen": 1,
            "findings": "Условия улучшились: в доме чисто, есть продукты, ребёнок ходит в школу",
            "followups": [
                {
                    "service_code": "medical_examination",
                    "reason": "Диспансеризация ребёнка, давно не был у педиатра",
                    "urgency": "routine",
                }
            ],
        },
        expect=201,
    )
    assert act["outcome"] == "visited" and len(act["followups"]) == 1
    for other in plot.others:
        story.post(
            cast.specialist,
            "raids",
            f"/raids/{plot.raid_id}/visits",
            {"family_id": other, "outcome": "visited", "conditions": conditions},
            expect=201,
        )
    done = story.post(cast.coordinator, "raids", f"/raids/{plot.raid_id}/complete", reads=1)
    assert done["status"] == "completed"

    def logged() -> list[Any]:
        entries = scene.read(cast.specialist, "registry", f"/cases/{plot.case_id}/contacts")
        return [e for e in entries["items"] if e["kind"] == "raid_visit"]

    [entry] = story.eventually(logged, "the registry logs the visit on the case")
    assert "Условия улучшились" in entry["note"]

    # The clinic's system: the follow-up arrives as a referral, read as FHIR.
    from fhir.resources.R4B.servicerequest import ServiceRequest
    from fhir.resources.R4B.task import Task

    def arrived() -> list[dict[str, Any]]:
        feed = story.get(cast.clinic, "referrals", "/referrals/changes")["items"]
        story.reads[("referrals", cast.clinic.actor)] += len(feed)
        return feed

    [referral] = story.eventually(arrived, "the clinic's system sees the follow-up")
    assert referral["family_id"] == plot.family_id and referral["status"] == "requested"
    plot.referrals[demo.CLINIC] = referral["id"]
    fhir = {"Accept": "application/fhir+json"}
    request = scene.read(
        cast.clinic, "referrals", f"/fhir/ServiceRequest/{referral['id']}", headers=fhir
    )
    parsed = ServiceRequest.model_validate(request)
    assert parsed.subject.identifier.value == plot.number  # the family by number, no names
    assert parsed.code.coding[0].code == "medical_examination"
    task = Task.model_validate(
        scene.read(cast.clinic, "referrals", f"/fhir/Task/{referral['id']}", headers=fhir)
    )
    assert task.status == "requested"
    story.call(
        cast.clinic,
        "GET",
        "referrals",
        f"/fhir/Task/{plot.referrals[demo.POLICE]}",
        headers=fhir,
        expect=404,
    )
