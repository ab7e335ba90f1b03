"""Pictures for the browser: 8-bit views of any image, nearest / bicubic panels, PNG and JPEG bytes.

All three panels of one result share the contrast of the input (percentiles for 16-bit and
float data, as ``sr-upscale --compare`` does), so what differs between them is the method.
"""

from __future__ import annotations

import io

import numpy as np

from scopesr.sdk.compare import contrast_limits, display_plane, to_uint8

#: previews show at most this many LR pixels a side (the centre of larger images)
PREVIEW_LR_SIDE = 512


def encode(plane8: np.ndarray, fmt: str = "PNG", quality: int = 85) -> bytes:
    """An 8-bit (H, W) or (H, W, 3) array as PNG or JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(plane8))
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=quality)
    else:
        im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def bicubic(plane: np.ndarray, scale: int) -> np.ndarray:
    """PIL's bicubic x ``scale`` of a 2-D (or H, W, C) plane, in float32 (no rounding)."""
    from PIL import Image

    h, w = plane.shape[:2]
    chans = [plane] if plane.ndim == 2 else [plane[..., c] for c in range(plane.shape[-1])]
    up = [
        np.asarray(Image.fromarray(np.ascontiguousarray(c, np.float32), mode="F").resize((w * scale, h * scale), 3))
        for c in chans
    ]
    return up[0] if plane.ndim == 2 else np.stack(up, axis=-1)


def nearest(plane: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(plane, scale, axis=0), scale, axis=1)


def as_rgb_or_grey(plane: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) stay; (H, W, 1) and other channel counts show their first channel."""
    if plane.ndim == 3 and plane.shape[-1] != 3:
        return plane[..., 0]
    return plane


def count_planes(axes: str, shape: tuple[int, ...]) -> int:
    """How many 2-D planes an image has over its T and Z axes (1 for a plain image)."""
    return int(np.prod([n for a, n in zip(axes, shape) if a in "TZ"], dtype=np.int64))


def pick_plane(array: np.ndarray, axes: str, index: int | None = None) -> tuple[np.ndarray, int]:
    """Plane ``index`` (over the T and Z axes together, T outermost as stored; None: the middle one)
    as (H, W) or (H, W, 3), and the index taken."""
    lead = [i for i, a in enumerate(axes) if a in "TZ"]
    if not lead:
        return display_plane(array, axes), 0
    n = count_planes(axes, array.shape)
    k = n // 2 if index is None else int(index)
    if not 0 <= k < n:
        raise IndexError(f"plane {k}: the image has planes 0 to {n - 1}")
    moved = np.moveaxis(array, lead, list(range(len(lead))))  # a view: a memory map stays one
    pos = np.unravel_index(k, moved.shape[: len(lead)])
    rest = "".join(a for a in axes if a not in "TZ")
    return display_plane(moved[pos], rest), k


def previews(
    lr: np.ndarray, lr_axes: str, sr: np.ndarray, scale: int, side: int = PREVIEW_LR_SIDE, plane: int | None = None
) -> tuple[dict[str, bytes], dict[str, object]]:
    """PNG bytes of the LR crop (shown enlarged with nearest by the page), its bicubic and the
    model's result over the same crop, plus where the crop lies and the contrast used. Stacks
    show plane ``plane`` (None: the middle one)."""
    lp, k = pick_plane(lr, lr_axes, plane)
    lp = as_rgb_or_grey(np.asarray(lp))
    h, w = lp.shape[:2]
    ch, cw = min(h, side), min(w, side)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    lp = np.asarray(lp[y0 : y0 + ch, x0 : x0 + cw])
    sp = as_rgb_or_grey(np.asarray(pick_plane(sr, lr_axes, k)[0]))
    sp = np.asarray(sp[y0 * scale : (y0 + ch) * scale, x0 * scale : (x0 + cw) * scale])
    lo, hi = contrast_limits(lp)
    pngs = {
        "nearest": encode(to_uint8(lp, lo, hi)),
        "bicubic": encode(to_uint8(bicubic(lp, scale), lo, hi)),
        "model": encode(to_uint8(sp, lo, hi)),
    }
    n = count_planes(lr_axes, lr.shape)
    info: dict[str, object] = {
        "crop": {"y": y0, "x": x0, "height": ch, "width": cw},
        "cropped": (ch, cw) != (h, w),
        "contrast": [lo, hi],
        "planes": n,
        "plane_index": k,
        "plane": f"plane {k + 1} of {n}" if n > 1 else "whole image",
    }
    return pngs, info


def frame_view(frame: np.ndarray, limits: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """A live frame as 8 bits, with the contrast limits used (percentiles of this frame unless given)."""
    plane = as_rgb_or_grey(frame)
    lo, hi = limits if limits is not None else contrast_limits(plane)
    return to_uint8(plane, lo, hi), (lo, hi)
