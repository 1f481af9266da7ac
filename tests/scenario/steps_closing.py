"""Steps 7-8 of the story: the closing and the statistics; then what nobody may have been sent
and what the audit trail must hold."""

from __future__ import annotations

from typing import Any

from scenario.cast import Cast
from scenario.parties import Party, Story
from scenario.scene import PERSONAL, SCORES_AFTER, TODAY, YEAR, Scene
from scenario.steps_referrals import charity_link
from shared import demo

# --- 7. the closing -----------------------------------------------------------------------------


def closing(scene: Scene) -> None:
    story, cast, plot = scene.story, scene.cast, scene.plot
    clinic_ref = plot.referrals[demo.CLINIC]
    for status in ("received", "accepted", "in-progress", "completed"):
        task: dict[str, Any] = {"resourceType": "Task", "id": clinic_ref, "status": status}
        if status == "completed":
            task["output"] = [
                {"type": {"text": "outcome"}, "valueString": "Осмотрен педиатром, здоров"}
            ]
        answer = story.put(
            cast.clinic,
            "referrals",
            f"/fhir/Task/{clinic_ref}",
            task,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert answer["status"] == status
    police_ref = plot.referrals[demo.POLICE]
    scene.police.answer(police_ref, "in-progress")
    scene.police.answer(police_ref, "completed", outcome="Условия проверены, нарушений нет")
    scene.police.wait_for(police_ref, "completed")
    volunteer = Party("the charity's volunteer", f"link:{demo.CHARITY}")
    service, path = story.open_link(charity_link(scene, plot.referrals[demo.CHARITY]))
    done = story.post(
        volunteer, service, path, {"action": "complete", "outcome": "Набор и одежда переданы"}
    )
    assert done["status"] == "completed"

    case = f"/cases/{plot.case_id}"
    story.post(
        cast.specialist,
        "registry",
        f"{case}/contacts",
        {"occurred_on": TODAY.isoformat(), "kind": "counselling_family", "note": "третья встреча"},
        expect=201,
    )
    story.patch(
        cast.specialist,
        "registry",
        f"/measures/{plot.measures['counselling']}",
        {"status": "done", "result_note": "Проведено три консультации"},
    )

    def all_done() -> bool:
        measures = scene.read(cast.specialist, "registry", f"{case}/measures")
        assert {m["status"] for m in measures} == {"done"}, measures
        return True

    story.eventually(all_done, "every measure of the plan is done")
    story.post(
        cast.specialist,
        "registry",
        f"{case}/assessments",
        {"assessed_on": TODAY.isoformat(), "scores": SCORES_AFTER},
        expect=201,
    )
    dynamics = scene.read(cast.specialist, "registry", f"{case}/assessments")["dynamics"]
    assert dynamics["count"] == 2 and dynamics["average"]["change"] > 0
    story.post(cast.specialist, "registry", f"{case}/stage", {"stage": "final"})
    story.put(
        cast.specialist,
        "registry",
        f"{case}/closing",
        {
            "analysis": "Посещаемость восстановлена, условия в семье улучшились",
            "outcome": "improvement",
        },
    )
    approval = story.post(
        cast.specialist, "registry", f"{case}/approvals", {"kind": "closing"}, expect=201
    )
    plot.chart_before = chart(story, cast)
    decided = story.post(
        cast.coordinator,
        "registry",
        f"/approvals/{approval['id']}/decision",
        {
            "decision": "approve",
            "decision_ref": "Постановление КДН и ЗП № 14/2",
            "decision_date": TODAY.isoformat(),
        },
    )
    assert decided["state"] == "approved"
    closed = scene.read(cast.coordinator, "registry", case)
    assert closed["stage"] == "closed" and closed["decision_ref"] == "Постановление КДН и ЗП № 14/2"
    family = scene.read(cast.coordinator, "registry", f"/families/{plot.family_id}")
    assert family["in_bank"] is False
    # The family left the data bank: the police no longer sees it, raids no longer offer it.
    story.call(cast.inspector, "GET", "registry", f"/families/{plot.family_id}", expect=403)

    def gone_from_raids() -> bool:
        families = story.get(cast.coordinator, "raids", "/families")["items"]
        return plot.family_id not in {f["family_id"] for f in families}

    story.eventually(gone_from_raids, "raids no longer offer the family")


# --- 8. the statistics --------------------------------------------------------------------------


def statistics(story: Story, cast: Cast) -> dict[str, Any]:
    rows = story.get(
        cast.region,
        "registry",
        "/statistics",
        params={"district": demo.DISTRICT, "year_from": YEAR, "year_to": YEAR},
    )["rows"]
    if not rows:
        return {"entered": 0, "improvement": 0}
    [row] = rows
    return {"entered": row["entered"], "improvement": row["removed"]["improvement"]}


def chart(story: Story, cast: Cast) -> bytes:
    reply = story.call(
        cast.region,
        "GET",
        "registry",
        "/statistics",
        params={"district": demo.DISTRICT, "year_from": YEAR, "year_to": YEAR, "format": "png"},
    )
    assert reply.headers["Content-Type"].startswith("image/png")
    assert reply.body.startswith(b"\x89PNG\r\n\x1a\n")
    return reply.body


def counted_in_statistics(scene: Scene, before: dict[str, Any]) -> None:
    story, cast = scene.story, scene.cast
    after = statistics(story, cast)
    assert after["entered"] == before["entered"] + 1
    assert after["improvement"] == before["improvement"] + 1
    assert chart(story, cast) != scene.plot.chart_before  # the removal is drawn
    story.call(cast.region, "GET", "registry", "/families", expect=403)
    story.call(cast.region, "GET", "registry", f"/families/{scene.plot.family_id}", expect=403)


# --- what nobody may see, and what the audit trail must hold ------------------------------------


def no_personal_data_leaves(scene: Scene) -> None:
    outbox = scene.world.outbox
    texts = [("SMS", s.text) for s in outbox.sms()]
    texts += [("email subject", m.subject) for m in outbox.emails()]
    assert len(texts) >= 15, "the story sent too little to prove anything"
    for where, text in texts:
        for secret in PERSONAL:
            assert secret not in text, f"{where} carries personal data: {text!r}"


def audit_holds_every_read(scene: Scene) -> None:
    """Per service and reader, at least as many ``read`` entries for the family as the story
    made reads, read from each service's own ``GET /audit`` as an auditor would; and nobody
    outside the story read it."""
    story, plot = scene.story, scene.plot
    counts: dict[tuple[str, str], int] = {}
    for service in ("registry", "referrals", "raids", "notifications"):
        entries = story.all_pages(
            scene.cast.region, service, "/audit", family_id=plot.family_id, action="read"
        )
        assert all(e["family_id"] == plot.family_id for e in entries)
        for e in entries:
            counts[(service, e["actor"])] = counts.get((service, e["actor"]), 0) + 1
    expected = {key: n for key, n in story.reads.items() if n}
    for key, n in expected.items():
        assert counts.get(key, 0) >= n, f"{key}: {counts.get(key, 0)} read entries, {n} reads"
    readers = {actor for _, actor in counts}
    story_readers = {actor for _, actor in expected}
    assert readers <= story_readers, f"unexpected readers: {readers - story_readers}"
