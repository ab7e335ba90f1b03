"""Bounded memory: peak RSS of ``sr-upscale`` turning an NxN uint16 TIFF into its x4 result.

For each size an input TIFF (made of a real fluorescence image, tiled) is written into a
temporary folder, ``sr-upscale`` runs on it as a child process, and the child's own peak RSS
(``ru_maxrss`` from ``os.wait4``) is recorded with the wall time and the output size. Above
64 output megapixels sr-upscale streams the result to a BigTIFF strip by strip, so the peak
should stay flat as the image grows. For contrast, the smallest size can also run with
streaming switched off (whole result in memory). Temporary files are deleted after each size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk.errors import ScopesrError


def write_input(path: Path, n: int) -> None:
    """Write an n x n uint16 TIFF band by band (the benchmark itself stays small too)."""
    from scopesr.sdk.io import read_image, write_tiff_streaming
    from scopesr.sdk.samples import SAMPLES

    p = SAMPLES["stardist-nuclei-2d"].path()
    base = read_image(p).array if p else np.random.default_rng(0).integers(0, 4000, (512, 512)).astype(np.uint16)
    h = base.shape[0]
    row = np.tile(base, (1, -(-n // base.shape[1])))[:, :n]

    def bands():
        for y in range(0, n, h):
            yield np.ascontiguousarray(row[: min(h, n - y)])

    write_tiff_streaming(path, (n, n), np.uint16, "YX", bands())


def run_child(cmd: list[str]) -> tuple[int, float, float, str]:
    """Run cmd; return (exit code, wall seconds, the child's peak RSS in MB, its output)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, ru.ru_maxrss / 1024.0, out  # Linux: KB


def upscale_command() -> list[str]:
    """``sr-upscale`` beside this Python, else ``python -m scopesr.sdk.cli``."""
    exe = Path(sys.executable).with_name("sr-upscale")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "scopesr.sdk.cli"]


def disk_needed(sizes: list[int]) -> float:
    """Bytes of temporary disk the largest size needs (input + 16x output, 5 % spare)."""
    return max(sizes) ** 2 * 2 * 17 * 1.05


def baseline_rss() -> float:
    """Peak RSS (MB) of ``sr-upscale --help``: Python plus the CLI's imports."""
    return run_child(upscale_command() + ["--help"])[2]


def measure(
    sizes: list[int],
    model: Path,
    tmpdir: str | None = None,
    contrast: bool = True,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
) -> list[dict[str, Any]]:
    """One row per run (the smallest size a second time in memory when ``contrast``); raises
    ScopesrError naming the size when sr-upscale fails."""
    import tifffile

    runs = [(n, True) for n in sizes]
    if contrast:
        runs.insert(1, (min(sizes), False))
    rows = []
    for n, stream in runs:
        tmp = Path(tempfile.mkdtemp(prefix=f"scopesr-mem-{n}-", dir=tmpdir))
        try:
            src = tmp / f"in{n}.tif"
            write_input(src, n)
            cmd = upscale_command() + [str(src), "-o", str(tmp / "out"), "--model", str(model), "-q"]
            if not stream:
                cmd += ["--stream-above", "1e12"]
            rc, wall, rss, text = run_child(cmd)
            if rc != 0:
                raise ScopesrError(f"sr-upscale failed on {n}x{n} (exit {rc}):\n{text}")
            out = tmp / "out" / f"in{n}_x4.tif"
            with tifffile.TiffFile(out) as t:
                shape, big, strips = t.series[0].shape, t.is_bigtiff, len(t.pages[0].dataoffsets)
            if shape != (4 * n, 4 * n):
                raise ScopesrError(f"sr-upscale wrote {shape} for {n}x{n}, expected {(4 * n, 4 * n)}")
            streamed = strips > 1  # what sr-upscale actually did: the in-memory path writes one strip
            row = {
                "lr": n,
                "hr": 4 * n,
                "streamed": streamed,
                "peak_rss_mb": round(rss),
                "wall_s": round(wall, 1),
                "output_mb": round(out.stat().st_size / 2**20),
                "bigtiff": big,
                "strips": strips,
            }
            rows.append(row)
            on_row(row)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def markdown(rows: list[dict[str, Any]], model_name: str, rss_help: float, command: str) -> str:
    return (
        f"`sr-upscale IN.tif -o OUT --model {model_name} -q` on an NxN uint16 TIFF (a real fluorescence "
        "image tiled), x4; peak RSS of the sr-upscale process (ru_maxrss via os.wait4), wall time on this "
        f"shared machine (run under nice). Baseline `sr-upscale --help`: {rss_help:.0f} MB.\n\n"
        "| input | output | path | peak RSS (MB) | wall (s) | output file (MB) |\n|---|---|---|---|---|---|\n"
        + "".join(
            f"| {r['lr']}x{r['lr']} | {r['hr']}x{r['hr']} | "
            f"{'streamed ' + ('BigTIFF' if r['bigtiff'] else 'TIFF') if r['streamed'] else 'in memory'} | "
            f"{r['peak_rss_mb']} | {r['wall_s']} | {r['output_mb']} |\n"
            for r in rows
        )
        + f"\nCommand: `{command}`\n"
    )
