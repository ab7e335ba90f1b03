"""torch backend: ``.pt2`` files (torch.export ExportedProgram, dynamic H/W) on CPU or CUDA.

torch is imported inside functions only, so ``import scopesr.sdk`` works without it.
It runs the exported module through ``TorchRunner`` (torch_runner.py), the GPU fast path.
Options (all optional):

* ``dtype``: fp32 (default) | bf16 | fp16: autocast; the weights stay fp32;
* ``channels_last``: bool, NHWC memory format (tensor-core friendly on CUDA);
* ``compile``: bool, or a torch.compile backend name (default inductor);
* ``cuda_graphs``: bool, one CUDA graph per tile-batch shape (CUDA only);
* ``pinned``: bool (default True), page-locked staging buffers and uploads overlapped with
  compute in ``run_many`` (CUDA only);
* ``num_threads``: torch CPU threads.

CUDA-only switches turn themselves off on a CPU; ``describe()["off"]`` says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..card import ModelCard
from ..errors import ModelError
from .base import check_opts, import_runtime
from .torch_runner import OPTIONS, TORCH_NAMES, RunnerBackend, TorchRunner, parse_dtype

log = logging.getLogger(__name__)

INSTALL = 'pip install "scopesr[train]"  (or: pip install torch)'


class TorchBackend(RunnerBackend):
    name = "torch"

    def __init__(self, artifact: Path, card: ModelCard, device: str = "auto", **opts: Any) -> None:
        super().__init__(artifact, card)
        check_opts(self.name, opts, OPTIONS)
        torch = import_runtime("torch", INSTALL, f"{artifact.name} (torch.export .pt2)")
        self._torch = torch
        dtype = parse_dtype(opts.get("dtype"))  # a bad dtype fails before the file is loaded
        try:
            module = torch.export.load(str(artifact)).module()
        except Exception as exc:
            raise ModelError(
                f"{artifact}: torch.export.load failed ({exc}); re-export it with "
                f"sr-convert --target torch using torch {torch.__version__}"
            ) from None
        self.runner = TorchRunner(
            module,
            device=device,
            dtype=dtype,
            channels_last=bool(opts.get("channels_last", False)),
            compile=opts.get("compile", False) or False,
            cuda_graphs=bool(opts.get("cuda_graphs", False)),
            pinned=bool(opts.get("pinned", True)),
            num_threads=opts.get("num_threads"),
        )
        self.device = self.runner.device
        self.num_threads = opts.get("num_threads")
        self.dynamic = not card.tile_sizes
        self.tile_sizes = card.tile_sizes
        # large tile batches feed a GPU (and fill the overlapped pipeline); small ones suit a CPU
        self.default_batch = 8 if self.device == "cuda" else 4

    @property
    def module(self) -> Any:
        return self.runner.module

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        # the torch name of the compute dtype, as before ("bfloat16"); weights stay float32
        d.update(backend=self.name, dtype=TORCH_NAMES[self.runner.dtype], num_threads=self.num_threads)
        return d
