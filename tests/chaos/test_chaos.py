"""Thousands of commands through every service while the broker, the database, workers, web
processes, an SMS gateway and the SMTP server fail; then nothing lost, nothing done twice.

The seed (printed; ``OPORA_CHAOS_SEED`` repeats a run) decides the command mix and the fault
schedule; ``OPORA_CHAOS_COMMANDS`` changes how many commands (default 2000). The report is
printed, kept in pytest's terminal summary and written as JSON to a folder under the system's
temp dir (named in the report), with the processes' logs when the run fails.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from chaos import conftest as chaos_conftest
from chaos.report import render, write
from chaos.run import ChaosRun, Options
from chaos.servers import PrivatePostgres, PrivateRabbit

pytestmark = [pytest.mark.chaos, pytest.mark.fault, pytest.mark.timeout(900)]


def test_every_command_has_each_effect_once_through_the_faults(
    private_servers: tuple[PrivateRabbit, PrivatePostgres],
) -> None:
    seed = int(os.environ.get("OPORA_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    options = Options(seed=seed, commands=int(os.environ.get("OPORA_CHAOS_COMMANDS") or 2000))
    print(f"\nchaos seed {seed}")
    folder = Path(tempfile.mkdtemp(prefix="opora-chaos-run-"))
    rabbit, postgres = private_servers
    with ChaosRun(rabbit, postgres, folder, options) as run:
        workload = run.set_up()
        run.drive(workload)
        run.drain()
        try:
            report, problems = run.count()
        except Exception:
            print(json.dumps(run.summary(), indent=2, default=str))
            raise
        tails = run.log_tails() if problems else ""
    write(report, folder / "chaos-report.json")
    text = render(report) + f"\nJSON report: {folder / 'chaos-report.json'}"
    if problems:
        text += f"\nprocess logs: {folder / 'logs'}"
    else:
        shutil.rmtree(folder / "logs", ignore_errors=True)
        shutil.rmtree(folder / "data", ignore_errors=True)
    chaos_conftest.REPORTS.append(text)
    print(text)
    if problems:
        pytest.fail(f"{len(problems)} problem(s):\n{text}\n\n{tails}", pytrace=False)
