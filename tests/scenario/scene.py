"""The story's shared state: who the family is, what the story learns on the way, and the scene
each step acts in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from scenario.cast import Cast, PoliceSystem
from scenario.parties import Party, Story, local_today
from scenario.world import World
from shared import demo

TODAY = dt.datetime.now(dt.UTC).date()
YEAR = TODAY.year
RAID_DAY = local_today() + dt.timedelta(days=3)

# The family as the school knows it; what only the family centre learns comes at triage.
SIGNAL_FAMILY = {
    "surname": "Морозова",
    "display_name": "Морозова Ирина Сергеевна",
    "address": "ул. Набережная, д. 7",
    "settlement": "с. Спасское",
    "children": [{"name": "Морозов Кирилл Андреевич", "birth_date": "2013-05-12", "class": "6"}],
}
COORDINATES = {"latitude": 60.5420, "longitude": 43.4510}
PERSONAL = (
    "Морозов",
    "Ирина",
    "Кирилл",
    "Набережная",
    "2013-05-12",
    "12.05.2013",
    "1986-02-03",
    "+79210001122",
    *(m["full_name"].split()[0] for f in demo.FAMILIES for m in f["members"]),
    *(f["address"]["street"] for f in demo.FAMILIES),
)
SCORES_BEFORE = dict.fromkeys(
    (
        "child_safety",
        "parenting",
        "material_conditions",
        "housing",
        "health",
        "education",
        "social_ties",
        "parents_employment",
    ),
    2,
)
SCORES_AFTER = {**SCORES_BEFORE, "child_safety": 4, "parenting": 4, "education": 4, "health": 3}


@dataclass
class Plot:
    """What the story learns on the way: ids, numbers, and what the parties were sent."""

    signal_id: str = ""
    family_id: str = ""
    number: str = ""
    case_id: str = ""
    measures: dict[str, str] = field(default_factory=dict)  # kind -> measure id
    referrals: dict[str, str] = field(default_factory=dict)  # agency -> referral id
    raid_id: str = ""
    participants: dict[str, str] = field(default_factory=dict)  # person -> participant id
    others: list[str] = field(default_factory=list)  # the other families on the raid
    chart_before: bytes = b""


@dataclass
class Scene:
    world: World
    story: Story
    cast: Cast
    police: PoliceSystem
    plot: Plot

    def read(self, party: Party, service: str, path: str, **kw: Any) -> Any:
        """A read of the family's data, which the service must audit."""
        return self.story.get(party, service, path, reads=kw.pop("reads", 1), **kw)
