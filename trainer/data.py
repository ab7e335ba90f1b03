"""Training data: HR random crops, LR by PIL down-sampling, augmentation, a seeded split.

Sources
-------
* **Human Protein Atlas layout** (``{id}_red.png``, ``_green``, ``_blue``, ``_yellow``; 8-bit
  PNG or 16-bit TIFF): composed as RGB following the paper's Table 1. Per sample, a random
  n in 1..4 picks the stains: 1 = red; 2 = red + blue; 3 = red + blue + green;
  4 = all, with yellow added to red and green (yellow = red + green light).
* **Any folder (or file list) of images / TIFF stacks**, 8/16-bit, grey or RGB: every 2-D
  plane of every file is an item (stacks and time-lapses give one item per plane).

Each 2-D plane is normalised once, on the whole image, with the card's normalisation
(percentile p_low..p_high per channel -> 0..1 by default, as the SDK does at inference),
and clipped to 0..1. The LR image is the PIL down-sampling of the HR crop (bicubic x4 by
default, with PIL's anti-aliasing, as the paper; the kernel is an option and goes into the
card as ``degradation``).

Exact resume and DDP
--------------------
The sample for a *token* (a global sample counter) depends only on ``(seed, token)``:
crop position, augmentation and the HPA stain count come from a generator seeded with it.
:class:`StepSampler` yields tokens from torch's ``DistributedSampler`` permutations (one
shard per rank) and can start at any step, so resuming a run reproduces the batches an
uninterrupted run would have seen, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from scopesr.sdk import (
    IMAGE_SUFFIXES,
    Normalisation,
    ScopesrError,
    compute_stats,
    noise,
    quality,
    read_image,
    sample_path,
)

from .errors import DataError

log = logging.getLogger(__name__)

HPA_STAINS = ("red", "green", "blue", "yellow")
_HPA_RE = re.compile(r"^(?P<id>.+)_(?P<stain>red|green|blue|yellow)\.(png|tif|tiff)$", re.IGNORECASE)
DEGRADATIONS = {
    "pil-bicubic": PILImage.Resampling.BICUBIC,
    "pil-bilinear": PILImage.Resampling.BILINEAR,
    "pil-lanczos": PILImage.Resampling.LANCZOS,
    "pil-box": PILImage.Resampling.BOX,
    "pil-hamming": PILImage.Resampling.HAMMING,
    "pil-nearest": PILImage.Resampling.NEAREST,
}
#: the blind microscope degradation (scopesr.sdk.quality.DegradationRanges, drawn per crop)
MICROSCOPY = "microscopy"
#: with ``lr_ratio_max``: draws per crop at most before the last one is kept
RATIO_TRIES = 16


@dataclass
class DataConfig:
    """Where the images are and how crops are made (saved in the run's resolved config)."""

    data: list[str] = field(default_factory=list)  # folders and/or files
    layout: str = "auto"  # auto | hpa | folder
    channels: int = 0  # 3 (RGB; grey replicated), 1 (each channel a grey item), 0 = the model's input channels
    hr_size: int = 256
    scale: int = 4
    degradation: str = "pil-bicubic"
    augment: bool = True  # random flips and 90-degree rotations
    val_fraction: float = 0.1
    val_min: int = 1  # at least this many items held out (when there are 2+ items)
    val_max: int = 64
    seed: int = 0
    norm_mode: str = "percentile"
    p_low: float = 0.1
    p_high: float = 99.9
    recursive: bool = True
    # "items": every image plane equally likely; "sources": every --data entry equally likely
    # (or as ``source_weights`` says), whatever its number of planes
    balance: str = "items"
    source_weights: dict[str, float] = field(default_factory=dict)
    # degradation = "microscopy": the ranges each crop's degradation is drawn from
    degradation_ranges: dict[str, Any] = field(default_factory=dict)
    # noise-aware model: each LR crop gets a second channel holding its estimated noise level
    # (scopesr.sdk.noise, the estimator the SDK runs per plane at inference); microscopy only
    noise_map: bool = False
    noise_map_channels: int = 1  # with noise_map: how many of sdk.noise.NOISE_MAP_FEATURES the LR carries
    # extra camera noise on a share of the HR crops, before the degradation (so both the LR image
    # and the target carry it): real references are noisy, and a faint noise texture in the LR
    # image must not be sharpened as if it were structure; microscopy only; 0 = off
    hr_noise_p: float = 0.0
    hr_noise_snr: tuple[float, float] = (15.0, 60.0)  # peak SNR of the added noise, log-uniform
    # sampling jitter: on a share of the crops the reference is resampled by a zoom z (log-uniform
    # in zoom_range; HR pixels per source pixel) before the degradation. z > 1 makes it oversampled
    # (smooth at its own pixel scale: a confocal or Airyscan image at high zoom), where the right
    # answer is a smooth one and sharpening is wrong; z < 1 makes it sharper and less noisy.
    # Microscopy only; 0 = off
    zoom_p: float = 0.0
    zoom_range: tuple[float, float] = (0.5, 3.0)
    # an expert for the frames a per-frame gate would send it: a crop is drawn again (crop and
    # degradation, same image) until its LR image's fine-to-coarse detail ratio
    # (scopesr.sdk.noise.fine_to_coarse: ~2 for white noise, ~1/4 for smooth content) is below
    # this, at most RATIO_TRIES draws (then the last is kept). Microscopy only; 0 = off
    lr_ratio_max: float = 0.0

    def ranges(self) -> quality.DegradationRanges:
        return quality.DegradationRanges.from_dict({"scale": self.scale, **self.degradation_ranges})

    def normalisation(self) -> Normalisation:
        return Normalisation(mode=self.norm_mode, p_low=self.p_low, p_high=self.p_high)

    def _check_reference_option(
        self, p_name: str, p: float, range_name: str, bounds: Sequence[float], what: str, example: str
    ) -> None:
        """A share of crops ``p`` (microscopy only) and its log-uniform range ``bounds``."""
        if not 0.0 <= p <= 1.0:
            raise DataError(f"{p_name}={p}: a probability, 0 (off) to 1")
        if p and self.degradation != MICROSCOPY:
            raise DataError(f"{p_name} needs degradation = {MICROSCOPY!r} (got {self.degradation!r})")
        b = tuple(bounds)
        if len(b) != 2 or not 0 < b[0] <= b[1]:
            raise DataError(f"{range_name}={list(b)}: {what}, 0 < low <= high, e.g. {example}")

    def validate(self) -> None:
        if not self.data:
            raise DataError(
                "no training data given: pass --data DIR (a folder of images/TIFF stacks, "
                "or a Human Protein Atlas layout folder)"
            )
        if self.layout not in ("auto", "hpa", "folder"):
            raise DataError(f"layout={self.layout!r}: use auto, hpa or folder")
        if self.channels not in (0, 1, 3):
            raise DataError(f"channels={self.channels}: 1 (grey) or 3 (RGB), 0 = the model's")
        if self.hr_size % self.scale or self.hr_size < 4 * self.scale:
            raise DataError(
                f"--hr-size {self.hr_size} must be a multiple of the scale ({self.scale}) and at least {4 * self.scale}"
            )
        if self.degradation not in DEGRADATIONS and self.degradation != MICROSCOPY:
            raise DataError(
                f"degradation {self.degradation!r}: {MICROSCOPY} (the blind microscope model) "
                f"or one of {sorted(DEGRADATIONS)}"
            )
        if self.balance not in ("items", "sources"):
            raise DataError(f"balance={self.balance!r}: items or sources")
        unknown = sorted(set(self.source_weights) - set(self.data))
        if unknown:
            raise DataError(f"source_weights names {unknown}, which are not --data entries {self.data}")
        if self.noise_map and self.degradation != MICROSCOPY:
            raise DataError(f"noise_map needs degradation = {MICROSCOPY!r} (got {self.degradation!r})")
        if not 1 <= self.noise_map_channels <= len(noise.NOISE_MAP_FEATURES):
            raise DataError(
                f"noise_map_channels must be 1..{len(noise.NOISE_MAP_FEATURES)} "
                f"({', '.join(noise.NOISE_MAP_FEATURES)}), got {self.noise_map_channels}"
            )
        self._check_reference_option(
            "hr_noise_p", self.hr_noise_p, "hr_noise_snr", self.hr_noise_snr, "two peak SNRs", "[15, 60]"
        )
        self._check_reference_option(
            "zoom_p", self.zoom_p, "zoom_range", self.zoom_range, "two zoom factors", "[0.5, 3]"
        )
        if self.lr_ratio_max < 0 or not math.isfinite(self.lr_ratio_max):
            raise DataError(f"lr_ratio_max={self.lr_ratio_max}: a fine-to-coarse ratio > 0 (0 = off), e.g. 0.7")
        if self.lr_ratio_max and self.degradation != MICROSCOPY:
            raise DataError(f"lr_ratio_max needs degradation = {MICROSCOPY!r} (got {self.degradation!r})")
        if self.degradation == MICROSCOPY:
            try:
                self.ranges()
            except quality.QualityError as exc:
                raise DataError(f"[data.degradation_ranges]: {exc}") from None
        self.normalisation().validate()


# ---------------------------------------------------------------------------- items
@dataclass(frozen=True)
class Item:
    """One training image: a plane of a file, or an HPA id (with its stain files)."""

    kind: str  # "plane" | "hpa"
    paths: tuple[str, ...]  # plane: (file,); hpa: files in HPA_STAINS order ("" when absent)
    plane: int = 0  # plane index within the file (T*Z flattened)
    channel: int = -1  # for channels=1: which channel of the plane; -1: all
    height: int = 0
    width: int = 0
    source: str = ""  # the --data entry (folder, file or spec) this item came from

    @property
    def label(self) -> str:
        if self.kind == "hpa":
            return Path(next(p for p in self.paths if p)).name.rsplit("_", 1)[0]
        c = f":c{self.channel}" if self.channel >= 0 else ""
        return f"{Path(self.paths[0]).name}[{self.plane}]{c}"


def _planes(array: np.ndarray, axes: str) -> np.ndarray:
    """Any TZCYX subset -> (P, H, W, C)."""
    a = np.asarray(array)
    for ax in "TZC":
        if ax not in axes:
            a = a[np.newaxis]
            axes = ax + axes
    order = [axes.index(x) for x in "TZYXC"]
    a = np.transpose(a, order)
    return a.reshape((-1,) + a.shape[2:])


_SPEC_RE = re.compile(
    r"^(?P<kind>sample|synthetic):(?P<name>[A-Za-z0-9_.-]+)"
    r"(?:\[(?P<start>\d*):(?P<stop>\d*)\])?(?:\?n=(?P<n>\d+))?(?P<invert>#invert)?$"
)


def is_spec(src: str) -> bool:
    """``sample:KEY`` (a real image a pip package ships) or ``synthetic:KIND`` (rendered)."""
    return src.startswith(("sample:", "synthetic:"))


def _read_spec(spec: str) -> np.ndarray:
    """A source spec -> (P, H, W, C) planes.

    ``sample:KEY[a:b]`` takes planes a..b-1 of a shipped sample (``scopesr.sdk.samples``);
    ``synthetic:KIND?n=N`` renders N images (``trainer/synthetic.py``); ``#invert`` makes an
    RGB/brightfield image grey and inverted (bright structure on a dark ground, like
    fluorescence).
    """
    m = _SPEC_RE.match(spec)
    if m is None:
        raise DataError(f"{spec}: not a source spec; use sample:KEY[a:b][#invert] or synthetic:KIND?n=N")
    if m["kind"] == "sample":
        try:
            path = sample_path(m["name"])
        except ScopesrError as exc:
            raise DataError(f"{spec}: {exc}") from None
        img = read_image(path)
        planes = _planes(img.array, img.axes)
    else:
        from .synthetic import KINDS, render_set  # noqa: PLC0415

        if m["name"] not in KINDS:
            raise DataError(f"{spec}: unknown synthetic kind; known: {', '.join(KINDS)}")
        planes = render_set(m["name"], int(m["n"] or 32))[..., None]
    if m["start"] is not None or m["stop"] is not None:
        a = int(m["start"]) if m["start"] else 0
        b = int(m["stop"]) if m["stop"] else planes.shape[0]
        if not 0 <= a < b <= planes.shape[0]:
            raise DataError(f"{spec}: planes {a}:{b} outside 0:{planes.shape[0]}")
        planes = planes[a:b]
    if m["invert"]:
        grey = planes[..., :3].astype(np.float32).mean(axis=-1, keepdims=True)
        top = float(np.iinfo(planes.dtype).max) if planes.dtype.kind in "ui" else float(grey.max())
        planes = (top - grey).astype(np.float32)
    return planes


@functools.lru_cache(maxsize=16)
def _read_planes(path: str) -> np.ndarray:
    if is_spec(path):
        return _read_spec(path)
    img = read_image(path)
    return _planes(img.array, img.axes)


def _normalised(plane: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """(H, W, C) raw -> float32 0..1 with the card's normalisation (stats of the whole plane)."""
    stats = compute_stats(plane, cfg.normalisation())
    return np.clip(stats.normalise(plane), 0.0, 1.0)


def _list_files(root: Path, recursive: bool) -> list[Path]:
    it = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def detect_channels(cfg: DataConfig) -> int:
    """3 for an HPA layout or any RGB image among the sources, else 1 (all grey)."""
    probe = DataConfig(**{**cfg.__dict__, "channels": 3, "hr_size": cfg.scale * 4})
    try:
        items = discover(probe)
    except DataError as exc:
        if "cannot be used as RGB" in str(exc):  # N-channel data: each channel a grey item
            return 1
        raise
    if any(it.kind == "hpa" for it in items):
        return 3
    multi = any(_read_planes(it.paths[0]).shape[-1] >= 3 for it in items)
    return 3 if multi else 1


def discover(cfg: DataConfig) -> list[Item]:
    """All usable items of the configured sources (sorted, so the split is reproducible)."""
    files: list[Path] = []
    source_of: dict[str, str] = {}  # file -> the --data entry it came from (for balance="sources")
    for src in cfg.data:
        if is_spec(src):
            files.append(Path(src))
            source_of[src] = src
            continue
        p = Path(src).expanduser()
        source_of.update(
            {str(f): src for f in ([p] if p.is_file() else _list_files(p, cfg.recursive) if p.is_dir() else [])}
        )
        if p.is_dir():
            found = _list_files(p, cfg.recursive)
            if not found:
                raise DataError(f"{p}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder (check --data)")
    hpa: dict[str, dict[str, str]] = {}
    for f in files:
        m = _HPA_RE.match(f.name)
        if m:
            hpa.setdefault(str(f.parent / m["id"]), {})[m["stain"].lower()] = str(f)
    layout = cfg.layout
    if layout == "auto":
        n_hpa = sum(len(v) for v in hpa.values())
        layout = "hpa" if hpa and 2 * n_hpa >= len(files) else "folder"  # mostly {id}_{stain} files
    if cfg.channels not in (1, 3):
        raise DataError(f"channels={cfg.channels}: resolve to 1 or 3 before reading the data")
    items: list[Item] = []
    too_small = 0
    if layout == "hpa":
        if cfg.channels != 3:
            raise DataError("the HPA layout is composed as RGB: use channels=3")
        for key in sorted(hpa):
            stains = hpa[key]
            if "red" not in stains:
                log.warning("%s: HPA id without a _red image, skipped", key)
                continue
            h, w = _read_planes(stains["red"]).shape[1:3]
            if min(h, w) < cfg.hr_size:
                too_small += 1
                continue
            items.append(Item("hpa", tuple(stains.get(s, "") for s in HPA_STAINS), 0, -1, h, w))
    else:
        for f in files:
            f = f if not is_spec(str(f)) else str(f)  # type: ignore[assignment]
            planes = _read_planes(str(f))
            n, h, w, c = planes.shape
            if min(h, w) < cfg.hr_size:
                too_small += 1
                continue
            if cfg.channels == 3 and c not in (1, 3, 4):
                raise DataError(
                    f"{f}: {c} channels cannot be used as RGB; train with channels=1 (each channel becomes a grey item)"
                )
            for i in range(n):
                src = source_of.get(str(f), str(f))
                if cfg.channels == 1:
                    items += [Item("plane", (str(f),), i, ch, h, w, src) for ch in range(c)]
                else:
                    items.append(Item("plane", (str(f),), i, -1, h, w, src))
    if too_small:
        log.warning("%d image(s) smaller than --hr-size %d were skipped", too_small, cfg.hr_size)
    if not items:
        raise DataError(
            f"{', '.join(cfg.data)}: no image is at least {cfg.hr_size}x{cfg.hr_size}; "
            "lower --hr-size or add larger images"
        )
    return items


def split(items: Sequence[Item], cfg: DataConfig) -> tuple[list[Item], list[Item]]:
    """Validation split fixed by the seed: same data + seed -> same split."""
    n = len(items)
    if n < 2:
        log.warning("only one image: validating on it too (not a held-out score)")
        return list(items), list(items)
    k = min(max(cfg.val_min, round(n * cfg.val_fraction)), cfg.val_max, n - 1)
    perm = np.random.default_rng([cfg.seed, 7919]).permutation(n)
    val = sorted(int(i) for i in perm[:k])
    vset = set(val)
    return [items[i] for i in range(n) if i not in vset], [items[i] for i in val]


# ---------------------------------------------------------------------------- samples
def load_item(item: Item, cfg: DataConfig, n_stains: int = 4) -> np.ndarray:
    """The normalised HR image of an item, (H, W, C) float32 in 0..1."""
    if item.kind == "hpa":
        planes = {}
        for stain, p in zip(HPA_STAINS, item.paths):
            if p:
                a = _read_planes(p)[0]
                planes[stain] = _normalised(a[..., :1], cfg)[..., 0]
        z = np.zeros((item.height, item.width), np.float32)
        r, g, b, y = (planes.get(s, z) for s in HPA_STAINS)
        # Table 1: 1 = r, 2 = r+b, 3 = r+b+g, 4 = r+b+g+y (yellow light = red + green)
        rgb = np.stack([r, g if n_stains >= 3 else z, b if n_stains >= 2 else z], axis=-1)
        if n_stains >= 4:
            rgb[..., 0] += y
            rgb[..., 1] += y
        return np.clip(rgb, 0.0, 1.0)
    plane = _read_planes(item.paths[0])[item.plane]
    if item.channel >= 0:
        plane = plane[..., item.channel : item.channel + 1]
    elif cfg.channels == 3:
        if plane.shape[-1] == 1:
            plane = np.repeat(plane, 3, axis=-1)
        plane = plane[..., :3]  # RGBA -> RGB
    return _normalised(plane, cfg)


def downsample(hr: np.ndarray, scale: int, degradation: str = "pil-bicubic") -> np.ndarray:
    """(H, W, C) float32 -> (H/s, W/s, C) with PIL's resampling in float (mode 'F')."""
    h, w, c = hr.shape
    method = DEGRADATIONS[degradation]
    out = [
        np.asarray(
            PILImage.fromarray(np.ascontiguousarray(hr[..., i]), mode="F").resize((w // scale, h // scale), method)
        )
        for i in range(c)
    ]
    return np.stack(out, axis=-1).astype(np.float32)


def _augment(a: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 dihedral transforms (flips + 90-degree rotations)."""
    if code & 4:
        a = a[:, ::-1]
    return np.rot90(a, k=code & 3, axes=(0, 1))


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


# ---------------------------------------------------------------------------- microscope pairs
def raw_plane(item: Item) -> np.ndarray:
    """An item's plane in its raw intensities, 2-D float64 (one channel)."""
    plane = _read_planes(item.paths[0])[item.plane]
    ch = max(item.channel, 0)
    return plane[..., ch].astype(np.float64)


@functools.lru_cache(maxsize=512)
def _levels(path: str, plane: int, channel: int) -> tuple[float, float, str]:
    """(p0.1, p99.9, dtype) of a whole plane: where the source's dark and bright levels are."""
    a = _read_planes(path)[plane][..., max(channel, 0)]
    lo, hi = np.percentile(a, (0.1, 99.9))
    return float(lo), float(hi), str(a.dtype)


def microscope_pair(
    item: Item, cfg: DataConfig, rng: np.random.Generator, deg: quality.Degradation | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A random HR crop of ``item`` and its LR twin under a random microscope degradation.

    Both are normalised the way the SDK normalises at inference (an affine map taken from
    the LR image's dark and bright levels), so the network learns in the units it will see:
    half the time the levels come from the whole image (what the SDK computes), half from the
    LR crop itself; the scale and offset are then jittered so the model does not depend on
    the exact percentiles. Returns (LR, HR) as (h, w, 1) and (H, W, 1) float32.
    """
    s = cfg.hr_size
    full = raw_plane(item)
    lo, hi, dtype = _levels(item.paths[0], item.plane, item.channel)
    side = s  # the crop, in source pixels; resampled to s x s when zoomed
    if cfg.zoom_p and rng.random() < cfg.zoom_p:  # no draw when off: old runs replay exactly
        side = min(max(8, round(s / quality.loguniform(rng, *cfg.zoom_range))), *full.shape)
    for _ in range(8):  # mostly skip near-empty crops: they teach little, but keep some background
        y = int(rng.integers(0, full.shape[0] - side + 1))
        x = int(rng.integers(0, full.shape[1] - side + 1))
        hr = full[y : y + side, x : x + side]
        if np.ptp(hr) >= 0.05 * (hi - lo) or rng.random() < 0.2:
            break
    if side != s:
        hr = resample_reference(hr, s)
    if cfg.augment:
        hr = _augment(hr, int(rng.integers(0, 8)))
    if cfg.hr_noise_p and rng.random() < cfg.hr_noise_p:  # no draw when off: old runs replay exactly
        hr = noisier_reference(hr, lo, hi, rng, cfg.hr_noise_snr)
    deg = deg or cfg.ranges().sample(rng)
    lr, target = deg.apply(np.ascontiguousarray(hr), rng, lo=lo, hi=hi, dtype=dtype)
    lrf = lr.astype(np.float64)
    span_img = hi - lo if hi > lo else 1.0
    if deg.bits:
        gain, off = deg.exposure * (2**deg.bits - 1), deg.offset * (2**deg.bits - 1)
        n_lo, n_hi = off + gain * deg.background, off + gain * (1.0 + deg.background)
    else:
        n_lo, n_hi = lo + span_img * deg.background, hi + span_img * deg.background
    if rng.random() < 0.5:
        c_lo, c_hi = np.percentile(lrf, (cfg.p_low, cfg.p_high))
        if c_hi - c_lo >= 0.25 * (n_hi - n_lo):  # never stretch a near-empty crop's noise to 0..1
            n_lo, n_hi = float(c_lo), float(c_hi)
    span = (n_hi - n_lo) * math.exp(rng.uniform(-0.3, 0.4))
    n_lo += rng.uniform(-0.05, 0.05) * span
    span = max(span, 1e-6)
    return _pair((lrf - n_lo) / span, (target - n_lo) / span, cfg.noise_map_channels if cfg.noise_map else 0)


def resample_reference(crop: np.ndarray, size: int) -> np.ndarray:
    """A square crop (raw units) resampled to ``size`` x ``size``: bicubic, anti-aliased when it
    shrinks (PIL), clipped to the crop's own range (no overshoot below its dark level)."""
    out = np.asarray(
        PILImage.fromarray(np.ascontiguousarray(crop, dtype=np.float32), mode="F").resize(
            (size, size), PILImage.Resampling.BICUBIC
        ),
        dtype=np.float64,
    )
    return np.clip(out, float(crop.min()), float(crop.max()))


def noisier_reference(
    hr: np.ndarray, lo: float, hi: float, rng: np.random.Generator, snr_range: Sequence[float]
) -> np.ndarray:
    """``hr`` (raw units, dark level ``lo``, bright level ``hi``) re-acquired with shot noise of a
    random peak SNR (log-uniform in ``snr_range``): float64, same units, mean unchanged."""
    span = hi - lo if hi > lo else 1.0
    snr = quality.loguniform(rng, snr_range[0], snr_range[1])
    peak = quality.photons_for_snr(snr)
    sig = np.clip((np.asarray(hr, np.float64) - lo) / span, 0.0, None)
    return lo + span * rng.poisson(peak * sig) / peak


def _pair(lr: np.ndarray, hr: np.ndarray, noise_map: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised 2-D LR and HR -> (h, w, C) float32 arrays; the LR has 1 + ``noise_map``
    channels (the noise-map features, each a constant plane)."""
    lr32 = lr.astype(np.float32)[..., None]
    if noise_map:
        levels = [np.full_like(lr32, v) for v in noise.noise_map_values(lr, noise_map)]
        lr32 = np.concatenate([lr32, *levels], axis=-1)
    return lr32, hr.astype(np.float32)[..., None]


class TrainDataset(Dataset):
    """token -> (LR, HR) tensors, a function of (seed, token) only (see module docstring)."""

    def __init__(self, items: Sequence[Item], cfg: DataConfig) -> None:
        self.items = list(items)
        self.cfg = cfg
        # balance="sources": items grouped by source, each source drawn by its weight
        self.groups: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            self.groups.setdefault(it.source or it.paths[0], []).append(i)
        keys = list(self.groups)
        w = np.asarray([float(cfg.source_weights.get(k, 1.0)) for k in keys])
        self.group_keys, self.group_p = keys, w / w.sum()

    def __len__(self) -> int:
        return len(self.items)

    def pick(self, token: int, rng: np.random.Generator) -> Item:
        if self.cfg.balance == "sources":
            g = self.groups[self.group_keys[int(rng.choice(len(self.group_keys), p=self.group_p))]]
            return self.items[g[int(rng.integers(len(g)))]]
        return self.items[token % len(self.items)]

    def __getitem__(self, token: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 104729, int(token)])
        item = self.pick(token, rng)
        if cfg.degradation == MICROSCOPY:
            lr, hr = microscope_pair(item, cfg, rng)
            for _ in range(RATIO_TRIES - 1 if cfg.lr_ratio_max else 0):  # no extra draw when off
                if noise.fine_to_coarse(lr[..., 0]) < cfg.lr_ratio_max:
                    break
                lr, hr = microscope_pair(item, cfg, rng)
            return to_tensor(lr), to_tensor(hr)
        n_stains = int(rng.integers(1, 5))
        hr_full = load_item(item, cfg, n_stains)
        s = cfg.hr_size
        y = int(rng.integers(0, hr_full.shape[0] - s + 1))
        x = int(rng.integers(0, hr_full.shape[1] - s + 1))
        hr = hr_full[y : y + s, x : x + s]
        if cfg.augment:
            hr = _augment(hr, int(rng.integers(0, 8)))
        hr = np.ascontiguousarray(hr)
        lr = downsample(hr, cfg.scale, cfg.degradation)
        return to_tensor(lr), to_tensor(hr)


def validation_set(
    items: Sequence[Item], cfg: DataConfig, size: int | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation pairs: the centre crop (``size``, default hr_size) of each item,
    all four HPA stains, no augmentation."""
    s = size or cfg.hr_size
    if items:  # never larger than the smallest validation image: the crops are stacked
        s = min(s, *(min(it.height, it.width) for it in items))
    s -= s % cfg.scale
    out = []
    if cfg.degradation == MICROSCOPY:  # fixed pairs: centre crops, one fixed draw per item
        ranges = cfg.ranges()
        for i, it in enumerate(items):
            lr, hr = _centre_pair(it, cfg, ranges, np.random.default_rng([cfg.seed, 15485863, i]), s)
            out.append((to_tensor(lr), to_tensor(hr)))
        return out
    for it in items:
        hr = load_item(it, cfg, 4)
        y, x = (hr.shape[0] - s) // 2, (hr.shape[1] - s) // 2
        hr = np.ascontiguousarray(hr[max(0, y) : max(0, y) + s, max(0, x) : max(0, x) + s])
        out.append((to_tensor(downsample(hr, cfg.scale, cfg.degradation)), to_tensor(hr)))
    return out


def _centre_pair(
    item: Item, cfg: DataConfig, ranges: quality.DegradationRanges, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A validation pair: the centre ``size`` crop under one seeded draw, whole-image levels for
    the degradation and the LR image's own percentiles for normalisation (no jitter)."""
    lo, hi, dtype = _levels(item.paths[0], item.plane, item.channel)
    full = raw_plane(item)
    y, x = (full.shape[0] - size) // 2, (full.shape[1] - size) // 2
    hr = np.ascontiguousarray(full[y : y + size, x : x + size])
    lr, target = ranges.sample(rng).apply(hr, rng, lo=lo, hi=hi, dtype=dtype)
    lrf = lr.astype(np.float64)
    n_lo, n_hi = np.percentile(lrf, (cfg.p_low, cfg.p_high))
    span = max(float(n_hi - n_lo), 1e-6)
    return _pair((lrf - n_lo) / span, (target - n_lo) / span, cfg.noise_map_channels if cfg.noise_map else 0)


class StepSampler(Sampler[int]):
    """Endless stream of tokens for one rank, starting at any step.

    Epoch ``e`` is torch's ``DistributedSampler`` permutation (seed, epoch e) of the items,
    sharded by rank; token = ``e * n + index`` so every epoch draws fresh crops.
    """

    def __init__(
        self, n_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> None:
        self.n = n_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world_size
        self.start_step = start_step

    def __len__(self) -> int:  # endless; DataLoader only needs it for len(loader)
        return 2**62

    def __iter__(self) -> Iterator[int]:
        per_rank = math.ceil(self.n / self.world)
        skip = self.start_step * self.batch_size
        epoch, offset = divmod(skip, per_rank)
        while True:
            ds = DistributedSampler(
                range(self.n),
                num_replicas=self.world,
                rank=self.rank,  # type: ignore[arg-type]
                shuffle=True,
                seed=self.seed,
            )
            ds.set_epoch(epoch)
            for i in list(ds)[offset:]:
                yield epoch * self.n + int(i)
            epoch += 1
            offset = 0


def make_loader(
    dataset: TrainDataset,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    sampler = StepSampler(len(dataset), batch_size, seed, rank, world_size, start_step)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )


def summary(cfg: DataConfig, train: Sequence[Item], val: Sequence[Item]) -> dict[str, Any]:
    """What the card records about the data."""
    kinds = {it.kind for it in train}
    out = {
        "sources": [d if is_spec(d) else str(Path(d).expanduser()) for d in cfg.data],
        "provenance": [provenance(d) for d in cfg.data],
        "layout": "hpa" if kinds == {"hpa"} else "folder",
        "train_items": len(train),
        "val_items": len(val),
        "val_labels": [it.label for it in val][:64],
        "hr_size": cfg.hr_size,
        "scale": cfg.scale,
        "channels": cfg.channels,
        "degradation": cfg.degradation,
        "augment": cfg.augment,
        "split_seed": cfg.seed,
        "balance": cfg.balance,
        "source_weights": dict(cfg.source_weights),
    }
    if cfg.degradation == MICROSCOPY:
        out["degradation_ranges"] = cfg.ranges().to_dict()
    # options that change the references, recorded only when on (cards of older runs stay as they were)
    if cfg.hr_noise_p:
        out["hr_noise"] = {"p": cfg.hr_noise_p, "snr": list(cfg.hr_noise_snr)}
    if cfg.zoom_p:
        out["zoom"] = {"p": cfg.zoom_p, "range": list(cfg.zoom_range)}
    if cfg.lr_ratio_max:
        out["lr_ratio_max"] = cfg.lr_ratio_max
    return out


def provenance(src: str) -> dict[str, Any]:
    """Where a --data entry comes from: package, version, file, planes, licence (for the card)."""
    m = _SPEC_RE.match(src) if is_spec(src) else None
    if m is None:
        return {"source": src, "kind": "user files"}
    planes = None if m["start"] is None and m["stop"] is None else f"{m['start'] or 0}:{m['stop'] or ''}"
    if m["kind"] == "synthetic":
        return {
            "source": src,
            "kind": "synthetic",
            "generator": "scopesr.trainer.synthetic",
            "images": int(m["n"] or 32),
            "licence": "generated",
        }
    from importlib import metadata  # noqa: PLC0415

    from scopesr.sdk.samples import SAMPLES  # noqa: PLC0415

    smp = SAMPLES.get(m["name"])
    if smp is None:
        return {"source": src, "kind": "sample", "error": "unknown sample"}
    try:
        version = metadata.version(smp.package.replace("_", "-"))
    except metadata.PackageNotFoundError:
        version = None
    return {
        "source": src,
        "kind": "sample",
        "package": smp.package,
        "version": version,
        "file": smp.relpath,
        "planes": planes or "all",
        "licence": smp.licence,
        "transform": "grey, inverted" if m["invert"] else None,
    }


def heldout_images(specs: Sequence[str], scale: int, max_planes: int = 6) -> list[quality.EvalImage]:
    """Held-out reference images: every spec's planes (at most ``max_planes``, evenly spaced),
    one channel, cropped to a multiple of ``scale``, in their own dtype."""
    out: list[quality.EvalImage] = []
    for spec in specs:
        planes = _read_planes(spec)
        idx = np.unique(np.linspace(0, planes.shape[0] - 1, min(max_planes, planes.shape[0])).round().astype(int))
        for i in idx:
            a = planes[i][..., 0]
            h, w = a.shape
            a = a[: h - h % scale, : w - w % scale]
            name = spec if planes.shape[0] == 1 else f"{spec}[{i}]"
            out.append(quality.EvalImage(name, spec, np.ascontiguousarray(a)))
    return out
