"""Visit order: a round trip from the district centre through every family and back.

Pure functions, no database: distances are great-circle kilometres times a road factor (or
a supplied matrix); the tour is exact for small raids (Held-Karp) and, beyond, OR-Tools
routing (guided local search) gives a strong tour that CP-SAT's circuit model then improves
or proves optimal within a time budget. Time is minutes of travel at an average speed plus a
fixed time per visit, checked against the raid's window.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

EARTH_RADIUS_KM = 6371.0088
EXACT_MAX_STOPS = 9
DEFAULT_TIME_BUDGET_S = 2.0
METRES = 1000  # the solvers work on whole metres

Matrix = Sequence[Sequence[float]]


@dataclass(frozen=True)
class Point:
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Stop:
    """A family to visit; ``point`` is None when the registry has no coordinates for it."""

    key: str
    settlement: str
    point: Point | None


@dataclass(frozen=True)
class PlannedStop:
    key: str
    position: int
    arrival: dt.datetime
    departure: dt.datetime
    leg_km: float
    placement: str  # "coordinates", "settlement" or "centre"
    within_window: bool


@dataclass
class VisitPlan:
    stops: list[PlannedStop]
    total_km: float
    travel_minutes: float
    return_at: dt.datetime
    fits_window: bool
    solver: str
    optimal: bool
    warnings: list[str] = field(default_factory=list)

    def as_dict(self, timezone: str = "UTC") -> dict[str, object]:
        """JSON-ready, for the raid's stored route and the API; times to the minute, in UTC and
        as local clock times of ``timezone``."""
        zone = ZoneInfo(timezone)
        return {
            "stops": [
                {
                    "family_id": s.key,
                    "position": s.position,
                    "arrival": _minute(s.arrival).isoformat(),
                    "departure": _minute(s.departure).isoformat(),
                    "arrival_local": f"{_minute(s.arrival).astimezone(zone):%H:%M}",
                    "leg_km": round(s.leg_km, 2),
                    "placement": s.placement,
                    "within_window": s.within_window,
                }
                for s in self.stops
            ],
            "total_km": round(self.total_km, 2),
            "travel_minutes": round(self.travel_minutes, 1),
            "return_at": _minute(self.return_at).isoformat(),
            "return_local": f"{_minute(self.return_at).astimezone(zone):%H:%M}",
            "fits_window": self.fits_window,
            "solver": self.solver,
            "optimal": self.optimal,
            "warnings": list(self.warnings),
        }


def _minute(moment: dt.datetime) -> dt.datetime:
    return (moment + dt.timedelta(seconds=30)).replace(second=0, microsecond=0)


def great_circle_km(a: Point, b: Point) -> float:
    """Haversine distance; good to well under 1 % at district scale."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def road_matrix(points: Sequence[Point], road_factor: float) -> list[list[float]]:
    """Kilometres by road, estimated: roads wind, so the straight line times a factor."""
    return [[great_circle_km(a, b) * road_factor for b in points] for a in points]


def tour_length(matrix: Matrix, order: Sequence[int]) -> float:
    """Length of depot (0) -> order... -> depot."""
    path = [0, *order, 0]
    return sum(matrix[a][b] for a, b in itertools.pairwise(path))


# --- solvers -----------------------------------------------------------------------------------


def nearest_neighbour(matrix: Matrix) -> list[int]:
    """The baseline: always drive to the closest family not yet visited."""
    left = set(range(1, len(matrix)))
    order: list[int] = []
    here = 0
    while left:
        here = min(left, key=lambda j: (matrix[here][j], j))
        order.append(here)
        left.remove(here)
    return order


def two_opt(matrix: Matrix, order: Sequence[int]) -> list[int]:
    """Undo crossings until no reversal of a segment shortens the tour."""
    path = [0, *order, 0]
    improved = True
    while improved:
        improved = False
        for i in range(1, len(path) - 2):
            for j in range(i + 1, len(path) - 1):
                a, b, c, d = path[i - 1], path[i], path[j], path[j + 1]
                if matrix[a][c] + matrix[b][d] < matrix[a][b] + matrix[c][d] - 1e-9:
                    path[i : j + 1] = reversed(path[i : j + 1])
                    improved = True
    return path[1:-1]


