"""Where a model gains or loses against bicubic: its PSNR gain split by the reference's brightness.

A mean gain hides where it comes from. For every held-out image and degradation this script
splits the reference's pixels into brightness bands (quantiles of the sharp target: the dim
half, 50-80 %, 80-95 %, the brightest 5 %) and reports, per band, the gain of the model over
bicubic (10 log10 of bicubic's over the model's squared error in that band), the band's share
of bicubic's error, and the fine detail each output puts there (RMS of the image minus its
Gaussian blur, sigma 2 HR px) beside the reference's. A model that adds more fine detail than
bicubic in a band where it loses is sharpening what it should not (on a real reference that is
often the reference's own camera noise, which no upscaler can predict).

The LR images are made exactly as in ``sr-bench release`` (same degradations, same seeds), so
the per-image totals equal the release table's.

    python benchmarks/bench_gain_by_brightness.py [--model sdk/models/default.onnx]
        [--degradations bicubic noise-snr20 cubic-noaa] [--max-planes 6]

Writes benchmarks/results/gain_by_brightness.{json,md} (``--name`` to change).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scopesr.bench import brightness_bands
from scopesr.bench.evaluation import model_with_heldout
from scopesr.bench.results import publish
from scopesr.sdk import quality
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "sdk" / "models" / "default.onnx")
    ap.add_argument("--degradations", nargs="+", default=["bicubic", "noise-snr20", "cubic-noaa"])
    ap.add_argument("--max-planes", type=int, default=6, help="planes per held-out stack (as the release)")
    ap.add_argument("--name", default="gain_by_brightness", help="results/NAME.json|md")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    unknown = [d for d in args.degradations if d not in quality.EVAL_DEGRADATIONS]
    if unknown:
        ap.error(f"unknown degradation(s) {unknown}; known: {sorted(quality.EVAL_DEGRADATIONS)}")
    if not args.model.is_file():
        ap.error(f"--model {args.model}: no such file")
    try:
        up, images = model_with_heldout(args.model, args.max_planes)
    except ScopesrError as exc:
        ap.error(str(exc))
    results = brightness_bands.measure(up.upscale, images, args.degradations, up.card.scale)
    data = {"model": str(args.model), "sha256": up.card.sha256, "scale": up.card.scale, "results": results}
    return publish(
        RESULTS, args.name, data, brightness_bands.markdown, "bench_gain_by_brightness.py", argv, args.no_record
    )


if __name__ == "__main__":
    sys.exit(main())
