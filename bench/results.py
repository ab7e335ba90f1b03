"""Recording a benchmark script's figures: NAME.json and NAME.md, with the machine described.

The scripts in ``benchmarks/`` pass their results folder (``benchmarks/results``); nothing here
assumes where the repository is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scopesr.sdk.atomic import atomic_write_text

from .machine import describe_machine


def pick_model(model: str | Path | None, fallback: Path) -> Path:
    """``model`` when given, else the bundled default ONNX model, else ``fallback``."""
    if model:
        return Path(model)
    try:
        from scopesr.sdk import default_model_path

        return default_model_path("onnx")
    except Exception:  # no default model bundled: any failure here means "use the fallback"
        return fallback


def record(
    out: Path, name: str, data: dict[str, Any], markdown: str, script: str, threads: int | None = None
) -> tuple[Path, Path]:
    """Write ``out/NAME.json`` and ``out/NAME.md`` atomically (the markdown headed by the
    machine and the date) and return their paths."""
    machine = describe_machine(threads)
    data = {
        "benchmark": name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.to_dict(),
        "machine_line": machine.line(),
        **data,
    }
    out.mkdir(parents=True, exist_ok=True)
    j = atomic_write_text(out / f"{name}.json", json.dumps(data, indent=2, default=str) + "\n")
    head = (
        f"<!-- written by benchmarks/{script}; do not edit -->\n"
        f"Machine: {data['machine_line']}. Date: {data['date']}.\n\n"
    )
    md = atomic_write_text(out / f"{name}.md", head + markdown)
    return j, md


def publish(
    out: Path,
    name: str,
    data: dict[str, Any],
    render: Callable[[dict[str, Any], str], str],
    script: str,
    argv: Sequence[str] | None,
    no_record: bool = False,
    threads: int | None = None,
) -> int:
    """The tail every quality script shares: render ``data`` as Markdown headed by the command
    that made it (``python benchmarks/SCRIPT ARGS``), print it and, unless ``no_record``,
    ``record`` it as ``out/NAME.json|md``. Returns 0, the script's exit status."""
    args = list(argv) if argv is not None else sys.argv[1:]
    md = render(data, f"python benchmarks/{script} {' '.join(args)}".strip())
    print(md)
    if not no_record:
        j, m = record(out, name, data, md, script, threads=threads)
        print(f"recorded {j} and {m}")
    return 0
