"""sr-bench's torch pieces: the SDK's fast runner over live trainer modules.

``TorchRunner`` (bf16/fp16 autocast, channels_last, torch.compile, per-shape CUDA graphs,
pinned uploads overlapped with compute) lives in the SDK (``scopesr.sdk.backends.torch_runner``)
so ``.pt2`` artifacts get the same GPU path; it is re-exported here for the bench.
``ModuleBackend`` wraps a live ``nn.Module`` so models straight from the trainer (random or
trained weights) run through the same ``Upscaler`` code path as exported artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scopesr.sdk.backends.torch_runner import RunnerBackend, TorchRunner
from scopesr.sdk.card import ModelCard

__all__ = ["ModuleBackend", "TorchRunner", "card_for_preset"]


class ModuleBackend(RunnerBackend):
    """An SDK ``Backend`` over a live ``nn.Module``, so the SDK's tiler and ``stream`` run it."""

    name = "torch"

    def __init__(self, runner: TorchRunner, card: ModelCard, label: str | None = None) -> None:
        super().__init__(Path(label or f"{card.name}.module"), card)
        self.runner = runner
        self.dynamic = True
        self.default_batch = 8 if runner.device == "cuda" else 4


def card_for_preset(module: Any, name: str, halo: int, normalisation: Any = None) -> ModelCard:
    """A model card for a live preset module (what the SDK needs to tile it)."""
    import dataclasses

    from scopesr.sdk.card import Normalisation

    cfg = getattr(module, "config", None) or getattr(module, "cfg", None)
    args = dataclasses.asdict(cfg) if cfg is not None and dataclasses.is_dataclass(cfg) else {}
    return ModelCard(
        name=name,
        architecture=str(getattr(module, "preset_name", name)),
        scale=int(args.get("scale", 4)),
        in_channels=int(args.get("in_channels", 3)),
        out_channels=int(args.get("out_channels", 3)),
        halo=int(halo),
        format="safetensors",
        arch_args=args,
        normalisation=normalisation or Normalisation(),
    )
