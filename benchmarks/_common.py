"""Shared helpers of the benchmark scripts: model choice, machine description, recording."""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY = ROOT / "tests" / "fixtures" / "tiny_x4.onnx"


def pick_model(model: str | None) -> Path:
    """--model, else the bundled default ONNX model, else the committed tiny test network."""
    if model:
        return Path(model)
    try:
        from scopesr.sdk import default_model_path

        return default_model_path("onnx")
    except Exception:  # noqa: BLE001 - no default model bundled yet
        return TINY


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    vers = {}
    for pkg in ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "opencv-contrib-python-headless",
                "tifffile", "pillow"):
        try:
            vers[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": mem_gb, "os": platform.platform(),
                            "arch": platform.machine(), "python": sys.version.split()[0], "versions": vers}
    try:  # a shared machine: say how busy it was when the figures were taken
        info["loadavg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def record(name: str, data: dict[str, Any], markdown: str, script: str = "") -> tuple[Path, Path]:
    """Write results/NAME.json and results/NAME.md (atomically) and return their paths."""
    from scopesr.sdk.card import atomic_write_text

    data = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), **data}
    j = atomic_write_text(RESULTS / f"{name}.json", json.dumps(data, indent=2) + "\n")
    m = data["machine"]
    head = (f"<!-- written by benchmarks/{script or 'bench_' + name + '.py'}; do not edit -->\n"
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB RAM, {m['os']}, Python {m['python']}, "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f". Date: {data['date']}.\n\n")
    md = atomic_write_text(RESULTS / f"{name}.md", head + markdown)
    return j, md
