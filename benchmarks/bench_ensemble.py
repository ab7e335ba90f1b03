"""Self-ensemble on the held-out images: gain over bicubic per degradation for 1, 2, 4 and 8
copies of each image (``upscale(..., ensemble=N)``), and what each costs in time.

The LR images are those of ``sr-bench release`` (same degradations, same seeds). The measuring
code is ``scopesr.bench.ensemble_quality``.

    python benchmarks/bench_ensemble.py [--model sdk/models/default.onnx] [--max-planes 6] [--threads 2]

Writes benchmarks/results/quality_ensemble.{json,md} (``--name`` to change).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import scopesr.sdk as sdk
from scopesr.bench import ensemble_quality
from scopesr.bench.evaluation import model_with_heldout
from scopesr.bench.machine import usable_cores
from scopesr.bench.results import publish
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "sdk" / "models" / "default.onnx")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8], help="copies per image to compare")
    ap.add_argument("--max-planes", type=int, default=6, help="planes per held-out stack (as the release)")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the usable cores)")
    ap.add_argument("--name", default="quality_ensemble", help="results/NAME.json|md")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    bad = [n for n in args.sizes if n not in sdk.ENSEMBLE_SIZES]
    if bad:
        ap.error(f"--sizes {bad}: each must be one of {sdk.ENSEMBLE_SIZES}")
    if not args.model.is_file():
        ap.error(f"--model {args.model}: no such file")
    threads = args.threads or usable_cores()
    try:
        up, images = model_with_heldout(args.model, args.max_planes, threads)
    except ScopesrError as exc:
        ap.error(str(exc))
    data = {"model": str(args.model), "sha256": up.card.sha256, **ensemble_quality.measure(up, images, args.sizes)}
    return publish(
        RESULTS, args.name, data, ensemble_quality.markdown, "bench_ensemble.py", argv, args.no_record, threads=threads
    )


if __name__ == "__main__":
    sys.exit(main())
