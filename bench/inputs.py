"""The real images sr-bench times on: a still, its 64x64 patch and 128x128 crop, video frames.

Content does not change speed, but the inputs are real microscopy images
(``scopesr.sdk.samples``) whenever a sample package is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCALE = 4
PATCH = 64  # LR patch side (the paper's 64x64)
IMAGE_LR = 128  # LR side of the "whole 512x512 image" column (512 / 4)
ROI = 64  # LR side of the video ROI
FRAME = 256  # LR side of the video frames the ROI is cut from


def read_array(path: Path) -> np.ndarray:
    """A TIFF through tifffile, anything else through Pillow, as a numpy array."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image

    return np.asarray(Image.open(path))


def sample(key: str) -> np.ndarray | None:
    """A real sample image by its ``scopesr.sdk.samples`` key, or None when its package is missing."""
    from scopesr.sdk.samples import SAMPLES

    p = SAMPLES[key].path() if key in SAMPLES else None
    return None if p is None else read_array(p)


def speed_image() -> tuple[np.ndarray, str]:
    """A real 2-D image >= 256x256 for timing (content does not change speed, but it is real)."""
    for key, pick in (
        ("stardist-nuclei-2d", lambda a: a),
        ("napari-timelapse", lambda a: a[0]),
        ("napari-nuclei", lambda a: a[len(a) // 2]),
    ):
        a = sample(key)
        if a is not None:
            a = pick(a)
            if a.ndim == 2 and min(a.shape) >= FRAME:
                return np.ascontiguousarray(a), key
    # no sample package installed: a deterministic blob image keeps the bench usable
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    img = np.zeros((512, 512), np.float32)
    for cy, cx, r in rng.uniform([0, 0, 4], [512, 512, 16], size=(60, 3)):
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return (255 * img / img.max()).astype(np.uint8), "synthetic blobs (no sample package installed)"


def video_frames(still: np.ndarray, n: int = 8) -> list[np.ndarray]:
    """LR frames of FRAME x FRAME: the real napari time-lapse when present, else shifted crops."""
    a = sample("napari-timelapse")
    if a is not None and a.ndim == 3 and min(a.shape[1:]) >= FRAME:
        return [np.ascontiguousarray(a[i, :FRAME, :FRAME]) for i in range(min(n, len(a)))]
    h, w = still.shape[:2]
    return [
        np.ascontiguousarray(still[(7 * i) % (h - FRAME + 1) :][:FRAME, (5 * i) % (w - FRAME + 1) :][:, :FRAME])
        for i in range(n)
    ]


def with_channels(img: np.ndarray, c: int) -> np.ndarray:
    """A grey 2-D image as the model's channel count (C copies on the last axis)."""
    return img if c == 1 else np.ascontiguousarray(np.repeat(img[..., None], c, axis=-1))


@dataclass
class SpeedInputs:
    patch_raw: np.ndarray  # (64, 64) raw LR pixels
    image_lr: np.ndarray  # (128, 128) raw LR pixels
    frames: list[np.ndarray]  # (256, 256) raw LR frames
    source: str

    @property
    def roi(self) -> tuple[int, int, int, int]:
        o = (FRAME - ROI) // 2
        return (o, o, ROI, ROI)


def make_speed_inputs() -> SpeedInputs:
    img, src = speed_image()
    h, w = img.shape
    cy, cx = h // 2, w // 2
    patch = img[cy - PATCH // 2 : cy + PATCH // 2, cx - PATCH // 2 : cx + PATCH // 2]
    lr = img[cy - IMAGE_LR // 2 : cy + IMAGE_LR // 2, cx - IMAGE_LR // 2 : cx + IMAGE_LR // 2]
    return SpeedInputs(np.ascontiguousarray(patch), np.ascontiguousarray(lr), video_frames(img), src)
