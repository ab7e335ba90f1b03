"""Artefact analysis: the period-2 ("checkerboard") energy of an image.

The paper's central claim is that transposed-convolution upsampling (kernel not divisible
by the stride) paints a periodic checkerboard, and nearest x2 + conv does not. A
checkerboard of period 2 shows up as different means in the four 2x2 polyphase
components of the image (even/odd rows x even/odd columns). :func:`period2_energy`
measures the power of that periodic pattern relative to the image's total power, so it
is 0 for any image without a period-2 pattern (constant, smooth) and grows with the
checkerboard's amplitude. Works on numpy arrays and torch tensors (no torch import here).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _to_numpy(img: Any) -> np.ndarray:
    if hasattr(img, "detach"):  # torch tensor, without importing torch
        img = img.detach().float().cpu().numpy()
    return np.asarray(img, dtype=np.float64)


def _highpass(p: np.ndarray) -> np.ndarray:
    """``p`` minus its [1,2,1]x[1,2,1]/16 blur ('valid' region, trimmed to even size).

    The blur keeps linear and bilinear ramps exactly and removes the period-2 (Nyquist)
    components entirely, so the residual holds the whole checkerboard and none of a smooth
    gradient (whose polyphase means would otherwise differ by the slope).
    """
    k = np.array([1.0, 2.0, 1.0]) / 4.0
    rows = k[0] * p[:-2] + k[1] * p[1:-1] + k[2] * p[2:]
    blur = k[0] * rows[:, :-2] + k[1] * rows[:, 1:-1] + k[2] * rows[:, 2:]
    hp = p[1:-1, 1:-1] - blur
    # start on an even pixel so that phase (0, 0) stays the image's (0, 0) phase
    hp = hp[1:, 1:]
    return hp[: hp.shape[0] // 2 * 2, : hp.shape[1] // 2 * 2]


def period2_energy(img: Any, border: int = 0) -> float:
    """Fraction of an image's energy carried by period-2 patterns (0 = none).

    ``img``: (H, W), (C, H, W) or (N, C, H, W), numpy or torch. ``border`` pixels are cut
    from each side first (zero-padding makes borders differ from the interior, and we
    want the interior's pattern). For each 2-D plane the four polyphase means
    ``m[i, j] = mean(img[i::2, j::2])`` are compared with their average; the energy of the
    deviations (the pattern's mean square) is divided by the plane's mean square. Planes
    are averaged.
    """
    a = _to_numpy(img)
    if a.ndim < 2:
        raise ValueError(f"period2_energy needs an image of at least 2 dimensions, got shape {a.shape}")
    planes = a.reshape(-1, a.shape[-2], a.shape[-1])
    if border:
        planes = planes[:, border:-border, border:-border]
    h, w = planes.shape[-2] // 2 * 2, planes.shape[-1] // 2 * 2
    if h < 6 or w < 6:
        raise ValueError(f"image too small for a period-2 analysis after cropping: {planes.shape[-2:]}")
    planes = planes[:, :h, :w]
    out = []
    for p in planes:
        hp = _highpass(p)
        m = np.array([[hp[i::2, j::2].mean() for j in (0, 1)] for i in (0, 1)])
        pattern = float(((m - m.mean()) ** 2).mean())
        total = float((p**2).mean())
        out.append(pattern / total if total > 0 else 0.0)
    return float(np.mean(out))
