"""Noise level of an image plane: how much of a reference no model can predict, and the
conditioning input of noise-aware models.

:func:`mean_noise_variance` estimates the noise a sharp reference image itself carries; the
quality evaluation turns it into each image's PSNR ceiling (no upscaler can predict the
reference's own noise, so none can score above it).

A blind model cannot tell fine texture from shot noise, so it hedges: it smooths clean images
and sharpens noisy ones less than it could. A noise-aware model (card ``conditioning``) gets
one extra input channel holding the plane's estimated noise level, the same value at every
pixel, computed here once per plane by the SDK and the same way by the trainer on each crop.

Estimator: the finest diagonal Haar detail of 2x2 blocks, ``(a - b - c + d) / 2``, has the
noise's standard deviation for white noise and almost no energy from smooth content; its
median absolute value / 0.6745 is a robust sigma. Shot noise grows with the signal, so the
blocks are taken from the brighter half of the plane (block mean at or above the median):
the sigma is that of the structures the user looks at, not of the dark background.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NOISE_CHECK_SIZE",
    "NOISE_MAP_GAIN",
    "estimate_noise_sigma",
    "mean_noise_variance",
    "noise_fraction",
    "NOISE_MAP_FEATURES",
    "fine_to_coarse",
    "block_means",
    "noise_map_value",
    "noise_map_values",
]

#: sigma (in normalised units, where the plane's dark..bright levels span about 0..1) is
#: multiplied by this before it is fed to the network, so the channel is of order 0.1..1
NOISE_MAP_GAIN = 10.0

#: the conditioning channels a noise-aware model can take, in this order (a model with
#: ``cond_channels`` = n takes the first n): the noise sigma x NOISE_MAP_GAIN, and
#: :func:`fine_to_coarse`, which tells white noise and aliasing from smooth content
NOISE_MAP_FEATURES = ("sigma", "fine_to_coarse")

#: fine_to_coarse is clipped to this (white noise gives 2)
FINE_TO_COARSE_MAX = 4.0

#: LR pixels: noise_fraction looks at a central window at most this big (bounded time and
#: memory on a huge, memory-mapped plane)
NOISE_CHECK_SIZE = 1024

#: median |N(0, 1)| : converts a median absolute deviation into a standard deviation
_MAD_TO_SIGMA = 0.6744897501960817


def estimate_noise_sigma(plane: np.ndarray) -> float:
    """Robust noise standard deviation of a 2-D plane, in the plane's own units.

    Planes smaller than 2x2 give 0.0. Non-finite values are ignored.
    """
    detail, mean = _haar_blocks(plane, "estimate_noise_sigma")
    if detail.size == 0:
        return 0.0
    bright = detail[mean >= np.median(mean)]
    return float(np.median(bright if bright.size else detail) / _MAD_TO_SIGMA)


def noise_fraction(plane: np.ndarray, span: float, window: int = NOISE_CHECK_SIZE) -> float:
    """Estimated noise of a 2-D plane as a fraction of ``span`` (the raw range its normalisation
    maps to 0..1), from its central ``window`` x ``window`` pixels at most. What the SDK compares
    with a card's ``warn_noise_above`` (the low-noise model's check on its input)."""
    h, w = plane.shape[:2]
    cy, cx = max(0, (h - window) // 2), max(0, (w - window) // 2)
    return estimate_noise_sigma(plane[cy : cy + window, cx : cx + window]) / float(span)


def _haar_blocks(plane: np.ndarray, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """|finest diagonal Haar detail| and mean of each 2x2 block of a 2-D plane, finite ones only
    (none for a plane smaller than 2x2); ``caller`` names the function in the shape error."""
    x = np.asarray(plane, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{caller} takes a 2-D plane, got shape {x.shape}")
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    a, b = x[0:h:2, 0:w:2], x[0:h:2, 1:w:2]
    c, d = x[1:h:2, 0:w:2], x[1:h:2, 1:w:2]
    detail = np.abs(a - b - c + d).ravel() * 0.5
    mean = ((a + b + c + d) * 0.25).ravel()
    ok = np.isfinite(detail) & np.isfinite(mean)
    return (detail, mean) if ok.all() else (detail[ok], mean[ok])


def mean_noise_variance(plane: np.ndarray, bins: int = 8) -> float:
    """Noise variance averaged over all pixels of a 2-D plane (its own units squared).

    Shot noise varies with brightness, so one median would describe one brightness only: the
    blocks are split into ``bins`` groups of equal count by block mean, each group gets its own
    robust sigma (median |detail| / 0.6745), and the variances are averaged. This is the mean
    squared error a perfect, noise-free prediction would still score against this plane.
    """
    detail, mean = _haar_blocks(plane, "mean_noise_variance")
    if detail.size == 0:
        return 0.0
    order = np.argsort(mean, kind="stable")
    groups = np.array_split(detail[order], max(1, min(bins, detail.size)))
    return float(np.mean([(np.median(g) / _MAD_TO_SIGMA) ** 2 for g in groups if g.size]))


def block_means(plane: np.ndarray) -> np.ndarray:
    """The means of a 2-D plane's 2x2 blocks (float64; an odd last row or column is dropped):
    the plane one scale coarser."""
    x = np.asarray(plane, dtype=np.float64)
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return (x[0:h:2, 0:w:2] + x[0:h:2, 1:w:2] + x[1:h:2, 0:w:2] + x[1:h:2, 1:w:2]) * 0.25


def fine_to_coarse(plane: np.ndarray) -> float:
    """Robust sigma of the finest diagonal Haar detail over that of the next scale (the same
    estimate on the plane's 2x2 block means), over the brighter half of the blocks each time.

    White noise gives 2 (block means halve its sigma); smooth content 1/4 (the diagonal detail
    is a mixed second derivative, 4x larger at twice the scale) or 0 where it is flat over the
    blocks; aliased sampling and noise on top of structure in between; clipped to [0, FINE_TO_COARSE_MAX].
    Unlike the sigma alone it does not depend on the plane's contrast, so it tells a textured
    clean image from a noisy one where the sigma cannot.
    """
    x = np.asarray(plane, dtype=np.float64)
    if x.shape[0] < 4 or x.shape[1] < 4:
        return 0.0
    fine = estimate_noise_sigma(x)
    coarse = estimate_noise_sigma(block_means(x))
    if coarse <= 0.0:
        return 0.0 if fine <= 0.0 else FINE_TO_COARSE_MAX
    return float(min(fine / coarse, FINE_TO_COARSE_MAX))


def noise_map_values(normalised_plane: np.ndarray, channels: int = 1) -> list[float]:
    """The conditioning channels' values for one normalised plane: the first ``channels`` of
    NOISE_MAP_FEATURES (the SDK fills each channel with its value; the trainer does the same per crop)."""
    if not 1 <= channels <= len(NOISE_MAP_FEATURES):
        raise ValueError(f"a noise map has 1 to {len(NOISE_MAP_FEATURES)} channels, got {channels}")
    values = [estimate_noise_sigma(normalised_plane) * NOISE_MAP_GAIN]
    if channels > 1:
        values.append(fine_to_coarse(normalised_plane))
    return values


def noise_map_value(normalised_plane: np.ndarray) -> float:
    """The value of the first conditioning channel for one normalised plane (sigma x gain)."""
    return noise_map_values(normalised_plane, 1)[0]
