"""Models side by side on real sources that none of them trained on: gain over bicubic per
degradation, per source, with nearest and bicubic.

A second held-out check beside the release table (whose six sources also steered the choice of
every default). The default sources are two wheel images kept out of all training
(``scopesr.bench.unseen_quality.UNSEEN_SOURCES`` says how far they are untouched); a source that a
model's card lists among its training data is refused. LR images as in ``sr-bench release`` (same
rows, same seeds). The measuring code is ``scopesr.bench.unseen_quality``.

    python benchmarks/bench_unseen.py --model sixth=sdk/models/default.onnx --model new=/tmp/new.onnx
    python benchmarks/bench_unseen.py --source sample:sdeconv-celegans --source sample:spotmax-cells
    python benchmarks/bench_unseen.py --fresh    # eight sources no model or choice has used

Writes benchmarks/results/quality_unseen.{json,md} (``--fresh``: quality_fresh; ``--name`` to change).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import scopesr.sdk as sdk
from scopesr.bench import model_args, unseen_quality
from scopesr.bench.machine import usable_cores
from scopesr.bench.results import publish
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
UNSEEN = list(unseen_quality.UNSEEN_SOURCES)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_args.add_model_option(ap, "the bundled default")
    ap.add_argument("--source", action="append", default=[], help=f"sample:KEY; repeatable (default: {UNSEEN})")
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="the fresh set instead (unseen_quality.FRESH_SOURCES: eight sources that no training run "
        "or choice has used)",
    )
    ap.add_argument("--max-planes", type=int, default=6, help="planes per stack (evenly spaced, as the release)")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the usable cores)")
    ap.add_argument(
        "--name", default=None, help="results/NAME.json|md (default quality_unseen, --fresh: quality_fresh)"
    )
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    paths = model_args.model_paths(ap, args.model or [f"default={ROOT / 'sdk' / 'models' / 'default.onnx'}"])
    if args.fresh and args.source:
        ap.error("--fresh and --source: give one or the other")
    sources = list(unseen_quality.FRESH_SOURCES) if args.fresh else (args.source or UNSEEN)
    name = args.name or ("quality_fresh" if args.fresh else "quality_unseen")
    threads = args.threads or usable_cores()
    try:
        ups = {n: sdk.load(p, num_threads=threads) for n, p in paths.items()}
        unseen_quality.check_unseen({n: u.card for n, u in ups.items()}, sources)
        from scopesr.trainer.data import heldout_images

        images = heldout_images(sources, 4, args.max_planes)
    except ScopesrError as exc:
        ap.error(str(exc))
    data = {
        "models": {
            n: {"path": str(paths[n]), "sha256": u.card.sha256, "cost": unseen_quality.model_cost(u.card)}
            for n, u in ups.items()
        },
        "sources": sources,
        **unseen_quality.measure(ups, images),
    }
    return publish(
        RESULTS, name, data, unseen_quality.markdown, "bench_unseen.py", argv, args.no_record, threads=threads
    )


if __name__ == "__main__":
    sys.exit(main())
