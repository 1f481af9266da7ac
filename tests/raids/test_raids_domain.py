"""Raids' domain without HTTP or broker: the visit-order optimiser against brute force and
known optima, the plan's times and warnings, iCalendar, recurring dates, and the rules."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

import icalendar
import pytest
from sqlalchemy.orm import Session

from services.raids import ical, invitations, routing, scheduling, series, visits
from services.raids.domain import Context, RaidRules, remember_family
from services.raids.models import Base
from shared import db
from shared.errors import Conflict, RuleViolation

UTC = dt.UTC


def random_matrix(n: int, rng: random.Random, symmetric: bool = True) -> list[list[float]]:
    points = [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(n + 1)]
    matrix = [[math.dist(a, b) for b in points] for a in points]
    if not symmetric:
        matrix = [
            [v * rng.uniform(1.0, 1.6) if i != j else 0.0 for j, v in enumerate(row)]
            for i, row in enumerate(matrix)
        ]
    return matrix


def brute_force(matrix: list[list[float]]) -> float:
    n = len(matrix) - 1
    return min(routing.tour_length(matrix, p) for p in itertools.permutations(range(1, n + 1)))


# --- the optimiser -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 9))
def test_exact_for_small_raids_against_brute_force(n: int) -> None:
    rng = random.Random(n)
    for symmetric in (True, False):
        for _ in range(3):
            matrix = random_matrix(n, rng, symmetric)
            order, _, optimal = routing.best_tour(matrix)
            assert sorted(order) == list(range(1, n + 1))
            assert optimal
            assert routing.tour_length(matrix, order) == pytest.approx(brute_force(matrix))


def test_the_ortools_path_matches_the_exact_optimum_beyond_the_dp_limit() -> None:
    rng = random.Random(11)
    for n in (10,):
        matrix = random_matrix(n, rng)
        order, solver, _ = routing.best_tour(matrix)
        assert solver.startswith("ortools")
        exact = routing.tour_length(matrix, routing.held_karp(matrix))
        assert routing.tour_length(matrix, order) == pytest.approx(exact, rel=1e-4)


def test_thirty_stops_on_a_circle_find_the_known_optimum() -> None:
    """Points on a circle: the best tour is the polygon in angular order, whatever the
    shuffle."""
    rng = random.Random(30)
    angles = [2 * math.pi * k / 31 for k in range(31)]
    points = [(100 * math.cos(a), 100 * math.sin(a)) for a in angles]
    depot, stops = points[0], points[1:]
    rng.shuffle(stops)
    everything = [depot, *stops]
    matrix = [[math.dist(a, b) for b in everything] for a in everything]
    optimum = 31 * 2 * 100 * math.sin(math.pi / 31)
    order, _, _ = routing.best_tour(matrix)
    assert routing.tour_length(matrix, order) == pytest.approx(optimum, rel=1e-4)


def multi_start_two_opt(matrix: list[list[float]], starts: int, rng: random.Random) -> float:
    n = len(matrix) - 1
    best = routing.tour_length(matrix, routing.two_opt(matrix, routing.nearest_neighbour(matrix)))
    for _ in range(starts):
        order = routing.two_opt(matrix, rng.sample(range(1, n + 1), n))
        best = min(best, routing.tour_length(matrix, order))
    return best


def test_thirty_random_stops_beat_strong_heuristics_within_a_percent() -> None:
    rng = random.Random(2026)
    for _ in range(2):
        matrix = random_matrix(30, rng)
        order, _, _ = routing.best_tour(matrix)
        ours = routing.tour_length(matrix, order)
        heuristics = multi_start_two_opt(matrix, 20, rng)
        assert ours <= heuristics * 1.01
        assert ours < routing.tour_length(matrix, routing.nearest_neighbour(matrix))


# --- the plan ----------------------------------------------------------------------------------


CENTRE = routing.Point(60.0, 43.0)
START = dt.datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def test_arrivals_fit_and_misfit_of_the_window() -> None:
    # about 55.6 km per degree of longitude at 60 degrees north
    stops = [
        routing.Stop("a", "A", routing.Point(60.0, 43.5)),
        routing.Stop("b", "B", routing.Point(60.0, 44.0)),
    ]
    plan = routing.plan_visits(
        centre=CENTRE,
        centre_name="C",
        stops=stops,
        window_start=START,
        window_end=START + dt.timedelta(hours=8),
        minutes_per_visit=30,
        speed_kmh=60,
        road_factor=1.0,
    )
    where = {s.key: s.point for s in stops}
    first, second = plan.stops
    assert {first.key, second.key} == {"a", "b"}  # both directions are equally short
    leg = routing.great_circle_km(CENTRE, where[first.key])  # type: ignore[arg-type]
    assert first.arrival == START + dt.timedelta(minutes=leg)  # 60 km/h: a minute per km
    assert first.departure == first.arrival + dt.timedelta(minutes=30)
    between = routing.great_circle_km(where["a"], where["b"])  # type: ignore[arg-type]
    assert second.arrival == first.departure + dt.timedelta(minutes=between)
    assert plan.fits_window and plan.warnings == []
    assert plan.total_km == pytest.approx(
        2 * routing.great_circle_km(CENTRE, routing.Point(60.0, 44.0)), rel=1e-3
    )
    short = routing.plan_visits(
        centre=CENTRE,
        centre_name="C",
        stops=stops,
        window_start=START,
        window_end=START + dt.timedelta(hours=1),
        minutes_per_visit=30,
        speed_kmh=60,
        road_factor=1.3,
    )
    assert not short.fits_window
    assert "does not fit" in short.warnings[0]
    assert [s.within_window for s in short.stops] == [False, False]
    stored = short.as_dict("Europe/Moscow")
    assert stored["fits_window"] is False and stored["stops"][0]["arrival_local"].count(":") == 1


def test_families_without_coordinates_are_placed_by_settlement_or_centre() -> None:
    stops = [
        routing.Stop("known", "Верховье", routing.Point(60.6, 43.3)),
        routing.Stop("guess", "Верховье", None),
        routing.Stop("lost", "Нигде", None),
    ]
    plan = routing.plan_visits(
        centre=CENTRE,
        centre_name="Тарногский Городок",
        stops=stops,
        window_start=START,
        window_end=START + dt.timedelta(hours=9),
        minutes_per_visit=20,
        speed_kmh=50,
        road_factor=1.3,
        settlements={"Верховье": routing.Point(60.6, 43.3)},
    )
    placement = {s.key: s.placement for s in plan.stops}
    assert placement == {"known": "coordinates", "guess": "settlement", "lost": "centre"}
    assert any("guess" in w and "placed at its settlement" in w for w in plan.warnings)
    assert any("lost" in w and "district centre" in w for w in plan.warnings)


def test_bad_matrix_and_parameters_are_refused() -> None:
    stops = [routing.Stop("a", "A", None)]
    common: dict[str, Any] = dict(
        centre=CENTRE,
        centre_name="C",
        stops=stops,
        window_start=START,
        window_end=START,
        minutes_per_visit=10,
        road_factor=1.0,
    )
    with pytest.raises(ValueError, match="2x2"):
        routing.plan_visits(**common, speed_kmh=50, distance_km=[[0.0]])
    with pytest.raises(ValueError, match="negative"):
        routing.plan_visits(**common, speed_kmh=50, distance_km=[[0, -1], [1, 0]])
    with pytest.raises(ValueError):
        routing.plan_visits(**common, speed_kmh=0)


def test_great_circle_distance() -> None:
    moscow, petersburg = routing.Point(55.7558, 37.6173), routing.Point(59.9343, 30.3351)
    assert routing.great_circle_km(moscow, petersburg) == pytest.approx(634, rel=0.01)


# --- iCalendar ---------------------------------------------------------------------------------


def entry(**changes: Any) -> ical.CalendarEntry:
    values: dict[str, Any] = dict(
        raid_id="r1",
        sequence=2,
        title="Рейд",
        purpose="planned_check",
        status="confirmed",
        starts_at=START,
        ends_at=START + dt.timedelta(hours=8),
        timezone="Europe/Moscow",
        location="с. Тарногский Городок",
        organizer_email="c@d.test",
        organizer_name="Координатор",
        attendees=[
            ical.Attendee("a@x.test", "А", "confirmed", "lead"),
            ical.Attendee("b@x.test", "Б", "declined", "member"),
        ],
        family_count=5,
        url="https://opora.test/raids/r1",
        updated_at=START,
    )
    values.update(changes)
    return ical.CalendarEntry(**values)


def test_ical_reads_back() -> None:
    calendar = icalendar.Calendar.from_ical(ical.render([entry()]))
    [event] = calendar.walk("VEVENT")
    assert calendar["METHOD"] == "REQUEST" and calendar["PRODID"] == ical.PRODID
    assert int(event["SEQUENCE"]) == 2 and str(event["STATUS"]) == "CONFIRMED"
    assert event.decoded("DTSTART") == START and event.decoded("DTEND") == START + dt.timedelta(
        hours=8
    )
    assert event["ORGANIZER"].params["CN"] == "Координатор"
    assert [a.params["PARTSTAT"] for a in event["ATTENDEE"]] == ["ACCEPTED", "DECLINED"]
    assert [a["TRIGGER"].dt for a in event.walk("VALARM")] == [
        dt.timedelta(days=-1),
        dt.timedelta(hours=-1),
    ]
    assert "5" in str(event["DESCRIPTION"])


def test_ical_cancel_and_feed() -> None:
    cancel = icalendar.Calendar.from_ical(ical.render([entry(sequence=3)], method="CANCEL"))
    [event] = cancel.walk("VEVENT")
    assert cancel["METHOD"] == "CANCEL" and str(event["STATUS"]) == "CANCELLED"
    assert event.walk("VALARM") == []
    feed = icalendar.Calendar.from_ical(
        ical.render([entry(), entry(raid_id="r2", status="cancelled")], method="PUBLISH", name="x")
    )
    assert [str(e["STATUS"]) for e in feed.walk("VEVENT")] == ["CONFIRMED", "CANCELLED"]
    with pytest.raises(ValueError):
        ical.render([entry()], method="REPLY")


# --- recurring dates ---------------------------------------------------------------------------


def test_occurrence_dates() -> None:
    assert series.occurrence_dates(dt.date(2027, 1, 31), "monthly", 1, 4) == [
        dt.date(2027, 1, 31),
        dt.date(2027, 2, 28),
        dt.date(2027, 3, 31),
        dt.date(2027, 4, 30),
    ]
    assert series.occurrence_dates(dt.date(2026, 12, 1), "monthly", 3, 2) == [
        dt.date(2026, 12, 1),
        dt.date(2027, 3, 1),
    ]
    assert series.occurrence_dates(dt.date(2027, 1, 5), "weekly", 2, 3) == [
        dt.date(2027, 1, 5),
        dt.date(2027, 1, 19),
        dt.date(2027, 2, 2),
    ]


# --- the rules, on a database but without HTTP or broker ---------------------------------------


@pytest.fixture
def session(tmp_path: Any) -> Iterator[Session]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'raids.db'}")
    Base.metadata.create_all(engine)
    with db.make_sessionmaker(engine)() as s:
        for number, category in (("1", "risk_group"), ("2", "sop")):
            remember_family(
                s,
                {
                    "family_id": f"f{number}",
                    "number": f"F-{number}",
                    "category": category,
                    "display_name": "Семья",
                    "family_version": 1,
                    "address": {
                        "district": "D",
                        "settlement": "S",
                        "latitude": 60.1,
                        "longitude": 43.1,
                    },
                },
                START,
            )
        yield s
    engine.dispose()


def person(person_id: str, agency: str, kind: str = "school") -> dict[str, Any]:
    return {
        "person_id": person_id,
        "agency_id": agency,
        "agency_kind": kind,
        "display_name": person_id,
        "email": f"{person_id}@x.test",
        "role": "member",
    }


def raid_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Рейд",
        "purpose": "planned_check",
        "district": "D",
        "date": dt.date(2026, 12, 3),
        "start_time": dt.time(9),
        "end_time": dt.time(13),
        "timezone": "Europe/Moscow",
        "centre": {"name": "C", "latitude": 60.0, "longitude": 43.0},
        "organizer_email": "c@x.test",
        "minutes_per_visit": 30,
        "speed_kmh": 50.0,
        "road_factor": 1.3,
        "family_ids": ["f1"],
        "participants": [person("a", "A1"), person("b", "B1")],
    }
    data.update(changes)
    return data


def refused(session: Session, data: dict[str, Any], **rules: Any) -> RuleViolation:
    """A refusal rolls back to where it started, as the request's transaction does."""
    with pytest.raises(RuleViolation) as caught, session.begin_nested():
        scheduling.schedule_raid(ctx(session, **rules), data)
    return caught.value


