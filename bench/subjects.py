"""The rows of the speed tables: trainer presets as live modules with random weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scopesr.sdk.errors import ScopesrError

TEACHERS = ("srgan", "srgan-deconv", "srgan-interp", "srgan-nobn", "paper")


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


def randomise(module: Any, seed: int) -> Any:
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
    """Each named preset, built by the trainer with seeded random weights, and its card."""
    from scopesr.trainer import create_model, list_presets

    from .torch_module import card_for_preset

    info = {p.name: p for p in list_presets()}
    out = []
    for n in names:
        if n not in info:
            raise ScopesrError(f"unknown preset {n!r}; known: {', '.join(info)} (see `sr-train presets`)")
        p = info[n]
        m = randomise(create_model(n), seed)
        card = card_for_preset(m, n, p.halo)
        out.append(Subject(n, p.kind, p.params, float(p.macs_per_lr_pixel), p.halo, card.in_channels, m, card))
    return out


def default_presets() -> list[str]:
    """The five teacher ablations, then every student preset."""
    from scopesr.trainer import list_presets

    names = [p.name for p in list_presets()]
    students = [n for n in names if n.startswith("student")]
    return [t for t in TEACHERS if t in names] + students
