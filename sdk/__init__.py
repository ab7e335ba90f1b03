"""scopesr.sdk: the torch-free runtime (tiled super-resolution over exported artifacts).

    import scopesr.sdk as sr
    up = sr.load("model.onnx")      # card checked (fields + sha256), runtime picked by suffix
    hr = up.upscale(image)          # seam-free tiles, input dtype and axes kept
"""
from .card import ModelCard, Normalisation
from .errors import (BackendUnavailable, CardError, ImageError, IntegrityError, ModelIOError,
                     ScopesrError)
from .upscaler import StreamFrame, Upscaler, default_model_path, load

__all__ = ["load", "Upscaler", "StreamFrame", "default_model_path", "ModelCard", "Normalisation",
           "ScopesrError", "CardError", "IntegrityError", "ImageError", "BackendUnavailable",
           "ModelIOError"]
