"""The preset catalogue: every preset with its size, cost and halo (``sr-train presets``).

It needs both the model factory (models.py) and the receptive-field analysis
(receptive_field.py), which itself builds presets by name, so it lives in neither: the
imports run catalogue -> receptive_field -> models, never back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .models import count_params, create_model, model_config, presets
from .receptive_field import macs_per_lr_pixel, receptive_field_radius


@dataclass
class PresetInfo:
    """What ``sr-train presets`` lists."""

    name: str
    kind: str
    description: str
    params: int
    macs_per_lr_pixel: float
    halo: int
    config: Any = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "params": self.params,
            "macs_per_lr_pixel": self.macs_per_lr_pixel,
            "halo": self.halo,
            "config": dataclasses.asdict(self.config),
        }


def list_presets() -> list[PresetInfo]:
    """Name, kind, description, parameters, MACs per LR pixel and halo of every preset."""
    out = []
    for name, p in presets().items():
        m = create_model(name)
        cfg = model_config(m)
        out.append(
            PresetInfo(
                name,
                p.kind,
                p.description,
                count_params(m),
                macs_per_lr_pixel(m, in_channels=getattr(cfg, "in_channels", 3)),
                receptive_field_radius(m),
                cfg,
            )
        )
    return out
