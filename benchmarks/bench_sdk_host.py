"""The SDK's host-side work per call, the model replaced by a no-op: what end-to-end GPU figures
pay on top of the network (see benchmarks/results/gpu_targets.md).

Times ``Upscaler.upscale`` for the GPU benchmark's inputs (128x128 RGB LR -> 512x512, a
480x270 RGB frame -> 1080p as one window and in 256-px tiles; uint16, from the bundled sample)
with ``backend.run`` returning zeros of the right shape, so only the statistics, normalising,
tiling, de-normalising, clipping and casting remain. The artifact is the ``paper`` preset with
random weights exported to a ``.pt2`` by sr-convert's own code (as bench_gpu.py does), loaded on
the CPU; ``--model`` takes any other artifact. The measuring code is ``scopesr.bench.host_overhead``.

    python benchmarks/bench_sdk_host.py [--model M] [--repeats 20]

Writes benchmarks/results/sdk_host_overhead.{json,md} (``--name`` to change).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="an SDK artifact (default: the paper preset as a .pt2)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--name", default="sdk_host_overhead", help="results/NAME.json|md")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import scopesr.sdk as sr
    from scopesr.bench.gpu import export_pt2, sample_rgb
    from scopesr.bench.host_overhead import host_overhead
    from scopesr.bench.results import record

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_pt2("paper", Path(tmp), seed=0)
        up = sr.load(model, device="cpu")
        c = up.card.in_channels
        small, big = sample_rgb(128, 128)[..., :c], sample_rgb(270, 480)[..., :c]
        cases = {
            "512 out": (small, {}),
            "1080p out, whole frame": (big, {"tile": 480}),
            "1080p out, 256-px tiles": (big, {"tile": 256, "batch": 8}),
        }
        rows = host_overhead(up, cases, repeats=args.repeats)
        name = model.name if args.model else "paper preset (random weights) .pt2"
    cmd = " ".join(["python benchmarks/bench_sdk_host.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# SDK host-side work per call (the model replaced by a no-op)",
        "",
        f"Artifact: {name}; command: `{cmd}`",
        "",
        "| case | input | output Mpx | median ms [min-max] |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {'x'.join(map(str, r['shape']))} {r['dtype']} | {r['out_mpx']:.2f} | "
            f"{r['median_s'] * 1e3:.2f} [{r['min_s'] * 1e3:.2f}-{r['max_s'] * 1e3:.2f}] |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    if not args.no_record:
        record(RESULTS, args.name, {"model": name, "rows": rows}, md, "bench_sdk_host.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
