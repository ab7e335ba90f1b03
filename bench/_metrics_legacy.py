"""sr-bench's image-quality numbers: PSNR, SSIM, the two LR degradations, the reference upscalers.

Kept apart in this one module so that the bench can switch to the SDK's shared quality module
in one place; nothing else in the bench computes a metric or resamples an image. Plain
numpy/Pillow (no torch), checked against scikit-image and OpenCV in the tests.

Quality convention (stated in every report, see ``QUALITY_CONVENTION``):

* HR is the real image (centre crop, both sides a multiple of the scale); LR is made from
  it by a named degradation (``pil-bicubic``: PIL's anti-aliased bicubic, as the paper makes
  its LR; ``cubic-noaa``: a cubic kernel sampled without anti-aliasing, as OpenCV's
  ``resize(INTER_CUBIC)`` does and as the OpenCV peers were trained on) and stored in the
  image's own dtype (rounded), as a microscope would deliver it.
* Metrics run on HR mapped to 0..1 by its own min..max, the SR result mapped by the same
  affine map and clipped to 0..1; ``data_range = 1``.
* Channels: PSNR from one MSE over every pixel and channel; SSIM is the mean of the
  per-channel SSIMs (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03,
  population covariance), i.e. ``skimage.metrics`` with ``channel_axis=-1,
  gaussian_weights=True, use_sample_covariance=False, data_range=1``.
* Border: ``scale`` HR pixels cropped on each side before both metrics.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

QUALITY_CONVENTION = (
    "HR = real image (centre crop, multiple of the scale); LR from HR by the named degradation, "
    "stored in the image's dtype. Metrics on HR scaled to 0..1 by its own min..max, SR by the same map "
    "and clipped; data_range 1. PSNR: one MSE over all pixels and channels. SSIM: mean over channels "
    "of Wang et al. 2004 (Gaussian sigma 1.5, K1 0.01, K2 0.03, population covariance; = skimage "
    "structural_similarity(gaussian_weights=True, use_sample_covariance=False)). Border: `scale` HR "
    "pixels cropped on each side.")

DEGRADATIONS = {
    "pil-bicubic": "PIL bicubic x4 down-sampling (anti-aliased: the kernel widens with the factor), "
                   "as the paper makes its LR",
    "cubic-noaa": "cubic x4 down-sampling without anti-aliasing (kernel a=-0.75 sampled at the LR "
                  "pixel centres, = OpenCV resize INTER_CUBIC), what the OpenCV peers were trained on",
}


# --------------------------------------------------------------------------- metrics
def psnr(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"psnr: shapes differ {ref.shape} vs {test.shape}")
    mse = float(np.mean((ref - test) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def _gauss_kernel(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    r = int(truncate * sigma + 0.5)  # scipy.ndimage's radius rule (radius 5 for sigma 1.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _filter_valid(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of a 2-D array (only windows fully inside the image)."""
    n = len(k)
    rows = sum(k[i] * a[:, i:a.shape[1] - n + 1 + i] for i in range(n))
    return sum(k[i] * rows[i:rows.shape[0] - n + 1 + i, :] for i in range(n))


