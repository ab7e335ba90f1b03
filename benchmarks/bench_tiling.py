"""Tiling overhead: time of seam-free tiled inference / whole-image inference.

Tiled = the SDK's default tile (256 LR pixels kept, read with the model's halo on each
side); whole = one tile covering the image. The overhead comes from the halos (recomputed
overlap) and per-tile calls. Median of repeats; the result records the machine.

    python benchmarks/bench_tiling.py [--model M.onnx] [--sizes 256 512 1024 2048] [--repeats 5]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pick_model, record  # noqa: E402

log = logging.getLogger("bench_tiling")


def test_image(n: int) -> np.ndarray:
    """An n x n uint16 image made of a real fluorescence image (stardist nuclei), tiled."""
    from scopesr.sdk.io import read_image
    from scopesr.sdk.samples import SAMPLES

    p = SAMPLES["stardist-nuclei-2d"].path()
    base = read_image(p).array if p else np.random.default_rng(0).integers(0, 4000, (512, 512)).astype(np.uint16)
    reps = -(-n // base.shape[0])
    return np.ascontiguousarray(np.tile(base, (reps, reps))[:n, :n])


def time_pair(fa, fb, repeats: int) -> tuple[list[float], list[float]]:
    """Time two functions alternately (a, b, a, b, ...) after one warm-up each, so load from
    other processes on a shared machine hits both alike."""
    fa(), fb()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, acc in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return ta, tb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="artifact (default: bundled default model, else the tiny fixture)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile", type=int, default=None, help="tile (LR px); default: the SDK default")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--name", default=None,
                    help="results/NAME.json|md (default: tiling, or tiling_<model stem> with --model)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import scopesr.sdk as sr
    from scopesr.sdk.tiling import DEFAULT_TILE, make_plan

    model = pick_model(args.model)
    up = sr.load(model)
    if not up.backend.dynamic:
        print("bench_tiling needs a dynamic-shape artifact (ONNX/pt2): whole-image inference is not "
              "possible with a fixed-size one", file=sys.stderr)
        return 2
    tile = args.tile or DEFAULT_TILE
    rows = []
    for n in args.sizes:
        img = test_image(n)
        reps = args.repeats if n <= 1024 else max(3, args.repeats // 2)
        tw, tt = time_pair(lambda: up.upscale(img, tile=n), lambda: up.upscale(img, tile=tile), reps)
        whole, tiled = statistics.median(tw), statistics.median(tt)
        plan = make_plan(up.backend, n, n, tile, up.card.halo)
        row = {"size": n, "tiles": plan.n_tiles, "whole_s": round(whole, 4), "tiled_s": round(tiled, 4),
               "ratio": round(tiled / whole, 3), "whole_min_s": round(min(tw), 4), "tiled_min_s": round(min(tt), 4),
               "ratio_min": round(min(tt) / min(tw), 3), "repeats": reps}
        # the tiles' extra work: halo rows/columns recomputed around each kept core
        row["halo_work"] = round(sum((sx.read1 - sx.read0) * (sy.read1 - sy.read0)
                                     for sy in plan.ys for sx in plan.xs) / (n * n), 3)
        rows.append(row)
        print(f"{n:>5}x{n:<5} tiles {plan.n_tiles:>3}  whole {whole * 1e3:9.1f} ms  tiled {tiled * 1e3:9.1f} ms"
              f"  ratio {tiled / whole:.3f} (of minima {row['ratio_min']:.3f}; pixels computed "
              f"{row['halo_work']:.3f}x)", flush=True)
    if not args.no_record:
        md = (f"Model `{model.name}` ({up.card.architecture}, x{up.scale}, halo {up.card.halo} LR px), backend "
              f"{up.backend.name}; tile {tile} LR px (kept core) + halo; uint16 input tiled from a real "
              f"fluorescence image; whole and tiled timed alternately, median (and minimum) of the repeats "
              "after one warm-up each. 'Pixels computed' = LR pixels the tiles read (cores + halos) / image "
              "pixels: the arithmetic overhead of the halos. This is a shared 2-core machine: medians move by "
              "10-30 % between runs when other jobs run.\n\n"
              "| LR size | tiles | whole image (ms) | tiled (ms) | tiled / whole (median) | tiled / whole (min) "
              "| pixels computed |\n|---|---|---|---|---|---|---|\n"
              + "".join(f"| {r['size']}x{r['size']} | {r['tiles']} | {r['whole_s'] * 1e3:.1f} | "
                        f"{r['tiled_s'] * 1e3:.1f} | {r['ratio']:.3f} | {r['ratio_min']:.3f} | {r['halo_work']:.3f} |\n"
                        for r in rows)
              + f"\nCommand: `python benchmarks/bench_tiling.py {' '.join(argv or sys.argv[1:])}`\n")
        j, m = record(args.name or ("tiling_" + model.stem if args.model else "tiling"), {"model": str(model.relative_to(model.parents[2]) if len(model.parents) > 2 else model),
                                 "card": up.card.name, "halo": up.card.halo, "tile": tile,
                                 "backend": up.backend.name, "rows": rows}, md, "bench_tiling.py")
        print(f"recorded {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
