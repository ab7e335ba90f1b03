"""scopesr.trainer: the paper's modified SRGAN, its ablations, the students, and sr-train.

Public API (other parts of the project depend on these names)::

    create_model(name, **overrides)      any preset (teacher ablations and students)
    list_presets()                       PresetInfo: params, MACs per LR pixel, halo
    receptive_field_radius(model_or_name, scale=4)
    macs_per_lr_pixel(model, in_channels=..., scale=4)
    save_generator(...) / load_generator(path)   .safetensors + model card
"""

from __future__ import annotations

from .catalogue import PresetInfo, list_presets
from .checkpoint import load_generator, save_generator
from .errors import CheckpointError, DataError, EvalError, LossError, PresetError, TrainError
from .models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, create_model, preset_config
from .receptive_field import macs_per_lr_pixel, probe_receptive_field_radius, receptive_field_radius

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "PresetInfo",
    "create_model",
    "list_presets",
    "preset_config",
    "macs_per_lr_pixel",
    "probe_receptive_field_radius",
    "receptive_field_radius",
    "save_generator",
    "load_generator",
    "PresetError",
    "EvalError",
    "LossError",
    "CheckpointError",
    "DataError",
    "TrainError",
]
