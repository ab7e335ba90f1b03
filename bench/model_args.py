"""The ``--model [NAME=]PATH`` option that the quality scripts comparing models share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_model_option", "model_paths"]


def add_model_option(ap: argparse.ArgumentParser, default_help: str) -> None:
    """A repeatable ``--model [NAME=]PATH``; ``default_help`` says what is used without one."""
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help=f"an SDK artifact or a .safetensors with its card; repeatable (default: {default_help})",
    )


def model_paths(ap: argparse.ArgumentParser, specs: Sequence[str], at_least: int = 1) -> dict[str, Path]:
    """``NAME=PATH`` (or PATH, named by its stem) -> {name: path}, in the order given. A missing
    file, two models with one name or fewer than ``at_least`` models end the script through
    ``ap.error`` (exit status 2, the option and the fix in the message)."""
    paths: dict[str, Path] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        p = Path(path)
        if not p.is_file():
            ap.error(f"--model {spec}: no such file {p}")
        paths[name or p.stem] = p
    if len(paths) != len(specs):
        ap.error("--model: two models share a name; name them NAME=PATH")
    if len(paths) < at_least:
        ap.error(f"--model: give at least {at_least} models")
    return paths
