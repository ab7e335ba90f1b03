"""``scopesr.sdk.load(path) -> Upscaler``: seam-free tiled super-resolution over any artifact.

    >>> import scopesr.sdk as sr
    >>> up = sr.load("model.onnx")            # or .tflite / .pt2 / .mlpackage, or "default"
    >>> hr = up.upscale(image)                # (H, W[, C]) or a stack, uint8/uint16/float32
    >>> for f in up.stream(frames, roi=(x, y, w, h)): show(f.image, f.fps)

Axes are strings over T, Z, C, Y, X (Y and X required, at most one C). When not given:
2-D -> YX; 3-D with last dim <= 4 -> YXC; other 3-D -> a stack ZYX; 4-D -> TYXC.
The output keeps the input's axes order and dtype. Normalisation statistics are computed
once per 2-D frame and channel (never per tile), so tiled equals whole-image inference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import Backend, has_module
from .backends.registry import open_backend
from .card import CARD_SUFFIX, FORMATS, ModelCard, card_path_for
from .cpu import describe_cpu
from .ensemble import check_ensemble
from .ensemble import forward as ensemble_forward
from .ensemble import inverse as ensemble_inverse
from .errors import CardError, InputError, ModelError, ModelIOError
from .noise import noise_fraction
from .normalize import Stats, check_dtype, compute_stats
from .quality import upscale_bicubic
from .tiles import parse_tile
from .tiling import DEFAULT_TILE, TilePlan, Window, iter_bands, make_plan, read_tile, tile_index

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
#: the bundled models by name. "default" is blind to the degradation (noise, binning, blur,
#: aliasing); "low-noise" is the same network trained without noise, for images that carry
#: little (averaged confocal, long exposures): sharper there, weaker on noisy frames; "large" is
#: the default grown to 32 channels and 8 layers (4.7x its work per pixel), for stills on a desktop
#: where speed matters less than the last tenth of a dB: too slow for live frames on the edge.
BUNDLES = ("default", "low-noise", "large")


def bundle_dir(name: str) -> Path:
    """The folder of bundled model ``name``: the default's files in MODELS_DIR, another's in
    its own subfolder (load("default") considers every artifact with a card in its folder)."""
    if name not in BUNDLES:
        raise InputError(f"no bundled model {name!r}; bundled: {', '.join(BUNDLES)}")
    return MODELS_DIR if name == "default" else MODELS_DIR / name


def bundle_files(name: str) -> dict[str, str]:
    """format -> file name of bundled model ``name``. Each has its own stem because a card is
    NAME.card.json: x.onnx and x.tflite would otherwise share (and overwrite) one card."""
    return {
        "onnx": f"{name}.onnx",
        "tflite": f"{name}-fp32.tflite",
        "tflite-int8": f"{name}-int8.tflite",
        "onnx-int8": f"{name}-onnx-int8.onnx",
        "safetensors": f"{name}-weights.safetensors",
    }


DEFAULT_MODELS = bundle_files("default")
#: the bundled formats a runtime runs (the weights file is for training and conversion)
RUNNABLE_FORMATS = tuple(k for k in DEFAULT_MODELS if k != "safetensors")
#: card.extra key: the noise level (fraction of the normalised range, estimated per plane by
#: scopesr.sdk.noise) above which a model trained without noise warns about its input
NOISE_WARNING_KEY = "warn_noise_above"
NOISE_CHECK_RUN = 10  # planes of one shape checked in a row before the checks slow down
NOISE_CHECK_INTERVAL_S = 1.0  # then: seconds between two checks
AXES_LETTERS = set("TZCYX")
PLAN_CACHE_SIZE = 64  # tile plans remembered per Upscaler (image sizes seen)
FINITE_CHECK_VALUES = 1 << 22  # values per chunk of the NaN/inf scan: bounded memory on memmaps
#: the range of ``strength`` (0: PIL bicubic, 1: the model, above 1: more of its change)
STRENGTH_RANGE = (0.0, 2.0)


def whole_plane_options(ensemble: int, strength: float) -> list[str]:
    """Which of ``upscale``'s options given here compute each plane whole in memory (so not on
    results streamed to disk or written block by block): "ensemble" and/or "strength"."""
    return [n for n, on in (("ensemble", ensemble > 1), ("strength", strength != 1.0)) if on]


def check_strength(strength: object) -> float:
    """``strength`` as a float in STRENGTH_RANGE, or an InputError saying what it means."""
    lo, hi = STRENGTH_RANGE
    value = float(strength) if isinstance(strength, (int, float, np.integer, np.floating)) else math.nan
    if isinstance(strength, bool) or not lo <= value <= hi:  # NaN fails the comparison too
        raise InputError(
            f"strength must be a number from {lo:g} (bicubic) to {hi:g}; 1 is the model's own result, got {strength!r}"
        )
    return value


# ---------------------------------------------------------------------------- default model
def default_model_path(fmt: str = "onnx", *, must_exist: bool = True, bundle: str = "default") -> Path:
    """Path of bundled model ``bundle`` (default, low-noise or large) in ``fmt`` (a key of
    :func:`bundle_files`: onnx, tflite, tflite-int8, onnx-int8, safetensors).

    ``must_exist=False`` just returns where it belongs (for the recipe that bundles it).
    """
    folder = bundle_dir(bundle)
    if fmt not in DEFAULT_MODELS:
        raise InputError(f"default model format {fmt!r} is not one of {sorted(DEFAULT_MODELS)}")
    p = folder / bundle_files(bundle)[fmt]
    if must_exist and not p.exists():
        raise ModelError(
            f"the bundled {bundle} model ({fmt}) is not in this install: {p} does not exist "
            "(it has not been built/bundled yet). Pass a model path instead, e.g. "
            "load('my_model.onnx') or sr-upscale --model my_model.onnx."
        )
    return p


def _default_for(backend: str) -> Path:
    """The bundled artifact that fits the installed runtime: ONNX (fp32), else TFLite int8.

    TFLite gets the int8 file: about 3.7x faster than its fp32 twin on a CPU for about 0.06 dB of
    held-out PSNR (the cards hold both), which is what a Pi needs.
    """
    from .backends.tflite_backend import RUNTIMES

    has_tflite = any(has_module(m.split(".")[0]) for m, _ in RUNTIMES)
    if backend == "tflite" or (backend == "auto" and not has_module("onnxruntime") and has_tflite):
        return default_model_path("tflite-int8")
    if backend in ("auto", "onnx"):
        return default_model_path("onnx")
    raise InputError(
        f"the bundled default model has no {backend} artifact; use backend='onnx' or 'tflite', or pass a model path"
    )


# ---------------------------------------------------------------------------- axes
def resolve_axes(shape: tuple[int, ...], axes: str | None) -> str:
    """Validate ``axes`` against ``shape`` or infer them (see the module docstring)."""
    nd = len(shape)
    if axes is None:
        if nd == 2:
            return "YX"
        if nd == 3:
            return "YXC" if shape[-1] <= 4 else "ZYX"
        if nd == 4:
            return "TYXC"
        raise ModelIOError(f"cannot guess the axes of a {nd}-D image {tuple(shape)}; pass axes=, e.g. 'TZYX'")
    if not isinstance(axes, str):
        raise InputError(f"axes must be a string of letters from T, Z, C, Y, X (e.g. 'YX', 'ZYX'), got {axes!r}")
    axes = axes.upper()
    if len(axes) != nd:
        raise ModelIOError(f"axes {axes!r} has {len(axes)} letters but the image has {nd} dimensions {tuple(shape)}")
    bad = set(axes) - AXES_LETTERS
    if bad or len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise ModelIOError(f"axes {axes!r}: use distinct letters from T, Z, C, Y, X, with Y and X present")
    return axes


def _check_finite(plane: np.ndarray) -> None:
    """NaN/inf scan of a float (H, W, C) plane in row chunks (bounded memory on a memmap)."""
    if not np.issubdtype(plane.dtype, np.floating):
        return
    rows = max(1, FINITE_CHECK_VALUES // max(1, plane.shape[1] * plane.shape[2]))
    for r in range(0, plane.shape[0], rows):
        if not np.isfinite(plane[r : r + rows]).all():
            raise ModelIOError(
                "image contains NaN or infinite values; replace them first (e.g. np.nan_to_num(image)) or mask them out"
            )


@dataclass
class StreamFrame:
    """One result of ``Upscaler.stream``."""

    index: int
    image: np.ndarray
    fps: float  # running frames per second (exponential moving average of frame intervals)
    latency_s: float  # time spent upscaling this frame


@dataclass
class _Job:
    """An image prepared for tiling: canonical (frames..., H, W, C) view plus bookkeeping."""

    view: np.ndarray
    frame_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_perm: tuple[int, ...]
    has_c: bool
    per_channel: bool
    c_out: int
    dtype: np.dtype
    axes: str


class Upscaler:
    """A loaded model: ``upscale`` images, ``upscale_bands`` huge ones, ``stream`` video."""

    def __init__(self, card: ModelCard, backend: Backend) -> None:
        self.card = card
        self.backend = backend
        self.scale = card.scale
        self._plans: dict[tuple[Any, ...], TilePlan] = {}
        self._halos_warned: set[int] = set()  # a stream calls per frame: warn once per value
        self._fast: dict[tuple[Any, ...], int] = {}  # (h, w, tile) -> what halo "fast" resolved to
        #: how load("default") chose this artifact (scopesr.sdk.picker); None for a path
        self.selection: dict[str, Any] | None = None
        # a model trained without noise (the low-noise bundle) names the noise level, as a
        # fraction of the normalised range, above which its input is worth a warning
        limit = (card.extra or {}).get(NOISE_WARNING_KEY)
        self._noise_limit: float | None = None
        if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0:
            self._noise_limit = float(limit)
        self._noise_warned = False
        self._noise_checked_at = -math.inf  # time.monotonic() of the last check
        self._noise_run: tuple[tuple[int, ...], int] = ((), 0)  # (shape, clean checks in a row of it)

    # ------------------------------------------------------------------ helpers
    def _stats(self, plane: np.ndarray) -> Stats:
        """Normalisation statistics of one (H, W, C) plane (or region), once per frame; for a
        model trained without noise, also the check that the plane is not noisy."""
        stats = compute_stats(plane, self.card.normalisation)
        if self._noise_limit is not None and not self._noise_warned and self._noise_check_due(plane.shape):
            sigma = noise_fraction(plane[..., 0], float(stats.scale[0]))
            if sigma > self._noise_limit:
                self._noise_warned = True  # a stream calls per frame: say it once
                log.warning(
                    "this image looks noisy for the %s model: estimated noise %.1f %% of its range, above %.1f %%. "
                    "That model is trained without noise and sharpens it into speckle; the default model "
                    "(load('default'), sr-upscale without --model) is made for noisy frames",
                    self.card.name,
                    100 * sigma,
                    100 * self._noise_limit,
                )
        return stats

    def _noise_check_due(self, shape: tuple[int, ...]) -> bool:
        """Every plane is checked, until a run of NOISE_CHECK_RUN clean planes of one shape (a
        live stream: there a check costs a few percent of a small frame's time); from then on
        once every NOISE_CHECK_INTERVAL_S."""
        now = time.monotonic()
        last_shape, run = self._noise_run
        run = run + 1 if shape == last_shape else 1
        self._noise_run = (shape, run)
        if run > NOISE_CHECK_RUN and now - self._noise_checked_at < NOISE_CHECK_INTERVAL_S:
            return False
        self._noise_checked_at = now
        return True

    @contextlib.contextmanager
    def noise_check_paused(self) -> Iterator[None]:
        """No noisy-input check inside (the picker's timing probe runs synthetic noisy frames:
        they must neither warn nor use up the one warning meant for the user's images)."""
        limit, self._noise_limit = self._noise_limit, None
        try:
            yield
        finally:
            self._noise_limit = limit

    def _halo(self, halo: int | str) -> int | str:
        """An integer halo, or "fast" (resolved per region size by ``resolve_halo``)."""
        if isinstance(halo, str):
            if halo not in ("auto", "fast"):
                raise InputError(f"halo must be an integer, 'auto' or 'fast', got {halo!r}")
            return self.card.halo if halo == "auto" else halo
        if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
            raise InputError(f"halo must be an integer >= 0, 'auto' or 'fast', got {halo!r}")
        return int(halo)

    def resolve_halo(self, halo: int | str, h: int, w: int, tile: Any = None) -> int:
        """The halo an (h, w) region runs with. ``"fast"`` (live frames): 0, the network's own zero
        padding past the edge, when the region then runs as one tile (no seam) and computes fewer
        pixels than with the receptive field (a 64x64 ROI: 64x64 instead of 82x82; a fixed-size
        file needs a window of exactly that size); else the receptive field, as ``"auto"``."""
        halo = self._halo(halo)
        if halo != "fast":
            return int(halo)
        key = (h, w, parse_tile(tile))
        got = self._fast.get(key)
        if got is None:
            bare, full = (make_plan(self.backend, h, w, tile, k) for k in (0, self.card.halo))
            if len(self._fast) >= PLAN_CACHE_SIZE:  # a dragged live ROI takes many sizes
                self._fast.clear()
            got = self._fast[key] = 0 if bare.n_tiles == 1 and bare.pixels < full.pixels else self.card.halo
        return got

    def _warn_seams(self, plan: TilePlan, halo: int) -> None:
        """A halo below the receptive field leaves seams only between tiles: a frame that runs
        as one tile (the live path's ``halo=0``) just sees the network's own zero padding at its
        edge, which is what the network was trained with."""
        if halo >= self.card.halo or plan.n_tiles == 1 or halo in self._halos_warned:
            return
        self._halos_warned.add(halo)
        log.warning(
            "halo %d is smaller than the model's receptive-field radius %d: tile seams may "
            "appear (use halo='auto' for a seam-free result)",
            halo,
            self.card.halo,
        )

    @staticmethod
    def _batch(batch: Any) -> int | None:
        if batch is None:
            return None
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise InputError(f"batch must be an integer >= 1 (tiles per runtime call), got {batch!r}")
        return int(batch)

    def _plan(self, h: int, w: int, tile: Any, halo: int, origin: tuple[int, int] = (0, 0)) -> TilePlan:
        """make_plan, remembered per size: a camera stream asks for the same plan every frame.
        ``origin``: where a region starts in its image (a space-to-depth model's cells follow it)."""
        m = self.card.size_multiple
        origin = (origin[0] % m, origin[1] % m)
        key = (h, w, parse_tile(tile), halo, origin)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            plan = self._plans[key] = make_plan(self.backend, h, w, tile, halo, origin)
        self._warn_seams(plan, halo)
        return plan

    def _prepare(self, image: Any, axes: str | None) -> _Job:
        if not isinstance(image, np.ndarray):
            image = np.asarray(image)
        check_dtype(image.dtype)
        if image.size == 0 or image.ndim == 0:
            raise ModelIOError(f"empty image (shape {tuple(image.shape)}): nothing to upscale")
        axes = resolve_axes(image.shape, axes)
        if axes.count("C") > 1:
            raise ModelIOError(f"axes {axes!r}: at most one C axis")
        has_c = "C" in axes
        c = image.shape[axes.index("C")] if has_c else 1
        cin = self.card.in_channels
        if c == cin:
            per_channel = False
            c_out = self.card.out_channels
        elif cin == 1 and self.card.out_channels == 1:
            per_channel = True  # N-channel image through a 1-channel model: channel by channel
            c_out = c
        else:
            raise ModelIOError(
                f"image has {c} channel{'s' if c != 1 else ''}, model {self.card.name!r} takes {cin}; "
                "pass an image with that many channels (or select/convert channels first)"
            )
        if c_out != 1 and not has_c:
            raise ModelIOError(
                f"model {self.card.name!r} returns {c_out} channels from a 1-channel "
                "image; give the image a C axis (axes=...YXC)"
            )
        frame_axes = [i for i, a in enumerate(axes) if a not in "YXC"]
        perm = frame_axes + [axes.index("Y"), axes.index("X")] + ([axes.index("C")] if has_c else [])
        view = image.transpose(perm)
        if not has_c:
            view = view[..., None]
        s = self.scale
        out_shape = []
        for i, a in enumerate(axes):
            n = image.shape[i]
            out_shape.append(n * s if a in "YX" else c_out if a == "C" else n)
        # the output keeps the input dtype (float16/float64 are computed in float32)
        return _Job(
            view,
            tuple(view.shape[:-3]),
            tuple(out_shape),
            tuple(perm),
            has_c,
            per_channel,
            c_out,
            np.dtype(image.dtype),
            axes,
        )

    def _prepare_plane(self, image: Any, axes: str | None, caller: str) -> _Job:
        """``_prepare`` for the calls that take one 2-D image (YX or YXC), not a stack."""
        job = self._prepare(image, axes)
        if job.frame_shape:
            raise ModelIOError(
                f"{caller} takes one 2-D image (axes YX or YXC), got axes {job.axes!r}; "
                "iterate over the frames of a stack"
            )
        return job

    def _bands(
        self,
        plane: np.ndarray,
        job: _Job,
        tile: int | tuple[int, int] | str | None,
        halo: int,
        batch: int | None,
        progress=None,
        plan=None,
        checked: bool = False,
        dst: np.ndarray | None = None,
        stats: Stats | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        if not checked:
            _check_finite(plane)
        if stats is None:
            stats = self._stats(plane)  # once per frame, never per tile
        if plan is None:
            plan = self._plan(plane.shape[0], plane.shape[1], tile, halo)
        b = int(batch) if batch is not None else self.backend.default_batch
        if b < 1:
            raise InputError(f"batch must be >= 1, got {batch}")
        return iter_bands(self.backend, plane, stats, plan, job.dtype, b, job.per_channel, progress, dst)

    def _one_tile(
        self,
        job: _Job,
        plan: TilePlan,
        batch: int | None,
        progress: bool,
        oview: np.ndarray,
        region: tuple[int, int, int, int] | None = None,
    ) -> bool:
        """A one-channel 2-D image (or ``region`` of one) that is one tile (a camera ROI or
        frame): run it with the fewest numpy calls and return True; anything else returns False
        for the tiler.

        The result is the tiler's for a one-tile plan (same statistics, the same reflect-padded
        read, normalisation, runtime call and denormalisation; the tests compare them). On a
        64x64 frame each call the tiler adds (band bookkeeping, batching, transposes, a
        concatenate) costs tens of microseconds when the runtime has just evicted the caches,
        which is most of the SDK's overhead.
        """
        if (
            job.frame_shape
            or progress
            or job.c_out != 1
            or job.view.shape[-1] != 1
            or plan.n_tiles != 1
            or (batch is not None and int(batch) < 1)
        ):
            return False
        sy, sx = plan.ys[0], plan.xs[0]
        ih, iw = job.view.shape[-3:-1]
        x0, y0, w, h = region if region is not None else (0, 0, iw, ih)
        roi = job.view[y0 : y0 + h, x0 : x0 + w]
        stats = self._stats(roi)  # once per frame (or ROI), as the tiler does
        # the image reflect-padded by the halo (and further, to a fixed window): the border rule;
        # a region's context is the image's own pixels around it
        raw = read_tile(job.view, tile_index(sy, ih, y0), tile_index(sx, iw, x0))
        _check_finite(raw)
        x = stats.normalise(raw)[..., 0]
        y = self.backend.run(x[None, None])  # float32 NCHW (1, 1, rh*s, rw*s), shape checked
        s = self.scale
        oy0, ox0 = (sy.keep0 - sy.read0) * s, (sx.keep0 - sx.read0) * s
        core = y[0, 0, oy0 : oy0 + h * s, ox0 : ox0 + w * s]
        stats.denormalise(core, job.dtype, out=oview[..., 0], overwrite_input=True)
        return True

    # ------------------------------------------------------------------ public API
    def upscale(
        self,
        image: Any,
        tile: int | tuple[int, int] | str | None = None,
        halo: int | str = "auto",
        batch: int | None = None,
        axes: str | None = None,
        out: np.ndarray | None = None,
        progress: bool = False,
        ensemble: int = 1,
        strength: float = 1.0,
    ) -> np.ndarray:
        """Upscale an image or a stack; returns an array with the input's axes order and dtype.

        ``tile``: LR pixels, N or (H, W) (dynamic artifacts: the kept core, default 256;
        fixed-size ones: a size from the card's ``tile_sizes``, by default the one computing
        the fewest pixels). ``halo``: ``"auto"`` = the card's receptive-field radius
        (seam-free); smaller is allowed but may show seams; ``"fast"`` (live frames) = 0 where the
        image runs as one tile without it, else "auto" (``resolve_halo``). ``batch``: tiles per runtime
        call. ``out``: a preallocated (possibly memory-mapped) array of the output shape.
        ``ensemble``: 1, 2, 4 or 8 copies of each plane (flipped, then transposed) run and
        averaged (scopesr.sdk.ensemble): closer to the truth, ``ensemble`` times the time.
        ``strength``: how much of the model's change over PIL bicubic to keep, ``bicubic + strength
        * (model - bicubic)`` per plane in float, rounded once: 1 is the model, 0 bicubic, 0.5 half
        of what the model adds (for images sampled finer than their optics resolve, where the
        default sharpens too much; docs/degradation.md, "One number per image").
        """
        batch = self._batch(batch)
        n_copies = check_ensemble(ensemble)
        strength = check_strength(strength)
        job = self._prepare(image, axes)
        if strength != 1.0 and job.c_out != job.view.shape[-1]:
            raise ModelIOError(
                f"strength {strength:g} blends the result with bicubic upsampling of the input, but model "
                f"{self.card.name!r} turns {job.view.shape[-1]} channel(s) into {job.c_out}; use strength 1"
            )
        h, w = job.view.shape[-3:-1]
        # "fast" is for live frames; flipped/transposed ensemble copies keep the receptive field
        halo = self.resolve_halo("auto" if n_copies > 1 and halo == "fast" else halo, h, w, tile)
        if out is None:
            out = np.empty(job.out_shape, dtype=job.dtype)
        elif not isinstance(out, np.ndarray):
            raise InputError(
                f"out must be a numpy array of shape {job.out_shape} and dtype {job.dtype}, got a {type(out).__name__}"
            )
        elif tuple(out.shape) != job.out_shape or out.dtype != job.dtype:
            raise ModelIOError(
                f"out has shape {tuple(out.shape)} and dtype {out.dtype}; this image needs {job.out_shape} {job.dtype}"
            )
        oview = out.transpose(job.out_perm)
        if not job.has_c:
            oview = oview[..., None]
        plan = self._plan(h, w, tile, halo)
        whole_plane = bool(whole_plane_options(n_copies, strength))  # in float per plane, rounded once
        if not whole_plane and self._one_tile(job, plan, batch, progress, oview):
            return out
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=plan.n_tiles * max(1, math.prod(job.frame_shape)) * n_copies,
                unit="tile",
                desc=f"x{self.scale} {self.card.name}",
            )
        for idx in np.ndindex(*job.frame_shape):  # refuse NaN/inf before any work is done
            _check_finite(job.view[idx])
        try:
            for idx in np.ndindex(*job.frame_shape):
                plane = job.view[idx]
                if whole_plane:
                    oview[idx] = self._float_plane(plane, job, n_copies, strength, tile, halo, batch, bar)
                    continue
                for _ in self._bands(plane, job, tile, halo, batch, bar, plan, checked=True, dst=oview[idx]):
                    pass  # the bands are written straight into out
        finally:
            if bar is not None:
                bar.close()
        if isinstance(out, np.memmap):
            out.flush()
        return out

    def _float_plane(
        self,
        plane: np.ndarray,
        job: _Job,
        n: int,
        strength: float,
        tile: Any,
        halo: int,
        batch: int | None,
        bar: Any,
    ) -> np.ndarray:
        """One (H, W, C) plane, ``n`` flipped/transposed copies upscaled in float64, turned back
        and averaged, blended with bicubic by ``strength``, then rounded to the output dtype once."""
        fjob = dataclasses.replace(job, dtype=np.dtype(np.float64))
        # percentiles do not change under flips and transposes: one set of statistics for all copies
        stats = self._stats(plane)
        acc: np.ndarray | None = None
        for t in range(n):
            copy = np.ascontiguousarray(ensemble_forward(plane, t))
            ch, cw = copy.shape[:2]
            res = np.empty((ch * self.scale, cw * self.scale, job.c_out), np.float64)
            plan = self._plan(ch, cw, tile, halo)
            for _ in self._bands(copy, fjob, tile, halo, batch, bar, plan, checked=True, dst=res, stats=stats):
                pass
            back = ensemble_inverse(res, t)
            acc = back.copy() if acc is None else np.add(acc, back, out=acc)
        assert acc is not None
        acc /= n
        if strength != 1.0:  # bicubic + strength * (model - bicubic), channel by channel
            for c in range(acc.shape[-1]):
                b = upscale_bicubic(plane[..., c], self.scale)
                acc[..., c] -= b
                acc[..., c] *= strength
                acc[..., c] += b
        # to pixels as the tiler writes them (ints rounded half up and clipped): an identity map
        c = acc.shape[-1]
        return Stats(np.zeros(c), np.ones(c)).denormalise(acc, job.dtype)

    def upscale_bands(
        self,
        image: Any,
        tile: int | tuple[int, int] | str | None = None,
        halo: int | str = "auto",
        batch: int | None = None,
        axes: str | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Upscale one 2-D image (YX or YXC, may be an np.memmap) band by band.

        Yields ``(hr_y0, band)`` top to bottom; each band is ``(bh, W*s[, C])`` in the output
        dtype and the bands cover the output rows exactly once, in order. Memory stays at one
        band (one row of tiles), whatever the image size: write bands straight to disk.
        """
        batch = self._batch(batch)
        job = self._prepare_plane(image, axes, "upscale_bands")
        h, w = job.view.shape[:2]
        halo = self.resolve_halo(halo, h, w, tile)
        for y0, band in self._bands(job.view, job, tile, halo, batch):
            yield y0, (band if job.has_c else band[..., 0])

    def upscale_region(
        self,
        image: Any,
        roi: tuple[int, int, int, int],
        tile: int | tuple[int, int] | str | None = None,
        halo: int | str = "auto",
        batch: int | None = None,
        axes: str | None = None,
    ) -> np.ndarray:
        """Upscale the region ``roi = (x, y, w, h)`` (LR pixels) of one 2-D image (YX or YXC).

        The region's context comes from the image around it, not from a mirror of the region's
        own edge: a camera ROI is computed as the same region of the whole frame would be (only
        where the context runs past the frame's border is it the frame's reflection). The cost
        is the cut-out's: ``(w + 2*halo) x (h + 2*halo)`` pixels. Normalisation statistics are
        the region's own, as for ``upscale(crop)``, so brightness follows what is shown.
        Returns ``(h*s, w*s[, C])`` in the image's axes order and dtype.
        """
        batch = self._batch(batch)
        job = self._prepare_plane(image, axes, "upscale_region")
        ih, iw = job.view.shape[:2]
        x0, y0, w, h = roi_box(roi, (ih, iw))
        halo = self.resolve_halo(halo, h, w, tile)
        s = self.scale
        out_shape = tuple((h * s if a == "Y" else w * s) if a in "YX" else n for a, n in zip(job.axes, job.out_shape))
        out = np.empty(out_shape, dtype=job.dtype)
        oview = out.transpose(job.out_perm)
        if not job.has_c:
            oview = oview[..., None]
        plan = self._plan(h, w, tile, halo, (y0, x0))
        if self._one_tile(job, plan, batch, False, oview, region=(x0, y0, w, h)):
            return out
        # the context the plan reads, at most a halo (or a fixed window) around the region
        cy0, cy1 = max(0, y0 + plan.ys[0].read0), min(ih, y0 + plan.ys[-1].read1)
        cx0, cx1 = max(0, x0 + plan.xs[0].read0), min(iw, x0 + plan.xs[-1].read1)
        _check_finite(job.view[cy0:cy1, cx0:cx1])
        stats = self._stats(job.view[y0 : y0 + h, x0 : x0 + w])
        b = batch if batch is not None else self.backend.default_batch
        window = Window((ih, iw), at=(y0, x0))
        for _ in iter_bands(
            self.backend, job.view, stats, plan, job.dtype, b, job.per_channel, dst=oview, window=window
        ):
            pass  # written straight into out
        return out

    def stream(
        self,
        frames: Iterable[np.ndarray],
        roi: tuple[int, int, int, int] | None = None,
        tile: int | tuple[int, int] | str | None = None,
        halo: int | str = "auto",
    ) -> Iterator[StreamFrame]:
        """Upscale a sequence of frames (camera, video, time-lapse), or one ROI of each.

        ``roi = (x, y, w, h)`` in LR pixels. Each frame is normalised with its own statistics
        (so exposure changes do not carry over). ``fps`` is a running figure: an exponential
        moving average of the interval between results, which includes the time the caller
        spends between frames (capture, display): the rate the loop actually achieves.
        """
        ema: float | None = None
        last = None
        for i, frame in enumerate(frames):
            t0 = time.perf_counter()
            frame = np.asarray(frame)
            if roi is not None:
                img = self.upscale_region(frame, roi, tile=tile, halo=halo)
            else:
                img = self.upscale(frame, tile=tile, halo=halo)
            t1 = time.perf_counter()
            latency = t1 - t0
            interval = latency if last is None else t1 - last
            last = t1
            ema = interval if ema is None else 0.8 * ema + 0.2 * interval
            yield StreamFrame(i, img, 1.0 / max(ema, 1e-9), latency)

    def describe(self) -> dict[str, Any]:
        c = self.card
        return {
            "name": c.name,
            "architecture": c.architecture,
            "scale": c.scale,
            "in_channels": c.in_channels,
            "out_channels": c.out_channels,
            "halo": c.halo,
            "format": c.format,
            "precision": c.precision,
            "layout": c.layout,
            "normalisation": {
                "mode": c.normalisation.mode,
                "p_low": c.normalisation.p_low,
                "p_high": c.normalisation.p_high,
            },
            "degradation": c.degradation,
            "sha256": c.sha256,
            "tile_sizes": list(self.backend.tile_sizes) if not self.backend.dynamic else None,
            "default_tile": DEFAULT_TILE if self.backend.dynamic else "per image (fewest pixels computed)",
            "metrics": c.metrics,
            # parameters and multiply-accumulates per LR pixel, where the card records them
            "cost": c.cost,
            "backend": self.backend.describe(),
            "cpu": describe_cpu().to_dict(),
            "selection": self.selection,
            # a model trained without noise: the estimated input noise it warns above (else None)
            "noise_warning_above": self._noise_limit,
        }

    def __repr__(self) -> str:
        return f"Upscaler({self.card.name!r}, x{self.scale}, backend={self.backend.name})"


def roi_box(roi: Any, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``roi = (x, y, w, h)`` as integers, with a clear error when it is not inside the frame."""
    try:
        x, y, w, h = (int(v) for v in roi)
    except (TypeError, ValueError):
        raise ModelIOError(f"roi must be (x, y, w, h) integers, got {roi!r}") from None
    fh, fw = frame_hw
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > fw or y + h > fh:
        raise ModelIOError(f"roi (x={x}, y={y}, w={w}, h={h}) is not inside the {fw}x{fh} frame")
    return x, y, w, h


def crop_roi(frame: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """``frame[y:y+h, x:x+w]`` with a clear error when the ROI is not inside the frame."""
    x, y, w, h = roi_box(roi, frame.shape[:2])
    return frame[y : y + h, x : x + w]


# ---------------------------------------------------------------------------- load
def load(
    path: str | os.PathLike = "default",
    backend: str = "auto",
    device: str = "auto",
    verify: bool = True,
    probe: bool | None = None,
    **backend_opts: Any,
) -> Upscaler:
    """Open an artifact (``.onnx``, ``.tflite``, ``.pt2``, ``.mlpackage``, or its ``.card.json``).

    Reads and validates the card beside it and (``verify=True``) checks the artifact's
    sha256. ``"default"`` is the bundled model (``"low-noise"`` its variant for images with
    little noise, ``"large"`` a larger network for stills, each picked the same way): of its
    artifacts whose runtime is installed (and that ``backend`` allows, within the quality
    floor), the fastest on this CPU, found by a timed probe the first time on a machine (about
    a second) and cached per CPU in the user's cache folder (``scopesr.sdk.picker``).
    ``SCOPESR_ARTIFACT=onnx|tflite|tflite-int8|onnx-int8``
    names one instead; ``probe=False`` (or ``SCOPESR_PROBE=0``) takes the static preference
    (ONNX where onnxruntime is installed, else int8 TFLite). ``describe()["selection"]`` says
    which artifact and why.
    ``backend_opts``: ``num_threads`` (all; None or 0: one per available core, i.e. the
    affinity mask within any cgroup CPU quota); ``spin`` (ONNX Runtime: whether idle threads
    spin-wait; None: off on machines of at most 4 available cores, where a spinning thread
    fights other busy processes for a core; see ``scopesr.sdk.cpu.thread_policy``); for torch
    (``.pt2``) ``dtype`` (fp32/bf16/fp16 autocast), ``channels_last``, ``compile``,
    ``cuda_graphs``, ``pinned`` (the CUDA-only ones switch themselves off on a CPU, and
    ``describe()`` says so); ``providers`` (ONNX Runtime); ``compute_units`` (Core ML).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"load() takes a model path (str or os.PathLike) or 'default', got {path!r}")
    nt = backend_opts.get("num_threads")
    if nt is not None and (isinstance(nt, bool) or not isinstance(nt, (int, np.integer)) or nt < 0):
        raise InputError(f"num_threads must be an integer >= 0 (0: one per available core), got {nt!r}")
    sp = backend_opts.get("spin")
    if sp is not None and not isinstance(sp, bool):
        raise InputError(f"spin must be True, False or None (None: off on machines of <= 4 cores), got {sp!r}")
    if isinstance(path, str) and path in BUNDLES:
        return _load_bundle(path, backend, device, verify, probe, backend_opts)
    p = Path(path)
    if p.name.endswith(CARD_SUFFIX):  # a card: open the artifact it describes
        card = ModelCard.read(p)
        if not card.artifact:
            raise CardError(f"{p}: the card does not name its artifact (field 'artifact')")
        p = p.with_name(card.artifact)
    if not p.exists():
        raise ModelError(f"{p}: model file not found")
    card = ModelCard.load(p, verify=verify)
    want = FORMATS.get(p.suffix.lower())
    if want is not None and card.format != want:
        raise CardError(f"{card_path_for(p)}: field 'format' says {card.format!r} but {p.name} is a {want} file")
    be = open_backend(p, card, backend=backend, device=device, **backend_opts)
    log.info("loaded %s with the %s backend", p, be.name)
    return Upscaler(card, be)


def _load_bundle(
    bundle: str, backend: str, device: str, verify: bool, probe: bool | None, opts: dict[str, Any]
) -> Upscaler:
    """``load("default")`` (or another bundled name): the picker chooses among the bundled
    artifacts, load opens it."""
    from .picker import pick

    def open_artifact(p: Path) -> Upscaler:
        return load(p, backend=backend, device=device, verify=verify, **opts)

    choice = pick(
        bundle_dir(bundle),
        bundle_files(bundle),
        open_artifact,
        bundle=bundle,
        backend=backend,
        device=device,
        probe_enabled=probe,
        opts=opts,
        has_module=lambda m: has_module(m),
    )
    up = choice.upscaler if choice.upscaler is not None else open_artifact(choice.path)
    up.selection = choice.describe()
    log.info("%s model: %s (%s: %s)", bundle, choice.path.name, choice.how, choice.reason)
    return up
