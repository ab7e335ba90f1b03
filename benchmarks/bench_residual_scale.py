"""How much sharpening does each way of making the LR image want? The blind model's compromise, measured.

The default adds a residual ``r = model - bicubic`` to PIL's bicubic upsampling. Scaling that
residual by one number ``t`` per image (``bicubic + t * r``, rounded to the LR dtype as every table
does) asks: would this image have been better served by less (``t < 1``) or more (``t > 1``) of
what the model adds? A blind model cannot know the degradation, so it settles on one response per
kind of LR image; where two degradations give look-alike LR images but want different answers,
its ``t = 1`` sits between their optima. This script reports, per degradation row (LR images as
``sr-bench release`` makes them, same seeds) on the held-out sources of the model's card and the
two unseen sources:

* the mean gain over bicubic at each ``t`` of the grid (per source first, then over sources);
* where each image's best ``t`` lies;
* the *per-image best* ``t`` (an oracle: it looks at the sharp image): what one number of side
  information per image, e.g. a user's "this image was sampled without anti-aliasing", could buy
  at most through this one knob.

(The measuring code is ``scopesr.bench.residual_scale``.)

    python benchmarks/bench_residual_scale.py [--model sdk/models/default.onnx] [--t 0 0.25 0.5 ...] [--fresh]

``--fresh`` scores the fresh set instead (eight sources no choice has used: score it only to check
a choice made on the others). Writes benchmarks/results/residual_scale.{json,md} (``--name`` to
change).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import scopesr.sdk as sdk
from scopesr.bench.machine import usable_cores
from scopesr.bench.residual_scale import T_GRID, markdown, scale_curves
from scopesr.bench.results import publish
from scopesr.bench.unseen_quality import source_sets

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "sdk" / "models" / "default.onnx")
    ap.add_argument("--t", type=float, nargs="+", default=list(T_GRID), help="residual scales (1 is included)")
    ap.add_argument("--compare-t", type=float, default=0.5, help="the scale set beside t=1 per source")
    ap.add_argument("--fresh", action="store_true", help="score the fresh set (unseen_quality.FRESH_SOURCES) instead")
    ap.add_argument("--max-planes", type=int, default=3, help="planes per held-out stack")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--name", default="residual_scale")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from scopesr.trainer.data import heldout_images

    ts = sorted(set(args.t) | {1.0, args.compare_t})
    threads = args.threads or usable_cores()
    up = sdk.load(args.model, num_threads=threads)
    sets = source_sets(up.card, fresh=args.fresh)
    model = args.model.resolve()
    data = {
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else args.model),
        "sha256": up.card.sha256,
        "t": ts,
        "t_compare": args.compare_t,
        "sets": {
            n: scale_curves(up.upscale, heldout_images(s, up.scale, args.max_planes), ts, up.scale)
            for n, s in sets.items()
        },
    }
    return publish(RESULTS, args.name, data, markdown, "bench_residual_scale.py", argv, args.no_record, threads=threads)


if __name__ == "__main__":
    sys.exit(main())
