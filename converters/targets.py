"""Export targets: one class per artifact format, registered by name, all with one signature.

``convert()`` (api.py) resolves the source, makes calibration tiles, then asks the target
registered under the requested name to write the artifact and to run it for the parity
check. A target never sees the CLI or the card file:

* ``export(job) -> Exported``: an :class:`ExportJob` in (the PyTorch module, its source
  card, the path to write, the precision, the fixed input sizes, the int8 calibration
  tiles); the artifact's path and the card fields it decides (layout, tile sizes,
  format-specific ``extra``) out.
* ``runners(path, card, sizes) -> (cases, notes)``: functions NCHW float32 -> NCHW float32
  that run the written artifact, one per parity case, each with its LR input shape; notes
  say why there are none (e.g. Core ML prediction needs macOS).

A new format is a subclass of :class:`ExportTarget` decorated with ``@register_target`` in its
own module, plus its "module:Class" line in ``BUILTIN_TARGETS`` below (or an import of that
module for a plug-in). Target modules import this module only; this module imports them by
name when a target is first looked up, so there is no import circle, and each target keeps
its heavy imports (torch, onnx, litert-torch, coremltools) inside its methods.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from scopesr.sdk import ModelCard

from .errors import ConversionError

#: one LR shape (H, W)
Shape = tuple[int, int]
#: a function that runs an artifact: float32 NCHW in, float32 NCHW out
Runner = Callable[[np.ndarray], np.ndarray]
#: parity cases by name: (LR input shape, runner)
Cases = dict[str, tuple[Shape, Runner]]

#: calibration tiles of dynamic-shape targets (int8): one shape serves every input size
CALIB_DYNAMIC_SHAPE: Shape = (64, 64)
#: parity cases of dynamic-shape targets: one square, one non-square (proves dynamic H and W)
DYNAMIC_PARITY_SIZES: tuple[Shape, ...] = ((64, 64), (48, 80))

#: the built-in targets, in the order the CLI lists them: name -> "module:Class"
BUILTIN_TARGETS = {
    "onnx": "scopesr.converters.onnx_target:OnnxTarget",
    "tflite": "scopesr.converters.tflite_target:TFLiteTarget",
    "coreml": "scopesr.converters.coreml_target:CoreMLTarget",
    "torch": "scopesr.converters.torch_target:TorchTarget",
    "bioimageio": "scopesr.converters.bioimageio_target:BioImageIOTarget",
}


@dataclass
class ExportJob:
    """What one export needs. ``module``: the generator, eval mode, CPU, float32."""

    module: Any
    card: ModelCard  # the source's card: channels, scale, halo, normalisation
    path: Path  # where to write the artifact (convert() passes a temporary name beside the output)
    precision: str = "fp32"
    sizes: list[Shape] | None = None  # fixed LR input sizes (halo included); None: dynamic H, W
    calibration: dict[Shape, list[np.ndarray]] | None = None  # int8: (C, h, w) tiles by input shape

    @property
    def in_channels(self) -> int:
        return self.card.in_channels


@dataclass
class Exported:
    """What an export wrote: the artifact and the card fields the target decides."""

    path: Path
    extra: dict[str, Any] = field(default_factory=dict)  # the card's format-specific ``extra``
    layout: str = "NCHW"  # the artifact's input/output layout
    tile_sizes: list[Shape] | None = None  # the fixed input sizes it holds (None: any H, W)


class ExportTarget(ABC):
    """One artifact format. Subclasses set the class attributes and the two methods."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # of the artifact (a folder for .mlpackage)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    default_precision: ClassVar[str] = "fp32"
    #: does the artifact take fixed input sizes? "never", "always" (TFLite) or "optional"
    #: (Core ML: enumerated sizes when the user gives them, else flexible H and W)
    fixed_sizes: ClassVar[str] = "never"

    def uses_fixed_sizes(self, sizes_given: bool) -> bool:
        return self.fixed_sizes == "always" or (self.fixed_sizes == "optional" and sizes_given)

    def calibration_shapes(self, sizes: list[Shape] | None) -> list[Shape]:
        """The input shapes int8 calibration needs tiles of: each fixed size, else one shape."""
        return list(sizes) if sizes else [CALIB_DYNAMIC_SHAPE]

    @abstractmethod
    def export(self, job: ExportJob) -> Exported:
        """Write ``job.path``; raise ConversionError (naming the fix) when the format cannot."""

    @abstractmethod
    def runners(self, path: Path, card: ModelCard, sizes: list[Shape] | None) -> tuple[Cases, list[str]]:
        """Parity cases that run the written artifact, and notes (why none, what was checked)."""


_REGISTRY: dict[str, type[ExportTarget]] = {}


def register_target(cls: type[ExportTarget]) -> type[ExportTarget]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name or not getattr(cls, "suffix", None):
        raise TypeError(f"{cls.__name__}: an export target needs a name and a suffix")
    if cls.default_precision not in cls.precisions:
        raise TypeError(f"{cls.__name__}: default precision {cls.default_precision!r} not in {cls.precisions}")
    old = _REGISTRY.get(name)
    if old is not None and old is not cls:
        raise TypeError(f"export target {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _load_builtins() -> None:
    for name, target in BUILTIN_TARGETS.items():
        if name not in _REGISTRY:
            module, _, cls = target.partition(":")
            register_target(getattr(importlib.import_module(module), cls))


def target_names() -> list[str]:
    """Every registered target's name, built-in ones first."""
    _load_builtins()
    return list(BUILTIN_TARGETS) + [n for n in _REGISTRY if n not in BUILTIN_TARGETS]


def get_target(name: str) -> ExportTarget:
    """The target registered under ``name``; ConversionError listing the known ones otherwise."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ConversionError(f"unknown target {name!r}; choose one of {', '.join(target_names())}")
    return _REGISTRY[name]()


def dynamic_cases(fn: Runner) -> Cases:
    """The parity cases of a dynamic-shape artifact run by ``fn``."""
    return {f"{h}x{w}": ((h, w), fn) for h, w in DYNAMIC_PARITY_SIZES}