def held_karp(matrix: Matrix) -> list[int]:
    """Exact shortest round trip by dynamic programming over subsets: O(2^n n^2)."""
    n = len(matrix) - 1
    if n <= 1:
        return list(range(1, n + 1))
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for k in range(n):
        best[(1 << k, k)] = (matrix[0][k + 1], -1)
    for mask in range(1, 1 << n):
        for last in range(n):
            if not mask & (1 << last) or (mask, last) not in best:
                continue
            cost = best[(mask, last)][0]
            for nxt in range(n):
                if mask & (1 << nxt):
                    continue
                key = (mask | (1 << nxt), nxt)
                candidate = cost + matrix[last + 1][nxt + 1]
                if key not in best or candidate < best[key][0]:
                    best[key] = (candidate, last)
    full = (1 << n) - 1
    last = min(range(n), key=lambda k: best[(full, k)][0] + matrix[k + 1][0])
    order: list[int] = []
    mask = full
    while last != -1:
        order.append(last + 1)
        mask, last = mask ^ (1 << last), best[(mask, last)][1]
    return order[::-1]


def _routing_tour(costs: list[list[int]], budget_s: float) -> list[int]:
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    manager = pywrapcp.RoutingIndexManager(len(costs), 1, 0)
    model = pywrapcp.RoutingModel(manager)
    model.SetArcCostEvaluatorOfAllVehicles(model.RegisterTransitMatrix(costs))
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    params.time_limit.FromMilliseconds(max(10, int(budget_s * 1000)))
    solution = model.SolveWithParameters(params)
    if solution is None:
        return nearest_neighbour(costs)
    order: list[int] = []
    index = solution.Value(model.NextVar(model.Start(0)))
    while not model.IsEnd(index):
        order.append(manager.IndexToNode(index))
        index = solution.Value(model.NextVar(index))
    return order


def _circuit_tour(
    costs: list[list[int]], hint: Sequence[int], budget_s: float
) -> tuple[list[int], bool] | None:
    """CP-SAT's circuit model, warm-started from ``hint``: None when it found nothing better."""
    from ortools.sat.python import cp_model

    n = len(costs)
    model = cp_model.CpModel()
    arcs: dict[tuple[int, int], cp_model.IntVar] = {
        (i, j): model.new_bool_var(f"a{i}_{j}") for i in range(n) for j in range(n) if i != j
    }
    model.add_circuit([(i, j, var) for (i, j), var in arcs.items()])
    model.minimize(sum(costs[i][j] * var for (i, j), var in arcs.items()))
    hinted = set(zip([0, *hint], [*hint, 0], strict=True))
    for key, var in arcs.items():
        model.add_hint(var, key in hinted)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, budget_s)
    solver.parameters.num_workers = 8
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    following = {i: j for (i, j), var in arcs.items() if solver.value(var)}
    order: list[int] = []
    here = following[0]
    while here != 0:
        order.append(here)
        here = following[here]
    return order, status == cp_model.OPTIMAL


def best_tour(
    matrix: Matrix, time_budget_s: float = DEFAULT_TIME_BUDGET_S
) -> tuple[list[int], str, bool]:
    """The order of stops 1..n (0 is the centre), the solver's name and whether it is proven
    optimal."""
    n = len(matrix) - 1
    if n <= EXACT_MAX_STOPS:
        return held_karp(matrix), "held-karp", True
    deadline = time.monotonic() + time_budget_s
    costs = [[round(v * METRES) for v in row] for row in matrix]
    order = _routing_tour(costs, min(0.1 + 0.005 * n, time_budget_s / 4))
    solver, optimal = "ortools-routing", False
    improved = _circuit_tour(costs, order, deadline - time.monotonic())
    if improved is not None and tour_length(costs, improved[0]) <= tour_length(costs, order):
        order, optimal = improved
        solver = "ortools-cp-sat"
    return order, solver, optimal


