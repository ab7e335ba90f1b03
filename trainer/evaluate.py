"""``sr-train eval``: PSNR/SSIM of models vs nearest and bicubic, in the paper's Table 2 layout.

Each HR image of the folder is normalised as in training (the card's normalisation),
centre-cropped to a multiple of the scale (or to ``--crop``), down-sampled with the card's
degradation (PIL bicubic x4 by default) and upscaled by every model and by the two
baselines. Scores follow :data:`scopesr.trainer.metrics.CONVENTION`. Writes ``eval.json``
(per image and mean), ``eval.md`` (Table 2 layout) and ``compare/*.png`` (LR-nearest |
bicubic | each model | HR).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scopesr.sdk import atomic_write_text

from . import data as data_mod
from .checkpoint import load_generator
from .errors import EvalError
from .metrics import CONVENTION, comparison_grid, psnr, save_png, ssim, upscale_pil

log = logging.getLogger(__name__)


def _label(path: Path, card) -> str:
    return f"{card.architecture} ({path.stem})" if path.stem not in ("generator",) else card.architecture


@torch.no_grad()
def evaluate(
    model_paths: list[str | os.PathLike],
    data: list[str],
    out: str | os.PathLike,
    crop: int = 0,
    max_images: int = 0,
    border: int | None = None,
    device: str = "cpu",
    pictures: int = 8,
    degradation: str | None = None,
) -> dict[str, Any]:
    """Score each model and the nearest/bicubic baselines; write JSON, markdown and pictures."""
    out = Path(out)
    models = []
    for p in model_paths:
        m, card = load_generator(p, device=device)
        models.append((_label(Path(p), card), m, card))
    if not models:
        raise EvalError("sr-train eval needs at least one --model FILE.safetensors")
    c0 = models[0][2]
    for label, _, card in models[1:]:
        if (card.in_channels, card.scale) != (c0.in_channels, c0.scale):
            raise EvalError(
                f"{label}: {card.in_channels} channel(s) x{card.scale} differs from the first model's "
                f"{c0.in_channels} x{c0.scale}; evaluate them separately"
            )
    scale = c0.scale
    border = scale if border is None else border
    deg = degradation or c0.degradation
    if deg not in data_mod.DEGRADATIONS:
        raise EvalError(f"degradation {deg!r} (from the card) is not one of {sorted(data_mod.DEGRADATIONS)}")
    norm = c0.normalisation
    dcfg = data_mod.DataConfig(
        data=list(data),
        layout="auto",
        channels=c0.in_channels,
        hr_size=max(crop, 8 * scale),
        scale=scale,
        degradation=deg,
        augment=False,
        norm_mode=norm.mode,
        p_low=norm.p_low,
        p_high=norm.p_high,
    )
    items = data_mod.discover(dcfg)
    if max_images:
        items = items[:max_images]
    rows: dict[str, dict[str, list[float]]] = {
        k: {"psnr": [], "ssim": []} for k in ["Nearest Neighbor", "Bicubic", *[m[0] for m in models]]
    }
    per_image = []
    for idx, it in enumerate(items):
        hr = data_mod.load_item(it, dcfg, 4)
        h, w = hr.shape[:2]
        if crop:
            y, x = (h - crop) // 2, (w - crop) // 2
            hr = hr[y : y + crop, x : x + crop]
        hr = np.ascontiguousarray(hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale])
        lr = data_mod.to_tensor(data_mod.downsample(hr, scale, deg))[None]
        hr_t = data_mod.to_tensor(hr)[None]
        outs = {
            "Nearest Neighbor": upscale_pil(lr, scale, "nearest"),
            "Bicubic": upscale_pil(lr, scale, "bicubic").clamp(0, 1),
        }
        for label, m, _ in models:
            outs[label] = m(lr.to(device)).float().clamp(0, 1).cpu()
        rec: dict[str, Any] = {"image": it.label}
        for k, v in outs.items():
            p, s = float(psnr(v, hr_t, border)[0]), float(ssim(v, hr_t, border)[0])
            rows[k]["psnr"].append(p)
            rows[k]["ssim"].append(s)
            rec[k] = {"psnr": p, "ssim": s}
        per_image.append(rec)
        if idx < pictures:
            panels = [outs["Nearest Neighbor"][0], outs["Bicubic"][0], *[outs[m[0]][0] for m in models], hr_t[0]]
            name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in it.label)
            save_png(out / "compare" / f"{idx:03d}_{name}.png", comparison_grid([panels]))
    mean = {k: {"psnr": float(np.mean(v["psnr"])), "ssim": float(np.mean(v["ssim"]))} for k, v in rows.items()}
    convention = CONVENTION.format(border=border, degradation=deg, scale=scale)
    result = {
        "n_images": len(items),
        "scale": scale,
        "convention": convention,
        "crop": crop or None,
        "models": {m[0]: str(p) for m, p in zip(models, model_paths)},
        "mean": mean,
        "per_image": per_image,
    }
    atomic_write_text(out / "eval.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "eval.md", table2_markdown(mean, len(items), convention))
    return result


def table2_markdown(mean: dict[str, dict[str, float]], n: int, convention: str) -> str:
    """The paper's Table 2 layout: one row per method, PSNR and SSIM columns."""
    order = [k for k in mean if k not in ("Nearest Neighbor", "Bicubic")] + ["Nearest Neighbor", "Bicubic"]
    lines = ["| Generated Image | PSNR | SSIM |", "|---|---|---|"]
    for k in order:
        lines.append(f"| {k} | {mean[k]['psnr']:.3f} | {mean[k]['ssim']:.3f} |")
    lines.append("| Ground Truth | inf | 1 |")
    return "\n".join(lines) + f"\n\n{n} image(s). {convention}\n"
