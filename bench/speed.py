"""Table 3 analogue: per backend, each preset's time for a 64x64 patch, a 512x512 output
through the SDK tiler and a 64x64 video ROI through ``Upscaler.stream``; plus the reference
rows (nearest, bicubic, OpenCV peers), which do not depend on the runtime."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import quality

from .backends import QUICK_TEACHER_BACKENDS, backend_available, backend_title, open_upscaler
from .gpu import PEAK_SOURCE, device_peak_tflops
from .inputs import IMAGE_LR, PATCH, SCALE, SpeedInputs, make_speed_inputs, with_channels
from .peers import PEERS, Peer, peer_label, peer_upscale
from .progress import bar
from .settings import Budget, Settings
from .subjects import Subject, preset_subjects
from .timing import time_call

log = logging.getLogger(__name__)


def gflops(macs_per_lr_pixel: float | None, lr_pixels: int, seconds: float | None) -> float | None:
    """Achieved GFLOP/s: 2 FLOPs per multiply-accumulate, over the LR pixels processed."""
    if not macs_per_lr_pixel or not seconds or seconds <= 0:
        return None
    return 2.0 * macs_per_lr_pixel * lr_pixels / seconds / 1e9


def timed(fn: Callable[[], Any], b: Budget, sync: Callable[[], None] | None = None) -> dict[str, Any]:
    """``fn`` timed under the budget ``b``, as the dict the reports read."""
    return time_call(
        fn, warmup=b.warmup, repeats=b.repeats, min_repeats=b.min_repeats, budget_s=b.budget_s, sync=sync
    ).to_dict()


def timed_stream(stream: Iterator[Any], b: Budget, sync: Callable[[], None] | None = None) -> dict[str, Any]:
    """Per-frame times of an ``Upscaler.stream`` (or any frame generator)."""
    return timed(lambda: next(stream), b, sync)


def measure_model(subject: Subject, backend: str, st: Settings, inp: SpeedInputs, cache: Path) -> dict[str, Any]:
    """One row: patch, tiled image and ROI-stream timings of a preset on a backend."""
    from scopesr.sdk.normalize import compute_stats
    from scopesr.sdk.tiling import make_plan

    row: dict[str, Any] = {
        "model": subject.name,
        "kind": subject.kind,
        "params": subject.params,
        "macs_per_lr_pixel": subject.macs,
        "halo": subject.halo,
        "in_channels": subject.in_channels,
        "notes": [],
    }
    t0 = time.perf_counter()
    up = open_upscaler(subject, backend, st, cache)
    row["open_s"] = time.perf_counter() - t0
    be = up.backend
    row["runtime"] = be.describe().get("runtime") or be.name
    row["backend_describe"] = be.describe()
    runner = getattr(be, "runner", None)
    sync = runner.sync if runner is not None else None
    c = subject.in_channels
    b = st.budget
    # patch: the runtime alone on one normalised 64x64 tile
    plane = with_channels(inp.patch_raw, c)
    plane3 = plane if plane.ndim == 3 else plane[..., None]
    x = compute_stats(plane3, up.card.normalisation).normalise(plane3).transpose(2, 0, 1)[None].copy()
    if be.dynamic or PATCH in be.tile_sizes:
        row["patch"] = timed(lambda: be.run(x), b, sync)
    else:
        row["patch_note"] = f"n/a (no {PATCH}x{PATCH} signature)"
        row["notes"].append(
            f"{subject.name}: no {PATCH}x{PATCH} TFLite signature: with halo {subject.halo} a "
            f"fixed tile must be > {2 * subject.halo} LR px (signatures {list(be.tile_sizes)})"
        )
    # whole 512x512 output through the tiler
    lr = with_channels(inp.image_lr, c)
    plan = make_plan(be, IMAGE_LR, IMAGE_LR, st.tile, up.card.halo)
    row["tiles"] = plan.label
    row["image"] = timed(lambda: up.upscale(lr, tile=st.tile), b, sync)
    # video ROI through Upscaler.stream
    frames = [with_channels(f, c) for f in inp.frames]
    stream = up.stream(itertools.cycle(frames), roi=inp.roi, tile=st.tile)
    row["roi"] = timed_stream(stream, b, sync)
    for key, n_px in (("patch", PATCH * PATCH), ("image", IMAGE_LR * IMAGE_LR)):
        t = row.get(key)
        row[f"gflops_{key}"] = gflops(subject.macs, n_px, t["median_s"] if t else None)
    on_gpu = (runner is not None and runner.device == "cuda") or "CUDAExecutionProvider" in (
        row["backend_describe"].get("providers") or []
    )[:1]
    if on_gpu:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        if runner is not None:
            prec = runner.dtype if runner.dtype != "fp32" else ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")
        else:
            prec = "fp32"  # ONNX Runtime CUDA EP, fp32 model
        peak = device_peak_tflops(name, prec)
        g = row.get("gflops_patch") or row.get("gflops_image")
        row["peak_fraction"] = g / (peak * 1e3) if (peak and g) else None
        row["peak"] = {"device": name, "precision": prec, "tflops": peak}
    return row


def _roi_frames(f: Callable[[np.ndarray], Any], inp: SpeedInputs, crop_roi: Callable) -> Iterator[Any]:
    """What ``Upscaler.stream`` does for a model, for a plain function: crop the ROI, upscale."""
    for frame in itertools.cycle(inp.frames):
        yield f(crop_roi(frame, inp.roi))


def reference_rows(st: Settings, inp: SpeedInputs, peers: dict[str, Path]) -> list[dict[str, Any]]:
    """nearest, bicubic and the OpenCV peers: same three columns, runtime-independent."""
    from scopesr.sdk.upscaler import crop_roi

    b = st.budget
    funcs: list[tuple[str, str, str, int | None, float | None, Callable[[np.ndarray], Any]]] = [
        ("nearest", "classic", "numpy", None, None, lambda a: quality.upscale_nearest(a, SCALE)),
        ("bicubic", "classic", "Pillow", None, None, lambda a: quality.upscale_bicubic(a, SCALE)),
    ]
    for stem, path in peers.items():
        peer = Peer(path, st.threads)
        _, params, macs = PEERS[stem]
        funcs.append(
            (peer_label(stem), "peer", "OpenCV dnn", params, float(macs), lambda a, peer=peer: peer_upscale(peer, a))
        )
    rows = []
    for name, kind, runtime, params, macs, f in funcs:
        row: dict[str, Any] = {
            "model": name,
            "kind": kind,
            "runtime": runtime,
            "params": params,
            "macs_per_lr_pixel": macs,
            "in_channels": 1,
            "notes": [],
            "tiles": "whole",
        }
        try:
            row["patch"] = timed(lambda f=f: f(inp.patch_raw), b)
            row["image"] = timed(lambda f=f: f(inp.image_lr), b)
            row["roi"] = timed_stream(_roi_frames(f, inp, crop_roi), b)
            for key, n_px in (("patch", PATCH * PATCH), ("image", IMAGE_LR * IMAGE_LR)):
                row[f"gflops_{key}"] = gflops(macs, n_px, row[key]["median_s"])
        except Exception as exc:  # one broken peer must not stop the bench
            log.warning("%s: %s", name, exc)
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def measure_speed(st: Settings, peers: dict[str, Path], cache: Path) -> dict[str, Any]:
    """Every speed table: one per backend (skipped ones say why), reference rows in each."""
    inp = make_speed_inputs()
    subjects = preset_subjects(st.presets, st.seed) if st.presets else []
    jobs: list[tuple[Subject, str]] = []
    skipped: dict[str, str] = {}
    for backend in st.backends:
        why = backend_available(backend, st.device)
        if why:
            skipped[backend] = why
            continue
        for s in subjects:
            if st.quick and s.kind == "teacher" and backend not in QUICK_TEACHER_BACKENDS:
                continue
            jobs.append((s, backend))
    tables: dict[str, dict[str, Any]] = {}
    for backend in st.backends:
        if backend in skipped:
            tables[backend] = {"backend": backend, "title": "", "skipped": skipped[backend], "rows": []}
        else:
            title, gpu = backend_title(backend, st)
            tables[backend] = {"backend": backend, "title": title, "gpu": gpu, "rows": []}
    with bar(len(jobs) + 1, st.progress, "speed") as progress:
        reference = reference_rows(st, inp, peers)
        progress.update(1)
        for s, backend in jobs:
            progress.set_postfix_str(f"{s.name} on {backend}")
            try:
                row = measure_model(s, backend, st, inp, cache)
            except Exception as exc:  # record and go on: one failing conversion must not stop the table
                log.warning("%s on %s failed: %s", s.name, backend, exc)
                row = {
                    "model": s.name,
                    "kind": s.kind,
                    "params": s.params,
                    "macs_per_lr_pixel": s.macs,
                    "in_channels": s.in_channels,
                    "runtime": backend,
                    "notes": [],
                    "error": f"{type(exc).__name__}: {exc}",
                }
            tables[backend]["rows"].append(row)
            progress.update(1)
    for backend, t in tables.items():
        if st.quick and not t.get("skipped"):
            left = [s.name for s in subjects if s.kind == "teacher" and backend not in QUICK_TEACHER_BACKENDS]
            if left:
                t.setdefault("notes", []).append(f"--quick: teachers not run on {backend}")
                if t["rows"]:
                    t["rows"][0].setdefault("notes", []).append(
                        f"--quick: teacher presets ({', '.join(left)}) are timed on torch and ONNX only"
                    )
    return {"input": inp.source, "backends": list(tables.values()), "reference": reference, "peak_source": PEAK_SOURCE}
