"""Self-ensemble: the model averaged over flips and 90-degree rotations of the image.

A network trained on randomly flipped and rotated crops gives slightly different answers for a
flipped copy of the same image; its errors (sharpened noise, aliasing read as detail) differ more
between the copies than the structure it recovers does, so the mean of the copies, each turned
back, is closer to the truth. It costs one model run per copy, so it is for files and stacks,
not for live frames. Normalisation statistics are percentiles of the whole plane, which flips and
rotations do not change, and the border rule (reflection) is symmetric, so every copy is
computed exactly as the plain image would be.

Copies are taken in this order: the image, mirrored left-right, mirrored top-bottom, turned by
180 degrees, then the same four transposed; ``n`` uses the first ``n``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["ENSEMBLE_SIZES", "check_ensemble", "forward", "inverse", "transforms"]

ENSEMBLE_SIZES = (1, 2, 4, 8)
_FLIP_X, _FLIP_Y, _TRANSPOSE = 1, 2, 4  # bits of a transform's number


def check_ensemble(n: object) -> int:
    """``n`` as an int in ENSEMBLE_SIZES, or an InputError that lists them."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in ENSEMBLE_SIZES:
        raise InputError(
            f"ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))} "
            f"(copies of the image averaged: flips, then transposes), got {n!r}"
        )
    return int(n)


def transforms(n: int) -> list[int]:
    """The first ``n`` of the 8 flips/transposes (0 = the image itself)."""
    return list(range(check_ensemble(n)))


def forward(a: np.ndarray, t: int) -> np.ndarray:
    """Transform ``t`` of a (H, W, ...) array (a view)."""
    if t & _TRANSPOSE:
        a = a.swapaxes(0, 1)
    if t & _FLIP_X:
        a = a[:, ::-1]
    if t & _FLIP_Y:
        a = a[::-1]
    return a


def inverse(a: np.ndarray, t: int) -> np.ndarray:
    """Undo ``forward(., t)`` on a (H, W, ...) array (a view); works on the upscaled output too."""
    if t & _FLIP_Y:
        a = a[::-1]
    if t & _FLIP_X:
        a = a[:, ::-1]
    if t & _TRANSPOSE:
        a = a.swapaxes(0, 1)
    return a