def ctx(session: Session, **rules: Any) -> Context:
    return Context(session, "coord", RaidRules(**rules), "https://opora.test")


def test_interagency_rule_and_its_configuration(session: Session) -> None:
    same = raid_data(participants=[person("a", "A1"), person("b", "A1")])
    assert "at least 2 different agencies" in refused(session, same).detail
    raid, _ = scheduling.schedule_raid(ctx(session, min_agencies=1), same)
    assert raid.status == "planned"


def test_sop_rule(session: Session) -> None:
    problem = refused(session, raid_data(family_ids=["f1", "f2"]))
    assert "police_pdn" in problem.detail and "F-2" in problem.detail
    team = [person("a", "A1"), person("p", "PDN", "police_pdn")]
    raid, _ = scheduling.schedule_raid(
        ctx(session), raid_data(family_ids=["f1", "f2"], participants=team)
    )
    assert {s.family_id for s in raid.stops} == {"f1", "f2"} and raid.route is not None
    later = dict(start_time=dt.time(14), end_time=dt.time(15))
    school_only = raid_data(family_ids=["f2"], **later)
    assert "school" not in refused(session, school_only).detail
    scheduling.schedule_raid(ctx(session, sop_required_kinds=("school",)), school_only)
    off = raid_data(family_ids=["f2"], start_time=dt.time(16), end_time=dt.time(17))
    scheduling.schedule_raid(ctx(session, sop_required_kinds=()), off)


