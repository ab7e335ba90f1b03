"""The GPU path's targets, measured through the SDK's torch backend (a real ``.pt2``).

For the ``paper`` preset: a 512x512 output end to end and backend only (target <= 5 ms), a
1920x1080 output as one window and as 256-px tiles (target >= 60 FPS), each torch option set's
difference from fp32 eager, and the trainer's throughput. The measuring code is
``scopesr.bench.gpu`` (see its docstring); this script parses the arguments and records.

Results: ``OUT/gpu_<device>.json`` and ``.md`` (default OUT: benchmarks/results), naming the
GPU. Without a CUDA device it prints one "not measured" line, writes nothing and exits 0.
``--cpu-smoke`` runs the same code on the CPU with a tiny preset and tiny sizes (tests);
its figures are not the targets and say so.

    python benchmarks/bench_gpu.py                  # on a GPU machine (about 4-6 minutes)
    python benchmarks/bench_gpu.py --quick --no-compile
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from scopesr.bench import gpu

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--quick", action="store_true", help="fewer runs and training steps")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile option set (slow to start)")
    ap.add_argument(
        "--compile-train",
        action="store_true",
        help="torch.compile the generator for the training throughput too (a minute or two of compilation per mode)",
    )
    ap.add_argument("--no-train", action="store_true", help="skip the training throughput")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("torch._dynamo", "torch._inductor", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    missing = None if args.cpu_smoke else gpu.cuda_missing()
    if missing:
        print(missing)
        return 0
    command = "python benchmarks/bench_gpu.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    res, md = gpu.run_gpu_benchmark(
        args.out,
        command,
        preset=args.preset,
        quick=args.quick,
        no_compile=args.no_compile,
        compile_train=args.compile_train,
        no_train=args.no_train,
        seed=args.seed,
        cpu_smoke=args.cpu_smoke,
    )
    print(md.read_text(encoding="utf-8"))
    print(f"wrote {md.with_suffix('.json')} and .md ({res['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
