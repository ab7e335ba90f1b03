"""Student vs teacher, side by side in one run, on every backend installed here.

    python benchmarks/bench_student.py            # writes results/student_vs_teacher.{json,md}

Times the bundled default student and the ``paper`` teacher (random init) in torch (CPU),
ONNX Runtime and TFLite, and compares the student's TFLite int8 with fp32 on the held-out real
images its card names, per degradation (``--degradations``). The measuring code is
``scopesr.bench.student_teacher``; this script parses the arguments and records the result
(with the machine) in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scopesr.bench import student_teacher
from scopesr.bench.results import record

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="student_vs_teacher")
    ap.add_argument(
        "--degradations",
        default=None,
        metavar="A,B",
        help="quality rows (scopesr.sdk.quality.EVAL_DEGRADATIONS names; default: all)",
    )
    ap.add_argument("--max-planes", type=int, default=6, help="planes per held-out stack (evenly spaced)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    degs = [d.strip() for d in args.degradations.split(",") if d.strip()] if args.degradations else None
    res = student_teacher.measure(args.reps, args.threads, degs, args.max_planes)
    text = student_teacher.markdown(res)
    record(RESULTS, args.name, res, text, "bench_student.py", threads=args.threads)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
