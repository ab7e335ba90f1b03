"""Map raw pixel values to the model's input range and back, as the card's Normalisation says.

Statistics are computed ONCE per 2-D image (frame) and channel, never per tile, so a
tiled run sees exactly the numbers a whole-image run sees. On a large image (or an
np.memmap) the percentiles come from a deterministic strided subsample of at most
``MAX_STAT_VALUES`` values per channel, so an 8192x8192 image is never copied whole into
floats. The inverse map is the same affine transform, so the output keeps the input's
intensity scale; integer outputs are rounded and clipped to their dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .card import Normalisation
from .errors import ModelIOError

#: per channel, the most values used to estimate percentiles (~16 MB as float32)
MAX_STAT_VALUES = 4_000_000

#: float images: normalised values are clipped to the float16 range, so no runtime precision
#: (fp16 artifacts included) turns a finite outlier into inf; typical values are O(1)
MAX_NORMALISED = 65504.0

#: dtypes processed natively; others either convert trivially (float16/64) or are refused
NATIVE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
FLOAT_CONVERTIBLE = (np.dtype(np.float16), np.dtype(np.float64))


def check_dtype(dtype: np.dtype, where: str = "image") -> None:
    """Accept uint8, uint16, float32 (and float16/float64, run in float32); refuse the rest.

    Signed and wide integers are refused rather than guessed at: their range (is int16 data
    signed? is uint32 a label image?) is ambiguous, and a silent wrong guess is worse.
    """
    dtype = np.dtype(dtype)
    if dtype in NATIVE_DTYPES or dtype in FLOAT_CONVERTIBLE:
        return
    raise ModelIOError(
        f"{where}: unsupported pixel type {dtype} (scopesr takes uint8, uint16 or float32 images). "
        "Convert it first, e.g. image.astype(np.uint16) for non-negative integer data or "
        "image.astype(np.float32)."
    )


@dataclass(frozen=True)
class Stats:
    """Per-channel affine map: normalised = (raw - lo) / scale."""

    lo: np.ndarray  # (C,) float64
    scale: np.ndarray  # (C,) float64, > 0
    # derived in __post_init__ (not constructor arguments, not in repr or ==)
    _lo32: np.ndarray = field(init=False, repr=False, compare=False)
    _scale32: np.ndarray = field(init=False, repr=False, compare=False)
    _inv32: np.ndarray = field(init=False, repr=False, compare=False)
    _lo64: np.ndarray = field(init=False, repr=False, compare=False)
    _scale64: np.ndarray = field(init=False, repr=False, compare=False)
    _inv64: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # float32 copies made once per frame, not per tile (normalise/denormalise run per tile);
        # integer images only use them (a float image's range may not fit float32: below)
        with np.errstate(over="ignore"):
            object.__setattr__(self, "_lo32", np.asarray(self.lo, dtype=np.float32))
            object.__setattr__(self, "_scale32", np.asarray(self.scale, dtype=np.float32))
            object.__setattr__(self, "_inv32", (1.0 / np.asarray(self.scale, dtype=np.float64)).astype(np.float32))
        # float images are mapped in float64: a value range of 1e-40 (1/scale overflows float32)
        # or of +-3e38 (raw - lo overflows float32) stays finite
        object.__setattr__(self, "_lo64", np.asarray(self.lo, dtype=np.float64))
        object.__setattr__(self, "_scale64", np.asarray(self.scale, dtype=np.float64))
        object.__setattr__(self, "_inv64", 1.0 / np.asarray(self.scale, dtype=np.float64))

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """(..., C) raw pixels -> float32 in the model's range."""
        if raw.dtype.kind == "f":  # float64 arithmetic, clipped: finite in, finite out
            with np.errstate(over="ignore"):  # a difference beyond float64 becomes inf, then clipped
                x = np.subtract(raw, self._lo64, dtype=np.float64)
                x *= self._inv64
            np.clip(x, -MAX_NORMALISED, MAX_NORMALISED, out=x)
            return x.astype(np.float32)
        x = np.subtract(raw, self._lo32, dtype=np.float32)  # the cast fused into the subtraction
        x *= self._inv32
        return x

    def denormalise(
        self, y: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None, overwrite_input: bool = False
    ) -> np.ndarray:
        """(..., C) float32 model output -> ``dtype`` pixels (ints rounded half up and clipped).

        ``overwrite_input``: work in ``y`` itself (the tiler's own scratch output) instead of
        a temporary: at 640x480 out, per camera frame, the allocation and one pass matter.
        """
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            # float64, then clipped to the output dtype's finite range (float16 tops out at
            # 65504): a finite input never comes back as inf (NaN from the model stays NaN)
            with np.errstate(over="ignore", invalid="ignore"):
                v = np.multiply(y, self._scale64, dtype=np.float64)
                v += self._lo64
            info = np.finfo(dtype)
            np.clip(v, float(info.min), float(info.max), out=v)
            if out is not None:
                out[...] = v
                return out
            return v.astype(dtype)
        bounds = _int_bounds(dtype)
        if overwrite_input and y.dtype == np.float32 and y.flags.writeable:
            v = np.multiply(y, self._scale32, out=y)
        else:
            v = np.multiply(y, self._scale32, dtype=np.float32)
        # + 0.5 then truncation by the cast = round half up, one pass cheaper than np.rint;
        # the integer dtypes here are unsigned (check_dtype), so clipping at 0 first makes
        # truncation and floor agree. The clip writes ``out`` itself (clip and cast in one
        # pass): on a 64x64 ROI each pass over the output is a measurable part of the frame
        v += (self._lo32 + np.float32(0.5)) if bounds else self._lo32
        if bounds:
            if out is None:
                out = np.empty(v.shape, dtype)
            np.clip(v, bounds[0], bounds[1], out=out, casting="unsafe")
            return out
        if out is not None:
            out[...] = v  # casts to out's dtype
            return out
        return v.astype(dtype, copy=False)


