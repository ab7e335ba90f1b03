"""PSNR / SSIM (batched, torch) and the comparison pictures.

Convention (stated in every report): images are the *normalised* images in 0..1 (the
model's output clipped to 0..1; data range 1.0), all channels together for PSNR
(the mean squared error over every pixel and channel), the mean over channels of SSIM.
``border`` pixels (default: the scale) are cut from each side of the HR image before
scoring, as is customary for SR benchmarks (zero padding makes borders unrepresentative).
SSIM is Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population
(co)variances, mean over the 'valid' window positions; this equals
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0)`` (a test checks both metrics against
scikit-image).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from scopesr.sdk.card import atomic_write_bytes

CONVENTION = ("PSNR/SSIM on the normalised images in 0..1 (data range 1.0; model output clipped to 0..1), "
              "PSNR over all channels, SSIM averaged over channels (Gaussian 11x11, sigma 1.5, "
              "K1=0.01, K2=0.03, as skimage with gaussian_weights=True, use_sample_covariance=False); "
              "{border} HR pixels cut from each border; LR = {degradation} x{scale} of the HR image.")


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border > 0 else x


def psnr(sr: torch.Tensor, hr: torch.Tensor, border: int = 0, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image (N,) in dB; inputs (N, C, H, W)."""
    sr, hr = _crop(sr.float(), border), _crop(hr.float(), border)
    mse = ((sr - hr) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(1e-20))


def _gaussian(win: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    ax = torch.arange(win, dtype=torch.float64, device=device) - (win - 1) / 2
    g = torch.exp(-(ax ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g


def ssim(sr: torch.Tensor, hr: torch.Tensor, border: int = 0, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image (N,), channel-averaged; inputs (N, C, H, W), computed in float64."""
    x, y = _crop(sr.double(), border), _crop(hr.double(), border)
    n, c, h, w = x.shape
    g = _gaussian(device=x.device)
    kh = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(2).mean(2).mean(1).float()


# ---------------------------------------------------------------------------- baselines
def upscale_pil(lr: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """PIL nearest/bicubic upsampling of (N, C, h, w) float images (the baselines)."""
    m = {"nearest": PILImage.Resampling.NEAREST, "bicubic": PILImage.Resampling.BICUBIC}[method]
    a = lr.detach().float().cpu().numpy()
    n, c, h, w = a.shape
    out = np.empty((n, c, h * scale, w * scale), np.float32)
    for i in range(n):
        for j in range(c):
            out[i, j] = np.asarray(PILImage.fromarray(a[i, j], mode="F").resize((w * scale, h * scale), m))
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
            canvas[i * (h + gap):i * (h + gap) + p.shape[0], j * (w + gap):j * (w + gap) + p.shape[1]] = p
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
