"""The runtimes sr-bench times a preset on: torch (CPU/CUDA), ONNX Runtime, TFLite fp32/int8.

Torch runs the live module through the SDK's ``TorchRunner``; ONNX and TFLite run artifacts
made by ``scopesr.converters`` (cached by preset, seed and target). Every path ends in an SDK
``Upscaler``, so the tiler and ``stream`` are the ones users get.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .inputs import IMAGE_LR, PATCH
from .machine import package_version
from .settings import Settings
from .subjects import Subject

log = logging.getLogger(__name__)

#: "torch" follows --device (CUDA when there is one); torch-cpu / torch-cuda pin the device
BACKENDS = ("torch", "torch-cpu", "torch-cuda", "onnx", "tflite-fp32", "tflite-int8")
DEFAULT_BACKENDS = ("torch-cpu", "torch-cuda", "onnx", "tflite-fp32", "tflite-int8")
QUICK_TEACHER_BACKENDS = ("torch", "torch-cpu", "torch-cuda", "onnx")  # teachers to TFLite: minutes each


def torch_opts(st: Settings, backend: str = "torch") -> dict[str, Any]:
    """TorchRunner options for ``backend`` under the run's settings (GPU defaults on CUDA)."""
    import torch

    device = {"torch-cpu": "cpu", "torch-cuda": "cuda"}.get(backend, st.device)
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    dtype = st.torch_dtype if st.torch_dtype != "auto" else ("bf16" if cuda else "fp32")
    return {
        "device": "cuda" if cuda else "cpu",
        "dtype": dtype,
        "channels_last": cuda if st.channels_last is None else st.channels_last,
        "compile": st.compile,
        "cuda_graphs": cuda if st.cuda_graphs is None else st.cuda_graphs,
        "num_threads": st.threads,
    }


def tflite_sizes(halo: int) -> list[int]:
    """TFLite signatures: 64 (the patch/ROI size) and 128 (one whole 512x512-output image),
    keeping only sizes that leave a centre with this halo (size > 2*halo)."""
    sizes = [t for t in (PATCH, IMAGE_LR) if t > 2 * halo]
    return sizes or [int(-(-(4 * halo + 32) // 32) * 32)]


def artifact(subject: Subject, backend: str, cache: Path, seed: int) -> Path:
    """Convert a preset for ``backend`` (cached by name, seed and target in ``cache``)."""
    from scopesr.converters.api import convert
    from scopesr.sdk.card import card_path_for

    target, precision = ("onnx", "fp32") if backend == "onnx" else ("tflite", backend.split("-")[1])
    suffix = ".onnx" if target == "onnx" else ".tflite"
    path = cache / f"{subject.name}-s{seed}-{target}-{precision}{suffix}"
    if path.exists() and card_path_for(path).exists():
        return path
    sizes = tflite_sizes(subject.halo) if target == "tflite" else None
    t0 = time.perf_counter()
    convert(subject.module, target, out=path, precision=precision, tile_sizes=sizes, card=subject.card, verify=False)
    log.info("converted %s to %s %s in %.1f s", subject.name, target, precision, time.perf_counter() - t0)
    return path


def open_upscaler(subject: Subject, backend: str, st: Settings, cache: Path) -> Any:
    """An SDK ``Upscaler`` running ``subject`` on ``backend``."""
    from scopesr.sdk import load
    from scopesr.sdk.upscaler import Upscaler

    if backend.startswith("torch"):
        from scopesr.sdk.backends.torch_runner import TorchRunner

        from .torch_module import ModuleBackend

        o = torch_opts(st, backend)
        runner = TorchRunner(
            subject.module,
            device=o["device"],
            dtype=o["dtype"],
            channels_last=o["channels_last"],
            compile=o["compile"],
            cuda_graphs=o["cuda_graphs"],
            num_threads=o["num_threads"],
        )
        return Upscaler(subject.card, ModuleBackend(runner, subject.card))
    path = artifact(subject, backend, cache, st.seed)
    kind = "onnx" if backend == "onnx" else "tflite"
    dev = "cpu" if st.device == "cpu" else "auto"
    return load(path, backend=kind, device=dev, num_threads=st.threads)


def backend_title(backend: str, st: Settings) -> tuple[str, bool]:
    """A one-line description of a backend table, and whether it runs on a GPU."""
    if backend.startswith("torch"):
        o = torch_opts(st, backend)
        import torch

        flags = [o["dtype"] if o["dtype"] == "fp32" else f"{o['dtype']} autocast"]
        flags += [
            f
            for f, on in (
                ("channels_last", o["channels_last"]),
                ("torch.compile", o["compile"]),
                ("CUDA graphs", o["cuda_graphs"] and o["device"] == "cuda"),
            )
            if on
        ]
        return f"PyTorch {torch.__version__} on {o['device']}, {', '.join(flags)}, {st.threads} threads", o[
            "device"
        ] == "cuda"
    if backend == "onnx":
        import onnxruntime as ort

        gpu = st.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers()
        return f"ONNX Runtime {ort.__version__} ({'CUDA' if gpu else 'CPU'} EP), fp32, {st.threads} threads", gpu
    p = backend.split("-")[1]
    v = package_version("ai-edge-litert") or "?"
    what = "static int8 weights and activations, float I/O" if p == "int8" else "fp32"
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