def test_double_booking_and_absence(session: Session) -> None:
    first, _ = scheduling.schedule_raid(ctx(session), raid_data())
    clash = refused(
        session,
        raid_data(
            participants=[person("a", "A1"), person("c", "C1")],
            start_time=dt.time(12),
            end_time=dt.time(14),
        ),
    )
    assert list(clash.errors or {}) == ["participants.0.person_id"]
    assert first.id in (clash.errors or {})["participants.0.person_id"][0]
    absence, affected = series.record_absence(
        ctx(session),
        "a",
        {"starts_on": dt.date(2026, 12, 1), "ends_on": dt.date(2026, 12, 5), "kind": "leave"},
    )
    assert affected == [first]  # the coordinator sees which raid to re-staff
    busy = refused(
        session,
        raid_data(
            participants=[person("a", "A1"), person("d", "D1")],
            start_time=dt.time(16),
            end_time=dt.time(18),
        ),
    )
    assert "declared an absence (leave" in (busy.errors or {})["participants.0.person_id"][0]
    with pytest.raises(RuleViolation):
        series.record_absence(
            ctx(session),
            "c",
            {"starts_on": dt.date(2026, 12, 5), "ends_on": dt.date(2026, 12, 1), "kind": "leave"},
        )
    assert absence.person_id == "a"


