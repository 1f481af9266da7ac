"""One family's story through the whole system, in both modes (issue #7).

A school's system signals a pupil missing school; the coordinator triages it and the registry
enters the family; the lead specialist plans the support with three agencies; the police
system (over AMQP with the pika client in production; over the HTTP API with its key in the
embedded mode, where there is no RabbitMQ to connect to) and the charity (through the signed
link it was sent) take their referrals; a joint raid visits this family and three others, in
an optimised order, with invitations and a reminder the day before that respects quiet hours;
the visit asks the clinic to act, whose system takes the referral as FHIR; the work is done,
the assessment improves, the commission approves the closing and the family leaves the data
bank; the regional office's statistics count it.

Every step checks what each party sees and that it sees nothing it must not; at the end, no
SMS body or email subject carries a family's personal data, and each service's audit trail
holds a ``read`` entry for every read of the family's data the story made (the registry's
through ``GET /audit``; raids and referrals have no audit endpoint, so their tables are read).

Time that must pass is not waited for: the raid is three days ahead, and the notification
worker's reminder and delivery jobs are run in this process with a clock set to the evening
before it (quiet hours) and then to the next morning. Everything else happens now, so the
statistics are those of the current year.
"""

from __future__ import annotations

import pytest

from scenario.cast import cast_of, police_of
from scenario.scene import Plot, Scene
from scenario.steps_casework import plan_with_agencies, signal_from_school, triage
from scenario.steps_closing import (
    audit_holds_every_read,
    closing,
    counted_in_statistics,
    no_personal_data_leaves,
    statistics,
)
from scenario.steps_raid import raid, visit
from scenario.steps_referrals import agencies_take_referrals
from scenario.world import World


@pytest.mark.timeout(240)
def test_one_familys_story(world: World) -> None:
    story = world.story
    cast = cast_of(world)
    plot = Plot()
    before = statistics(story, cast)
    signal_from_school(story, cast, plot)
    police = police_of(world, story, plot.family_id)
    scene = Scene(world, story, cast, police, plot)
    try:
        triage(scene)
        plan_with_agencies(scene)
        agencies_take_referrals(scene)
        raid(scene)
        visit(scene)
        closing(scene)
        counted_in_statistics(scene, before)
        no_personal_data_leaves(scene)
        audit_holds_every_read(scene)
    finally:
        police.close()
