"""Where a model gains or loses against bicubic: its PSNR gain split by the reference's brightness.

For every held-out image and degradation the reference's pixels are split into brightness bands
(quantiles of the sharp target: the dim half, 50-80 %, 80-95 %, the brightest 5 %); per band come
the gain of the model over bicubic (10 log10 of bicubic's over the model's squared error there),
the band's share of bicubic's error, and the fine detail each output puts there (RMS of the image
minus its Gaussian blur) beside the reference's. A model that adds more fine detail than bicubic in
a band where it loses is sharpening what it should not; on a real reference that is often the
reference's own camera noise, which no upscaler can predict.

The LR images are made as ``quality.evaluate`` makes them (same degradations, same seeds), so the
per-image totals are the release table's. benchmarks/bench_gain_by_brightness.py records it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scopesr.sdk import quality

BANDS = (0.0, 0.5, 0.8, 0.95, 1.0)  # quantiles of the reference's brightness
BAND_NAMES = ("dim 50 %", "50-80 %", "80-95 %", "top 5 %")
DETAIL_SIGMA = 2.0  # HR px: what is finer than this counts as fine detail


def band_masks(target: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of the brightness bands (every pixel in exactly one)."""
    edges = np.quantile(target, BANDS)
    idx = np.clip(np.searchsorted(edges[1:-1], target, side="right"), 0, len(BANDS) - 2)
    return [idx == i for i in range(len(BANDS) - 1)]


_DETAIL_KERNEL = quality.gaussian_kernel(DETAIL_SIGMA)


def fine_detail(img: np.ndarray) -> np.ndarray:
    return img - quality.convolve_reflect(img, _DETAIL_KERNEL)


def split_errors(target: np.ndarray, bicubic: np.ndarray, model: np.ndarray, border: int) -> list[dict[str, float]]:
    """Per band: squared errors of bicubic and the model, and the fine detail of each image."""
    t, b, m = (np.asarray(a, np.float64)[border:-border, border:-border] for a in (target, bicubic, model))
    dt, db, dm = fine_detail(t), fine_detail(b), fine_detail(m)
    rows = []
    for mask in band_masks(t):
        rows.append(
            {
                "pixels": int(mask.sum()),
                "sse_bicubic": float(((b - t)[mask] ** 2).sum()),
                "sse_model": float(((m - t)[mask] ** 2).sum()),
                "detail_target": float(np.sqrt((dt[mask] ** 2).mean())),
                "detail_bicubic": float(np.sqrt((db[mask] ** 2).mean())),
                "detail_model": float(np.sqrt((dm[mask] ** 2).mean())),
            }
        )
    return rows


def gain_db(sse_bicubic: float, sse_model: float) -> float:
    return float(10 * np.log10(sse_bicubic / sse_model)) if sse_model > 0 and sse_bicubic > 0 else float("nan")


def measure(
    upscale: Callable[[np.ndarray], np.ndarray],
    images: Sequence[quality.EvalImage],
    degradations: Sequence[str],
    scale: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Per degradation and source: the gain over bicubic, overall and per brightness band."""
    out: dict[str, Any] = {}
    for dname in degradations:
        deg = quality.degradation_from_name(dname, scale)
        per_source: dict[str, list[dict[str, float]]] = {}
        for ii, im in enumerate(images):
            lr, target = quality.eval_pair(deg, dname, im, ii, seed)  # the release table's LR images
            bic = quality.bicubic_baseline(lr, scale)
            pred = np.asarray(upscale(lr))
            if pred.ndim == 3:
                pred = pred[..., 0]
            rows = split_errors(target, bic, pred, quality.DEFAULT_BORDER)
            acc = per_source.setdefault(im.source, [dict.fromkeys(r, 0.0) | {"n": 0} for r in rows])
            for a, r in zip(acc, rows):
                for k, v in r.items():
                    a[k] += v
                a["n"] += 1
        table: dict[str, Any] = {}
        for src, acc in per_source.items():
            total_b = sum(a["sse_bicubic"] for a in acc)
            total_m = sum(a["sse_model"] for a in acc)
            table[src] = {
                "gain_db": gain_db(total_b, total_m),
                "bands": [
                    {
                        "band": name,
                        "gain_db": gain_db(a["sse_bicubic"], a["sse_model"]),
                        "share_of_bicubic_error": a["sse_bicubic"] / total_b if total_b else float("nan"),
                        "detail_target": a["detail_target"] / a["n"],
                        "detail_bicubic": a["detail_bicubic"] / a["n"],
                        "detail_model": a["detail_model"] / a["n"],
                    }
                    for name, a in zip(BAND_NAMES, acc)
                ],
            }
        out[dname] = {"description": deg.describe(), "sources": table}
    return out


def markdown(data: dict[str, Any], command: str) -> str:
    """``data``: ``{"model": path, "results": measure(...)}``."""
    lines = [
        "# Where the model gains or loses against bicubic, by the reference's brightness",
        "",
        f"Model: `{data['model']}`. Command: `{command}`.",
        "",
        "Per held-out source: the gain over bicubic in each brightness band of the sharp reference "
        "(dB, over the squared error in that band; `total` = the whole image, pooled over its planes), "
        "then, in brackets, the band's share of bicubic's error and the fine detail "
        f"(RMS of image minus its Gaussian blur, sigma {DETAIL_SIGMA:g} HR px) of "
        "reference / bicubic / model. Bands: quantiles of the reference's brightness.",
        "",
    ]
    for dname, block in data["results"].items():
        lines += [f"## {dname}: {block['description']}", ""]
        lines += ["| source | total | " + " | ".join(BAND_NAMES) + " |", "|---" * (2 + len(BAND_NAMES)) + "|"]
        for src, row in block["sources"].items():
            cells = [
                f"{b['gain_db']:+.2f} ({100 * b['share_of_bicubic_error']:.0f} %; "
                f"{b['detail_target']:.3g} / {b['detail_bicubic']:.3g} / {b['detail_model']:.3g})"
                for b in row["bands"]
            ]
            lines.append(f"| {src} | {row['gain_db']:+.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
