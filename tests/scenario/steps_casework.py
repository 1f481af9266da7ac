"""Steps 1-3 of the story: the school's signal, the triage, the plan with the agencies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from scenario.cast import Cast
from scenario.parties import Story
from scenario.scene import COORDINATES, SCORES_BEFORE, SIGNAL_FAMILY, TODAY, Plot, Scene
from shared import demo

# --- 1. the school's signal ---------------------------------------------------------------------


def signal_from_school(story: Story, cast: Cast, plot: Plot) -> None:
    observed_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    signal = story.post(
        cast.school,
        "referrals",
        "/signals",
        {
            "district": demo.DISTRICT,
            "observed": "Ученик 6 класса третью неделю не ходит в школу, признаки безнадзорности",
            "observed_at": observed_at.isoformat(),
            "priority": "amber",
            "family": SIGNAL_FAMILY,
        },
        expect=201,
    )
    assert signal["status"] == "new" and signal["reporter_agency_id"] == demo.SCHOOL
    plot.signal_id = signal["id"]
    own = story.get(cast.school, "referrals", "/signals")["items"]
    assert [s["id"] for s in own] == [plot.signal_id]  # the school sees its own signals
    queue = story.get(cast.coordinator, "referrals", "/signals", params={"status": "new"})
    assert plot.signal_id in [s["id"] for s in queue["items"]]

    # 2. triage: accepted; the registry finds no duplicate and enters the family
    story.post(cast.coordinator, "referrals", f"/signals/{plot.signal_id}/accept")

    def intake() -> dict[str, Any] | None:
        found = story.get(cast.coordinator, "registry", "/intakes", params={"state": "registered"})[
            "items"
        ]
        return next((i for i in found if i["signal_id"] == plot.signal_id), None)

    registered = story.eventually(intake, "the registry enters the signalled family")
    plot.family_id, plot.case_id = registered["family_id"], registered["case_id"]
    detail = story.get(cast.coordinator, "registry", f"/intakes/{registered['id']}", reads=1)
    assert detail["candidates"] == [] and detail["resolution"] == "automatic"


# --- 2. triage ----------------------------------------------------------------------------------


def triage(scene: Scene) -> None:
    story, cast, plot = scene.story, scene.cast, scene.plot
    family = scene.read(cast.coordinator, "registry", f"/families/{plot.family_id}")
    plot.number = family["number"]
    assert family["category"] == "risk_group" and family["stage"] == "preparatory"
    assert family["in_bank"] and family["missing_fields"]
    [case] = scene.read(cast.coordinator, "registry", f"/families/{plot.family_id}/cases")
    assert case["id"] == plot.case_id and case["stage"] == "preparatory"

    # The coordinator completes what the school could not know.
    adult = next(m for m in family["members"] if m["role"] != "child")
    child = next(m for m in family["members"] if m["role"] == "child")
    completed = story.patch(
        cast.coordinator,
        "registry",
        f"/families/{plot.family_id}",
        {
            "address": {**family["address"], **COORDINATES},
            "members": [
                {
                    "id": adult["id"],
                    "role": "mother",
                    "full_name": adult["full_name"],
                    "birth_date": "1986-02-03",
                },
                {
                    "id": child["id"],
                    "role": "child",
                    "full_name": child["full_name"],
                    "birth_date": child["birth_date"],
                    "school": "Тарногская СОШ",
                    "school_class": "6",
                },
            ],
            "contacts": [
                {
                    "kind": "phone",
                    "value": "+79210001122",
                    "owner": "мать",
                    "consent": True,
                    "consent_on": TODAY.isoformat(),
                }
            ],
        },
    )
    assert not completed["missing_fields"]
    lead = story.put(
        cast.coordinator,
        "registry",
        f"/cases/{plot.case_id}/lead",
        {"specialist": "demo-specialist"},
    )
    assert lead["lead_specialist"] == "demo-specialist"

    def told() -> Any:
        mails = scene.world.outbox.emails_to("specialist@tarnoga.example")
        return [m for m in mails if f"/cases/{plot.case_id}" in m.text]

    story.eventually(told, "the lead specialist is told by email")
    # The pedagogue's school sent the signal, but has no part in the case: no look at the file.
    story.call(cast.pedagogue, "GET", "registry", f"/families/{plot.family_id}", expect=403)


# --- 3. the plan --------------------------------------------------------------------------------


def plan_with_agencies(scene: Scene) -> None:
    story, cast, plot = scene.story, scene.cast, scene.plot
    case = f"/cases/{plot.case_id}"
    assert scene.read(cast.specialist, "registry", case)["lead_specialist"] == "demo-specialist"
    for kind, code, note in (
        ("problems", "truancy", "пропуски занятий три недели"),
        ("problems", "child_neglect", "ребёнок подолгу один"),
        ("strengths", "attachment_to_children", None),
        ("strengths", "supportive_relatives", "бабушка рядом"),
    ):
        body = {"code": code, "identified_on": TODAY.isoformat(), "note": note}
        story.post(cast.specialist, "registry", f"{case}/{kind}", body, expect=201)
    story.post(
        cast.specialist,
        "registry",
        f"{case}/assessments",
        {"assessed_on": TODAY.isoformat(), "scores": SCORES_BEFORE},
        expect=201,
    )
    story.post(
        cast.specialist,
        "registry",
        f"{case}/agreements",
        {
            "signed_on": TODAY.isoformat(),
            "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
            "consent_data_processing": True,
            "share_with": ["police_pdn", "charity", "health"],
        },
        expect=201,
    )
    referrals_know_the_agreement(scene)
    # No measure for the police yet: its inspector has no look at the family.
    story.call(cast.inspector, "GET", "registry", f"/families/{plot.family_id}", expect=403)
    deadline = (TODAY + dt.timedelta(days=21)).isoformat()
    for kind, title, agency in (
        ("counselling", "Консультации психолога для матери и сына", None),
        (demo.PDN_CHECK["code"], "Проверка условий проживания инспектором ПДН", demo.POLICE),
        ("material_aid", "Продуктовый набор и школьная одежда", demo.CHARITY),
    ):
        body = {"title": title, "kind": kind, "agency_id": agency, "deadline": deadline}
        measure = story.post(cast.specialist, "registry", f"{case}/measures", body, expect=201)
        plot.measures[kind] = measure["id"]
    approval = story.post(
        cast.specialist, "registry", f"{case}/approvals", {"kind": "plan"}, expect=201
    )
    story.eventually(
        lambda: [
            m
            for m in scene.world.outbox.emails_to("coordinator@tarnoga.example")
            if f"/cases/{plot.case_id}" in m.text
        ],
        "the coordinator is asked to approve the plan",
    )
    decided = story.post(
        cast.coordinator,
        "registry",
        f"/approvals/{approval['id']}/decision",
        {"decision": "approve"},
    )
    assert decided["state"] == "approved"
    moved = story.post(cast.specialist, "registry", f"{case}/stage", {"stage": "support"})
    assert moved["stage"] == "support"


def referrals_know_the_agreement(scene: Scene) -> None:
    """A specialist adds measures minutes after the agreement, by when the referrals service has
    its consents; the test waits for that (in the service's database) instead of racing it."""
    from services.referrals.models import Consent

    def known() -> bool:
        with scene.world.engine("referrals").connect() as conn:
            rows = conn.execute(
                select(Consent.agreement_id).where(Consent.family_id == scene.plot.family_id)
            )
            return bool(rows.first())

    scene.story.eventually(known, "referrals learns the family's consents")
