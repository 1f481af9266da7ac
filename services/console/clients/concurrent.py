"""Calls to several services for one page, made at once: the page waits for the slowest, not
for the sum. Each part's outcome is kept apart, so one service down empties only its panel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.console.clients.base import ApiError, ServiceDown

T = TypeVar("T")

_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="console-api")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A part's value, or why it has none (``down``: the service; ``refused``: an API error)."""

    value: T | None = None
    down: ServiceDown | None = None
    refused: ApiError | None = None

    @property
    def ok(self) -> bool:
        return self.down is None and self.refused is None


def gather(calls: Mapping[str, Callable[[], Any]]) -> dict[str, Outcome[Any]]:
    """Run ``calls`` concurrently; a :class:`ServiceDown` or :class:`ApiError` becomes that
    part's outcome, anything else is a bug and is raised."""
    futures = {name: _POOL.submit(call) for name, call in calls.items()}
    results: dict[str, Outcome[Any]] = {}
    for name, future in futures.items():
        try:
            results[name] = Outcome(value=future.result())
        except ServiceDown as exc:
            results[name] = Outcome(down=exc)
        except ApiError as exc:
            results[name] = Outcome(refused=exc)
    return results
