"""Choosing one of two models per frame from the LR image alone, measured: what a gate on the
frame's fine-to-coarse detail ratio (``scopesr.sdk.noise.fine_to_coarse``) would score per
degradation row, beside each model on its own.

The bundled low-noise model beats the blind default on noise-free images and loses badly on
noisy ones. A frame whose finest detail is mostly white noise has a ratio near 2, smooth
content about 1/4, so a gate "ratio < threshold -> the expert, else the fallback" is the
cheapest way to get both at one network's cost per frame. This measures whether the ratio
sorts the frames well enough: the LR images are the quality tables' (same rows, same seeds),
every model runs on every image, and each gate is scored from those results without running
anything twice.

A second, optional condition (``fold_max``) reads the same ratio one scale coarser: an
anti-aliasing filter takes energy out of the finest scale only, so its frames tend to have a
fine ratio lower than the coarser one, where sampling without it folds fine structure into the
finest scale and raises the fine ratio above the coarser one. ``fold`` = fine ratio / coarser ratio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from scopesr.sdk import quality
from scopesr.sdk.noise import FINE_TO_COARSE_MAX, block_means, fine_to_coarse

__all__ = ["measure", "markdown", "gate_policy_name", "fold"]


class _Upscaler(Protocol):
    def upscale(self, lr: np.ndarray) -> np.ndarray: ...


def gate_policy_name(expert: str, threshold: float, fold_max: float | None = None) -> str:
    """The table label of the gate that sends frames with a ratio below ``threshold`` (and, with
    ``fold_max``, a fold below it) to ``expert``."""
    return f"{expert} if ratio < {threshold:g}" + ("" if fold_max is None else f" and fold < {fold_max:g}")


def fold(plane: np.ndarray, ratio: float | None = None) -> float:
    """The fine-to-coarse ratio of a 2-D plane over the same ratio of its 2x2 block means (one
    scale coarser); 0 where the plane's finest scale is flat, FINE_TO_COARSE_MAX where only the
    coarser one is. ``ratio``: the plane's own ``fine_to_coarse``, when the caller has it already."""
    x = np.asarray(plane, dtype=np.float64)
    fine = fine_to_coarse(x) if ratio is None else ratio
    coarse = fine_to_coarse(block_means(x))
    if coarse <= 0.0:
        return 0.0 if fine <= 0.0 else FINE_TO_COARSE_MAX
    return fine / coarse


def _column(names: Sequence[str], name: str) -> str:
    return "psnr_model" if name == names[0] else f"psnr_{name}"


