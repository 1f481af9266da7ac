"""The assessments' dynamics as small server-rendered SVG charts, one per domain (no script:
the page works with JavaScript off). A chart per domain rather than eight lines on one: each is
read without telling colours apart, and a row of them fits a phone. The page keeps a table of
the same numbers beside them for screen readers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH = 220
HEIGHT = 90
PAD_X = 24
PAD_Y = 12
LOW, HIGH = 1, 5


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    score: float
    on: str


@dataclass(frozen=True)
class Series:
    """One domain's scores over time as chart coordinates."""

    domain: str
    points: tuple[Point, ...]
    first: float | None
    latest: float | None

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def change(self) -> float | None:
        if self.first is None or self.latest is None:
            return None
        return round(self.latest - self.first, 2)


def y_of(score: float) -> float:
    span = HEIGHT - 2 * PAD_Y
    return PAD_Y + (HIGH - score) * span / (HIGH - LOW)


def gridlines() -> list[tuple[int, float]]:
    """The score levels 1-5 and their heights."""
    return [(level, y_of(level)) for level in range(LOW, HIGH + 1)]


def series(assessments: list[dict[str, Any]], domains: tuple[str, ...]) -> list[Series]:
    """A series per domain, plus ``average``, over ``assessments`` (oldest first), spaced evenly
    along the x axis (an assessment is a step of the work, whatever the days between)."""
    count = len(assessments)
    step = (WIDTH - 2 * PAD_X) / (count - 1) if count > 1 else 0.0
    xs = [PAD_X + i * step if count > 1 else WIDTH / 2 for i in range(count)]
    out = []
    for domain in (*domains, "average"):
        points = []
        for x, item in zip(xs, assessments, strict=True):
            scores = item.get("scores") or {}
            if domain == "average":
                values = [scores[d] for d in domains if d in scores]
                if not values:
                    continue
                score = round(sum(values) / len(values), 2)
            elif domain in scores:
                score = scores[domain]
            else:
                continue
            points.append(Point(x, y_of(score), score, str(item.get("assessed_on") or "")))
        out.append(
            Series(
                domain,
                tuple(points),
                points[0].score if points else None,
                points[-1].score if points else None,
            )
        )
    return out
