"""A side-by-side picture for judging a result by eye: nearest | bicubic | model.

For a stack the middle plane is shown; 16-bit and float data are mapped to 8 bits with
the same percentile contrast for all three panels (taken from the input), so differences
are the methods', not the display's. Huge images are cropped around their centre.
Panels of 128 pixels and more get a second row: the same detail of each, enlarged with
nearest (no smoothing of our own), at the spot with the most structure, outlined above.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import write_image

LABELS = ("nearest", "bicubic", "model")
HEADER = 18  # pixel rows above each panel for its label
GAP = 4  # pixels between panels
PERCENTILES = (0.5, 99.8)
DETAIL_MIN_PANEL = 128  # smaller panels show their pixels well enough without a detail row
DETAIL_FRACTION = 4  # the detail window is 1/4 of the panel's short side, shown 4x larger


def display_plane(array: np.ndarray, axes: str) -> np.ndarray:
    """One 2-D plane to show: the middle T/Z plane; RGB kept as (H, W, 3), any other
    channel count reduced to its first channel. Returns (H, W) or (H, W, 3)."""
    a = np.asarray(array) if not isinstance(array, np.memmap) else array
    ax = axes
    for letter in "TZ":
        if letter in ax:
            i = ax.index(letter)
            a = np.take(a, a.shape[i] // 2, axis=i)
            ax = ax.replace(letter, "")
    if "C" in ax:
        a = np.moveaxis(a, ax.index("C"), -1)
        a = a if a.shape[-1] == 3 else a[..., 0]
    return a


def to_uint8(plane: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear contrast lo..hi -> 0..255 (clipped)."""
    f = (plane.astype(np.float32) - lo) / max(hi - lo, 1e-12)
    return (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def contrast_limits(plane: np.ndarray) -> tuple[float, float]:
    """8-bit data is shown as is; 16-bit and float with percentile contrast."""
    if plane.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = np.percentile(plane, PERCENTILES)
    if hi <= lo:
        lo, hi = float(plane.min()), float(plane.max()) + 1e-6
    return float(lo), float(hi)


def _bicubic(plane: np.ndarray, scale: int) -> np.ndarray:
    from PIL import Image as PILImage

    h, w = plane.shape[:2]
    chans = [plane] if plane.ndim == 2 else [plane[..., c] for c in range(plane.shape[-1])]
    up = [
        np.asarray(
            PILImage.fromarray(c.astype(np.float32), mode="F").resize(
                (w * scale, h * scale), PILImage.Resampling.BICUBIC
            )
        )
        for c in chans
    ]
    return up[0] if plane.ndim == 2 else np.stack(up, axis=-1)


def compare_panels(
    lr: np.ndarray, lr_axes: str, sr: np.ndarray, scale: int, max_lr_side: int = 256
) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    """The three HR panels (8-bit) side by side without labels, plus the LR crop box
    (y0, x0, h, w) they show."""
    lp = display_plane(lr, lr_axes)
    sp = display_plane(sr, lr_axes)
    h, w = lp.shape[:2]
    ch, cw = min(h, max_lr_side), min(w, max_lr_side)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    lp = np.asarray(lp[y0 : y0 + ch, x0 : x0 + cw])
    sp = np.asarray(sp[y0 * scale : (y0 + ch) * scale, x0 * scale : (x0 + cw) * scale])
    lo, hi = contrast_limits(lp)
    nearest = np.repeat(np.repeat(lp, scale, axis=0), scale, axis=1)
    panels = [to_uint8(p, lo, hi) for p in (nearest, _bicubic(lp, scale), sp)]
    return panels, (y0, x0, ch, cw)


def detail_window(panel: np.ndarray) -> tuple[int, int, int]:
    """(y0, x0, size) of the square window with the most structure (highest standard
    deviation) on a grid of half-window steps over an 8-bit panel."""
    a = panel.astype(np.float32)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    h, w = a.shape
    size = max(1, min(h, w) // DETAIL_FRACTION)
    step = max(1, size // 2)
    best, where = -1.0, (0, 0)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            s = float(a[y : y + size, x : x + size].std())
            if s > best:
                best, where = s, (y, x)
    return where[0], where[1], size


def _outline(panel: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """A copy of the panel with a 2-pixel white frame drawn around the detail window."""
    p = panel.copy()
    y1, x1 = y0 + size - 1, x0 + size - 1
    for t in range(2):
        p[y0 + t, x0 : x1 + 1] = 255
        p[y1 - t, x0 : x1 + 1] = 255
        p[y0 : y1 + 1, x0 + t] = 255
        p[y0 : y1 + 1, x1 - t] = 255
    return p


def make_compare(
    path: str | os.PathLike,
    lr: np.ndarray,
    lr_axes: str,
    sr: np.ndarray,
    scale: int,
    max_lr_side: int = 256,
    title: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a labelled PNG: nearest | bicubic | model, at the model's resolution, with a
    row of enlarged details below when the panels are large enough to need one.
    ``overwrite=False``: an existing ``path`` is an OutputError (see write_image)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    panels, (y0, x0, ch, cw) = compare_panels(lr, lr_axes, sr, scale, max_lr_side)
    ph, pw = panels[0].shape[:2]
    rgb = any(p.ndim == 3 for p in panels)
    details = None
    if min(ph, pw) >= DETAIL_MIN_PANEL:
        dy, dx, size = detail_window(panels[2])  # where the model's output has most to show
        zoom = max(1, min(ph, pw) // size)
        details = [np.repeat(np.repeat(p[dy : dy + size, dx : dx + size], zoom, axis=0), zoom, axis=1) for p in panels]
        panels = [_outline(p, dy, dx, size) for p in panels]
    rows_h = ph + HEADER + (details[0].shape[0] + HEADER if details else 0)
    canvas = PILImage.new("RGB" if rgb else "L", (3 * pw + 2 * GAP, rows_h), color=0)
    draw = ImageDraw.Draw(canvas)
    try:  # Pillow >= 10.1 scales its built-in font; older ones have a fixed small bitmap font
        from PIL import ImageFont

        font = ImageFont.load_default(size=13)
    except TypeError:
        font = None
    crop_note = "" if (ch, cw) == display_plane(lr, lr_axes).shape[:2] else f" crop y{y0} x{x0}"
    for i, (panel, label) in enumerate(zip(panels, LABELS)):
        x = i * (pw + GAP)
        canvas.paste(PILImage.fromarray(panel), (x, HEADER))
        text = f"{label} x{scale}" + (crop_note if i == 0 else "")
        if i == 2 and title:
            text = f"{label}: {title}"
        draw.text((x + 3, 2), text, fill=(255, 255, 255) if rgb else 255, font=font)
        if details is not None:
            canvas.paste(PILImage.fromarray(details[i]), (x, ph + 2 * HEADER))
            draw.text(
                (x + 3, ph + HEADER + 2),
                f"{LABELS[i]}: detail (outlined above), {zoom}x larger",
                fill=(255, 255, 255) if rgb else 255,
                font=font,
            )
    arr = np.asarray(canvas)
    return write_image(path, arr, "YXC" if arr.ndim == 3 else "YX", overwrite=overwrite)
