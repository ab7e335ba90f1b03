"""Every command speaks the same CLI style: click's usage line and --help, the exit statuses
(0 ok, 1 some inputs failed, 2 usage error) stated in --help, and 2 for a bad option.

Each command runs as a subprocess from this interpreter's environment (the console scripts
beside ``sys.executable``; the demo through this Python), as a user would run it.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: name -> command line (a console script name first, or a full argv)
COMMANDS: dict[str, list[str]] = {
    "sr-upscale": ["sr-upscale"],
    "sr-train": ["sr-train"],
    **{f"sr-train {sub}": ["sr-train", sub] for sub in ("presets", "pretrain", "gan", "distill", "eval")},
    "sr-bench": ["sr-bench"],
    "sr-convert": ["sr-convert"],
    "sr-serve": ["sr-serve"],
    "demo_pi/run.py": [sys.executable, str(ROOT / "demo_pi" / "run.py")],
}

# "Exit status: 0 ...; 1 ...; 2 usage error ..." (whitespace collapsed first)
EXIT_STATUSES = re.compile(r"exit status:\s*0\b.*?;\s*1\b.*?;\s*2\s+usage", re.IGNORECASE)
USAGE_LINE = re.compile(r"^usage: \S+", re.IGNORECASE | re.MULTILINE)


def _argv(name: str) -> list[str]:
    argv = COMMANDS[name]
    if os.path.isabs(argv[0]):
        return list(argv)
    exe = BIN / argv[0]
    if not exe.exists():
        pytest.skip(f"{argv[0]} is not installed in {BIN} (pip install -e '.[train,convert,bench]')")
    return [str(exe), *argv[1:]]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", COLUMNS="100")
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)


@functools.cache
def _help(name: str) -> subprocess.CompletedProcess:
    return _run([*_argv(name), "--help"])


def _states_exit_statuses(text: str) -> bool:
    return EXIT_STATUSES.search(" ".join(text.split())) is not None


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_has_usage_line_and_exit_statuses(name: str) -> None:
    r = _help(name)
    assert r.returncode == 0, r.stderr[-2000:]
    assert USAGE_LINE.search(r.stdout), f"{name} --help: no usage line:\n{r.stdout[:500]}"
    assert _states_exit_statuses(r.stdout), (
        f"{name} --help does not state the exit statuses (0 ok; 1 some inputs failed; 2 usage):\n{r.stdout}"
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_bad_option_is_a_usage_error(name: str) -> None:
    r = _run([*_argv(name), "--no-such-option"])
    assert r.returncode == 2, f"{name} --no-such-option: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert "--no-such-option" in r.stderr and "Traceback" not in r.stderr
    assert USAGE_LINE.search(r.stderr), f"{name}: a usage error shows the usage line:\n{r.stderr}"
