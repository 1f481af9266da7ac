"""`opora up`'s banner: the console's address first, and hints that run as printed (the
venv's `opora` is not on PATH)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from shared import cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_banner_names_the_console_first_and_its_token_hint_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    cli._print_welcome(tmp_path, [])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Opora console: http://127.0.0.1:8000")
    hint = next(line for line in lines if line.startswith("Get a token:"))
    command = shlex.split(hint.removeprefix("Get a token:"))
    assert Path(command[0]).name == "opora" and command[0] != "opora"
    env = {**os.environ, "OPORA_MODE": "embedded", "OPORA_DATA_DIR": str(tmp_path / "var")}
    answer = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.count(".") == 2  # a JWT


def test_the_banner_says_which_apps_are_not_ready_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli._print_welcome(tmp_path, ["raids"])
    assert "Not ready yet: raids" in capsys.readouterr().out
