"""TFLite backend: fixed-size ``.tflite`` files, one signature per tile size (``lr{N}``, ``lr{H}x{W}``).

The interpreter comes from ai-edge-litert, else tflite-runtime, else tensorflow.lite.
Dynamic resizing is never used: we measured that a resized converted model can silently
return the conversion-time output size. Each signature's output shape is checked anyway.

Threading (``scopesr.sdk.cpu.thread_policy``): ``num_threads`` goes to the interpreter and so
to its XNNPACK delegate, one per available core unless the caller says otherwise (the
interpreter's own default is one thread). Whether XNNPACK's thread pool spin-waits cannot be
set through the Python interpreter API, so ``spin`` is accepted (one option set for every
backend) but only recorded: ``describe()["spin"]`` is None, and an explicit value is logged
as having no effect.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..errors import BackendUnavailable, CardError, ModelError
from ..tiles import parse_signature, signature_name, tile_label
from .base import Backend, check_opts, has_module, thread_settings

log = logging.getLogger(__name__)

INSTALL = 'pip install "scopesr[edge]"  (or: pip install ai-edge-litert)'
#: (module, what it is) in order of preference
RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


def find_interpreter() -> tuple[Any, str]:
    """The Interpreter class of the first TFLite runtime installed, and its package name."""
    import importlib

    errors = []
    for module, pkg in RUNTIMES:
        if not has_module(module.split(".")[0]):
            errors.append(f"{pkg}: not installed")
            continue
        try:
            mod = importlib.import_module(module)
            return (mod.Interpreter, pkg)
        except Exception as exc:  # a broken install: try the next runtime
            errors.append(f"{pkg}: {exc}")
    raise BackendUnavailable(
        "running .tflite files needs a TFLite runtime and none is usable ("
        + "; ".join(errors)
        + f"). Install one with: {INSTALL}"
    )


class TFLiteBackend(Backend):
    name = "tflite"
    dynamic = False

    def __init__(self, artifact: Path, card: ModelCard, device: str = "auto", **opts: Any) -> None:
        super().__init__(artifact, card)
        check_opts(self.name, opts, ("num_threads", "spin"))
        self.threading = thread_settings(opts)
        if opts.get("spin") is not None:
            log.warning(
                "%s: spin=%s has no effect with TFLite (its XNNPACK thread pool is not configurable from "
                "Python); set num_threads instead",
                artifact.name,
                opts["spin"],
            )
        if device == "cuda":
            raise BackendUnavailable(
                f"{artifact.name}: the TFLite backend runs on the CPU only; use "
                "device='cpu' or an ONNX/pt2 artifact for CUDA"
            )
        Interpreter, self.runtime = find_interpreter()
        try:
            self.interp = Interpreter(model_path=str(artifact), num_threads=self.threading.threads)
        except Exception as exc:
            raise ModelError(
                f"{artifact}: {self.runtime} cannot load this file ({exc}); "
                "re-export it with sr-convert --target tflite"
            ) from None
        signatures = self.interp.get_signature_list()
        # the card's N / [H, W] entries, or (H, W) pairs parsed from the signature names
        sizes: list[int | list[int] | tuple[int, int]] = list(card.tile_sizes or [])
        if not sizes:  # an older card: take the sizes from the lr<N> / lr<H>x<W> signature names
            sizes = [shape for shape in map(parse_signature, signatures) if shape is not None]
        if not sizes:
            raise CardError(
                f"{artifact}: a TFLite artifact needs fixed tile sizes (card field 'tile_sizes' "
                f"and signatures named lr<N> or lr<H>x<W>); found signatures {sorted(signatures)}"
            )
        self.tile_sizes = sizes  # the setter sorts and validates them
        self.runners: dict[tuple[int, int], Any] = {}
        self.io: dict[tuple[int, int], tuple[str, dict, str, dict]] = {}
        for shape in self.tile_shapes:
            key = signature_name(shape)
            if key not in signatures:
                raise CardError(
                    f"{artifact}: the card lists tile size {tile_label(shape)} but the file has no "
                    f"signature {key!r} (it has {sorted(signatures)}); fix 'tile_sizes' or re-export"
                )
            runner = self.interp.get_signature_runner(key)
            ins, outs = runner.get_input_details(), runner.get_output_details()
            if len(ins) != 1 or len(outs) != 1:
                raise ModelError(f"{artifact}: signature {key} must have one input and one output")
            ((iname, idet),) = ins.items()
            ((oname, odet),) = outs.items()
            c, (th, tw) = card.in_channels, shape
            want = [1, th, tw, c] if self.nhwc else [1, c, th, tw]
            if list(idet["shape"]) != want:
                raise ModelError(
                    f"{artifact}: signature {key} takes {list(idet['shape'])}, "
                    f"the card implies {want} (layout {card.layout})"
                )
            self.runners[shape] = runner
            self.io[shape] = (iname, idet, oname, odet)
        self.num_threads = self.threading.threads
        self.spin = None  # not settable in TFLite (see the module docstring)

    @staticmethod
    def _quantise(x: np.ndarray, det: dict) -> np.ndarray:
        if det["dtype"] == np.float32:
            return x
        scale, zero = det["quantization"]  # int8/uint8 I/O of a fully quantised model
        info = np.iinfo(det["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(det["dtype"])

    @staticmethod
    def _dequantise(y: np.ndarray, det: dict) -> np.ndarray:
        if np.issubdtype(y.dtype, np.floating):
            return y.astype(np.float32, copy=False)
        scale, zero = det["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        shape = tuple(x.shape[1:3] if self.nhwc else x.shape[2:4])
        runner = self.runners[shape]
        iname, idet, oname, odet = self.io[shape]
        # the signatures have batch 1. The runner's outputs are fresh arrays (GetTensor copies;
        # checked for ai-edge-litert and tflite-runtime), so no copy of our own: at 640x480 out
        # each extra copy costs ~0.15 ms of a ~4 ms frame
        outs = [
            self._dequantise(runner(**{iname: self._quantise(x[i : i + 1], idet)})[oname], odet)
            for i in range(x.shape[0])
        ]
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            runtime=self.runtime,
            num_threads=self.num_threads,
            spin=self.spin,
            threading=self.threading.reason.split(", spin")[0] + ", spin: the runtime's own (not settable)",
            device="cpu",
        )
        return d