def measure(
    ups: Mapping[str, _Upscaler],
    images: Sequence[quality.EvalImage],
    groups: Mapping[str, str],
    fallback: str,
    expert: str,
    thresholds: Sequence[float],
    degradations: Sequence[str] | None = None,
    fold_max: float | None = None,
) -> dict[str, Any]:
    """Score every model and every gate ``ratio < t -> expert, else fallback`` (t in ``thresholds``);
    with ``fold_max``, every gate also needs ``fold < fold_max`` to send a frame to the expert.

    ``groups`` maps each image's source to the group it is averaged in (e.g. the release's
    held-out sources and the unseen ones). Per group, row and policy: the mean gain over bicubic
    (per source first, as every quality table), the worst source, and the share of frames the
    policy sent to the expert. ``rows`` keeps each frame's ratio and every model's gain.
    """
    names = list(ups)
    for n in (fallback, expert):
        if n not in ups:
            raise ValueError(f"no model named {n!r} among {names}")
    missing = sorted({im.source for im in images} - set(groups))
    if missing:
        raise ValueError(f"no group for source(s) {missing}")
    deg_names = list(degradations or quality.EVAL_DEGRADATIONS)
    first, rest = names[0], names[1:]
    features: list[tuple[float, float]] = []

    def first_with_features(lr: np.ndarray) -> np.ndarray:
        # evaluate runs the first method once per (row, image), in row order: read each LR
        # image's features here instead of making every LR image a second time
        ratio = fine_to_coarse(lr)
        features.append((ratio, fold(lr, ratio)))
        return ups[first].upscale(lr)

    res = quality.evaluate(
        first_with_features, images, deg_names, methods={n: ups[n].upscale for n in rest}, with_ssim=False, scale=4
    )
    if len(features) != len(res["rows"]):
        raise RuntimeError(f"{len(features)} feature pairs for {len(res['rows'])} scored images")
    rows: list[dict[str, Any]] = [
        {
            "degradation": r["degradation"],
            "image": r["image"],
            "source": r["source"],
            "group": groups[r["source"]],
            "ratio": ratio,
            "fold": fold_,
            "gain": {n: r[_column(names, n)] - r["psnr_bicubic"] for n in names},
        }
        for r, (ratio, fold_) in zip(res["rows"], features, strict=True)
    ]
    policies: dict[str, tuple[str, float | None]] = {n: (n, None) for n in names}
    for t in thresholds:
        policies[gate_policy_name(expert, t, fold_max)] = (expert, float(t))
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for group in dict.fromkeys(groups[im.source] for im in images):
        table[group] = {}
        for pname, (model, t) in policies.items():
            per_row: dict[str, Any] = {}
            for dname in deg_names:
                by_source: dict[str, list[float]] = {}
                sent = []
                for r in rows:
                    if r["group"] != group or r["degradation"] != dname:
                        continue
                    to_expert = t is not None and r["ratio"] < t and (fold_max is None or r["fold"] < fold_max)
                    use = model if t is None else (expert if to_expert else fallback)
                    by_source.setdefault(r["source"], []).append(r["gain"][use])
                    sent.append(use == expert)
                gains = {s: float(np.mean(v)) for s, v in by_source.items()}
                worst = min(gains, key=lambda s: gains[s])
                per_row[dname] = {
                    "gain_db": float(np.mean(list(gains.values()))),
                    "worst_db": gains[worst],
                    "worst_source": worst,
                    "expert_share": float(np.mean(sent)),
                }
            table[group][pname] = per_row
    return {
        "models": names,
        "fallback": fallback,
        "expert": expert,
        "thresholds": [float(t) for t in thresholds],
        "fold_max": fold_max,
        "degradations": deg_names,
        "rows": rows,
        "table": table,
    }


def markdown(data: dict[str, Any], command: str) -> str:
    degs = data["degradations"]
    lines = [
        "# One of two models per frame, chosen by the LR image's fine-to-coarse detail ratio",
        "",
        f"Command: `{command}`.",
        "",
        f"Models: {', '.join(data['models'])}. Gate: a frame whose ratio "
        f"(`scopesr.sdk.noise.fine_to_coarse`: about 2 for white noise, 1/4 for smooth content) is below "
        f"the threshold goes to **{data['expert']}**"
        + (
            ""
            if data.get("fold_max") is None
            else f" if also its fold (that ratio over the same ratio one scale coarser) is below {data['fold_max']:g}"
        )
        + f", every other frame to **{data['fallback']}**.",
        "",
        "Mean gain over bicubic in dB (per source first, then over sources), the worst source in brackets; "
        "for a gate, the share of frames it sent to the expert after the slash.",
    ]
    for group, policies in data["table"].items():
        lines += ["", f"## {group}", "", "| model or gate | " + " | ".join(degs) + " |", "|---|" + "---|" * len(degs)]
        for pname, per_row in policies.items():
            cells = []
            for d in degs:
                c = per_row[d]
                share = "" if pname in data["models"] else f" / {100 * c['expert_share']:.0f} %"
                cells.append(f"{c['gain_db']:+.2f} ({c['worst_db']:+.2f}){share}")
            lines.append(f"| {pname} | " + " | ".join(cells) + " |")
    srcs = list(dict.fromkeys(r["source"] for r in data["rows"]))
    lines += [
        "",
        "## Each source's ratio and fold per row (means over its planes), and the expert's gain minus the fallback's",
        "",
        "| row | " + " | ".join(s.split(":", 1)[-1] for s in srcs) + " |",
        "|---|" + "---|" * len(srcs),
    ]
    for d in degs:
        cells = []
        for s in srcs:
            rs = [r for r in data["rows"] if r["degradation"] == d and r["source"] == s]
            ratio, fold_ = np.mean([r["ratio"] for r in rs]), np.mean([r["fold"] for r in rs])
            diff = np.mean([r["gain"][data["expert"]] - r["gain"][data["fallback"]] for r in rs])
            cells.append(f"{ratio:.2f} / {fold_:.2f}: {diff:+.2f}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