#: integer output dtype -> its (min, max) as float32 arrays for np.clip; None for floats
_BOUNDS: dict[np.dtype, tuple[np.ndarray, np.ndarray] | None] = {}


def _int_bounds(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """Looked up once per dtype (np.iinfo and np.issubdtype cost more than a tile's clip)."""
    try:
        return _BOUNDS[dtype]
    except KeyError:
        pass
    b: tuple[np.ndarray, np.ndarray] | None
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        b = (np.array([info.min], np.float32), np.array([info.max], np.float32))
    else:
        b = None
    _BOUNDS[dtype] = b
    return b


def subsample(plane: np.ndarray, max_values: int = MAX_STAT_VALUES) -> np.ndarray:
    """A deterministic strided view of a (H, W, C) plane with at most ``max_values`` pixels.

    Slicing a memmap with strides reads only those rows/pixels: no full copy.
    """
    h, w = plane.shape[:2]
    step = max(1, math.ceil(math.sqrt(h * w / max_values)))
    return np.asarray(plane[::step, ::step])


def percentile_pair(v: np.ndarray, q_low: float, q_high: float) -> tuple[float, float]:
    """``np.percentile(v, [q_low, q_high])`` (linear interpolation) from one partition.

    Same definition as numpy's default, without its generic machinery: per camera frame
    np.percentile cost more than a tenth of a 64x64 ROI's whole budget.
    """
    v = np.ravel(v)
    n = v.size
    pos = [(n - 1) * q / 100.0 for q in (q_low, q_high)]
    kth = sorted({min(int(p) + d, n - 1) for p in pos for d in (0, 1)})
    # the order statistics as Python floats in one call (not one numpy scalar each)
    part = dict(zip(kth, np.partition(v, kth)[kth].tolist()))
    res = []
    for p in pos:
        i = int(p)
        a, b = float(part[i]), float(part[min(i + 1, n - 1)])
        res.append(a + (b - a) * (p - i))
    return res[0], res[1]


def compute_stats(plane: np.ndarray, norm: Normalisation) -> Stats:
    """Statistics of one 2-D image ``plane`` (H, W, C) for the card's normalisation."""
    c = plane.shape[-1]
    dtype = plane.dtype
    if norm.mode == "range":
        if dtype == np.uint8:
            hi = 255.0
        elif dtype == np.uint16:
            hi = 65535.0
        else:
            hi = 1.0  # float data is taken as already in 0..1
        return Stats(np.zeros(c), np.full(c, hi))
    sample = subsample(plane).reshape(-1, c)
    floating = np.issubdtype(dtype, np.floating)
    if floating:
        sample = sample.astype(np.float64, copy=False)  # float32 would overflow a +-3e38 range
        if not np.isfinite(sample).all():
            raise ModelIOError("image contains NaN or infinite values; replace them (e.g. np.nan_to_num) first")
    lo = np.empty(c)
    scale = np.empty(c)
    for ch in range(c):
        v = sample[:, ch]
        # integers stay integers: partitioning uint8/uint16 needs no float copy
        p_lo, p_hi = percentile_pair(v, norm.p_low, norm.p_high)
        den = float(p_hi - p_lo)
        if not (den > 0 and math.isfinite(den)):
            # flat percentile band (e.g. a mostly dark image): fall back to the full range of
            # the sample, and to 1 for a constant image, so nothing divides by ~0
            den = float(v.max()) - float(v.min())
            if not (den > 0 and math.isfinite(den)):
                # a range wider than float64 holds (+-1.7e308) is taken as float64's widest
                den = float(np.finfo(np.float64).max) if den == math.inf else 1.0
        # a range below float64's smallest normal number: 1/den would overflow (float64 images
        # of 1e-320); map it as if it were that small, so the result stays finite
        den = max(den, np.finfo(np.float64).tiny)
        lo[ch] = float(p_lo)
        scale[ch] = den
    # integer samples always give finite statistics: the check is for float images
    if floating and not (np.all(np.isfinite(lo)) and np.all(np.isfinite(scale))):
        raise ModelIOError("image contains NaN or infinite values; replace them (e.g. np.nan_to_num) first")
    return Stats(lo, scale)
