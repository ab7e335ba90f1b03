"""Errors raised by sr-convert. Each names the file involved and how to fix the problem."""

from __future__ import annotations

from scopesr.sdk import ScopesrError


class ConversionError(ScopesrError):
    """A model cannot be converted as asked (bad input, bad option, exporter failure)."""


class CalibrationError(ConversionError):
    """The calibration images are missing, empty or unreadable."""


class ParityError(ConversionError):
    """A converted artifact does not reproduce the PyTorch model within tolerance."""
