"""Raids' visit-order benchmark: how long ordering a raid takes, and how good the tour is.

    python -m bench.raids_order [--sizes 10,30,60] [--runs 7] [--seed 2026] [--budget 2.0]
                                [--json PATH]

For each size n, ``--runs`` different raids are drawn (seeded, so reruns are comparable):
n families scattered up to ~60 km around a district centre in the Vologda region, as rural
districts are. Each is ordered by ``services.raids.routing.plan_visits`` exactly as the service
does it (road matrix from great-circle distances x 1.3, optimiser, arrival times), timed end to
end. In the same run, on the same raid, the nearest-neighbour tour (always drive to the
closest family not yet visited: what a coordinator does by hand) is the baseline; the table
reports our tour length over that baseline (lower is better) and how many of our tours the
solver proved optimal.

Exit status is 0: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from services.raids import routing

CENTRE = routing.Point(60.5, 43.58)  # Tarnogsky Gorodok
RADIUS_KM = 60.0
ROAD_FACTOR = 1.3
START = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC)


def draw_raid(n: int, rng: random.Random) -> list[routing.Stop]:
    stops = []
    for i in range(n):
        distance = RADIUS_KM * math.sqrt(rng.random())
        bearing = rng.uniform(0, 2 * math.pi)
        lat = CENTRE.latitude + distance * math.cos(bearing) / 111.2
        lon = CENTRE.longitude + distance * math.sin(bearing) / (
            111.2 * math.cos(math.radians(CENTRE.latitude))
        )
        stops.append(routing.Stop(f"f{i}", f"s{i}", routing.Point(lat, lon)))
    return stops


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


def measure(n: int, runs: int, seed: int, budget: float) -> dict[str, Any]:
    rng = random.Random(seed * 1000 + n)
    times, ratios, optimal = [], [], 0
    solvers: set[str] = set()
    for _ in range(runs):
        stops = draw_raid(n, rng)
        started = time.perf_counter()
        plan = routing.plan_visits(
            centre=CENTRE,
            centre_name="centre",
            stops=stops,
            window_start=START,
            window_end=START + dt.timedelta(hours=12),
            minutes_per_visit=30,
            speed_kmh=50,
            road_factor=ROAD_FACTOR,
            time_budget_s=budget,
        )
        times.append(time.perf_counter() - started)
        matrix = routing.road_matrix([CENTRE, *(s.point for s in stops if s.point)], ROAD_FACTOR)
        baseline = routing.tour_length(matrix, routing.nearest_neighbour(matrix))
        ratios.append(plan.total_km / baseline)
        optimal += plan.optimal
        solvers.add(plan.solver)
    return {
        "stops": n,
        "runs": runs,
        "median_s": statistics.median(times),
        "p95_s": percentile(times, 0.95),
        "max_s": max(times),
        "ratio_to_nearest_neighbour_median": statistics.median(ratios),
        "ratio_to_nearest_neighbour_best": min(ratios),
        "ratio_to_nearest_neighbour_worst": max(ratios),
        "proven_optimal": optimal,
        "solvers": sorted(solvers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,30,60")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--budget", type=float, default=routing.DEFAULT_TIME_BUDGET_S)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    measure(12, 1, args.seed + 1, args.budget)  # warm-up: loads OR-Tools once, as a service does
    results = [measure(n, args.runs, args.seed, args.budget) for n in sizes]
    print(f"visit order: {args.runs} raids per size, time budget {args.budget:.1f} s")
    print(
        f"{'stops':>5} {'median s':>9} {'p95 s':>7} {'max s':>7} "
        f"{'ours/NN median':>15} {'best':>6} {'worst':>6} {'optimal':>8}  solver"
    )
    for r in results:
        print(
            f"{r['stops']:>5} {r['median_s']:>9.3f} {r['p95_s']:>7.3f} {r['max_s']:>7.3f} "
            f"{r['ratio_to_nearest_neighbour_median']:>15.3f} "
            f"{r['ratio_to_nearest_neighbour_best']:>6.3f} "
            f"{r['ratio_to_nearest_neighbour_worst']:>6.3f} "
            f"{r['proven_optimal']:>4}/{r['runs']:<3}  {', '.join(r['solvers'])}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
