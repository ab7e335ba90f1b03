"""Held-out quality and time of the self-ensemble (``upscale(..., ensemble=N)``) per degradation.

Every held-out image is degraded as in ``sr-bench release`` (``quality.evaluate``: same rows,
same seeds), then upscaled by the model alone and by the ensembles; per degradation come the mean
gain over bicubic (per source first, then over sources), the worst image, and the time of each
ensemble relative to one copy, measured in the same run. benchmarks/bench_ensemble.py records it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from scopesr.sdk import quality


def measure(up: Any, images: Sequence[quality.EvalImage], sizes: Sequence[int] = (1, 2, 4, 8)) -> dict[str, Any]:
    """``{"rows": {degradation: {"ensemble N": {gain_db, worst_db, worst_source}}},
    "time_ratio": {"ensemble N": time / time of the first size}}``."""
    names = [f"ensemble {n}" for n in sizes]
    seconds = dict.fromkeys(names, 0.0)

    def timed(n: int, name: str):
        def run(lr: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            y = up.upscale(lr, ensemble=n)
            seconds[name] += time.perf_counter() - t0
            return y

        return run

    fns = [timed(n, name) for n, name in zip(sizes, names)]
    # the first size is quality.evaluate's "model"; the others are extra methods on the same LR images
    res = quality.evaluate(fns[0], images, methods=dict(zip(names[1:], fns[1:])), with_ssim=False)
    column = {names[0]: "psnr_model", **{n: f"psnr_{n}" for n in names[1:]}}
    rows: dict[str, Any] = {}
    for dname in res["degradations"]:
        per_source: dict[str, list[dict[str, Any]]] = {}
        for r in res["rows"]:
            if r["degradation"] == dname:
                per_source.setdefault(r["source"], []).append(r)
        rows[dname] = {}
        for name, col in column.items():
            gains = {src: float(np.mean([r[col] - r["psnr_bicubic"] for r in rs])) for src, rs in per_source.items()}
            worst = min(gains, key=lambda k: gains[k])
            rows[dname][name] = {
                "gain_db": float(np.mean(list(gains.values()))),
                "worst_db": gains[worst],
                "worst_source": worst,
            }
    ratio = {name: seconds[name] / seconds[names[0]] for name in names}
    return {"degradations": res["degradations"], "rows": rows, "time_ratio": ratio}


def markdown(data: dict[str, Any], command: str) -> str:
    """``data``: ``{"model": ..., **measure(...)}``."""
    names = list(data["time_ratio"])
    lines = [
        "# Self-ensemble: held-out gain over bicubic per degradation",
        "",
        f"Model: `{data['model']}`. Command: `{command}`.",
        "",
        "`ensemble N` = the mean of the model over N flipped/transposed copies of each image "
        "(`upscale(..., ensemble=N)`, `sr-upscale --ensemble N`). Gain over bicubic in dB, mean over "
        "held-out sources (per source first); in brackets the worst source. Time relative to one copy, "
        "all images and rows, measured in this run: "
        + ", ".join(f"{n} {data['time_ratio'][n]:.1f}x" for n in names)
        + ".",
        "",
        "| degradation | " + " | ".join(names) + " |",
        "|---" * (1 + len(names)) + "|",
    ]
    for dname, row in data["rows"].items():
        cells = [f"{row[n]['gain_db']:+.2f} ({row[n]['worst_db']:+.2f})" for n in names]
        lines.append(f"| {dname} | " + " | ".join(cells) + " |")
    lines += ["", "Rows: " + "; ".join(f"**{k}**: {v}" for k, v in data["degradations"].items()) + "."]
    return "\n".join(lines) + "\n"
