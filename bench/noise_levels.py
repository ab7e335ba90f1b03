"""How noisy each quality-table LR image looks to the SDK: the estimate behind the low-noise
model's warning, per source and degradation row.

A model trained without noise (the bundled low-noise model) names in its card the estimated
noise, as a fraction of the normalised range, above which the SDK warns that a frame is too
noisy for it (``scopesr.sdk.noise.noise_fraction``). This measures that estimate on the release
rows' LR images (same seeds as the release table), so the threshold can be read against both
kinds: noise-free rows should sit below it, noisy rows above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scopesr.sdk import quality
from scopesr.sdk.card import Normalisation
from scopesr.sdk.noise import noise_fraction
from scopesr.sdk.normalize import compute_stats

#: the rows whose LR image has noise added (the others carry only the reference's own)
NOISY_ROWS = ("noise-snr20", "noise-snr8", "camera-12bit")


def measure(
    images: Sequence[quality.EvalImage],
    norm: Normalisation,
    threshold: float,
    degradations: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per image and row: the estimated noise fraction of the LR image (normalised as ``norm``
    says, as the SDK does). Summary per row: min / max over sources (mean over a source's
    planes first) and, against ``threshold``, how many sources would warn."""
    names = list(degradations or quality.EVAL_DEGRADATIONS)
    rows: list[dict[str, Any]] = []
    for dname in names:
        deg = quality.degradation_from_name(dname)
        for ii, im in enumerate(images):
            lr, _ = quality.eval_pair(deg, dname, im, ii)  # the release table's LR images
            plane = lr[..., None] if lr.ndim == 2 else lr
            stats = compute_stats(plane, norm)
            frac = noise_fraction(plane[..., 0], float(stats.scale[0]))
            rows.append({"degradation": dname, "image": im.name, "source": im.source, "noise": frac})
    by_source: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        by_source.setdefault(r["degradation"], {}).setdefault(r["source"], []).append(r["noise"])
    per_source = {d: {src: float(np.mean(v)) for src, v in per.items()} for d, per in by_source.items()}
    summary = {
        d: {
            "min": min(v.values()),
            "max": max(v.values()),
            "noisy": d in NOISY_ROWS,
            "warn": sum(x > threshold for x in v.values()),
            "sources": len(v),
        }
        for d, v in per_source.items()
    }
    clean_max = max(s["max"] for s in summary.values() if not s["noisy"])
    return {
        "threshold": threshold,
        "rows": rows,
        "per_source": per_source,
        "summary": summary,
        "noise_free_max": clean_max,
        "false_warnings": sum(s["warn"] for s in summary.values() if not s["noisy"]),
    }


def markdown(data: dict[str, Any], command: str) -> str:
    t = data["threshold"]
    srcs = list(next(iter(data["per_source"].values())))
    short = [s.split(":", 1)[-1] for s in srcs]
    lines = [
        "# Estimated noise of each LR image, as the SDK's noisy-input check sees it",
        "",
        f"Command: `{command}`.",
        "",
        f"Per source and degradation row: the estimated noise in % of the image's normalised range "
        f"(`scopesr.sdk.noise.noise_fraction`); **bold** above the warning threshold {100 * t:.1f} %.",
        "",
        "| row | " + " | ".join(short) + " | warns on |",
        "|---|" + "---|" * (len(srcs) + 1),
    ]
    for d, per in data["per_source"].items():
        s = data["summary"][d]
        cells = [(f"**{100 * v:.2f}**" if v > t else f"{100 * v:.2f}") for v in per.values()]
        kind = "noisy" if s["noisy"] else "noise-free"
        lines.append(f"| {d} ({kind}) | " + " | ".join(cells) + f" | {s['warn']} of {s['sources']} |")
    lines += [
        "",
        f"Noise-free rows: at most {100 * data['noise_free_max']:.2f} %, {data['false_warnings']} warning(s). "
        "The estimate reads fine texture and aliasing as noise too, so noise-free and noisy rows of "
        "different images overlap; the warning is set to catch strongly noisy frames without firing on "
        "clean ones, not to sort every frame.",
    ]
    return "\n".join(lines) + "\n"
