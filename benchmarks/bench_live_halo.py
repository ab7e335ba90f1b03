"""The live path's halo: what ``halo=0`` saves in time and costs in quality on one-tile frames.

For each model (default: the bundled ONNX and int8 TFLite defaults): the gain over bicubic per
degradation of 160x120 frames and 64x64 ROIs with ``halo="auto"`` (context past the edge) and
``halo=0`` (the network's own zero padding), on the release's held-out images; then the time of
both on a real camera-sized frame and ROI, interleaved with OpenCV's ESPCN in one run. The
measuring code is ``scopesr.bench.live_halo``.

    python benchmarks/bench_live_halo.py
    python benchmarks/bench_live_halo.py --model sdk/models/default-int8.tflite --quality-model sdk/models/default.onnx

Writes benchmarks/results/live_halo.{json,md} (``--name`` to change).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

import scopesr.sdk as sdk
from scopesr.bench import live_halo
from scopesr.bench.evaluation import card_heldout, heldout_bench_images
from scopesr.bench.machine import usable_cores
from scopesr.bench.peers import Peer, find_peers
from scopesr.bench.results import publish
from scopesr.bench.timing import time_interleaved
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = [ROOT / "sdk" / "models" / "default.onnx", ROOT / "sdk" / "models" / "default-int8.tflite"]


def timing(ups: dict[str, Any], frame: np.ndarray, repeats: int, threads: int) -> list[dict[str, Any]]:
    """Median ms of halo auto / halo 0 per backend and case, with ESPCN on the same pixels."""
    peers, _ = find_peers()
    espcn = Peer(peers["ESPCN_x4"], threads) if "ESPCN_x4" in peers else None
    rows = []
    h, w = live_halo.ROI
    roi = ((frame.shape[1] - w) // 2, (frame.shape[0] - h) // 2, w, h)
    x, y = roi[0], roi[1]
    for name, up in ups.items():
        for case in ("roi", "frame"):
            if case == "roi":
                fns = [lambda u=up: u.upscale_region(frame, roi), lambda u=up: u.upscale_region(frame, roi, halo=0)]
                pixels = np.ascontiguousarray(frame[y : y + h, x : x + w])
            else:
                fns = [lambda u=up: u.upscale(frame), lambda u=up: u.upscale(frame, halo=0)]
                pixels = frame
            if espcn is not None:
                fns.append(lambda p=pixels: espcn(p))
            ts = time_interleaved(fns, warmup=5, repeats=repeats)
            row = {"backend": name, "case": case, "auto_ms": ts[0].median * 1e3, "zero_ms": ts[1].median * 1e3}
            row["espcn_ms"] = round(ts[2].median * 1e3, 3) if espcn is not None else None
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", type=Path, default=[], help="an SDK artifact; repeatable")
    ap.add_argument(
        "--quality-model", type=Path, default=None, help="the artifact scored for quality (default: the first --model)"
    )
    ap.add_argument("--max-planes", type=int, default=2, help="planes per held-out stack")
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per method")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the usable cores)")
    ap.add_argument("--name", default="live_halo", help="results/NAME.json|md")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    threads = args.threads or usable_cores()
    paths = args.model or MODELS
    try:
        ups = {p.name: sdk.load(p, num_threads=threads) for p in paths}
        qpath = args.quality_model or paths[0]
        qup = sdk.load(qpath, num_threads=threads)
        sources, names = card_heldout(qup.card)
        images = [b.image for b in heldout_bench_images(sources, names, args.max_planes)]
    except ScopesrError as exc:
        ap.error(str(exc))
    if not images:
        ap.error(f"{qpath}: its card names no held-out images to score")
    qual = live_halo.measure(qup, images)
    # a real camera-sized frame: the centre 160x120 of the first held-out image's clean LR that has one
    fh, fw = live_halo.FRAME
    big = [im for im in images if min(im.data.shape[0] // fh, im.data.shape[1] // fw) >= 4]
    if not big:
        ap.error(f"no held-out image of {qpath.name} is large enough for a {fw}x{fh} LR frame")
    lr = np.asarray(sdk.quality.degradation_from_name("bicubic").apply(big[0].data, np.random.default_rng(0))[0])
    cy, cx = (lr.shape[0] - fh) // 2, (lr.shape[1] - fw) // 2
    frame = np.ascontiguousarray(lr[cy : cy + fh, cx : cx + fw])
    if frame.dtype != np.uint8:  # the ESPCN peer takes 8-bit frames, as a Pi camera gives
        lo, hi = float(frame.min()), float(frame.max())
        frame = np.clip(np.rint((frame - lo) * 255.0 / max(hi - lo, 1e-9)), 0, 255).astype(np.uint8)
    data = {
        "model": str(qpath),
        "sources": sorted({im.source for im in images}),
        "images": len(images),
        "quality": qual,
        "timing": timing(ups, frame, args.repeats, threads),
    }
    return publish(
        RESULTS, args.name, data, live_halo.markdown, "bench_live_halo.py", argv, args.no_record, threads=threads
    )


if __name__ == "__main__":
    sys.exit(main())
