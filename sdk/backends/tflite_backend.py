"""TFLite backend: fixed-size ``.tflite`` files with one signature per tile size (``lr{N}``).

The interpreter comes from ai-edge-litert, else tflite-runtime, else tensorflow.lite.
Dynamic resizing is never used: FINDINGS shows a resized converted model can silently
return the conversion-time output size. Each signature's output shape is checked anyway.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..errors import BackendUnavailable, CardError, ScopesrError
from .base import Backend, check_opts, has_module

log = logging.getLogger(__name__)

INSTALL = 'pip install "scopesr[edge]"  (or: pip install ai-edge-litert)'
#: (module, what it is) in order of preference
RUNTIMES = (("ai_edge_litert.interpreter", "ai-edge-litert"),
            ("tflite_runtime.interpreter", "tflite-runtime"),
            ("tensorflow.lite", "tensorflow"))


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
        + "; ".join(errors) + f"). Install one with: {INSTALL}")


class TFLiteBackend(Backend):
    name = "tflite"
    dynamic = False

    def __init__(self, artifact: Path, card: ModelCard, device: str = "auto", **opts: Any) -> None:
        super().__init__(artifact, card)
        check_opts(self.name, opts, ("num_threads",))
        if device == "cuda":
            raise BackendUnavailable(f"{artifact.name}: the TFLite backend runs on the CPU only; use "
                                     "device='cpu' or an ONNX/pt2 artifact for CUDA")
        Interpreter, self.runtime = find_interpreter()
        kw = {"num_threads": int(opts["num_threads"])} if opts.get("num_threads") else {}
        try:
            self.interp = Interpreter(model_path=str(artifact), **kw)
        except Exception as exc:
            raise ScopesrError(f"{artifact}: {self.runtime} cannot load this file ({exc}); "
                               "re-export it with sr-convert --target tflite") from None
        signatures = self.interp.get_signature_list()
        sizes = list(card.tile_sizes or [])
        if not sizes:  # an older card: take the sizes from the lr{N} signature names
            sizes = sorted(int(k[2:]) for k in signatures if k.startswith("lr") and k[2:].isdigit())
        if not sizes:
            raise CardError(f"{artifact}: a TFLite artifact needs fixed tile sizes (card field 'tile_sizes' "
                            f"and signatures named lr<N>); found signatures {sorted(signatures)}")
        self.tile_sizes = tuple(sorted(sizes))
        self.runners: dict[int, Any] = {}
        self.io: dict[int, tuple[str, dict, str, dict]] = {}
        for n in self.tile_sizes:
            key = f"lr{n}"
            if key not in signatures:
                raise CardError(f"{artifact}: the card lists tile size {n} but the file has no signature "
                                f"{key!r} (it has {sorted(signatures)}); fix 'tile_sizes' or re-export")
            runner = self.interp.get_signature_runner(key)
            ins, outs = runner.get_input_details(), runner.get_output_details()
            if len(ins) != 1 or len(outs) != 1:
                raise ScopesrError(f"{artifact}: signature {key} must have one input and one output")
            (iname, idet), = ins.items()
            (oname, odet), = outs.items()
            c = card.in_channels
            want = [1, n, n, c] if self.nhwc else [1, c, n, n]
            if list(idet["shape"]) != want:
                raise ScopesrError(f"{artifact}: signature {key} takes {list(idet['shape'])}, "
                                   f"the card implies {want} (layout {card.layout})")
            self.runners[n] = runner
            self.io[n] = (iname, idet, oname, odet)
        self.num_threads = opts.get("num_threads")

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
        n = x.shape[1] if self.nhwc else x.shape[2]
        runner = self.runners[n]
        iname, idet, oname, odet = self.io[n]
        outs = []
        for i in range(x.shape[0]):  # the signatures have batch 1
            y = runner(**{iname: self._quantise(x[i:i + 1], idet)})[oname]
            outs.append(self._dequantise(np.array(y), odet))  # copy: the runner reuses its buffer
        return np.concatenate(outs, axis=0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(runtime=self.runtime, num_threads=self.num_threads, device="cpu")
        return d