def ssim(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004); (H, W) or (H, W, C) with the mean over channels.

    Only windows fully inside the image are averaged, which is what skimage does (it filters
    with reflection, then crops the window radius), so the result equals skimage's.
    """
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"ssim: shapes differ {ref.shape} vs {test.shape}")
    if ref.ndim == 3:
        return float(np.mean([ssim(ref[..., c], test[..., c], data_range, sigma, k1, k2)
                              for c in range(ref.shape[2])]))
    k = _gauss_kernel(sigma)
    if min(ref.shape) < len(k):
        raise ValueError(f"ssim: image {ref.shape} smaller than the {len(k)}x{len(k)} window")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ux, uy = _filter_valid(ref, k), _filter_valid(test, k)
    vx = _filter_valid(ref * ref, k) - ux * ux
    vy = _filter_valid(test * test, k) - uy * uy
    vxy = _filter_valid(ref * test, k) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def quality(hr: np.ndarray, sr: np.ndarray, scale: int) -> dict[str, float]:
    """PSNR/SSIM of ``sr`` against ``hr`` under ``QUALITY_CONVENTION``."""
    hr = np.asarray(hr, dtype=np.float64)
    sr = np.asarray(sr, dtype=np.float64)
    if hr.shape != sr.shape:
        raise ValueError(f"result shape {sr.shape} differs from the HR shape {hr.shape}")
    lo, hi = float(hr.min()), float(hr.max())
    den = hi - lo if hi > lo else 1.0
    a = (hr - lo) / den
    b = np.clip((sr - lo) / den, 0.0, 1.0)
    if scale > 0:
        a, b = a[scale:-scale, scale:-scale], b[scale:-scale, scale:-scale]
    return {"psnr": psnr(a, b, 1.0), "ssim": ssim(a, b, 1.0)}


# --------------------------------------------------------------------------- resampling
def _channels(img: np.ndarray) -> tuple[np.ndarray, bool]:
    img = np.asarray(img)
    return (img[..., None], True) if img.ndim == 2 else (img, False)


def _to_dtype(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(v), info.min, info.max).astype(dtype)
    return v.astype(dtype)


def pil_resize(img: np.ndarray, size: tuple[int, int], resample: int = Image.BICUBIC,
               dtype: np.dtype | None = None) -> np.ndarray:
    """Resize each channel with PIL in float ('F' mode) to ``size = (w, h)``.

    Float mode keeps 16-bit data exact (PIL's integer modes are 8-bit for most filters);
    the result is rounded back to ``dtype`` (default: the input's).
    """
    a, squeeze = _channels(img)
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c], dtype=np.float32)).resize(size, resample))
                    for c in range(a.shape[2])], axis=-1)
    out = _to_dtype(out, dtype or a.dtype)
    return out[..., 0] if squeeze else out


def pil_bicubic_down(img: np.ndarray, scale: int) -> np.ndarray:
    """The paper's LR: PIL bicubic (anti-aliased) down-sampling by ``scale``, in the input's dtype."""
    h, w = np.asarray(img).shape[:2]
    return pil_resize(img, (w // scale, h // scale), Image.BICUBIC)


def _cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1,
                    np.where(x < 2, a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a, 0.0))


def _cubic_noaa_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = a.shape[axis]
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5  # half-pixel centres
    i0 = np.floor(src).astype(int)
    t = src - i0
    out = 0.0
    for k in range(-1, 3):  # 4 taps, kernel NOT widened by the factor: no anti-aliasing
        idx = np.clip(i0 + k, 0, n_in - 1)  # replicate border
        wk = _cubic(t - k)
        shape = [1] * a.ndim
        shape[axis] = n_out
        out = out + np.take(a, idx, axis=axis) * wk.reshape(shape)
    return out


def cubic_down_noaa(img: np.ndarray, scale: int) -> np.ndarray:
    """Cubic down-sampling without anti-aliasing (OpenCV ``INTER_CUBIC``), in the input's dtype."""
    a, squeeze = _channels(img)
    f = a.astype(np.float64)
    h, w = f.shape[:2]
    f = _cubic_noaa_axis(_cubic_noaa_axis(f, h // scale, 0), w // scale, 1)
    out = _to_dtype(f, a.dtype)
    return out[..., 0] if squeeze else out


DOWNSAMPLERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "pil-bicubic": pil_bicubic_down,
    "cubic-noaa": cubic_down_noaa,
}


def nearest_up(img: np.ndarray, scale: int) -> np.ndarray:
    """Pixel replication (the paper's "nearest" row)."""
    return np.repeat(np.repeat(np.asarray(img), scale, axis=0), scale, axis=1)


def bicubic_up(img: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic up-sampling (the paper's "bicubic" row), computed in float32."""
    h, w = np.asarray(img).shape[:2]
    return pil_resize(img, (w * scale, h * scale), Image.BICUBIC, dtype=np.float32)
