"""Exceptions raised by the scopesr runtime.

Every error names the file (when there is one) and says how to fix the problem, so the
CLI can print ``str(err)`` and exit non-zero without a traceback.
"""
from __future__ import annotations


class ScopesrError(Exception):
    """Base class of all scopesr errors: the message is meant for the user."""


class CardError(ScopesrError):
    """A model card is missing, unreadable or has an invalid field."""


class IntegrityError(CardError):
    """An artifact's sha256 does not match the one recorded in its card."""


class ImageError(ScopesrError):
    """An input image cannot be read or cannot be processed (names the file and why)."""


class BackendUnavailable(ScopesrError):
    """The runtime needed for an artifact is not installed or not usable here."""


class ModelIOError(ScopesrError):
    """An image does not fit the model (channel count, size, dtype)."""
