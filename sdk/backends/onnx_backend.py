"""ONNX Runtime backend: dynamic-shape ``.onnx`` files, CPU, or CUDA where the GPU build is installed.

Threading (``scopesr.sdk.cpu.thread_policy``): ``intra_op_num_threads`` is one per available
core unless ``num_threads`` says otherwise, and the session config entries
``session.intra_op.allow_spinning`` and ``session.inter_op.allow_spinning`` are "0" on
machines of at most 4 available cores (``spin=True`` / ``False`` overrides). ONNX Runtime's
own default spins, which on a small machine with a busy core doubled the time per tile.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..errors import BackendUnavailable, ModelError
from .base import Backend, check_opts, import_runtime, thread_settings

log = logging.getLogger(__name__)

INSTALL = 'pip install "scopesr[edge]"  (or: pip install onnxruntime; onnxruntime-gpu for CUDA)'


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, artifact: Path, card: ModelCard, device: str = "auto", **opts: Any) -> None:
        super().__init__(artifact, card)
        check_opts(self.name, opts, ("num_threads", "spin", "providers"))
        self.threading = thread_settings(opts)  # checks the values before the runtime is imported
        ort = import_runtime("onnxruntime", INSTALL, f"{artifact.name} (ONNX)")
        available = ort.get_available_providers()
        if opts.get("providers"):
            providers = list(opts["providers"])
        elif device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise BackendUnavailable(
                    f"{artifact.name}: device='cuda' but this onnxruntime has no CUDAExecutionProvider "
                    f"(it has {available}). Install onnxruntime-gpu, or use device='cpu'."
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "auto" and "CUDAExecutionProvider" in available:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threading.threads
        spin = "1" if self.threading.spin else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        # the inter-op pool runs only in parallel execution mode; set alike so that mode cannot spin either
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        so.log_severity_level = 3  # keep ORT's warnings out of the user's terminal
        try:
            self.session = ort.InferenceSession(str(artifact), sess_options=so, providers=providers)
            self.session_options = so  # what the session was opened with (threads, spinning)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(
                f"{artifact}: ONNX Runtime cannot load this file ({exc}). Re-export it with sr-convert --target onnx."
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(f"{artifact}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self.input_name = inputs[0].name
        # an fp16 export without float32 I/O takes float16: cast at the edge rather than fail
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        shape = inputs[0].shape
        self._check_channels(artifact, card, shape, outputs[0].shape)
        # symbolic (str/None) spatial dims mean any size; integers mean a fixed-size export
        spatial = shape[1:3] if self.nhwc else shape[2:4]
        fixed = [d for d in spatial if isinstance(d, int)]
        if len(fixed) == 2:
            self.dynamic = False
            self.tile_sizes = card.tile_sizes or [(fixed[0], fixed[1])]
        elif card.tile_sizes:
            self.dynamic = False
            self.tile_sizes = card.tile_sizes
        else:
            self.dynamic = True
        # a fixed batch dimension (e.g. an export traced with batch 1): feed it that many at a time
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] >= 1 else None
        self.providers = self.session.get_providers()
        self.num_threads = self.threading.threads
        self.spin = self.threading.spin
        self.default_batch = 8 if "CUDAExecutionProvider" in self.providers else 4
        if self.fixed_batch == 1:
            self.default_batch = 1

    def _check_channels(self, artifact: Path, card: ModelCard, ishape: Any, oshape: Any) -> None:
        """The card's channels and layout against the file's input/output shapes, at load: a
        mismatch would otherwise surface as the runtime's INVALID_ARGUMENT on the first tile."""
        for what, shp, want in (("input", ishape, card.in_channels), ("output", oshape, card.out_channels)):
            if not isinstance(shp, (list, tuple)) or len(shp) != 4:
                raise ModelError(
                    f"{artifact}: the model's {what} has shape {shp}, not a 4-D image batch; "
                    "is this a scopesr super-resolution export?"
                )
            c, other = (shp[3], shp[1]) if self.nhwc else (shp[1], shp[3])
            if isinstance(c, int) and c == want:
                continue
            if isinstance(c, int) or isinstance(other, int):
                # a fixed size where the card's layout puts the channels, or a free size there and
                # a fixed one where the other layout would: the card's channels or layout are wrong
                found = (
                    f"{c} channel(s) in layout {card.layout}"
                    if isinstance(c, int)
                    else f"a free size where layout {card.layout} has the channels and {other} where "
                    f"{'NCHW' if self.nhwc else 'NHWC'} has them"
                )
                raise ModelError(
                    f"{artifact}: the model's {what} has {found}, but its card says {want} channel(s), "
                    f"layout {card.layout}; the card does not describe this file. Re-export it with "
                    "sr-convert (which writes a matching card)."
                )

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._run_session(x)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types (INVALID_ARGUMENT, ...)
            raise ModelError(
                f"{self.artifact}: ONNX Runtime failed on a {tuple(x.shape)} input ({exc}); the "
                "file does not behave as its card says. Re-export it with sr-convert."
            ) from None

    def _run_session(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(self.input_dtype, copy=False)
        fb = self.fixed_batch
        if fb is None or x.shape[0] == fb:
            return self.session.run(None, {self.input_name: x})[0]
        if fb != 1:
            raise ModelError(
                f"{self.artifact.name}: exported with a fixed batch of {fb}; re-export it "
                "with a dynamic batch dimension (sr-convert does)"
            )
        return np.concatenate(
            [self.session.run(None, {self.input_name: x[i : i + 1]})[0] for i in range(x.shape[0])], axis=0
        )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            providers=list(self.providers),
            num_threads=self.num_threads,
            spin=self.spin,
            threading=self.threading.reason,
            device="cuda" if "CUDAExecutionProvider" in self.providers else "cpu",
        )
        return d
