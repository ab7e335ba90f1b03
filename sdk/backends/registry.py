"""Which backend runs which artifact: a table of names, suffixes and ``"module:Class"`` strings.

The table holds strings, not classes, so nothing here imports a backend: ``open_backend``
imports the one backend module an artifact needs, when it needs it, and that module imports
its runtime (onnxruntime, a TFLite interpreter, torch, coremltools) only when a model is
opened. A missing runtime therefore raises ``BackendUnavailable`` naming the pip package,
and ``import scopesr.sdk`` stays light. Backend modules import ``base`` only, never this
module, so there is no import circle.

A new runtime is one ``register_backend`` call (here for the built-in ones, or from a
plug-in) plus a ``Backend`` subclass whose ``__init__(artifact, card, device=..., **opts)``
opens the file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..card import ModelCard
from ..errors import InputError, ModelError

if TYPE_CHECKING:  # typing only: the registry never imports a backend module by name
    from .base import Backend

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend: its name, the artifact suffixes it runs, where its class lives."""

    name: str
    suffixes: tuple[str, ...]
    target: str  # "package.module:ClassName", imported on first use

    def load_class(self) -> type[Backend]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(name: str, suffixes: tuple[str, ...], target: str, replace: bool = False) -> None:
    """Register backend ``name`` for ``suffixes`` (lower case, with the dot), implemented by
    ``target`` = ``"module:Class"``. A suffix belongs to one backend."""
    if ":" not in target:
        raise InputError(f"backend {name!r}: target must be 'module:Class', got {target!r}")
    if name in _REGISTRY and not replace:
        raise InputError(f"backend {name!r} is already registered (pass replace=True to override)")
    suffixes = tuple(s.lower() for s in suffixes)
    for other in _REGISTRY.values():
        taken = set(suffixes) & set(other.suffixes)
        if other.name != name and taken:
            raise InputError(f"backend {name!r}: suffix(es) {sorted(taken)} already belong to {other.name!r}")
    _REGISTRY[name] = BackendEntry(name, suffixes, target)


register_backend("onnx", (".onnx",), "scopesr.sdk.backends.onnx_backend:OnnxBackend")
register_backend("tflite", (".tflite",), "scopesr.sdk.backends.tflite_backend:TFLiteBackend")
register_backend("torch", (".pt2",), "scopesr.sdk.backends.torch_backend:TorchBackend")
register_backend("coreml", (".mlpackage", ".mlmodel"), "scopesr.sdk.backends.coreml_backend:CoreMLBackend")

#: the built-in backends' names
BACKENDS = tuple(_REGISTRY)


def backend_names() -> tuple[str, ...]:
    """Every registered backend's name (built-in ones first)."""
    return tuple(_REGISTRY)


def backend_for_suffix(artifact: Path) -> str:
    """The name of the backend that runs ``artifact``, from its suffix."""
    suffix = Path(artifact).suffix.lower()
    for entry in _REGISTRY.values():
        if suffix in entry.suffixes:
            return entry.name
    if suffix == ".safetensors":
        raise ModelError(
            f"{artifact}: .safetensors holds training weights, which the runtime does not run. "
            "Export it first (sr-convert --target onnx, or --target torch for a .pt2)."
        )
    raise ModelError(
        f"{artifact}: unknown artifact type {suffix!r}; the runtime runs "
        f"{sorted(s for e in _REGISTRY.values() for s in e.suffixes)}"
    )


def open_backend(
    artifact: str | Path, card: ModelCard, backend: str = "auto", device: str = "auto", **opts: Any
) -> Backend:
    """Open ``artifact`` with the runtime that fits it (``backend="auto"``) or the one named.

    ``device``: auto (CUDA where the runtime and a GPU allow it, else CPU), cpu or cuda.
    ``opts`` go to the backend: ``num_threads`` (all), ``compute_units`` (Core ML), and for
    torch (``.pt2``): ``dtype`` (fp32 | bf16 | fp16, autocast; weights stay fp32),
    ``channels_last``, ``compile`` (bool or a torch.compile backend name), ``cuda_graphs``
    (one CUDA graph per tile-batch shape) and ``pinned`` (default True: page-locked uploads
    overlapped with compute in ``run_many``); CUDA-only switches turn off on a CPU and
    ``describe()`` says why.
    """
    artifact = Path(artifact)
    if device not in DEVICES:
        raise InputError(f"device {device!r} is not one of {DEVICES}")
    kind = backend_for_suffix(artifact)
    names = ("auto",) + backend_names()
    if backend not in names:
        raise InputError(f"backend {backend!r} is not one of {names}")
    if backend != "auto" and backend != kind:
        raise InputError(
            f"{artifact}: the {backend} backend cannot run a {artifact.suffix} file (that needs the {kind} "
            f"backend); convert the model with sr-convert --target {backend}, or use backend='auto'"
        )
    if not artifact.exists():
        raise ModelError(f"{artifact}: artifact not found")
    # a registered class takes (artifact, card, device=..., **opts) (see the module docstring),
    # a wider signature than the abstract Backend.__init__ declares
    backend_class: Callable[..., Backend] = _REGISTRY[kind].load_class()
    return backend_class(artifact, card, device=device, **opts)
