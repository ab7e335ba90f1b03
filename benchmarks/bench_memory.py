"""Bounded memory: peak RSS of `sr-upscale` turning an NxN uint16 TIFF into its x4 result.

For each size an input TIFF (made of a real fluorescence image, tiled) is written into a
temporary folder, `sr-upscale` runs on it as a child process, and the child's own peak RSS
(``ru_maxrss`` from ``os.wait4``) is recorded with the wall time and the output size. Above
64 output megapixels sr-upscale streams the result to a BigTIFF strip by strip, so the
peak should stay flat as the image grows (target < 1 GB; the 8192 case makes a 2 GB file).
For contrast, the smallest size is also run with streaming switched off (whole result in
memory). Temporary files are deleted after each size.

    nice -n 5 python benchmarks/bench_memory.py [--sizes 2048 4096 8192] [--model M.onnx] [--tmpdir DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pick_model, record  # noqa: E402


def write_input(path: Path, n: int) -> None:
    """Write an n x n uint16 TIFF band by band (the benchmark itself stays small too)."""
    from scopesr.sdk.io import read_image, write_tiff_streaming
    from scopesr.sdk.samples import SAMPLES

    p = SAMPLES["stardist-nuclei-2d"].path()
    base = read_image(p).array if p else np.random.default_rng(0).integers(0, 4000, (512, 512)).astype(np.uint16)
    h = base.shape[0]
    row = np.tile(base, (1, -(-n // base.shape[1])))[:, :n]

    def bands():
        for y in range(0, n, h):
            yield np.ascontiguousarray(row[: min(h, n - y)])

    write_tiff_streaming(path, (n, n), np.uint16, "YX", bands())


def run_child(cmd: list[str]) -> tuple[int, float, float]:
    """Run cmd; return (exit code, wall seconds, the child's peak RSS in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(out, file=sys.stderr)
    return proc.returncode, wall, ru.ru_maxrss / 1024.0  # Linux: KB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--model", default=None)
    ap.add_argument("--tmpdir", default=None, help="where the big temporary files go (default: system temp)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--name", default=None,
                    help="results/NAME.json|md (default: memory, or memory_<model stem> with --model)")
    ap.add_argument("--no-contrast", action="store_true", help="skip the in-memory run of the smallest size")
    args = ap.parse_args(argv)

    import tifffile

    model = pick_model(args.model)
    exe = Path(sys.executable).with_name("sr-upscale")
    base_cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "scopesr.sdk.cli"]
    free = shutil.disk_usage(args.tmpdir or tempfile.gettempdir()).free
    need = max(args.sizes) ** 2 * 2 * 17 * 1.05  # input + 16x output
    if free < need:
        print(f"need about {need / 2**30:.1f} GB free in {args.tmpdir or tempfile.gettempdir()}, "
              f"have {free / 2**30:.1f} GB", file=sys.stderr)
        return 2
    _, _, rss_help = run_child(base_cmd + ["--help"])
    print(f"python + sr-upscale --help: peak RSS {rss_help:.0f} MB", flush=True)
    rows = []
    runs = [(n, True) for n in args.sizes]
    if not args.no_contrast:
        runs.insert(1, (min(args.sizes), False))
    for n, stream in runs:
        tmp = Path(tempfile.mkdtemp(prefix=f"scopesr-mem-{n}-", dir=args.tmpdir))
        try:
            src = tmp / f"in{n}.tif"
            write_input(src, n)
            cmd = base_cmd + [str(src), "-o", str(tmp / "out"), "--model", str(model), "-q"]
            if not stream:
                cmd += ["--stream-above", "1e12"]
            rc, wall, rss = run_child(cmd)
            if rc != 0:
                print(f"sr-upscale failed on {n}x{n} (exit {rc})", file=sys.stderr)
                return 1
            out = tmp / "out" / f"in{n}_x4.tif"
            with tifffile.TiffFile(out) as t:
                shape, big, strips = t.series[0].shape, t.is_bigtiff, len(t.pages[0].dataoffsets)
            assert shape == (4 * n, 4 * n), shape
            stream = strips > 1  # what sr-upscale actually did: the in-memory path writes one strip
            row = {"lr": n, "hr": 4 * n, "streamed": stream, "peak_rss_mb": round(rss), "wall_s": round(wall, 1),
                   "output_mb": round(out.stat().st_size / 2**20), "bigtiff": big, "strips": strips}
            rows.append(row)
            print(f"{n}x{n} -> {4 * n}x{4 * n} {'streamed' if stream else 'in memory'}: peak RSS {rss:.0f} MB, "
                  f"{wall:.1f} s, output {row['output_mb']} MB ({'BigTIFF' if big else 'TIFF'}, {strips} strips)",
                  flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_record:
        md = (f"`sr-upscale IN.tif -o OUT --model {model.name} -q` on an NxN uint16 TIFF (a real fluorescence "
              "image tiled), x4; peak RSS of the sr-upscale process (ru_maxrss via os.wait4), wall time on this "
              f"shared machine (run under nice). Baseline `sr-upscale --help`: {rss_help:.0f} MB.\n\n"
              "| input | output | path | peak RSS (MB) | wall (s) | output file (MB) |\n|---|---|---|---|---|---|\n"
              + "".join(f"| {r['lr']}x{r['lr']} | {r['hr']}x{r['hr']} | "
                        f"{'streamed ' + ('BigTIFF' if r['bigtiff'] else 'TIFF') if r['streamed'] else 'in memory'} | "
                        f"{r['peak_rss_mb']} | {r['wall_s']} | {r['output_mb']} |\n" for r in rows)
              + f"\nCommand: `nice -n 5 python benchmarks/bench_memory.py {' '.join(argv or sys.argv[1:])}`\n")
        j, m = record(args.name or ("memory_" + model.stem if args.model else "memory"), {"model": model.name, "baseline_help_rss_mb": round(rss_help), "rows": rows}, md, "bench_memory.py")
        print(f"recorded {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
