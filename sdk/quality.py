"""Image quality in one place: PSNR, SSIM, and the microscope degradation model (numpy only).

Everything that scores a model or makes a low-resolution (LR) image from a high-resolution
(HR) one imports it from here: the trainer (training pairs, validation), the converters
(parity), sr-bench (quality tables) and the tests. It is numpy + Pillow, so the torch-free
runtime can use it too.

The scoring convention (``CONVENTION``) is stated once and quoted in every report:

* PSNR and SSIM are computed on raw intensities (the camera's units, float64), with
  ``data_range = max(ref) - min(ref)`` of the reference after the border crop;
* ``border`` HR pixels (default 8) are cut from each side first: no method sees real
  context there, so borders measure padding, not super-resolution;
* SSIM: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, population (co)variances, mean
  over the positions where the window fits (scikit-image's ``structural_similarity`` with
  ``gaussian_weights=True, use_sample_covariance=False``); multi-channel: the channel mean.

The degradation model (how a microscope makes its LR image):

    signal s = (HR - lo) / (hi - lo)               lo/hi: the source's p0.1/p99.9
    blurred  = PSF * s                              Gaussian (optionally anisotropic) or defocus disk
    sampled  = downsample(blurred, kernel)          anti-aliased bicubic | area (binning) | cubic | decimate
    photons  = Poisson(peak * (sampled + bg)) + N(0, read^2)    noise-free when peak is inf
    LR       = quantise(offset + gain * photons / peak)         8/12/16-bit camera, or the source dtype
    target   = offset + gain * (s + bg)                          the sharp image in the same units

``Degradation`` is one concrete draw; ``DegradationRanges`` is the distribution a blind model
trains on (each crop gets its own draw); ``EVAL_DEGRADATIONS`` are the fixed rows of every
quality table. All randomness comes from the ``numpy.random.Generator`` passed in, so a
seeded run is reproducible.
"""

from __future__ import annotations

import dataclasses
import io
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ScopesrError
from .noise import mean_noise_variance

__all__ = [
    "CONVENTION",
    "DEFAULT_BORDER",
    "QualityError",
    "psnr",
    "psnr_ceiling",
    "ssim",
    "DOWNSAMPLERS",
    "Degradation",
    "DegradationRanges",
    "EVAL_DEGRADATIONS",
    "eval_pair",
    "LEGACY_DEGRADATIONS",
    "degradation_from_name",
    "photons_for_snr",
    "downsample",
    "upscale_bicubic",
    "bicubic_baseline",
    "upscale_nearest",
    "round_to_dtype",
    "gaussian_kernel",
    "defocus_kernel",
    "convolve_reflect",
    "EvalImage",
    "evaluate",
    "summarise",
]

DEFAULT_BORDER = 8
#: ceilings are capped here in results (a noise-free synthetic reference has an infinite one)
CEILING_CAP_DB = 99.0
CONVENTION = (
    "PSNR/SSIM on raw intensities (float64), data_range = max(ref) - min(ref) after cutting {border} HR "
    "pixels from each border; SSIM Gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, population covariances "
    "(skimage gaussian_weights=True, use_sample_covariance=False); reference = the sharp HR image in the "
    "degraded LR image's units; bicubic = PIL bicubic x{scale} of the LR, nearest = pixel repetition, both "
    "rounded to the LR dtype like the model output; means are per source, then over sources. "
    "Ceiling = the best PSNR any upscaler can expect: the reference's own noise (estimated per "
    "brightness band from its finest diagonal wavelet detail) is unpredictable but for the 1/scale^2 "
    "of its power that the LR image's block averages keep."
)


class QualityError(ScopesrError, ValueError):
    """Bad arguments to a metric or a degradation (shapes, ranges, unknown names)."""


