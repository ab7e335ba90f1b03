"""How much of a model's change over bicubic each degradation row wants: ``bicubic + t * (model -
bicubic)`` scored per image at a grid of ``t`` (``benchmarks/bench_residual_scale.py``).

A blind model settles on one response per kind of LR image; where two degradations give look-alike
LR images that want different answers, its ``t = 1`` sits between their optima. Per row this
reports the mean gain over bicubic at each ``t`` (per source first, then over sources), each image's
best ``t``, and the oracle that picks each image's best ``t`` (it looks at the sharp image): the most
that one number of side information per image could buy through this knob. The LR images are the
release table's (``quality.eval_pair``, same seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scopesr.sdk import quality

T_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def scale_curves(
    upscale: Callable[[np.ndarray], np.ndarray],
    images: Sequence[quality.EvalImage],
    ts: Sequence[float],
    scale: int = 4,
) -> dict[str, Any]:
    """Per row: the mean gain over bicubic at each t, each image's best t, and the oracle's mean.
    ``ts`` must include 1 (the model itself)."""
    out: dict[str, Any] = {}
    for row, deg in quality.EVAL_DEGRADATIONS.items():
        per_image = []
        for ii, im in enumerate(images):
            lr, target = quality.eval_pair(deg, row, im, ii)
            b = quality.upscale_bicubic(lr, scale)
            r = np.asarray(upscale(lr.astype(np.float32)), np.float64) - b  # float: no rounding before scaling
            base = quality.psnr(target, quality.round_to_dtype(b, lr.dtype), border=quality.DEFAULT_BORDER)
            gains = [
                quality.psnr(target, quality.round_to_dtype(b + t * r, lr.dtype), border=quality.DEFAULT_BORDER) - base
                for t in ts
            ]
            per_image.append({"image": im.name, "source": im.source, "gains": gains})
        g = np.array([p["gains"] for p in per_image])  # (images, t)
        src = np.array([p["source"] for p in per_image])
        sources = list(dict.fromkeys(src.tolist()))
        # means per source first, then over sources, as every quality table takes them
        by_source = {s: g[src == s].mean(axis=0) for s in sources}
        oracle = [float(g[src == s].max(axis=1).mean()) for s in sources]
        out[row] = {
            "mean_gain_at_t": np.mean(list(by_source.values()), axis=0).tolist(),
            "worst_at_t1": float(g[:, list(ts).index(1.0)].min()),
            "oracle_mean": float(np.mean(oracle)),
            "oracle_worst": float(g.max(axis=1).min()),
            "best_t": {p["image"]: ts[int(np.argmax(p["gains"]))] for p in per_image},
            "per_source_gain_at_t": {s: v.tolist() for s, v in by_source.items()},
        }
    return out


def markdown(data: dict[str, Any], command: str) -> str:
    ts = data["t"]
    lines = [
        "# How much of the model's residual each degradation wants",
        "",
        f"Model: `{data['model']}` (sha256 {data['sha256'][:12]}). Command: `{command}`.",
        "",
        "`bicubic + t * (model - bicubic)`, rounded to the LR dtype. Mean gain over bicubic in dB (per source "
        "first, then over sources); `t = 1` is the model itself. `best t` counts the images whose best grid "
        "value is below 1, at 1, above 1. `oracle` picks each image's best t (it looks at the sharp image): "
        "the most that one number per image could buy through this knob.",
    ]
    for part, block in data["sets"].items():
        head = " | ".join(f"t={t:g}" for t in ts)
        lines += ["", f"## {part}", "", f"| row | {head} | worst at t=1 | best t <1 / =1 / >1 | oracle (worst) |"]
        lines.append("|---" * (len(ts) + 4) + "|")
        for row, e in block.items():
            bt = list(e["best_t"].values())
            counts = f"{sum(t < 1 for t in bt)} / {sum(t == 1 for t in bt)} / {sum(t > 1 for t in bt)}"
            cells = " | ".join(f"{g:+.2f}" for g in e["mean_gain_at_t"])
            oracle = f"{e['oracle_mean']:+.2f} ({e['oracle_worst']:+.2f})"
            lines.append(f"| {row} | {cells} | {e['worst_at_t1']:+.2f} | {counts} | {oracle} |")
        t_cmp = data["t_compare"]
        k1, kc = ts.index(1.0), ts.index(t_cmp)
        rows = list(block)
        lines += ["", f"Per source, gain at t=1 -> t={t_cmp:g}:", "", "| source | " + " | ".join(rows) + " |"]
        lines.append("|---" * (len(rows) + 1) + "|")
        for src in block[rows[0]]["per_source_gain_at_t"]:
            per = [block[r]["per_source_gain_at_t"][src] for r in rows]
            cells = [f"{g[k1]:+.2f} -> {g[kc]:+.2f}" for g in per]
            lines.append(f"| {src} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
