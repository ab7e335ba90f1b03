"""Runtimes behind one interface: onnxruntime, TFLite, torch (.pt2), Core ML (macOS).

``open_backend(artifact, card)`` picks the backend registered for the artifact's suffix
(``registry.py``); each backend module and its runtime are imported only then.
``TorchRunner`` / ``RunnerBackend`` run an in-memory ``nn.Module`` the way the torch
backend runs a ``.pt2`` (torch is imported when one is made, not here).
"""

from .base import Backend, has_module
from .registry import BACKENDS, backend_for_suffix, backend_names, open_backend, register_backend
from .torch_runner import RunnerBackend, TorchRunner

__all__ = [
    "Backend",
    "open_backend",
    "BACKENDS",
    "backend_names",
    "backend_for_suffix",
    "register_backend",
    "has_module",
    "TorchRunner",
    "RunnerBackend",
]
