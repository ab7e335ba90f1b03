"""torch backend: ``.pt2`` files (torch.export ExportedProgram, dynamic H/W) on CPU or CUDA.

torch is imported inside functions only, so ``import scopesr.sdk`` works without it.
Options: ``dtype`` = fp32 (default) | bf16 | fp16, ``channels_last`` = bool, ``num_threads``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..errors import BackendUnavailable, ScopesrError
from .base import Backend, check_opts, import_runtime

log = logging.getLogger(__name__)

INSTALL = 'pip install "scopesr[train]"  (or: pip install torch)'
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, artifact: Path, card: ModelCard, device: str = "auto", **opts: Any) -> None:
        super().__init__(artifact, card)
        check_opts(self.name, opts, ("dtype", "channels_last", "num_threads"))
        torch = import_runtime("torch", INSTALL, f"{artifact.name} (torch.export .pt2)")
        self._torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"{artifact.name}: device='cuda' but torch sees no CUDA GPU; "
                                     "use device='cpu' or install a CUDA build of torch")
        self.device = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        dtype = str(opts.get("dtype") or "fp32")
        if dtype not in DTYPES:
            raise ScopesrError(f"torch backend: dtype {dtype!r} is not one of fp32, bf16, fp16")
        if DTYPES[dtype] == "float16" and self.device == "cpu":
            log.warning("fp16 on the CPU is slow and may be unsupported for some ops; bf16 is the CPU choice")
        self.dtype = getattr(torch, DTYPES[dtype])
        self.channels_last = bool(opts.get("channels_last", False))
        if opts.get("num_threads"):
            torch.set_num_threads(int(opts["num_threads"]))
        self.num_threads = opts.get("num_threads")
        try:
            ep = torch.export.load(str(artifact))
            self.module = ep.module()
        except Exception as exc:
            raise ScopesrError(f"{artifact}: torch.export.load failed ({exc}); re-export it with "
                               f"sr-convert --target pt2 using torch {torch.__version__}") from None
        self.module = self.module.to(self.device)
        if self.dtype != torch.float32:
            self.module = self.module.to(self.dtype)
        self.dynamic = not card.tile_sizes
        self.tile_sizes = tuple(card.tile_sizes or ())
        self.default_batch = 8 if self.device == "cuda" else 4

    def _run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        t = torch.from_numpy(x).to(self.device, self.dtype)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.module(t)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(device=self.device, dtype=str(self.dtype).replace("torch.", ""),
                 channels_last=self.channels_last, num_threads=self.num_threads,
                 torch=self._torch.__version__)
        return d
