"""Bounded memory: peak RSS of `sr-upscale` turning an NxN uint16 TIFF into its x4 result.

Above 64 output megapixels sr-upscale streams the result to a BigTIFF strip by strip, so
the peak should stay flat as the image grows (target < 1 GB; the 8192 case makes a 2 GB
file). The measuring code is ``scopesr.bench.memory``; this script parses the arguments and
records the result (with the machine) in benchmarks/results/.

    nice -n 5 python benchmarks/bench_memory.py [--sizes 2048 4096 8192] [--model M.onnx] [--tmpdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from scopesr.bench import memory
from scopesr.bench.results import pick_model, record
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY = ROOT / "tests" / "fixtures" / "tiny_x4.onnx"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--model", default=None)
    ap.add_argument("--tmpdir", default=None, help="where the big temporary files go (default: system temp)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument(
        "--name", default=None, help="results/NAME.json|md (default: memory, or memory_<model stem> with --model)"
    )
    ap.add_argument("--no-contrast", action="store_true", help="skip the in-memory run of the smallest size")
    args = ap.parse_args(argv)

    model = pick_model(args.model, TINY)
    where = args.tmpdir or tempfile.gettempdir()
    free, need = shutil.disk_usage(where).free, memory.disk_needed(args.sizes)
    if free < need:
        print(f"need about {need / 2**30:.1f} GB free in {where}, have {free / 2**30:.1f} GB", file=sys.stderr)
        return 2
    rss_help = memory.baseline_rss()
    print(f"python + sr-upscale --help: peak RSS {rss_help:.0f} MB", flush=True)

    def show(r: dict) -> None:
        n = r["lr"]
        print(
            f"{n}x{n} -> {4 * n}x{4 * n} {'streamed' if r['streamed'] else 'in memory'}: peak RSS "
            f"{r['peak_rss_mb']} MB, {r['wall_s']} s, output {r['output_mb']} MB "
            f"({'BigTIFF' if r['bigtiff'] else 'TIFF'}, {r['strips']} strips)",
            flush=True,
        )

    try:
        rows = memory.measure(args.sizes, model, args.tmpdir, not args.no_contrast, show)
    except ScopesrError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not args.no_record:
        command = f"nice -n 5 python benchmarks/bench_memory.py {' '.join(argv or sys.argv[1:])}"
        md = memory.markdown(rows, model.name, rss_help, command)
        name = args.name or ("memory_" + model.stem if args.model else "memory")
        j, m = record(
            RESULTS,
            name,
            {"model": model.name, "baseline_help_rss_mb": round(rss_help), "rows": rows},
            md,
            "bench_memory.py",
        )
        print(f"recorded {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