def test_the_raid_state_machine(session: Session) -> None:
    c = ctx(session)
    raid, _ = scheduling.schedule_raid(c, raid_data())
    with pytest.raises(Conflict):
        scheduling.start_raid(c, raid)  # planned: confirm first
    with pytest.raises(RuleViolation, match="cannot be confirmed"):
        scheduling.confirm_raid(c, raid)
    for p in raid.participants:
        invitations.respond(c, raid, p, True, None)
    scheduling.confirm_raid(c, raid)
    assert raid.status == "confirmed" and raid.sequence == 1
    with pytest.raises(Conflict):
        scheduling.complete_raid(c, raid, None, False)
    act = visits.record_visit(
        c,
        raid,
        {
            "family_id": "f1",
            "outcome": "refused_entry",
            "urgent_concern": False,
            "participant_ids": [],
        },
    )
    assert raid.status == "in_progress" and act.participant_ids == ["a", "b"]
    scheduling.complete_raid(c, raid, None, False)
    assert raid.status == "completed"
    with pytest.raises(Conflict):
        scheduling.cancel_raid(c, raid, "поздно")
    with pytest.raises(Conflict):
        invitations.invite(c, raid, person("z", "Z1"))


def test_declining_then_changing_ones_mind(session: Session) -> None:
    c = ctx(session)
    raid, _ = scheduling.schedule_raid(c, raid_data())
    a = raid.participants[0]
    with pytest.raises(RuleViolation):
        invitations.respond(c, raid, a, False, None)
    invitations.respond(c, raid, a, False, "болен")
    assert a.state == "declined" and a.decline_reason == "болен"
    invitations.respond(c, raid, a, True, None)
    assert a.state == "confirmed" and a.decline_reason is None
    invitations.withdraw(c, raid, a)
    with pytest.raises(Conflict):
        invitations.respond(c, raid, a, True, None)
    again = invitations.invite(c, raid, person("a", "A1"))
    assert again is a and a.state == "invited"


def test_rules_from_the_environment() -> None:
    from shared.config import ConfigError

    assert RaidRules.from_env({}) == RaidRules()
    rules = RaidRules.from_env(
        {
            "RAIDS_MIN_AGENCIES": "3",
            "RAIDS_SOP_REQUIRED_AGENCY_KINDS": "police_pdn, kdn",
            "RAIDS_RECENT_VISIT_DAYS": "14",
        }
    )
    assert rules == RaidRules(3, ("police_pdn", "kdn"), 14)
    assert RaidRules.from_env({"RAIDS_SOP_REQUIRED_AGENCY_KINDS": ""}).sop_required_kinds == ()
    with pytest.raises(ConfigError, match="RAIDS_MIN_AGENCIES"):
        RaidRules.from_env({"RAIDS_MIN_AGENCIES": "two"})
    with pytest.raises(ConfigError, match="at least 1"):
        RaidRules.from_env({"RAIDS_MIN_AGENCIES": "0"})
