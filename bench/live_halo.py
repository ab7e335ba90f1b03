"""The live path's border choice: quality and time of ``halo="auto"`` against ``halo=0``.

A live frame or camera ROI that runs as one tile has no seams, so the halo only decides what the
network sees past the edge. ``"auto"`` reads a receptive field of context there (the frame's real
pixels around an ROI; a mirror of the frame past its own border) and so computes
``(h + 2*halo) x (w + 2*halo)`` pixels; ``0`` computes the frame's pixels only and lets the
network's own zero padding act, as it did on every training crop. On a 64x64 ROI that is 82x82
against 64x64 pixels (1.64x). This module measures what the saving costs in quality, per
degradation, on the release's held-out images: whole 160x120 frames cut from the degraded LR
image, and 64x64 ROIs inside it (with context around them), each against bicubic of the same
pixels. ``benchmarks/bench_live_halo.py`` records it with the time of both choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scopesr.sdk import quality

#: LR sizes (H, W) of the live cases: the Pi demo's camera frame and its default ROI
FRAME = (120, 160)
ROI = (64, 64)
#: degradations a camera gives live (the release rows minus the PSF row, which is a lens, not the path)
LIVE_ROWS = ("bicubic", "binning", "noise-snr20", "noise-snr8", "cubic-noaa", "camera-12bit")


def _positions(n: int, size: int, lo: int, k: int) -> list[int]:
    """Up to ``k`` evenly spaced starts of a ``size`` window in [lo, n - lo - size]."""
    hi = n - lo - size
    if hi < lo:
        return []
    return sorted({int(round(v)) for v in np.linspace(lo, hi, k)})


def measure(up: Any, images: Sequence[quality.EvalImage], rows: Sequence[str] = LIVE_ROWS, per_axis: int = 2) -> dict:
    """Mean gain over bicubic (dB; per source first, then over sources) of the model with the
    halo at "auto" and at 0, for frames and ROIs, per degradation. PSNR over every pixel shown
    (no border cut: the border is what differs) with the target's data range."""
    s = up.scale
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dname in rows:
        deg = quality.degradation_from_name(dname, s)
        per_src: dict[str, dict[str, list[float]]] = {}
        for ii, im in enumerate(images):
            lr, target = quality.eval_pair(deg, dname, im, ii)
            lr, target = np.asarray(lr), np.asarray(target, dtype=np.float64)
            dr = float(target.max() - target.min()) or 1.0
            src = per_src.setdefault(im.source, {})
            for case, (h, w) in (("frame", FRAME), ("roi", ROI)):
                margin = 0 if case == "frame" else up.card.halo  # an ROI has real context on every side
                for y in _positions(lr.shape[0], h, margin, per_axis):
                    for x in _positions(lr.shape[1], w, margin, per_axis):
                        ref = target[y * s : (y + h) * s, x * s : (x + w) * s]
                        crop = lr[y : y + h, x : x + w]
                        bic = quality.bicubic_baseline(crop, s)
                        base = quality.psnr(ref, bic, data_range=dr)
                        for halo in ("auto", 0):
                            if case == "frame":
                                sr = up.upscale(crop, halo=halo)
                            else:
                                sr = up.upscale_region(lr, (x, y, w, h), halo=halo)
                            gain = quality.psnr(ref, np.asarray(sr, dtype=np.float64), data_range=dr) - base
                            src.setdefault(f"{case}_halo_{halo}", []).append(gain)
        keys = sorted({k for v in per_src.values() for k in v})
        out[dname] = {
            k: {
                "mean": round(float(np.mean([np.mean(v[k]) for v in per_src.values() if k in v])), 3),
                "worst_source": round(float(min(np.mean(v[k]) for v in per_src.values() if k in v)), 3),
            }
            for k in keys
        }
    return out


def markdown(data: dict[str, Any], command: str) -> str:
    """The results as a Markdown page: quality per degradation, then time per backend."""
    cols = ("frame_halo_auto", "frame_halo_0", "roi_halo_auto", "roi_halo_0")
    lines = [
        "# The live path's halo: context past the edge against the network's own zero padding",
        "",
        f"Command: `{command}`",
        "",
        f"Model: `{data['model']}`. Held-out images: {', '.join(data['sources'])} "
        f"({data['images']} planes). Frames: {FRAME[1]}x{FRAME[0]} LR cut from the degraded image; "
        f"ROIs: {ROI[1]}x{ROI[0]} LR with at least a halo of real context around them. Gain over PIL bicubic "
        "of the same pixels, PSNR over every pixel shown; mean per source, then over sources (worst source).",
        "",
        "| degradation | frame, halo auto | frame, halo 0 | ROI, halo auto (real context) | ROI, halo 0 |",
        "|---|---|---|---|---|",
    ]
    for dname, r in data["quality"].items():
        cells = [f"{r[c]['mean']:+.3f} ({r[c]['worst_source']:+.3f})" if c in r else "-" for c in cols]
        lines.append(f"| {dname} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Time per call, one run, the methods interleaved (median ms; halo 0 against auto as a speed ratio):",
        "",
        "| backend | case | halo auto | halo 0 | halo 0 speed-up | OpenCV ESPCN | halo 0 x ESPCN speed |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in data["timing"]:
        esp = t.get("espcn_ms")
        lines.append(
            f"| {t['backend']} | {t['case']} | {t['auto_ms']:.3f} | {t['zero_ms']:.3f} | "
            f"{t['auto_ms'] / t['zero_ms']:.2f}x | {esp if esp is not None else '-'} | "
            f"{(esp / t['zero_ms']) if esp else float('nan'):.2f} |"
        )
    return "\n".join(lines) + "\n"
