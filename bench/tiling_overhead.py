"""Tiling overhead: time of seam-free tiled inference / whole-image inference.

Tiled = the SDK's tile (default 256 LR pixels kept, read with the model's halo on each side);
whole = one tile covering the image. The overhead comes from the halos (recomputed overlap)
and per-tile calls. Whole and tiled are timed alternately, so load from other processes on a
shared machine hits both alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .timing import time_interleaved


def test_image(n: int) -> np.ndarray:
    """An n x n uint16 image made of a real fluorescence image (stardist nuclei), tiled."""
    from scopesr.sdk.io import read_image
    from scopesr.sdk.samples import SAMPLES

    p = SAMPLES["stardist-nuclei-2d"].path()
    base = read_image(p).array if p else np.random.default_rng(0).integers(0, 4000, (512, 512)).astype(np.uint16)
    reps = -(-n // base.shape[0])
    return np.ascontiguousarray(np.tile(base, (reps, reps))[:n, :n])


def measure(
    up: Any, sizes: list[int], repeats: int, tile: int, on_row: Callable[[dict[str, Any]], None] = lambda row: None
) -> list[dict[str, Any]]:
    """One row per LR size: whole and tiled medians and minima, their ratios, the tiles, and
    the pixels the tiles read (cores + halos) per image pixel."""
    from scopesr.sdk.tiling import make_plan

    rows = []
    for n in sizes:
        img = test_image(n)
        reps = repeats if n <= 1024 else max(3, repeats // 2)
        tw, tt = time_interleaved(
            [lambda img=img, n=n: up.upscale(img, tile=n), lambda img=img: up.upscale(img, tile=tile)],
            warmup=1,
            repeats=reps,
        )
        plan = make_plan(up.backend, n, n, tile, up.card.halo)
        row = {
            "size": n,
            "tiles": plan.n_tiles,
            "whole_s": round(tw.median, 4),
            "tiled_s": round(tt.median, 4),
            "ratio": round(tt.median / tw.median, 3),
            "whole_min_s": round(tw.min, 4),
            "tiled_min_s": round(tt.min, 4),
            "ratio_min": round(tt.min / tw.min, 3),
            "repeats": reps,
        }
        # the tiles' extra work: halo rows/columns recomputed around each kept core
        row["halo_work"] = round(
            sum((sx.read1 - sx.read0) * (sy.read1 - sy.read0) for sy in plan.ys for sx in plan.xs) / (n * n), 3
        )
        rows.append(row)
        on_row(row)
    return rows


def markdown(rows: list[dict[str, Any]], up: Any, model_name: str, tile: int, command: str) -> str:
    return (
        f"Model `{model_name}` ({up.card.architecture}, x{up.scale}, halo {up.card.halo} LR px), backend "
        f"{up.backend.name}; tile {tile} LR px (kept core) + halo; uint16 input tiled from a real "
        f"fluorescence image; whole and tiled timed alternately, median (and minimum) of the repeats "
        "after one warm-up each. 'Pixels computed' = LR pixels the tiles read (cores + halos) / image "
        "pixels: the arithmetic overhead of the halos. This is a shared 2-core machine: medians move by "
        "10-30 % between runs when other jobs run.\n\n"
        "| LR size | tiles | whole image (ms) | tiled (ms) | tiled / whole (median) | tiled / whole (min) "
        "| pixels computed |\n|---|---|---|---|---|---|---|\n"
        + "".join(
            f"| {r['size']}x{r['size']} | {r['tiles']} | {r['whole_s'] * 1e3:.1f} | "
            f"{r['tiled_s'] * 1e3:.1f} | {r['ratio']:.3f} | {r['ratio_min']:.3f} | {r['halo_work']:.3f} |\n"
            for r in rows
        )
        + f"\nCommand: `{command}`\n"
    )
