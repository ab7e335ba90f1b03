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
``--sizes 16384 --workers 2 --no-single --merge`` (about 0.5 GB in, 8.6 GB out before
compression, so ``--tmpdir`` on a disk with room for ~12 GB; ``--merge`` keeps the recorded
rows of the other sizes). A long run prints its progress (level-0 blocks, output Mpx/s so
far, the workers' peak RSS, the load average) every ``--progress-every`` seconds, and a run
stopped by SIGTERM or Ctrl-C (e.g. ``timeout``) records how far it got and why.

    nice -n 5 python benchmarks/bench_dask.py [--sizes 1024 2048] [--workers 1 2] [--chunk 512]
                                              [--model M.onnx] [--tmpdir DIR] [--no-record]
                                              [--merge] [--no-single] [--no-scheduler]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from scopesr.bench.machine import describe_machine
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


class Stopped(Exception):
    """SIGTERM (``timeout``) during a run: unwound like Ctrl-C, so the cluster is closed and
    the progress so far is recorded."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped(f"signal {signal.Signals(signum).name}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Progress:
    """What a run has done so far: blocks counted as they are written, sampled (with the
    workers' peak RSS) every ``every`` seconds by a thread, printed, and kept for a stopped run."""

    def __init__(self, n: int, workers: int, chunk: int, every: float) -> None:
        self.n, self.workers, self.chunk, self.every = n, workers, chunk, every
        self.level0 = math.ceil(n / chunk) ** 2  # blocks of level 0 (the SR); the pyramid's come after
        self.t0 = time.perf_counter()
        self.done = 0
        self.client = None
        self.rss: list[float] = []
        self.loads: list[float] = []  # 1-min load average at each sample
        self.state: dict = {}
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, client: object) -> None:
        self.client = client
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.client = None

    def _loop(self) -> None:
        while not self._halt.wait(self.every):
            self.sample()

    def sample(self) -> None:
        from scopesr.sdk import dask as srd

        el = time.perf_counter() - self.t0
        if self.client is not None:
            try:
                self.rss = sorted(round(v, 1) for v in self.client.run(srd.peak_rss_mb).values())
            except Exception:  # noqa: BLE001 - a worker restarting: keep the last sample
                pass
        l0 = min(self.done, self.level0)
        mpx = l0 * (self.chunk * 4) ** 2 / 1e6  # level-0 output pixels written (whole blocks; the last may be short)
        self.state = {
            "size": self.n,
            "workers": self.workers,
            "elapsed_s": round(el, 1),
            "blocks_done": self.done,
            "level0_blocks_done": l0,
            "level0_blocks": self.level0,
            "level0_mpx_done": round(mpx, 1),
            "level0_mpx_per_s": round(mpx / el, 2) if el > 0 else 0.0,
            "worker_peak_rss_mb": self.rss,
            "load_avg": [round(v, 2) for v in os.getloadavg()],
            "at": _now(),
        }
        self.loads.append(self.state["load_avg"][0])
        print(f"  progress: {json.dumps(self.state)}", flush=True)

    def __call__(self) -> None:  # after each block is written
        self.done += 1


def run_sr(src: Path, out: Path, model: Path, workers: int, chunk: int, progress: Progress | None = None) -> dict:
    """One x4 run into ``out`` (a fresh cluster of ``workers`` processes; 0: this process)."""
    from scopesr.sdk import dask as srd

    shutil.rmtree(out, ignore_errors=True)
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    with srd.dask_client(workers=workers or None) as client:
        started = time.perf_counter() - t_start
        if progress is not None:
            progress.start(client)
        try:
            rep = srd.upscale_to_ome_zarr(
                src, out, str(model), scheduler=client, chunk=chunk, overwrite=True, on_chunk=progress
            )
        finally:
            if progress is not None:
                progress.stop()
    import zarr

    s0 = zarr.open_array(str(out / "s0"), mode="r")
    out_px = int(np.prod(s0.shape))
    du = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    during = sorted(progress.loads) if progress is not None else []
    return {
        "workers": workers,
        "date": _now(),
        "machine": describe_machine().line(),
        "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        # min, median, max of the samples taken every --progress-every s (long runs only)
        "load_avg_1min_during": [during[0], during[len(during) // 2], during[-1]] if during else None,
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
    rows: list[dict],
    sched: dict | None,
    model: str,
    chunk: int,
    command: str,
    stopped: dict | None = None,
) -> str:
    sizes = sorted({r["size"] for r in rows} | ({stopped["size"]} if stopped else set()))
    lines = [
        f"# Dask scale: NxN uint16 OME-Zarr -> x4 OME-Zarr ({model})",
        "",
        f"Command: `{command}`. Dask blocks of {chunk}x{chunk} LR pixels ({chunk * 4}x{chunk * 4} HR), output "
        f"zarr chunks {output_chunk(chunk * 4)}x{output_chunk(chunk * 4)} (Blosc zstd), the full pyramid "
        "written; one fresh LocalCluster per row (1 thread per worker process, runtime threads = usable "
        "CPUs / workers). Rows kept from an earlier run (`--merge`) carry their own date; the load "
        "average (1 min, start / end of the row) says how busy the machine was (other jobs take CPU "
        "from every row alike).",
        "",
        "| input | output | workers | wall s | output Mpx/s | blocks/s | peak RSS per worker (MB) | load | date |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["size"], r["workers"] or 99)):
        n = r["size"]
        rss = ", ".join(f"{v:.0f}" for v in r["worker_peak_rss_mb"]) or "n/a (this process)"
        who = r["workers"] or "this process"
        load = r.get("load_avg_1min") or ["?", "?"]
        during = r.get("load_avg_1min_during")
        load_text = f"{load[0]} / {load[1]}" + (
            f" (during: {during[0]}-{during[2]}, median {during[1]})" if during else ""
        )
        lines.append(
            f"| {n}x{n} | {4 * n}x{4 * n} | {who} | {r['wall_s']} | {r['mpx_per_s']} | {r['blocks_per_s']} | "
            f"{rss} | {load_text} | {str(r.get('date', '?'))[:16]} |"
        )
    lines.append("")
    machines: dict[str, list[str]] = {}
    for r in rows:
        machines.setdefault(r.get("machine") or "?", []).append(str(r.get("date", "?"))[:16])
    if len(machines) > 1 or "?" in machines:
        lines.append("Machines (the rows of different dates ran on different VMs; compare rows of one machine):")
        for m, dates in machines.items():
            lines.append(f"- rows of {', '.join(sorted(set(dates)))}: {m}")
        lines.append("")
    for n in sizes:
        by = {r["workers"]: r for r in rows if r["size"] == n}
        if 1 in by and 2 in by:
            lines.append(
                f"- {n}x{n}: 2 workers / 1 worker throughput = "
                f"**{by[2]['mpx_per_s'] / by[1]['mpx_per_s']:.2f}x**"
                + (f"; this process (all cores) {by[0]['mpx_per_s']} Mpx/s" if 0 in by else "")
            )
    by_size: dict[int, list[float]] = {}
    for r in rows:
        if r["workers"]:
            by_size.setdefault(r["size"], []).extend(r["worker_peak_rss_mb"])
    if by_size:
        lines.append(
            "- Peak RSS per worker, lowest-highest by input size: "
            + ", ".join(f"{n}: {min(v):.0f}-{max(v):.0f} MB" for n, v in sorted(by_size.items()))
            + " (target < 1024 MB and flat in the image size)."
        )
    if sched:
        lines.append(
            f"- Scheduler ({sched['workers']} workers): {sched['empty_tasks_per_s']} empty tasks/s; the whole "
            f"read -> nearest x4 -> compress -> write pipeline {sched['nearest_blocks_per_s']} blocks/s of "
            f"{sched['block_px']} output pixels (the ceiling with no model)"
            + (f", measured {sched['date'][:16]}" if sched.get("date") else "")
            + "."
        )
    lines.append("")
    issue = [r for r in rows if r["size"] == ISSUE_SIZE]
    if issue:
        lines.append(
            f"The issue's {ISSUE_SIZE}x{ISSUE_SIZE} -> {4 * ISSUE_SIZE}x{4 * ISSUE_SIZE} run: **run** "
            f"({', '.join(str(r['workers'] or 'this process') for r in issue)} worker(s); rows above)."
        )
    if stopped:
        st = stopped
        m = st["size"]
        lines.append(
            f"The {m}x{m} -> {4 * m}x{4 * m} run{' (the issue size)' if m == ISSUE_SIZE else ''}: **stopped** "
            f"({st.get('reason', '?')}) after {st.get('elapsed_s', '?')} s with {st.get('workers') or 'no'} worker(s): "
            f"{st.get('level0_blocks_done', 0)} of {st.get('level0_blocks', '?')} level-0 blocks written "
            f"({st.get('level0_mpx_done', 0)} Mpx, {st.get('level0_mpx_per_s', 0)} Mpx/s), peak RSS per worker "
            f"{', '.join(f'{v:.0f}' for v in st.get('worker_peak_rss_mb') or []) or '?'} MB, load average "
            f"{st.get('load_avg', '?')} at the last sample ({st.get('at', '?')})."
        )
    if not issue and not (stopped and stopped["size"] == ISSUE_SIZE):
        lines.append(
            f"The issue's {ISSUE_SIZE}x{ISSUE_SIZE} -> {4 * ISSUE_SIZE}x{4 * ISSUE_SIZE} run: **not run** "
            f"here (sizes {', '.join(map(str, sizes))}); `--sizes {ISSUE_SIZE} --workers 2 --no-single --merge "
            "--tmpdir DIR` runs it."
        )
    lines += ["", SCALE_NOTE, ""]
    return "\n".join(lines)


def _previous(name: str) -> dict:
    """The recorded results of ``name`` (for --merge), rows tagged with their run's date/load."""
    try:
        old = json.loads((RESULTS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}
    for r in old.get("rows", []):
        r.setdefault("date", old.get("date"))
        r.setdefault("machine", old.get("machine_line"))
        la = old.get("load_avg_1min")
        r.setdefault("load_avg_1min", [round(v, 2) for v in la] if la else None)
    if old.get("scheduler"):
        old["scheduler"].setdefault("date", old.get("date"))
    return old


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="LR sizes N (NxN)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    ap.add_argument("--no-single", action="store_true", help="skip the this-process reference row")
    ap.add_argument("--no-scheduler", action="store_true", help="skip the scheduler rates (--merge keeps the old)")
    ap.add_argument("--merge", action="store_true", help="keep the recorded rows of sizes not run now")
    ap.add_argument("--chunk", type=int, default=512, help="LR pixels per block side (Dask task)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tmpdir", default=None, help="where inputs and outputs go (default: system temp)")
    ap.add_argument("--progress-every", type=float, default=60.0, metavar="S", help="seconds between progress lines")
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
    name = args.name or ("dask_" + model.stem if args.model else "dask")
    base = Path(args.tmpdir or tempfile.gettempdir())
    need = sum(n * n * 2 * 16 * 1.4 for n in args.sizes)  # uncompressed output + pyramid, worst case
    if shutil.disk_usage(base).free < need:
        print(f"need about {need / 2**30:.1f} GB free in {base}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    rows: list[dict] = []
    sched = None
    stopped = None
    prog = None
    phase = {"size": args.sizes[0], "what": "starting", "t0": time.perf_counter()}
    tmp = Path(tempfile.mkdtemp(prefix="scopesr-bench-dask-", dir=base))
    try:
        for n in args.sizes:
            phase.update(size=n, what=f"writing the {n}x{n} input", t0=time.perf_counter())
            src = make_input(tmp / f"in_{n}.ome.zarr", n)
            phase["what"] = "running"
            counts = list(args.workers) + ([] if args.no_single else [0])
            for w in counts:
                prog = Progress(n, w, args.chunk, args.progress_every)
                r = {"size": n, **run_sr(src, tmp / f"out_{n}_{w}.ome.zarr", model, w, args.chunk, prog)}
                prog = None
                shutil.rmtree(tmp / f"out_{n}_{w}.ome.zarr", ignore_errors=True)
                rows.append(r)
                print(
                    f"{n}x{n} -> {4 * n}x{4 * n}, {w or 'this process'} worker(s): {r['wall_s']} s, "
                    f"{r['mpx_per_s']} Mpx/s, {r['blocks_per_s']} blocks/s, peak RSS per worker "
                    f"{r['worker_peak_rss_mb']} MB",
                    flush=True,
                )
        phase["what"] = "measuring the scheduler"
        if not args.no_scheduler:  # on a small input: the rate does not depend on the image size
            small = make_input(tmp / "in_sched.ome.zarr", min(1024, min(args.sizes)))
            sched = {**scheduler_rates(small, tmp, max(args.workers), 64), "date": _now()}
            print(f"scheduler: {sched}", flush=True)
    except ScopesrError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt) as exc:
        why = f"stopped by {exc or 'Ctrl-C'} (e.g. a timeout)"
        if prog is not None:
            prog.stop()  # the cluster is closed by now: the last sample's RSS stands
            prog.sample()
            stopped = {**prog.state, "reason": why}
        else:
            el = round(time.perf_counter() - phase["t0"], 1)
            stopped = {"size": phase["size"], "workers": 0, "elapsed_s": el, "reason": f"{why} while {phase['what']}"}
        print(f"stopped: {json.dumps(stopped)}", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_record:
        nice = os.nice(0)
        command = f"{f'nice -n {nice} ' if nice else ''}python benchmarks/bench_dask.py "
        command += " ".join(argv if argv is not None else sys.argv[1:])
        old = _previous(name) if args.merge else {}
        if old and (old.get("model"), old.get("chunk")) != (model.name, args.chunk):
            print(f"--merge: {name}.json holds another model or chunk; its rows are not kept", file=sys.stderr)
            old = {}
        now_sizes = set(args.sizes)
        rows = [r for r in old.get("rows", []) if r["size"] not in now_sizes] + rows
        sched = sched or old.get("scheduler")
        if stopped is None and old.get("issue_run_stopped") and ISSUE_SIZE not in now_sizes:
            stopped = old["issue_run_stopped"]
        md = markdown(rows, sched, model.name, args.chunk, command.strip(), stopped)
        j, m = record(
            RESULTS,
            name,
            {
                "model": model.name,
                "chunk": args.chunk,
                "sizes": sorted({r["size"] for r in rows}),
                "command": command.strip(),
                "issue_size_run": any(r["size"] == ISSUE_SIZE for r in rows),
                "issue_run_stopped": stopped,
                "rows": rows,
                "scheduler": sched,
                "load_avg_1min": [r.get("load_avg_1min") for r in rows],
                "scaling_note": SCALE_NOTE,
            },
            md,
            "bench_dask.py",
        )
        print(f"recorded {j} and {m}")
    return 0 if stopped is None else 3


if __name__ == "__main__":
    sys.exit(main())
