"""Scale: sr-upscale's Dask path on NxN uint16 OME-Zarr inputs, x4 into OME-Zarr.

For each size: throughput with 1 and 2 local worker processes side by side (a fresh
LocalCluster each, one thread per worker, the runtime given usable CPUs / workers threads)
and the ratio, the peak RSS of every worker (getrusage, the process's whole life: flat in the
image size when memory is bounded per block), and, for reference, the same run in this one
process (Dask's synchronous scheduler, the runtime on all cores). Then what the scheduler
sustains without a model: empty tasks per second, and blocks per second of the whole
read -> write pipeline with the SR step replaced by a nearest-neighbour x4 (I/O, zarr
compression and scheduling only).

The input is the stardist nuclei sample (512x512, BSD-3) tiled to NxN (a synthetic pattern
without the package), written as a one-level OME-Zarr in 256-pixel chunks. The default
sizes run in a few minutes on 2 cores; the issue's 16384x16384 -> 65536x65536 run is
``--sizes 16384 --workers 2`` (about 0.5 GB in, 8.6 GB out before compression, so
``--tmpdir`` on a disk with room for ~12 GB), and the results say whether it was run.

    nice -n 5 python benchmarks/bench_dask.py [--sizes 1024 2048] [--workers 1 2] [--chunk 512]
                                              [--model M.onnx] [--tmpdir DIR] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scopesr.bench.results import pick_model, record
from scopesr.sdk.errors import ScopesrError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY = ROOT / "tests" / "fixtures" / "tiny_x4.onnx"
ISSUE_SIZE = 16384
SCALE_NOTE = (
    "Going to N machines: start `dask scheduler` on one machine and `dask worker tcp://SCHEDULER:8786 "
    "--nworkers 1 --nthreads 1` on each (one worker per GPU on GPU machines), every one with "
    '`pip install "scopesr[cluster]"` and the model at the same path, input and output on a shared file '
    "system; then `sr-upscale IN.zarr -o OUT.zarr --scheduler tcp://SCHEDULER:8786` (or pass an existing "
    "`distributed.Client` to `scopesr.sdk.dask.upscale_to_ome_zarr`). Blocks are independent once the "
    "per-plane statistics are known, so throughput grows with the workers until the shared file system or "
    "the scheduler's block rate (measured above) is the limit."
)


def _tile_source():
    """The real nuclei image to tile, or None (then a synthetic pattern)."""
    try:
        import tifffile

        from scopesr.sdk import sample_path

        return tifffile.imread(sample_path("stardist-nuclei-2d"))
    except (ScopesrError, OSError, ImportError):
        return None


def make_input(path: Path, n: int, chunk: int = 256) -> Path:
    """An NxN uint16 OME-Zarr (one level), built block by block (memory: one block)."""
    import dask.array as da

    from scopesr.sdk.zarr_io import write_ome_zarr

    base = _tile_source()

    def fill(block, block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        if base is not None:
            return base[yy % base.shape[0], xx % base.shape[1]].astype(np.uint16)
        v = 800 + 600 * np.sin(yy / 23.0) * np.cos(xx / 31.0) + ((yy * 7 + xx * 13) % 97)
        return v.astype(np.uint16)

    arr = da.zeros((n, n), dtype=np.uint16, chunks=chunk).map_blocks(fill, dtype=np.uint16)
    return write_ome_zarr(
        path,
        arr,
        "YX",
        chunk=chunk,
        levels=1,
        overwrite=True,
        name=f"nuclei_{n}",
        scale=[0.5, 0.5],
        units={"Y": "micrometer", "X": "micrometer"},
    )


def run_sr(src: Path, out: Path, model: Path, workers: int, chunk: int) -> dict:
    """One x4 run into ``out`` (a fresh cluster of ``workers`` processes; 0: this process)."""
    from scopesr.sdk import dask as srd

    shutil.rmtree(out, ignore_errors=True)
    t_start = time.perf_counter()
    with srd.dask_client(workers=workers or None) as client:
        started = time.perf_counter() - t_start
        rep = srd.upscale_to_ome_zarr(src, out, str(model), scheduler=client, chunk=chunk, overwrite=True)
    import zarr

    s0 = zarr.open_array(str(out / "s0"), mode="r")
    out_px = int(np.prod(s0.shape))
    du = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "workers": workers,
        "wall_s": round(rep.seconds, 2),
        "cluster_start_s": round(started, 2),
        "out_mpx": round(out_px / 1e6, 1),
        "mpx_per_s": round(out_px / 1e6 / rep.seconds, 2),
        "blocks": rep.written,
        "level0_blocks": rep.level0_blocks,
        "levels": rep.levels,
        "blocks_per_s": round(rep.chunks_per_s, 2),
        "worker_peak_rss_mb": sorted(rep.worker_peak_rss_mb.values()),
        "model_loads": sorted(rep.model_loads.values()),
        "output_mb_on_disk": round(du / 2**20, 1),
    }


def _nearest_x4(block, block_info=None):
    return np.repeat(np.repeat(block, 4, axis=0), 4, axis=1)


def scheduler_rates(src: Path, tmp: Path, workers: int, chunk: int, n_tasks: int = 2000) -> dict:
    """Empty tasks/s, and pipeline blocks/s with the model replaced by nearest x4."""
    import dask.array as da

    from scopesr.sdk import dask as srd
    from scopesr.sdk.zarr_io import NgffMeta, OmeZarrWriter, store_tasks

    with srd.dask_client(workers=workers) as client:
        client.gather(client.map(int, range(50)))  # warm up
        t = time.perf_counter()
        client.gather(client.map(lambda i: i, range(n_tasks), pure=False))
        tasks_per_s = n_tasks / (time.perf_counter() - t)
        lr = da.from_zarr(str(src / "s0"), chunks=chunk)
        hr = lr.map_blocks(_nearest_x4, chunks=tuple(tuple(4 * c for c in cs) for cs in lr.chunks), dtype=lr.dtype)
        out = tmp / "nearest.ome.zarr"
        shutil.rmtree(out, ignore_errors=True)
        w = OmeZarrWriter.open(
            out, hr.shape, hr.dtype, NgffMeta("YX", [1.0, 1.0]), chunk * 4, levels=1, run={"bench": "nearest"}
        )
        tasks, _ = store_tasks(w, 0, hr)
        t = time.perf_counter()
        srd.execute(tasks, client)
        pipe = len(tasks) / (time.perf_counter() - t)
        shutil.rmtree(out, ignore_errors=True)
    return {
        "workers": workers,
        "empty_tasks_per_s": round(tasks_per_s),
        "nearest_blocks_per_s": round(pipe, 1),
        "nearest_blocks": len(tasks),
        "block_px": f"{chunk * 4}x{chunk * 4}",
    }


def output_chunk(block_hr: int) -> int:
    from scopesr.sdk.dask import output_chunk as oc

    return oc(block_hr)


def markdown(
    rows: list[dict], sched: dict, model: str, sizes: list[int], chunk: int, command: str, load: tuple[float, float]
) -> str:
    lines = [
        f"# Dask scale: NxN uint16 OME-Zarr -> x4 OME-Zarr ({model})",
        "",
        f"Command: `{command}`. Dask blocks of {chunk}x{chunk} LR pixels ({chunk * 4}x{chunk * 4} HR), output "
        f"zarr chunks {output_chunk(chunk * 4)}x{output_chunk(chunk * 4)} (Blosc zstd), the full pyramid "
        "written; one fresh LocalCluster per row (1 thread per worker process, runtime threads = usable "
        "CPUs / workers). Load average (1 min) at start / end: "
        f"{load[0]:.1f} / {load[1]:.1f} (other jobs on this machine take CPU from every row alike).",
        "",
        "| input | output | workers | wall s | output Mpx/s | blocks/s | peak RSS per worker (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n = r["size"]
        rss = ", ".join(f"{v:.0f}" for v in r["worker_peak_rss_mb"]) or "n/a (this process)"
        who = r["workers"] or "this process"
        lines.append(
            f"| {n}x{n} | {4 * n}x{4 * n} | {who} | {r['wall_s']} | {r['mpx_per_s']} | {r['blocks_per_s']} | {rss} |"
        )
    lines.append("")
    for n in sizes:
        by = {r["workers"]: r for r in rows if r["size"] == n}
        if 1 in by and 2 in by:
            lines.append(
                f"- {n}x{n}: 2 workers / 1 worker throughput = "
                f"**{by[2]['mpx_per_s'] / by[1]['mpx_per_s']:.2f}x**"
                + (f"; this process (all cores) {by[0]['mpx_per_s']} Mpx/s" if 0 in by else "")
            )
    rss = [v for r in rows if r["workers"] for v in r["worker_peak_rss_mb"]]
    if rss:
        lines.append(
            f"- Peak RSS per worker: {min(rss):.0f}-{max(rss):.0f} MB over sizes "
            f"{', '.join(str(n) for n in sizes)} (target < 1024 MB, flat in the image size)."
        )
    lines += [
        f"- Scheduler ({sched['workers']} workers): {sched['empty_tasks_per_s']} empty tasks/s; the whole "
        f"read -> nearest x4 -> compress -> write pipeline {sched['nearest_blocks_per_s']} blocks/s of "
        f"{sched['block_px']} output pixels (the ceiling with no model).",
        "",
    ]
    if ISSUE_SIZE in sizes:
        lines.append(
            f"The issue's {ISSUE_SIZE}x{ISSUE_SIZE} -> {4 * ISSUE_SIZE}x{4 * ISSUE_SIZE} run: **run** (rows above)."
        )
    else:
        lines.append(
            f"The issue's {ISSUE_SIZE}x{ISSUE_SIZE} -> {4 * ISSUE_SIZE}x{4 * ISSUE_SIZE} run: **not run** "
            f"here (sizes {', '.join(map(str, sizes))}); `--sizes {ISSUE_SIZE} --workers 2 --tmpdir DIR` "
            "runs it."
        )
    lines += ["", SCALE_NOTE, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="LR sizes N (NxN)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    ap.add_argument("--no-single", action="store_true", help="skip the this-process reference row")
    ap.add_argument("--chunk", type=int, default=512, help="LR pixels per block side (Dask task)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tmpdir", default=None, help="where inputs and outputs go (default: system temp)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--name", default=None, help="results/NAME.json|md (default: dask, or dask_<model stem>)")
    args = ap.parse_args(argv)
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import ome_zarr  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        print('needs the cluster extra: pip install "scopesr[cluster]"', file=sys.stderr)
        return 2
    model = pick_model(args.model, TINY)
    base = Path(args.tmpdir or tempfile.gettempdir())
    need = sum(n * n * 2 * 16 * 1.4 for n in args.sizes)  # uncompressed output + pyramid, worst case
    if shutil.disk_usage(base).free < need:
        print(f"need about {need / 2**30:.1f} GB free in {base}", file=sys.stderr)
        return 2
    load0 = os.getloadavg()[0]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="scopesr-bench-dask-", dir=base))
    try:
        for n in args.sizes:
            src = make_input(tmp / f"in_{n}.ome.zarr", n)
            counts = list(args.workers) + ([] if args.no_single else [0])
            for w in counts:
                r = {"size": n, **run_sr(src, tmp / f"out_{n}_{w}.ome.zarr", model, w, args.chunk)}
                shutil.rmtree(tmp / f"out_{n}_{w}.ome.zarr", ignore_errors=True)
                rows.append(r)
                print(
                    f"{n}x{n} -> {4 * n}x{4 * n}, {w or 'this process'} worker(s): {r['wall_s']} s, "
                    f"{r['mpx_per_s']} Mpx/s, {r['blocks_per_s']} blocks/s, peak RSS per worker "
                    f"{r['worker_peak_rss_mb']} MB",
                    flush=True,
                )
        sched = scheduler_rates(tmp / f"in_{args.sizes[0]}.ome.zarr", tmp, max(args.workers), 64)
        print(f"scheduler: {sched}", flush=True)
    except ScopesrError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()[0]
    if not args.no_record:
        command = f"nice -n 5 python benchmarks/bench_dask.py {' '.join(argv if argv is not None else sys.argv[1:])}"
        md = markdown(rows, sched, model.name, args.sizes, args.chunk, command.strip(), (load0, load1))
        name = args.name or ("dask_" + model.stem if args.model else "dask")
        j, m = record(
            RESULTS,
            name,
            {
                "model": model.name,
                "chunk": args.chunk,
                "sizes": args.sizes,
                "issue_size_run": ISSUE_SIZE in args.sizes,
                "rows": rows,
                "scheduler": sched,
                "load_avg_1min": [load0, load1],
                "scaling_note": SCALE_NOTE,
            },
            md,
            "bench_dask.py",
        )
        print(f"recorded {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
