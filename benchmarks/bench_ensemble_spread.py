"""Can the self-ensemble's own disagreement say where the model guesses? An experiment.

The 8 flipped/transposed copies of ``upscale(..., ensemble=8)`` disagree most where the blind
model guesses (aliasing read as detail, noise sharpened into speckle). This script pulls the
ensemble mean towards bicubic where they disagree: per HR pixel, with ``d`` the mean's
difference from bicubic and ``v`` the copies' variance, both averaged over a Gaussian window
(sigma ``--sigma`` HR px), the result is ``bicubic + d * D / (D + k * V)`` (``D``, ``V`` the
windowed ``d**2`` and ``v``): a Wiener-style shrinkage, ``k = 0`` the plain ensemble mean. It
reports the gain over bicubic per degradation row (LR images as ``sr-bench release`` makes them,
same seeds) on the held-out sources of the model's card and the two unseen sources.

    python benchmarks/bench_ensemble_spread.py [--model sdk/models/default.onnx] [--k 4 16 64]

Writes benchmarks/results/ensemble_spread.{json,md} (``--name`` to change). Measured 2026-12-05:
it trades rows rather than gaining (docs/degradation.md, "At inference: the self-ensemble").
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

import scopesr.sdk as sdk
from scopesr.bench.machine import usable_cores
from scopesr.bench.results import publish
from scopesr.bench.unseen_quality import source_sets
from scopesr.sdk import quality
from scopesr.sdk.ensemble import forward, inverse

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return quality.convolve_reflect(a, quality.gaussian_kernel(sigma)) if sigma > 0 else a


class Copies:
    """The 8 copies of one LR image through the model (float, not rounded) and its bicubic,
    computed once per image for every method that asks."""

    def __init__(self, up: Any) -> None:
        self.up, self.key, self.value = up, "", (np.empty(0), np.empty(0))

    def __call__(self, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = hashlib.sha1(lr.tobytes()).hexdigest() + str(lr.shape)
        if key != self.key:
            f = lr.astype(np.float32)  # float in, float out: no rounding before the averaging
            outs = [self.up.upscale(np.ascontiguousarray(forward(f, t))) for t in range(8)]
            ys = np.stack([np.asarray(inverse(y, t), np.float64) for t, y in enumerate(outs)])
            self.key, self.value = key, (ys, quality.upscale_bicubic(lr, 4).astype(np.float64))
        return self.value


def shrunk(copies: Copies, k: float, sigma: float):
    def run(lr: np.ndarray) -> np.ndarray:
        ys, b = copies(lr)
        d = ys.mean(0) - b
        big_d, big_v = _blur(d * d, sigma), _blur(ys.var(0), sigma)
        return quality.round_to_dtype(b + d * big_d / (big_d + k * big_v + 1e-12), lr.dtype)

    return run


def measure(up: Any, images: list[quality.EvalImage], ks: list[float], sigma: float) -> dict[str, Any]:
    copies = Copies(up)
    single = lambda lr: quality.round_to_dtype(copies(lr)[0][0], lr.dtype)  # noqa: E731
    methods = {f"k={k:g}": shrunk(copies, k, sigma) for k in [0.0, *ks]}
    res = quality.evaluate(single, images, methods=methods, with_ssim=False)
    cols = {"model": "model", **{n: n for n in methods}}
    rows: dict[str, Any] = {}
    for dname, entry in res["summary"].items():  # per source means of every method's PSNR
        src = entry["per_source"].values()
        gains = {n: [s[f"psnr_{c}"] - s["psnr_bicubic"] for s in src] for n, c in cols.items()}
        rows[dname] = {n: {"gain_db": float(np.mean(g)), "worst_db": float(min(g))} for n, g in gains.items()}
    return {"degradations": res["degradations"], "rows": rows, "columns": list(cols)}


def markdown(data: dict[str, Any], command: str) -> str:
    lines = [
        "# The self-ensemble's spread as a guard: shrinking towards bicubic where the copies disagree",
        "",
        f"Model: `{data['model']}`. Command: `{command}`.",
        "",
        f"`model` = one copy; `k=0` = the mean of 8 copies; `k=K` = bicubic + d * D / (D + K * V) (window sigma "
        f"{data['sigma']} HR px). Gain over bicubic in dB, mean over sources (per source first), worst source in "
        "brackets.",
    ]
    for part, block in data["sets"].items():
        lines += ["", f"## {part}", "", "| degradation | " + " | ".join(block["columns"]) + " |"]
        lines.append("|---" * (1 + len(block["columns"])) + "|")
        for dname, row in block["rows"].items():
            cells = [f"{row[c]['gain_db']:+.2f} ({row[c]['worst_db']:+.2f})" for c in block["columns"]]
            lines.append(f"| {dname} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "sdk" / "models" / "default.onnx")
    ap.add_argument("--k", type=float, nargs="+", default=[4.0, 16.0, 64.0], help="shrinkage strengths")
    ap.add_argument("--sigma", type=float, default=4.0, help="window of D and V, HR px")
    ap.add_argument("--max-planes", type=int, default=3, help="planes per held-out stack")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--name", default="ensemble_spread")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from scopesr.trainer.data import heldout_images

    threads = args.threads or usable_cores()
    up = sdk.load(args.model, num_threads=threads)
    sets = source_sets(up.card)
    model = args.model.resolve()
    data = {
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else args.model),
        "sha256": up.card.sha256,
        "sigma": args.sigma,
        "sets": {n: measure(up, heldout_images(s, 4, args.max_planes), args.k, args.sigma) for n, s in sets.items()},
    }
    script = "bench_ensemble_spread.py"
    return publish(RESULTS, args.name, data, markdown, script, argv, args.no_record, threads=threads)


if __name__ == "__main__":
    sys.exit(main())
