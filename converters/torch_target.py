"""torch.export: a ``.pt2`` ExportedProgram with dynamic H and W.

The SDK's torch backend loads it with ``torch.export.load`` (no model code needed) and may
cast it to bf16/fp16 or compile it at load time; the artifact itself stays fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import ModelCard

from .errors import ConversionError
from .targets import Cases, Exported, ExportJob, ExportTarget, dynamic_cases, register_target


@register_target
class TorchTarget(ExportTarget):
    name = "torch"
    suffix = ".pt2"

    def export(self, job: ExportJob) -> Exported:
        return Exported(job.path, _export(job.module, job.in_channels, job.path))

    def runners(self, path: Path, card: ModelCard, sizes: list[tuple[int, int]] | None) -> tuple[Cases, list[str]]:
        return dynamic_cases(make_runner(path)), []


def _export(module: Any, in_channels: int, path: Path) -> dict[str, Any]:
    import torch
    from torch.export import Dim

    # batch 2 in the example: a size-1 example would freeze the batch dimension at 1
    x = torch.rand(2, in_channels, 64, 64)
    dyn = ({0: Dim("N", min=1, max=1024), 2: Dim("H", min=4, max=8192), 3: Dim("W", min=4, max=8192)},)
    try:
        ep = torch.export.export(module, (x,), dynamic_shapes=dyn, strict=False)
        torch.export.save(ep, str(path))
    except Exception as exc:
        raise ConversionError(f"torch.export failed for this model: {exc}") from exc
    return {"dynamic_axes": ["N", "H", "W"], "exported_with": "torch.export.export(strict=False)"}


def make_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Reload the saved program (as a user would) and run it."""
    import torch

    mod = torch.export.load(str(path)).module()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return mod(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run
