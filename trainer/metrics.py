"""Validation metrics on torch batches, and the comparison pictures.

PSNR and SSIM themselves live in ``scopesr.sdk.quality`` (the one implementation); this
module applies them to (N, C, H, W) batches of normalised crops. Convention of the
training-time validation (stated in every report): images are the *normalised* images in 0..1 (the
model's output clipped to 0..1; data range 1.0), all channels together for PSNR
(the mean squared error over every pixel and channel), the mean over channels of SSIM.
``border`` pixels (default: the scale) are cut from each side of the HR image before
scoring, as is customary for SR benchmarks (zero padding makes borders unrepresentative).
SSIM is Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population
(co)variances, mean over the 'valid' window positions; this equals
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from scopesr.sdk import atomic_write_bytes, quality

CONVENTION = (
    "PSNR/SSIM on the normalised images in 0..1 (data range 1.0; model output clipped to 0..1), "
    "PSNR over all channels, SSIM averaged over channels (Gaussian 11x11, sigma 1.5, "
    "K1=0.01, K2=0.03, as skimage with gaussian_weights=True, use_sample_covariance=False); "
    "{border} HR pixels cut from each border; LR = {degradation} x{scale} of the HR image."
)


def _per_image(fn, sr: torch.Tensor, hr: torch.Tensor, border: int, data_range: float) -> torch.Tensor:
    """Apply a scopesr.sdk.quality metric to each (C, H, W) pair of a batch (as YXC arrays)."""
    a = sr.detach().double().cpu().numpy().transpose(0, 2, 3, 1)
    b = hr.detach().double().cpu().numpy().transpose(0, 2, 3, 1)
    vals = [
        fn(
            y[..., 0] if y.shape[-1] == 1 else y,
            x[..., 0] if x.shape[-1] == 1 else x,
            data_range=data_range,
            border=border,
        )
        for x, y in zip(a, b)
    ]
    return torch.tensor(vals, dtype=torch.float32)


def psnr(sr: torch.Tensor, hr: torch.Tensor, border: int = 0, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image (N,) in dB of (N, C, H, W) batches: ``scopesr.sdk.quality.psnr``.

    An identical pair scores 200 dB instead of inf, so that means stay finite."""
    return _per_image(quality.psnr, sr, hr, border, data_range).clamp_max(200.0)


def ssim(sr: torch.Tensor, hr: torch.Tensor, border: int = 0, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image (N,), channel-averaged, of (N, C, H, W) batches: ``scopesr.sdk.quality.ssim``."""
    return _per_image(quality.ssim, sr, hr, border, data_range)


# ---------------------------------------------------------------------------- baselines
def upscale_pil(lr: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """PIL nearest/bicubic upsampling of (N, C, h, w) float images (the baselines, from quality)."""
    if method not in ("nearest", "bicubic"):
        raise ValueError(f"method {method!r}: nearest or bicubic")
    a = lr.detach().float().cpu().numpy()
    up = quality.upscale_nearest if method == "nearest" else quality.upscale_bicubic
    out = np.stack([np.stack([up(ch, scale) for ch in img]) for img in a]).astype(np.float32)
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------- pictures
def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) 0..1 -> (H, W, 3) uint8."""
    a = x.detach().float().clamp(0, 1).cpu().numpy()
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return (a[:3].transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def comparison_grid(rows: list[list[torch.Tensor]], gap: int = 4) -> np.ndarray:
    """Rows of same-size (C, H, W) panels -> one uint8 RGB picture, white gaps between."""
    panels = [[_to_uint8(p) for p in row] for row in rows]
    h, w = panels[0][0].shape[:2]
    cols = max(len(r) for r in panels)
    canvas = np.full((len(panels) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(panels):
        for j, p in enumerate(row):
            canvas[i * (h + gap) : i * (h + gap) + p.shape[0], j * (w + gap) : j * (w + gap) + p.shape[1]] = p
    return canvas


def save_png(path: Path, rgb: np.ndarray) -> Path:
    import io  # noqa: PLC0415

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    return atomic_write_bytes(Path(path), buf.getvalue())


def sample_grid(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, scale: int, max_rows: int = 4) -> np.ndarray:
    """LR-nearest | bicubic | SR | HR, one row per image."""
    near = upscale_pil(lr[:max_rows], scale, "nearest")
    bic = upscale_pil(lr[:max_rows], scale, "bicubic")
    rows = [[near[i], bic[i], sr[i], hr[i]] for i in range(min(max_rows, lr.shape[0]))]
    return comparison_grid(rows)


def finite_mean(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")
