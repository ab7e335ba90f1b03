"""Numbers for sr-bench: timing statistics, image-quality metrics, degradations, machine facts.

Nothing here imports torch at module level: the metrics and the timing harness are plain
numpy/Pillow so that they can be unit-tested cheaply and reused by torch-free scripts.

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
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall-clock times of repeated calls (after ``warmup`` untimed calls), in seconds."""

    times: list[float]
    warmup: int = 0
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.times)

    @property
    def median(self) -> float:
        return float(statistics.median(self.times))

    @property
    def min(self) -> float:
        return float(min(self.times))

    @property
    def max(self) -> float:
        return float(max(self.times))

    def quartiles(self) -> tuple[float, float]:
        """(Q1, Q3) by linear interpolation (numpy's default); equal to the value for n == 1."""
        q1, q3 = np.percentile(np.asarray(self.times, dtype=np.float64), [25, 75])
        return float(q1), float(q3)

    @property
    def iqr(self) -> float:
        q1, q3 = self.quartiles()
        return q3 - q1

    def to_dict(self) -> dict[str, Any]:
        q1, q3 = self.quartiles()
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "q1_s": q1, "q3_s": q3,
                "n": self.n, "warmup": self.warmup, "times_s": list(self.times), "note": self.note}


def time_call(fn: Callable[[], Any], warmup: int = 1, repeats: int = 5, min_repeats: int = 2,
              budget_s: float | None = None, clock: Callable[[], float] = time.perf_counter,
              sync: Callable[[], None] | None = None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed calls.

    ``budget_s`` bounds the time spent on timed calls: after ``min_repeats`` calls no new one
    starts once the budget is used (a slow teacher on a 2-core CPU gets 2 runs, a fast student
    all of them). ``sync`` runs after each call inside the timed region (``torch.cuda.synchronize``
    for asynchronous GPU work, so the clock measures the work and not its launch).
    """
    if repeats < 1 or min_repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, min_repeats >= 1, warmup >= 0; got {repeats}, {min_repeats}, {warmup}")
    min_repeats = min(min_repeats, repeats)
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats:
        if budget_s is not None and len(times) >= min_repeats and spent >= budget_s:
            break
        t0 = clock()
        fn()
        if sync is not None:
            sync()
        dt = clock() - t0
        times.append(dt)
        spent += dt
    return Timing(times, warmup)


def gflops(macs_per_lr_pixel: float | None, lr_pixels: int, seconds: float | None) -> float | None:
    """Achieved GFLOP/s: 2 FLOPs per multiply-accumulate, over the LR pixels processed."""
    if not macs_per_lr_pixel or not seconds or seconds <= 0:
        return None
    return 2.0 * macs_per_lr_pixel * lr_pixels / seconds / 1e9


# --------------------------------------------------------------------------- GPU peaks
#: Dense (no sparsity) peak throughput in TFLOP/s from the vendors' datasheets (NVIDIA
#: product briefs / datasheets, boost clocks). Keys are matched as substrings of
#: ``torch.cuda.get_device_name()`` in order, so the more specific names come first.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0, "fp16": 835.0}),
    ("H100", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM5
    ("H200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM
    ("GH200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    ("RTX 4090", {"fp32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    ("T4", {"fp32": 8.1, "fp16": 65.0}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),
    ("K80", {"fp32": 4.37}),  # one of the board's two GK210 dies (what one CUDA device is)
]
PEAK_SOURCE = "vendor datasheets (NVIDIA), dense tensor-core / FP32 peaks at boost clock, no sparsity"


def device_peak_tflops(device_name: str | None, precision: str) -> float | None:
    """The datasheet peak for ``precision`` (fp32/tf32/bf16/fp16) of a GPU name, or None."""
    if not device_name:
        return None
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peaks.get(precision)
    return None


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


# --------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class Machine:
    cpu: str
    logical_cores: int | None
    usable_cores: int | None
    threads: int
    platform: str
    python: str
    load_average: list[float] | None
    gpu: str | None
    versions: dict[str, str] = field(default_factory=dict)
    load_average_end: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def line(self) -> str:
        la = f", load average {self.load_average[0]:.2f} at start" if self.load_average else ""
        if self.load_average_end:
            la += f", {self.load_average_end[0]:.2f} at the end"
        gpu = self.gpu or "no GPU"
        v = ", ".join(f"{k} {x}" for k, x in self.versions.items())
        return (f"{self.cpu}, {self.usable_cores} usable cores (of {self.logical_cores}), {self.threads} "
                f"threads per runtime{la}; {gpu}; {self.platform}, Python {self.python}; {v}")


def describe_machine(threads: int) -> Machine:
    """CPU, cores, load, GPU and the versions of every runtime that was timed."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    versions = {}
    for pkg in ("torch", "onnxruntime", "ai-edge-litert", "litert-torch", "opencv-contrib-python-headless",
                "numpy", "pillow"):
        v = _version(pkg)
        if v:
            versions[pkg] = v
    return Machine(cpu_model(), os.cpu_count(), usable, threads, platform.platform(terse=True),
                   platform.python_version(), load, gpu, versions)
