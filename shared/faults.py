"""Named fault-injection points for the reliability tests.

``OPORA_FAILPOINTS="consumer.before_commit=kill"`` makes the process SIGKILL itself
when it reaches that point; ``kill-once:/path`` only while /path does not exist
(it is created first), so a restarted process goes on normally. Unset in production.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def failpoint(name: str) -> None:
    spec = os.environ.get("OPORA_FAILPOINTS")
    if not spec:
        return
    for item in spec.split(","):
        point, _, action = item.partition("=")
        if point.strip() != name:
            continue
        action = action.strip()
        if action.startswith("kill-once:"):
            marker = Path(action.split(":", 1)[1])
            if marker.exists():
                continue
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "raise":
            raise RuntimeError(f"failpoint {name}")
