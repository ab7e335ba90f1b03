"""One of two models per frame, chosen by the LR image's fine-to-coarse detail ratio: what such a
gate would score per degradation row, beside each model alone.

Default: the bundled default (the fallback) and the bundled low-noise model (the expert, for
frames whose ratio is below the threshold), on the release's six held-out sources and the two
unseen ones, reported as two groups. LR images as in ``sr-bench release`` (same rows, same
seeds). More models (e.g. weight blends of the two) can be added with ``--model``; they are
scored alone beside the gates. The measuring code is ``scopesr.bench.model_gate``.

    python benchmarks/bench_model_gate.py
    python benchmarks/bench_model_gate.py --threshold 0.6 --threshold 0.7

Writes benchmarks/results/model_gate.{json,md} (``--name`` to change).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

import scopesr.sdk as sdk
from scopesr.bench import model_args, model_gate, unseen_quality
from scopesr.bench.machine import usable_cores
from scopesr.bench.results import publish
from scopesr.sdk import quality
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "sdk" / "models"


#: seed of the renders: the trainer's synthetic sources use other seeds, so these are new images
RENDER_SEED = 98765


def oversampled_renders() -> list[quality.EvalImage]:
    """Synthetic fluorescence scenes (``scopesr.trainer.synthetic``) at a known sampling: as
    rendered (zoom 1), or their top-left half / third magnified 2x / 3x by bicubic resampling
    (oversampled, like a high-zoom confocal or Airyscan image), each as rendered (with the mild shot
    noise of a well-exposed acquisition; magnifying smooths it) and re-acquired with shot noise of
    peak SNR 40 (so a magnified reference, like a real one, carries pixel-scale noise)."""
    from scopesr.trainer.data import noisier_reference, resample_reference
    from scopesr.trainer.synthetic import render

    rng = np.random.default_rng(RENDER_SEED)
    out = []
    for kind in ("mixed", "filaments", "nuclei", "membranes"):
        for zoom in (1, 2, 3):
            for snr in (0, 40):
                ref = render(kind, RENDER_SEED, zoom * 10 + snr, size=256).astype(np.float64)
                if zoom > 1:
                    ref = resample_reference(ref[: 256 // zoom, : 256 // zoom], 256)
                if snr:
                    lo, hi = np.percentile(ref, (0.1, 99.9))
                    ref = noisier_reference(ref, float(lo), float(hi), rng, (snr, snr))
                name = f"synthetic:{kind}-zoom{zoom}-" + (f"snr{snr}" if snr else "rendered")
                out.append(quality.EvalImage(name, name, np.clip(ref, 0, 65535).astype(np.uint16)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_args.add_model_option(ap, "default= and low-noise= the bundled ONNX files")
    ap.add_argument(
        "--fallback", default=None, help="the model for frames at or above the threshold (default: the first)"
    )
    ap.add_argument("--expert", default=None, help="the model for frames below the threshold (default: the second)")
    ap.add_argument(
        "--threshold",
        action="append",
        type=float,
        default=[],
        help="gate threshold; repeatable (default: 0.5 0.6 0.7 0.8)",
    )
    ap.add_argument(
        "--fold-max",
        type=float,
        default=None,
        help="also require the frame's fold (ratio over the same ratio one scale coarser) below this",
    )
    ap.add_argument(
        "--source", action="append", default=[], help="sample:KEY; repeatable (default: release six + unseen two)"
    )
    ap.add_argument(
        "--renders",
        action="store_true",
        help="instead of real sources: synthetic renders with a known sampling (4 kinds x zoom 1/2/3 x "
        "as rendered / re-acquired at SNR 40), for checking a gate on images that chose nothing",
    )
    ap.add_argument("--max-planes", type=int, default=6, help="planes per stack (evenly spaced, as the release)")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the usable cores)")
    ap.add_argument("--name", default="model_gate", help="results/NAME.json|md")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the low-noise model's noisy-frame warning is the point here
    default = [f"default={MODELS / 'default.onnx'}", f"low-noise={MODELS / 'low-noise' / 'low-noise.onnx'}"]
    paths = model_args.model_paths(ap, args.model or default, at_least=2)
    names = list(paths)
    fallback, expert = args.fallback or names[0], args.expert or names[1]
    for role, n in (("--fallback", fallback), ("--expert", expert)):
        if n not in paths:
            ap.error(f"{role} {n}: not among the models {names}")
    thresholds = args.threshold or [0.5, 0.6, 0.7, 0.8]
    threads = args.threads or usable_cores()
    try:
        ups = {n: sdk.load(p, num_threads=threads) for n, p in paths.items()}
        release = list(ups[fallback].card.metrics["heldout"]["sources"])
        if args.renders:
            images = oversampled_renders()
            sources = [im.source for im in images]
        else:
            sources = args.source or [*release, *unseen_quality.UNSEEN_SOURCES]
            unseen_quality.check_unseen({n: u.card for n, u in ups.items()}, sources)
            from scopesr.trainer.data import heldout_images

            images = heldout_images(sources, 4, args.max_planes)
    except (ScopesrError, KeyError) as exc:
        ap.error(f"cannot load the models or the sources: {exc}")
    if args.renders:
        groups = {s: "synthetic renders" for s in sources}
    else:
        groups = {s: ("release held-out sources" if s in release else "unseen sources") for s in sources}
    data = {
        "paths": {n: str(p) for n, p in paths.items()},
        "sources": sources,
        **model_gate.measure(ups, images, groups, fallback, expert, thresholds, fold_max=args.fold_max),
    }
    return publish(
        RESULTS, args.name, data, model_gate.markdown, "bench_model_gate.py", argv, args.no_record, threads=threads
    )


if __name__ == "__main__":
    raise SystemExit(main())
