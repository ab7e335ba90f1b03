"""Runtimes behind one interface: onnxruntime, TFLite, torch (.pt2), Core ML (macOS)."""
from .base import BACKENDS, Backend, open_backend

__all__ = ["Backend", "open_backend", "BACKENDS"]