# ============================================================================ metrics
def _as_pair(ref: np.ndarray, x: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if ref.shape != x.shape:
        raise QualityError(f"shapes differ: reference {ref.shape} vs image {x.shape}")
    if ref.ndim not in (2, 3):
        raise QualityError(f"expected a 2-D (YX) or 3-D (YXC) image, got shape {ref.shape}")
    if border < 0:
        raise QualityError(f"border must be >= 0, got {border}")
    if border:
        if min(ref.shape[:2]) <= 2 * border:
            raise QualityError(f"image {ref.shape[:2]} is too small for a {border}-pixel border")
        ref = ref[border:-border, border:-border]
        x = x[border:-border, border:-border]
    return ref, x


def _data_range(ref: np.ndarray, data_range: float | None) -> float:
    dr = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    return dr if dr > 0 else 1.0  # a flat reference: any positive range gives the same ordering


def psnr(ref: np.ndarray, x: np.ndarray, data_range: float | None = None, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    ref, x = _as_pair(ref, x, border)
    mse = float(np.mean((ref - x) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_data_range(ref, data_range) ** 2 / mse)


def psnr_ceiling(ref: np.ndarray, border: int = 0, data_range: float | None = None, scale: int | None = None) -> float:
    """The highest PSNR (dB) any upscaler can expect against ``ref``: the reference's own noise
    (estimated, see :func:`scopesr.sdk.noise.mean_noise_variance`) cannot be predicted, except,
    given ``scale``, for the part an LR image made from ``ref`` keeps: its x``scale`` block
    averages, 1/scale**2 of its power. Without ``scale``: the PSNR of a noise-free prediction.
    inf when no noise is measurable."""
    ref, _ = _as_pair(ref, ref, border)
    planes = [ref] if ref.ndim == 2 else [ref[..., c] for c in range(ref.shape[-1])]
    var = float(np.mean([mean_noise_variance(p) for p in planes]))
    if scale is not None:
        var *= 1.0 - 1.0 / (scale * scale)
    if var <= 0.0:
        return math.inf
    return 10.0 * math.log10(_data_range(ref, data_range) ** 2 / var)


_SSIM_SIGMA, _SSIM_WIN = 1.5, 11


def _gauss1d(sigma: float = _SSIM_SIGMA, win: int = _SSIM_WIN) -> np.ndarray:
    ax = np.arange(win, dtype=np.float64) - (win - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation with ``g`` over the positions where it fits (2-D)."""
    from numpy.lib.stride_tricks import sliding_window_view

    a = sliding_window_view(a, len(g), axis=0) @ g
    return sliding_window_view(a, len(g), axis=1) @ g


def ssim(ref: np.ndarray, x: np.ndarray, data_range: float | None = None, border: int = 0) -> float:
    """Structural similarity (Wang et al. 2004), channel mean for YXC images."""
    ref, x = _as_pair(ref, x, border)
    if min(ref.shape[:2]) < _SSIM_WIN:
        raise QualityError(f"image {ref.shape[:2]} is smaller than the {_SSIM_WIN}x{_SSIM_WIN} SSIM window")
    dr = _data_range(ref, data_range)
    c1, c2 = (0.01 * dr) ** 2, (0.03 * dr) ** 2
    g = _gauss1d()
    refs = [ref] if ref.ndim == 2 else [ref[..., c] for c in range(ref.shape[2])]
    xs = [x] if x.ndim == 2 else [x[..., c] for c in range(x.shape[2])]
    vals = []
    for a, b in zip(refs, xs):
        mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
        var_a = _filter_valid(a * a, g) - mu_a**2
        var_b = _filter_valid(b * b, g) - mu_b**2
        cov = _filter_valid(a * b, g) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        vals.append(float(np.mean(num / den)))
    return float(np.mean(vals))


# ============================================================================ kernels
def gaussian_kernel(sigma: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Normalised 2-D Gaussian, ``sigma`` (and ``sigma_y``) in pixels, rotated by ``theta`` radians."""
    sy = sigma if sigma_y is None else sigma_y
    if sigma <= 0 or sy <= 0:
        raise QualityError(f"Gaussian sigma must be > 0, got {sigma}, {sy}")
    r = int(math.ceil(3.5 * max(sigma, sy)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma) ** 2 + (v / sy) ** 2))
    return k / k.sum()


def defocus_kernel(radius: float) -> np.ndarray:
    """Normalised defocus disk (pillbox) of ``radius`` pixels, edges anti-aliased by supersampling."""
    if radius <= 0:
        raise QualityError(f"defocus radius must be > 0, got {radius}")
    r = int(math.ceil(radius)) + 1
    n = 4  # 4x4 sub-samples per pixel give the disk a smooth edge
    sub = (np.arange(n) + 0.5) / n - 0.5
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    k = np.zeros_like(yy)
    for dy in sub:
        for dx in sub:
            k += ((yy + dy) ** 2 + (xx + dx) ** 2) <= radius**2
    return k / k.sum()


def convolve_reflect(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D convolution, same size, mirror-padded borders (FFT; float64)."""
    img = np.asarray(img, dtype=np.float64)
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    if min(img.shape) > max(ph, pw):
        p = np.pad(img, ((ph, ph), (pw, pw)), mode="reflect")
    else:  # a kernel wider than the image: mirror with repetition, which any size allows
        p = np.pad(img, ((ph, ph), (pw, pw)), mode="symmetric")
    shape = (p.shape[0] + kh - 1, p.shape[1] + kw - 1)
    f = np.fft.rfft2(p, shape) * np.fft.rfft2(kernel[::-1, ::-1], shape)
    full = np.fft.irfft2(f, shape)
    return full[kh - 1 : kh - 1 + img.shape[0], kw - 1 : kw - 1 + img.shape[1]]


# ============================================================================ resampling
def _pil_resize(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    return np.asarray(im.resize(size_wh, Image.Resampling.BICUBIC), dtype=np.float64)


def _cubic_noaa_1d(a: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Cubic interpolation at the output pixel centres without anti-aliasing (OpenCV INTER_CUBIC):
    source coordinate (i + 0.5) * scale - 0.5, Keys kernel a = -0.75, replicated borders."""
    n_out = a.shape[axis] // scale
    pos = (np.arange(n_out) + 0.5) * scale - 0.5
    base = np.floor(pos).astype(np.int64)
    t = pos - base
    out: np.ndarray | float = 0.0
    for off in (-1, 0, 1, 2):
        d = np.abs(t - off)
        w = np.where(d <= 1, (1.25 * d - 2.25) * d * d + 1, ((-0.75 * d + 3.75) * d - 6.0) * d + 3.0)
        idx = np.clip(base + off, 0, a.shape[axis] - 1)
        shape = [1] * a.ndim
        shape[axis] = n_out
        out = out + np.take(a, idx, axis=axis) * w.reshape(shape)
    return np.asarray(out)


def _down_bicubic_aa(x: np.ndarray, s: int) -> np.ndarray:
    h, w = x.shape
    return _pil_resize(x, (w // s, h // s))


def _down_area(x: np.ndarray, s: int) -> np.ndarray:
    h, w = x.shape
    return x[: h - h % s, : w - w % s].reshape(h // s, s, w // s, s).mean(axis=(1, 3))


def _down_cubic(x: np.ndarray, s: int) -> np.ndarray:
    return _cubic_noaa_1d(_cubic_noaa_1d(x, s, 0), s, 1)


def _down_decimate(x: np.ndarray, s: int) -> np.ndarray:
    h, w = x.shape
    return x[s // 2 : h - h % s : s, s // 2 : w - w % s : s]


#: LR sampling: name -> f(2-D float64 HR, scale) -> LR
DOWNSAMPLERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "bicubic-aa": _down_bicubic_aa,  # PIL's bicubic, widened when shrinking (the paper's LR)
    "area": _down_area,  # pixel binning: the mean of each s x s block (exact)
    "cubic": _down_cubic,  # cubic interpolation without anti-aliasing (aliases)
    "decimate": _down_decimate,  # one sample per s x s block (a sensor without fill factor)
}


def downsample(img: np.ndarray, scale: int, kernel: str = "bicubic-aa") -> np.ndarray:
    """(H, W) or (H, W, C) -> (H//s, W//s[, C]) with one of ``DOWNSAMPLERS`` (float64)."""
    try:
        fn = DOWNSAMPLERS[kernel]
    except KeyError:
        raise QualityError(f"unknown down-sampling kernel {kernel!r}; known: {sorted(DOWNSAMPLERS)}") from None
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        return np.stack([fn(a[..., c], scale) for c in range(a.shape[2])], axis=-1)
    return fn(a, scale)


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic x``scale`` in float64 (the bicubic baseline of every table), YX or YXC."""
    a = np.asarray(lr, dtype=np.float64)
    if a.ndim == 3:
        return np.stack([upscale_bicubic(a[..., c], scale) for c in range(a.shape[2])], axis=-1)
    h, w = a.shape
    return _pil_resize(a, (w * scale, h * scale))


def bicubic_baseline(lr: np.ndarray, scale: int) -> np.ndarray:
    """What every table scores as "bicubic": PIL bicubic x``scale`` rounded to the LR image's dtype,
    as a model's output is (the CONVENTION)."""
    return round_to_dtype(upscale_bicubic(lr, scale), np.asarray(lr).dtype)


def upscale_nearest(lr: np.ndarray, scale: int) -> np.ndarray:
    """Pixel repetition x``scale`` (YX or YXC), keeping the dtype."""
    return np.repeat(np.repeat(np.asarray(lr), scale, axis=0), scale, axis=1)


def round_to_dtype(x: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Round and clip ``x`` into an integer ``dtype``, or cast to a float one: a camera's
    quantisation, and how results are scored in the LR image's own units."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return np.clip(np.rint(x), info.min, info.max).astype(dt)
    return x.astype(dt)


# ============================================================================ degradation
def photons_for_snr(snr: float, read_noise: float = 0.0) -> float:
    """Photons at the peak for which peak / sqrt(peak + read^2) equals ``snr``."""
    if snr <= 0:
        raise QualityError(f"SNR must be > 0, got {snr}")
    s2 = snr * snr
    return 0.5 * (s2 + math.sqrt(s2 * s2 + 4.0 * s2 * read_noise * read_noise))


@dataclass(frozen=True)
class Degradation:
    """One concrete way a microscope makes an LR image; ``apply`` makes (LR, target).

    psf: "none" | "gaussian" (``psf_sigma``, optionally ``psf_sigma_y`` and ``psf_theta``: an
    anisotropic spot) | "defocus" (a disk of radius ``psf_sigma``); sizes in LR pixels.
    downsample: a ``DOWNSAMPLERS`` key. peak_snr: the signal-to-noise ratio at the bright
    percentile (inf = noise-free); read_noise in photo-electrons; background: extra photon
    flux as a fraction of the peak (adds shot noise and a level). bits: 8/12/16 for a camera
    of that depth (``exposure``: the fraction of full scale that the bright percentile
    reaches; ``offset``: the camera's dark level, a fraction of full scale), or 0 to keep the
    source's own units and dtype. jpeg_quality: 1..95 re-encodes an 8-bit frame as JPEG.
    """

    scale: int = 4
    psf: str = "none"
    psf_sigma: float = 0.0
    psf_sigma_y: float | None = None
    psf_theta: float = 0.0
    downsample: str = "bicubic-aa"
    peak_snr: float = math.inf
    read_noise: float = 0.0
    background: float = 0.0
    bits: int = 0
    exposure: float = 1.0
    offset: float = 0.0
    jpeg_quality: int = 0

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise QualityError(f"scale must be >= 1, got {self.scale}")
        if self.psf not in ("none", "gaussian", "defocus"):
            raise QualityError(f"psf {self.psf!r}: none, gaussian or defocus")
        if self.psf != "none" and not self.psf_sigma > 0:
            raise QualityError(f"psf {self.psf!r} needs psf_sigma > 0")
        if self.downsample not in DOWNSAMPLERS:
            raise QualityError(f"downsample {self.downsample!r}: one of {sorted(DOWNSAMPLERS)}")
        if not self.peak_snr > 0:
            raise QualityError(f"peak_snr must be > 0 (inf: noise-free), got {self.peak_snr}")
        if self.bits not in (0, 8, 10, 12, 14, 16):
            raise QualityError(f"bits {self.bits}: 8, 10, 12, 14, 16, or 0 for the source's dtype")
        if not 0 < self.exposure <= 1:
            raise QualityError(f"exposure must be in (0, 1], got {self.exposure}")
        if self.read_noise < 0 or self.background < 0 or not 0 <= self.offset < 1:
            raise QualityError("read_noise and background must be >= 0, offset in [0, 1)")
        if self.jpeg_quality and (self.bits != 8 or not 1 <= self.jpeg_quality <= 95):
            raise QualityError("jpeg_quality (1..95) needs an 8-bit camera (bits=8)")

    # ------------------------------------------------------------------ description
    @property
    def noisy(self) -> bool:
        return math.isfinite(self.peak_snr)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["peak_snr"] = None if not self.noisy else self.peak_snr  # JSON has no inf
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Degradation:
        d = dict(d)
        if d.get("peak_snr") is None:
            d["peak_snr"] = math.inf
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise QualityError(f"unknown degradation field(s) {bad}; known: {sorted(known)}")
        return cls(**d)

    def describe(self) -> str:
        parts = []
        if self.psf == "gaussian":
            aniso = f"x{self.psf_sigma_y:.2f}" if self.psf_sigma_y is not None else ""
            parts.append(f"Gaussian PSF sigma {self.psf_sigma:.2f}{aniso} LR px")
        elif self.psf == "defocus":
            parts.append(f"defocus disk r {self.psf_sigma:.2f} LR px")
        parts.append(f"{self.downsample} x{self.scale}")
        if self.noisy:
            parts.append(f"Poisson-Gaussian noise, peak SNR {self.peak_snr:g} (read {self.read_noise:g} e-)")
        parts.append(f"{self.bits}-bit camera" if self.bits else "source dtype")
        if self.jpeg_quality:
            parts.append(f"JPEG q{self.jpeg_quality}")
        return ", ".join(parts)

    # ------------------------------------------------------------------ the model
    def _blur(self, s: np.ndarray) -> np.ndarray:
        if self.psf == "none":
            return s
        k = self.scale
        if self.psf == "gaussian":
            sy = None if self.psf_sigma_y is None else self.psf_sigma_y * k
            kern = gaussian_kernel(self.psf_sigma * k, sy, self.psf_theta)
        else:
            kern = defocus_kernel(self.psf_sigma * k)
        return convolve_reflect(s, kern)

    def apply(
        self,
        hr: np.ndarray,
        rng: np.random.Generator | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        dtype: np.dtype | str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """HR (2-D, raw intensities) -> (LR, target), both in the LR camera's units.

        ``lo``/``hi``: the source image's dark and bright levels (default: p0.1/p99.9 of ``hr``),
        used to place the signal on the camera's scale. ``dtype``: the source dtype when
        ``bits`` is 0 (default: ``hr``'s). LR has the camera's integer dtype (uint8 for
        8 bits, uint16 above) or the source dtype; the target is float64, unquantised and
        unblurred: the image a perfect camera of ``scale``x the resolution would give.
        """
        a = np.asarray(hr, dtype=np.float64)
        if a.ndim != 2:
            raise QualityError(f"degradations take one 2-D plane, got shape {a.shape}")
        if min(a.shape) < self.scale:
            raise QualityError(f"image {a.shape} is smaller than the scale {self.scale}")
        h, w = a.shape
        a = a[: h - h % self.scale, : w - w % self.scale]
        if lo is None or hi is None:
            plo, phi = np.percentile(a, (0.1, 99.9))
            lo = float(plo) if lo is None else lo
            hi = float(phi) if hi is None else hi
        span = float(hi) - float(lo)
        if not span > 0:
            span = max(abs(float(hi)), 1.0)
        src_dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.asarray(hr).dtype)
        if self.bits:
            full = float(2**self.bits - 1)
            gain, off = self.exposure * full, self.offset * full
            out_dtype: np.dtype = np.dtype(np.uint8 if self.bits <= 8 else np.uint16)
        else:
            gain, off = span, float(lo)
            out_dtype = src_dtype if src_dtype.kind in "uif" else np.dtype(np.float32)
        s = (a - float(lo)) / span
        lr_s = downsample(self._blur(s), self.scale, self.downsample) + self.background
        if self.noisy:
            if rng is None:
                raise QualityError("a noisy degradation needs rng (a numpy Generator)")
            peak = photons_for_snr(self.peak_snr, self.read_noise)
            electrons = rng.poisson(peak * np.clip(lr_s, 0.0, None)).astype(np.float64)
            if self.read_noise:
                electrons += rng.normal(0.0, self.read_noise, size=electrons.shape)
            lr_s = electrons / peak
        lr = round_to_dtype(off + gain * lr_s, out_dtype)
        if self.bits and out_dtype.kind == "u":
            lr = np.clip(lr, 0, 2**self.bits - 1).astype(out_dtype)
        if self.jpeg_quality:
            lr = _jpeg(lr, self.jpeg_quality)
        target = off + gain * (s + self.background)
        return lr, target


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8), mode="L").save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf), dtype=np.uint8)


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw, log-uniform in [lo, hi] (0 < lo <= hi); also used by the trainer's own draws."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True)
class DegradationRanges:
    """The distribution a blind model trains on; every field is stated in the model card.

    Probabilities are per crop. ``downsample`` weights the sampling kernels; ``snr`` is sampled
    log-uniformly; ``bits`` weights camera depths (0 = the source's own dtype).
    """

    scale: int = 4
    downsample: dict[str, float] = field(
        default_factory=lambda: {"bicubic-aa": 0.35, "area": 0.35, "cubic": 0.15, "decimate": 0.15}
    )
    p_psf: float = 0.5
    psf_sigma: tuple[float, float] = (0.2, 1.6)  # LR px
    p_anisotropic: float = 0.2
    p_defocus: float = 0.1
    defocus_radius: tuple[float, float] = (0.5, 1.5)  # LR px
    p_clean: float = 0.25  # no noise at all
    snr: tuple[float, float] = (4.0, 60.0)
    read_noise: tuple[float, float] = (0.0, 4.0)  # e-
    background: tuple[float, float] = (0.0, 0.05)
    bits: dict[int, float] = field(default_factory=lambda: {0: 0.2, 8: 0.3, 12: 0.25, 16: 0.25})
    exposure: tuple[float, float] = (0.15, 0.9)
    offset: tuple[float, float] = (0.0, 0.06)
    p_jpeg: float = 0.1  # of 8-bit frames
    jpeg_quality: tuple[int, int] = (70, 95)

    def __post_init__(self) -> None:
        for name in ("p_psf", "p_anisotropic", "p_defocus", "p_clean", "p_jpeg"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise QualityError(f"{name} must be a probability in [0, 1]")
        bad = sorted(set(self.downsample) - set(DOWNSAMPLERS))
        if bad or not self.downsample:
            raise QualityError(f"downsample weights: unknown kernel(s) {bad}; known: {sorted(DOWNSAMPLERS)}")
        for name in ("psf_sigma", "defocus_radius", "snr", "read_noise", "background", "exposure", "offset"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise QualityError(f"{name} range ({lo}, {hi}) must be 0 <= low <= high")
        if self.snr[0] <= 0 or self.exposure[0] <= 0:
            raise QualityError("snr and exposure ranges must be > 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bits"] = {str(k): v for k, v in self.bits.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DegradationRanges:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise QualityError(f"unknown degradation range field(s) {bad}; known: {sorted(known)}")
        if "bits" in d:
            d["bits"] = {int(k): float(v) for k, v in d["bits"].items()}
        for k, v in list(d.items()):
            if isinstance(v, list):
                d[k] = tuple(v)
        return cls(**d)

    @staticmethod
    def _choice(rng: np.random.Generator, weights: Mapping[Any, float]) -> Any:
        keys = list(weights)
        p = np.asarray([weights[k] for k in keys], dtype=np.float64)
        return keys[int(rng.choice(len(keys), p=p / p.sum()))]

    def sample(self, rng: np.random.Generator) -> Degradation:
        """One draw. The number of random numbers used does not depend on earlier draws' values."""
        u = rng.random(8)  # fixed-size block: the stream stays aligned whatever is chosen
        kernel = self._choice(rng, self.downsample)
        psf, sigma, sigma_y, theta = "none", 0.0, None, 0.0
        if u[0] < self.p_psf:
            if u[1] < self.p_defocus:
                psf, sigma = "defocus", float(rng.uniform(*self.defocus_radius))
            else:
                psf, sigma = "gaussian", float(rng.uniform(*self.psf_sigma))
                if u[2] < self.p_anisotropic:
                    sigma_y = float(rng.uniform(*self.psf_sigma))
                    theta = float(rng.uniform(0, math.pi))
        snr, read, bg = math.inf, 0.0, 0.0
        if u[3] >= self.p_clean:
            snr = loguniform(rng, *self.snr)
            read = float(rng.uniform(*self.read_noise))
            bg = float(rng.uniform(*self.background))
        bits = int(self._choice(rng, self.bits))
        exposure, offset, jpeg = 1.0, 0.0, 0
        if bits:
            exposure = float(rng.uniform(*self.exposure))
            offset = float(rng.uniform(*self.offset))
            if bits == 8 and u[4] < self.p_jpeg:
                jpeg = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        return Degradation(
            scale=self.scale,
            psf=psf,
            psf_sigma=sigma,
            psf_sigma_y=sigma_y,
            psf_theta=theta,
            downsample=kernel,
            peak_snr=snr,
            read_noise=read,
            background=bg,
            bits=bits,
            exposure=exposure,
            offset=offset,
            jpeg_quality=jpeg,
        )


#: the fixed rows of every quality table (source dtype, so clean rows match the paper's LR)
EVAL_DEGRADATIONS: dict[str, Degradation] = {
    "bicubic": Degradation(downsample="bicubic-aa"),
    "binning": Degradation(downsample="area"),
    "psf": Degradation(psf="gaussian", psf_sigma=1.5, downsample="decimate"),
    "noise-snr20": Degradation(downsample="bicubic-aa", peak_snr=20.0, read_noise=2.0),
    "noise-snr8": Degradation(downsample="bicubic-aa", peak_snr=8.0, read_noise=2.0),
    "cubic-noaa": Degradation(downsample="cubic"),
    "camera-12bit": Degradation(
        psf="gaussian",
        psf_sigma=0.5,
        downsample="area",
        peak_snr=12.0,
        read_noise=3.0,
        background=0.02,
        bits=12,
        exposure=0.6,
        offset=0.025,
    ),
}

#: the names sr-train --degradation took before the microscope model: PIL resampling of the
#: normalised image, kept so old configs and cards keep their meaning
LEGACY_DEGRADATIONS = ("pil-bicubic", "pil-bilinear", "pil-lanczos", "pil-box", "pil-hamming", "pil-nearest")


def degradation_from_name(name: str, scale: int = 4) -> Degradation:
    """An ``EVAL_DEGRADATIONS`` row by name, at ``scale``."""
    try:
        d = EVAL_DEGRADATIONS[name]
    except KeyError:
        raise QualityError(f"unknown degradation {name!r}; known: {sorted(EVAL_DEGRADATIONS)}") from None
    return dataclasses.replace(d, scale=scale)


# ============================================================================ evaluation
@dataclass(frozen=True)
class EvalImage:
    """One HR reference plane and where it comes from (``source`` groups the means)."""

    name: str
    source: str
    data: np.ndarray  # 2-D, raw intensities, in its own dtype


def eval_pair(
    deg: Degradation, name: str, image: EvalImage, index: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(LR, target) of the ``index``-th evaluation image under row ``name``, as every quality
    table makes it: noise seeded by (seed, image index, row name), so a row does not depend on
    the others and other benchmarks on the same images get the release table's LR images."""
    rng = np.random.default_rng([seed, index, zlib.crc32(name.encode())])
    return deg.apply(image.data, rng)


def evaluate(
    upscale: Callable[[np.ndarray], np.ndarray],
    images: Sequence[EvalImage],
    degradations: Mapping[str, Degradation] | Sequence[str] | None = None,
    *,
    scale: int = 4,
    seed: int = 0,
    border: int = DEFAULT_BORDER,
    with_ssim: bool = True,
    methods: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Score ``upscale`` (an LR image in its dtype -> the x``scale`` image) per degradation.

    For every image and degradation the LR image is made once (noise seeded by
    ``(seed, image index, degradation name)``), and the model, PIL bicubic and nearest (plus
    any extra ``methods``) are scored against the sharp target. Returns
    ``{"convention", "degradations": {name: description}, "rows": [...], "summary": {...}}``;
    ``summary[degradation]`` holds per-source means, the mean over sources, the gain of the
    model over bicubic, and the worst image.
    """
    if degradations is None:
        degradations = {k: dataclasses.replace(v, scale=scale) for k, v in EVAL_DEGRADATIONS.items()}
    elif not isinstance(degradations, Mapping):
        degradations = {n: degradation_from_name(n, scale) for n in degradations}
    fns: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "model": upscale,
        "bicubic": lambda lr: bicubic_baseline(lr, scale),
        "nearest": lambda lr: upscale_nearest(lr, scale),
        **(methods or {}),
    }
    rows: list[dict[str, Any]] = []
    for dname, deg in degradations.items():
        for ii, im in enumerate(images):
            lr, target = eval_pair(deg, dname, im, ii, seed)
            row: dict[str, Any] = {"degradation": dname, "image": im.name, "source": im.source}
            row["psnr_ceiling"] = min(psnr_ceiling(target, border=border, scale=scale), CEILING_CAP_DB)
            for mname, fn in fns.items():
                out = np.asarray(fn(lr))
                if out.shape[:2] != target.shape:
                    raise QualityError(f"{mname} on {im.name} ({dname}): output {out.shape} != target {target.shape}")
                if out.ndim == 3:
                    out = out[..., 0]
                row[f"psnr_{mname}"] = psnr(target, out, border=border)
                if with_ssim:
                    row[f"ssim_{mname}"] = ssim(target, out, border=border)
            rows.append(row)
    return {
        "convention": CONVENTION.format(border=border, scale=scale),
        "degradations": {k: v.describe() for k, v in degradations.items()},
        "rows": rows,
        "summary": summarise(rows),
    }


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per degradation: per-source means, the mean of the source means, gain vs bicubic, worst image."""
    out: dict[str, Any] = {}
    for dname in dict.fromkeys(r["degradation"] for r in rows):
        drows = [r for r in rows if r["degradation"] == dname]
        metrics = [k for k in drows[0] if k.startswith(("psnr_", "ssim_"))]
        per_source: dict[str, dict[str, float]] = {}
        for src in dict.fromkeys(r["source"] for r in drows):
            srows = [r for r in drows if r["source"] == src]
            per_source[src] = {k: float(np.mean([r[k] for r in srows])) for k in metrics}
            per_source[src]["n_images"] = len(srows)
        mean = {k: float(np.mean([s[k] for s in per_source.values()])) for k in metrics}
        entry: dict[str, Any] = {"per_source": per_source, "mean": mean}
        if "psnr_model" in mean and "psnr_bicubic" in mean:
            gains = [(r["psnr_model"] - r["psnr_bicubic"], r["image"]) for r in drows]
            entry["gain_db_vs_bicubic"] = mean["psnr_model"] - mean["psnr_bicubic"]
            entry["worst_gain_db"] = min(gains)[0]
            entry["worst_image"] = min(gains)[1]
            entry["images_below_bicubic"] = sum(g < 0 for g, _ in gains)
            if "ssim_model" in mean:
                entry["ssim_gain_vs_bicubic"] = mean["ssim_model"] - mean["ssim_bicubic"]
                entry["worst_ssim_gain"] = min(r["ssim_model"] - r["ssim_bicubic"] for r in drows)
        out[dname] = entry
    return out
