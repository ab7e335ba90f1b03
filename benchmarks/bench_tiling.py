"""Tiling overhead: time of seam-free tiled inference / whole-image inference.

Tiled = the SDK's default tile (256 LR pixels kept, read with the model's halo on each
side); whole = one tile covering the image. The measuring code is
``scopesr.bench.tiling_overhead``; this script parses the arguments and records the result
(with the machine) in benchmarks/results/.

    python benchmarks/bench_tiling.py [--model M.onnx] [--sizes 256 512 1024 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scopesr.bench import tiling_overhead
from scopesr.bench.results import pick_model, record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY = ROOT / "tests" / "fixtures" / "tiny_x4.onnx"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="artifact (default: bundled default model, else the tiny fixture)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile", type=int, default=None, help="tile (LR px); default: the SDK default")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument(
        "--name", default=None, help="results/NAME.json|md (default: tiling, or tiling_<model stem> with --model)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import scopesr.sdk as sr
    from scopesr.sdk.tiling import DEFAULT_TILE

    model = pick_model(args.model, TINY)
    up = sr.load(model)
    if not up.backend.dynamic:
        print(
            "bench_tiling needs a dynamic-shape artifact (ONNX/pt2): whole-image inference is not "
            "possible with a fixed-size one",
            file=sys.stderr,
        )
        return 2
    tile = args.tile or DEFAULT_TILE

    def show(r: dict) -> None:
        n = r["size"]
        print(
            f"{n:>5}x{n:<5} tiles {r['tiles']:>3}  whole {r['whole_s'] * 1e3:9.1f} ms  tiled "
            f"{r['tiled_s'] * 1e3:9.1f} ms  ratio {r['ratio']:.3f} (of minima {r['ratio_min']:.3f}; pixels "
            f"computed {r['halo_work']:.3f}x)",
            flush=True,
        )

    rows = tiling_overhead.measure(up, args.sizes, args.repeats, tile, show)
    if not args.no_record:
        command = f"python benchmarks/bench_tiling.py {' '.join(argv or sys.argv[1:])}"
        md = tiling_overhead.markdown(rows, up, model.name, tile, command)
        name = args.name or ("tiling_" + model.stem if args.model else "tiling")
        rel = model.relative_to(ROOT) if model.is_relative_to(ROOT) else model
        j, m = record(
            RESULTS,
            name,
            {
                "model": str(rel),
                "card": up.card.name,
                "halo": up.card.halo,
                "tile": tile,
                "backend": up.backend.name,
                "rows": rows,
            },
            md,
            "bench_tiling.py",
        )
        print(f"recorded {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
