"""The estimated noise of every quality-table LR image, against the low-noise model's warning
threshold: which frames the SDK would call too noisy for a model trained without noise.

Sources: the release's six held-out sources and the two unseen ones (``--source`` to change);
LR images as in ``sr-bench release`` (same rows, same seeds). The measuring code is
``scopesr.bench.noise_levels``; the threshold is the bundled low-noise model's card value.

    python benchmarks/bench_noise_levels.py

Writes benchmarks/results/noise_levels.{json,md} (``--name`` to change).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import scopesr.sdk as sdk
from scopesr.bench import noise_levels, unseen_quality
from scopesr.bench.results import publish
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", action="append", default=[], help="sample:KEY; repeatable")
    ap.add_argument("--max-planes", type=int, default=6, help="planes per stack (evenly spaced, as the release)")
    ap.add_argument("--name", default="noise_levels", help="results/NAME.json|md")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        card = sdk.ModelCard.load(sdk.default_model_path("onnx", bundle="low-noise"))
        threshold = float(card.extra[sdk.NOISE_WARNING_KEY])
        sources = args.source or [*card.metrics["heldout"]["sources"], *unseen_quality.UNSEEN_SOURCES]
        from scopesr.trainer.data import heldout_images

        images = heldout_images(sources, card.scale, args.max_planes)
    except (ScopesrError, KeyError) as exc:
        ap.error(f"cannot read the low-noise model's card or the sources: {exc}")
    data = {"sources": sources, **noise_levels.measure(images, card.normalisation, threshold)}
    return publish(RESULTS, args.name, data, noise_levels.markdown, "bench_noise_levels.py", argv, args.no_record)


if __name__ == "__main__":
    raise SystemExit(main())
