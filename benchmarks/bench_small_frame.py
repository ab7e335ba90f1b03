"""Small-frame overhead: ``up.upscale`` / ``up.stream`` on a 64x64 uint8 frame vs the raw runtime call.

For each bundled default artifact whose runtime is installed (or each --model), the SDK's
calls are timed against the runtime's own call on the same tile with the same threads
(target: within 1.2x). The measuring code is ``scopesr.bench.small_frame``; this script parses
the arguments and records the result (with the machine) in
benchmarks/results/small_frame.{json,md}.

    python benchmarks/bench_small_frame.py [--model M.onnx ...] [--threads 2] [--repeats 200]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scopesr.bench import small_frame
from scopesr.bench.machine import usable_cores
from scopesr.bench.results import record
from scopesr.sdk.upscaler import RUNNABLE_FORMATS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        nargs="+",
        default=None,
        help="artifacts (default: every bundled default artifact whose runtime is installed)",
    )
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the usable cores)")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--name", default="small_frame", help="results/NAME.json|md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import scopesr.sdk as sr
    from scopesr.sdk.errors import ScopesrError

    threads = args.threads or usable_cores()
    if args.model:
        models = [Path(m) for m in args.model]
    else:
        models = [p for fmt in RUNNABLE_FORMATS if (p := sr.default_model_path(fmt, must_exist=False)).exists()]
    rows = []
    for model in models:
        try:
            up = sr.load(model, num_threads=threads)
        except ScopesrError as exc:  # a runtime that is not installed: say so, measure the rest
            print(f"{model.name}: skipped ({exc})", file=sys.stderr)
            continue
        row = small_frame.measure(up, repeats=args.repeats, warmup=args.warmup)
        row["artifact"] = model.name
        rows.append(row)
        print(
            f"{model.name:<24} raw {row['raw_ms']:7.3f} ms  backend.run {row['backend_run_ms']:7.3f} ms  "
            f"upscale {row['upscale_ms']:7.3f} ms ({row['upscale_ratio']:.3f}x)  stream {row['stream_ms']:7.3f} ms "
            f"({row['stream_ratio']:.3f}x)",
            flush=True,
        )
    if not rows:
        print("no artifact could be loaded", file=sys.stderr)
        return 1
    if not args.no_record:
        command = f"python benchmarks/bench_small_frame.py {' '.join(argv if argv is not None else sys.argv[1:])}"
        md = "# Small-frame overhead of the SDK\n\n" + small_frame.markdown(rows, command.strip(), threads)
        j, m = record(
            RESULTS,
            args.name,
            {"threads": threads, "target_ratio": small_frame.TARGET_RATIO, "rows": rows},
            md,
            "bench_small_frame.py",
            threads=threads,
        )
        print(f"recorded {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
