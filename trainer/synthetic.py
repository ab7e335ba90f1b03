"""Synthetic fluorescence images at known ground truth (training variety, never a headline score).

Real microscopy that pip packages ship is mostly nuclei. A model that has only seen nuclei
has never seen a thin filament, a membrane outline or a diffraction-limited spot, and those
are exactly where super-resolution matters. This module draws such scenes: objects are
painted on a fine grid as fluorophore density, blurred by a small PSF (the HR microscope's
own resolution) and scaled to photon-like intensities with a dim autofluorescent
background. The result is an HR "acquisition" in uint16; the degradation model then makes
its LR twin exactly as it does for real images.

Every image is a function of ``(seed, index)``: the same config gives the same data.
"""

from __future__ import annotations

import math

import numpy as np

from scopesr.sdk.quality import convolve_reflect, gaussian_kernel

__all__ = ["KINDS", "render", "render_set"]

KINDS = ("nuclei", "dense-nuclei", "filaments", "membranes", "puncta", "mixed")


def _nuclei(
    rng: np.random.Generator, h: int, w: int, count: tuple[int, int] = (4, 18), axes: tuple[float, float] = (8, 28)
) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    n = int(rng.integers(*count))
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a, b = rng.uniform(*axes), rng.uniform(*axes)
        th = rng.uniform(0, math.pi)
        c, s = math.cos(th), math.sin(th)
        u, v = c * (xx - cx) + s * (yy - cy), -s * (xx - cx) + c * (yy - cy)
        r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        body = 1.0 / (1.0 + np.exp(np.clip((r - 1.0) * rng.uniform(8, 25), -50, 50)))  # soft edge
        img += body * rng.uniform(0.3, 1.0)
    # chromatin texture: band-limited noise inside the nuclei, a few bright nucleoli
    tex = convolve_reflect(rng.standard_normal((h, w)), gaussian_kernel(rng.uniform(1.0, 2.5)))
    tex /= tex.std() + 1e-12
    img *= np.clip(1.0 + 0.25 * tex, 0.2, None)
    return img


def _curve(rng: np.random.Generator, h: int, w: int, n_pts: int) -> np.ndarray:
    """A smooth random walk (persistent direction), as (n, 2) points."""
    p = np.array([rng.uniform(0, h), rng.uniform(0, w)])
    ang = rng.uniform(0, 2 * math.pi)
    pts = []
    for _ in range(n_pts):
        ang += rng.normal(0, 0.08)
        p = p + 0.7 * np.array([math.sin(ang), math.cos(ang)])
        pts.append(p.copy())
    return np.asarray(pts)


def _splat(img: np.ndarray, pts: np.ndarray, value: float) -> None:
    """Bilinear deposit of points (sub-pixel positions) into ``img``."""
    h, w = img.shape
    y, x = pts[:, 0], pts[:, 1]
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (1, 0, fy * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        np.add.at(img, (yy[ok], xx[ok]), value * wt[ok])


def _filaments(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w))
    for _ in range(int(rng.integers(10, 60))):
        _splat(img, _curve(rng, h, w, int(rng.integers(80, 500))), rng.uniform(0.3, 1.0))
    return img


def _membranes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Cell outlines: the borders of a Voronoi tessellation with wobbly seeds."""
    n = int(rng.integers(6, 25))
    seeds = np.stack([rng.uniform(0, h, n), rng.uniform(0, w, n)], axis=1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    warp = convolve_reflect(rng.standard_normal((h, w)), gaussian_kernel(6.0))
    warp *= 40.0 / (np.abs(warp).max() + 1e-12)
    d = np.stack([np.hypot(yy - sy + warp, xx - sx - warp) for sy, sx in seeds])
    d.sort(axis=0)
    edge = np.exp(-((d[1] - d[0]) ** 2) / (2 * rng.uniform(0.5, 1.5) ** 2))
    return edge * rng.uniform(0.5, 1.0)


def _puncta(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w))
    k = int(rng.integers(40, 400))
    pts = np.stack([rng.uniform(0, h, k), rng.uniform(0, w, k)], axis=1)
    for p, v in zip(pts, rng.uniform(0.2, 1.0, k)):
        _splat(img, p[None], v * 4.0)
    return img


def _dense_nuclei(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A crowded field of small nuclei (semi-axes 3-8 HR px, 1-2 LR px at x4, 60-160 per 256^2),
    as a low-magnification widefield view of a cell culture: the content on which a camera with
    large pixels aliases most."""
    return _nuclei(rng, h, w, count=(60, 160), axes=(3, 8))


_PAINTERS = {
    "nuclei": _nuclei,
    "dense-nuclei": _dense_nuclei,
    "filaments": _filaments,
    "membranes": _membranes,
    "puncta": _puncta,
}
#: what "mixed" combines (fixed: a recipe's mixed images must not change when a kind is added)
_MIXED = ("nuclei", "filaments", "membranes", "puncta")


def render(kind: str, seed: int, index: int, size: int = 256) -> np.ndarray:
    """One synthetic HR fluorescence image, uint16, ``size`` x ``size``."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; known: {KINDS}")
    rng = np.random.default_rng([seed, index, 1013])
    if kind == "mixed":
        parts = rng.choice(list(_MIXED), size=int(rng.integers(2, 4)), replace=False)
        dens = sum(_PAINTERS[str(p)](rng, size, size) * rng.uniform(0.4, 1.0) for p in parts)
    else:
        dens = _PAINTERS[kind](rng, size, size)
    # the HR microscope's own PSF: 1.5-3 HR pixels, as real acquisitions are sampled at or
    # above Nyquist (sharper synthetic targets teach the model to invent edges real HR lacks)
    img = convolve_reflect(dens, gaussian_kernel(rng.uniform(1.5, 3.0)))
    img /= np.percentile(img, 99.9) + 1e-12
    bg = rng.uniform(0.01, 0.08) * (
        1.0 + 0.5 * convolve_reflect(rng.standard_normal((size, size)), gaussian_kernel(20.0)) * 20.0
    )
    photons = 2000.0 * (np.clip(img, 0, None) + np.clip(bg, 0, None))
    # a well-exposed HR acquisition: mild shot noise, like the real HR references
    counts = rng.poisson(photons).astype(np.float64)
    return np.clip(100.0 + counts, 0, 65535).astype(np.uint16)


def render_set(kind: str, count: int, seed: int = 0, size: int = 256) -> np.ndarray:
    """``count`` images of ``kind`` as a (count, size, size) uint16 stack."""
    return np.stack([render(kind, seed, i, size) for i in range(count)])
