"""Errors raised by the trainer (sr-train, the presets, checkpoints, evaluation).

Each names the file or option involved and says how to fix the problem; all are
``ScopesrError``s, so the CLI prints them and exits non-zero without a traceback.
"""

from __future__ import annotations

from scopesr.sdk import ScopesrError


class PresetError(ScopesrError, ValueError):
    """Unknown preset or invalid architecture arguments (also a ``ValueError``: a bad argument)."""


class DataError(ScopesrError):
    """The training data cannot be found or used (names the folder/file and the fix)."""


class EvalError(DataError):
    """An evaluation cannot run on the images or models given."""


class TrainError(ScopesrError):
    """A training run cannot start or continue (names the file/option and the fix)."""


class LossError(ScopesrError):
    """A loss cannot be set up (e.g. VGG19 weights missing offline)."""


class CheckpointError(ScopesrError):
    """A checkpoint or weights file cannot be read or does not fit the model."""