# --- the plan ----------------------------------------------------------------------------------


def place(
    stops: Sequence[Stop], centre: Point, centre_name: str, settlements: dict[str, Point]
) -> tuple[list[Point], list[str], list[str]]:
    """Where each stop is taken to be, how it was placed, and warnings for the guessed ones."""
    points: list[Point] = []
    placements: list[str] = []
    warnings: list[str] = []
    for stop in stops:
        if stop.point is not None:
            points.append(stop.point)
            placements.append("coordinates")
        elif stop.settlement in settlements:
            points.append(settlements[stop.settlement])
            placements.append("settlement")
            warnings.append(
                f"family {stop.key} has no coordinates: placed at its settlement "
                f"({stop.settlement}); arrival times there are approximate"
            )
        else:
            points.append(centre)
            placements.append("centre")
            warnings.append(
                f"family {stop.key} has no coordinates and its settlement ({stop.settlement}) "
                f"has no known position: placed at the district centre ({centre_name}); "
                "travel to it is not counted, add coordinates in the registry"
            )
    return points, placements, warnings


def plan_visits(
    *,
    centre: Point,
    centre_name: str,
    stops: Sequence[Stop],
    window_start: dt.datetime,
    window_end: dt.datetime,
    minutes_per_visit: int,
    speed_kmh: float,
    road_factor: float,
    settlements: dict[str, Point] | None = None,
    distance_km: Matrix | None = None,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
) -> VisitPlan:
    """Order the visits, estimate arrivals, and say whether the plan fits the raid's window.

    ``distance_km``, when given, is (n+1)x(n+1) with the centre first, then ``stops`` in order.
    """
    if speed_kmh <= 0 or road_factor < 1 or minutes_per_visit < 0:
        raise ValueError("speed must be positive, road factor >= 1, visit time >= 0")
    points, placements, warnings = place(stops, centre, centre_name, settlements or {})
    if distance_km is not None:
        size = len(stops) + 1
        if len(distance_km) != size or any(len(row) != size for row in distance_km):
            raise ValueError(f"the distance matrix must be {size}x{size}: centre, then families")
        if any(v < 0 for row in distance_km for v in row):
            raise ValueError("distances cannot be negative")
        matrix: Matrix = distance_km
    else:
        matrix = road_matrix([centre, *points], road_factor)
    order, solver, optimal = best_tour(matrix, time_budget_s) if stops else ([], "none", True)

    clock = window_start
    previous = 0
    planned: list[PlannedStop] = []
    travel = 0.0
    for position, node in enumerate(order, start=1):
        leg = float(matrix[previous][node])
        travel += leg
        arrival = clock + dt.timedelta(minutes=leg / speed_kmh * 60)
        departure = arrival + dt.timedelta(minutes=minutes_per_visit)
        stop = stops[node - 1]
        planned.append(
            PlannedStop(
                stop.key,
                position,
                arrival,
                departure,
                leg,
                placements[node - 1],
                departure <= window_end,
            )
        )
        clock, previous = departure, node
    last_leg = float(matrix[previous][0]) if order else 0.0
    travel += last_leg
    return_at = clock + dt.timedelta(minutes=last_leg / speed_kmh * 60)
    fits = return_at <= window_end
    if not fits:
        late = [s.key for s in planned if not s.within_window]
        over = math.ceil((return_at - window_end).total_seconds() / 60)
        warnings.insert(
            0,
            f"the plan does not fit the raid's window: the team is back {over} min after it "
            f"ends; {len(late)} visit(s) end after the window"
            + (f" ({', '.join(late)})" if late else "")
            + "; lengthen the window, shorten the visits or move families to another raid",
        )
    return VisitPlan(
        planned,
        travel,
        travel / speed_kmh * 60,
        return_at,
        fits,
        solver,
        optimal,
        warnings,
    )
