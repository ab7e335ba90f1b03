"""scopesr.sdk: the torch-free runtime (tiled super-resolution over exported artifacts)."""
from .card import ModelCard, Normalisation
from .errors import (BackendUnavailable, CardError, ImageError, IntegrityError, ModelIOError,
                     ScopesrError)

__all__ = ["ModelCard", "Normalisation", "ScopesrError", "CardError", "IntegrityError",
           "ImageError", "BackendUnavailable", "ModelIOError"]
