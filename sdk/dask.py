"""Seam-free super-resolution on Dask: one machine's tiler, spread over a cluster.

    import scopesr.sdk.dask as srd
    hr = srd.upscale(lr, "model.onnx", axes="TCZYX")     # lazy dask array, input axes/dtype kept
    srd.upscale_to_ome_zarr("in.ome.zarr", "out.ome.zarr", "model.onnx", workers=2)

How it stays seam-free and equal to :meth:`Upscaler.upscale <scopesr.sdk.Upscaler.upscale>`:

* ``map_overlap`` with ``depth = halo`` (the model's receptive-field radius, from its card) and
  no padding by Dask at the image border: every block arrives with ``halo`` LR pixels of its
  neighbours (none at the image's own border), runs through the SDK's tiler (``iter_bands``),
  and keeps its core. At the image's border the tiler reads the image's reflection, computed
  from the block's own pixels with the image's coordinates (``tiling.Window``), which is the
  one border rule of every backend (see ``scopesr.sdk.tiling``): so a kept pixel sees the
  context it sees in one process, exactly. (Dask's own ``boundary="reflect"`` is the same
  mirror, but refuses a halo deeper than a block, e.g. on an image smaller than the halo.)
* Normalisation statistics are computed once per plane (frame) and channel over the whole
  plane, by the SDK's own ``compute_stats`` on the same strided sample it takes in one
  process, and passed to every block of that plane: never per block.
* Blocks are at least ``halo`` pixels (so the overlap comes from the direct neighbour only,
  and a block at the border holds the pixels its reflection needs) and, for fixed-size
  artifacts, at least one tile window; a short last block is merged into the one before it.

For ONNX Runtime fp32 on a CPU the result is bit-identical to one process (tested for chunks
smaller than, equal to and not dividing the image): its convolutions sum each output pixel
in an order that does not depend on the tile's size or position. A runtime whose kernels
depend on the input shape (a GPU picking convolution algorithms per shape) agrees within
float rounding instead: 1e-5 of the normalised range, at most 1 grey level for integers.

The model is opened once per worker process (a cache keyed by artifact and options), and
each worker's runtime gets ``usable CPUs / worker threads on that host`` threads, so the
workers of one machine do not oversubscribe its cores.

:func:`upscale_to_ome_zarr` writes the result chunk by chunk into an OME-Zarr
(:mod:`scopesr.sdk.zarr_io`), resumes an interrupted run by skipping the chunks on disk,
survives a worker killed mid-run (Dask re-runs its tasks), and names the chunk when one is
bad (NaN, wrong pixel type). Dask, distributed, zarr and ome-zarr come with the ``cluster``
extra and are imported inside the functions.

Going to N machines: start ``dask scheduler`` on one, ``dask worker tcp://SCHEDULER:8786
--nworkers 1 --nthreads 1`` (or one worker per GPU) on each, with scopesr[cluster] and the
model file at the same path everywhere and the input and output folders on a shared file
system, then ``sr-upscale IN.zarr -o OUT.zarr --scheduler tcp://SCHEDULER:8786``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import ImageError, InputError, InternalError, ModelError, ModelIOError, ScopesrError
from .io import Image, read_image
from .normalize import Stats, check_dtype, compute_stats
from .tiling import Span, TilePlan, Window, align_spans, choose_tile, iter_bands, make_plan
from .upscaler import Upscaler, load, resolve_axes
from .zarr_io import (
    DEFAULT_NGFF_VERSION,
    NGFF_ORDER,
    OmeZarrWriter,
    is_url,
    is_zarr_path,
    meta_from_image,
    pyramid_level,
    read_ome_zarr,
    require,
    result_name,
    store_tasks,
)

log = logging.getLogger(__name__)

#: LR pixels per block (one Dask task) side at least, by default: on a scheduler that dispatches a
#: few hundred tasks a second (a 2-core VM) 256-pixel blocks spent as long in scheduling as in SR
DEFAULT_CHUNK = 512
#: the largest default block side, and the largest output zarr chunk side (HR pixels)
MAX_DEFAULT_CHUNK = 1024
MAX_OUTPUT_CHUNK = 1024
#: seconds to wait for a scheduler given by address
CONNECT_TIMEOUT_S = 30


# ---------------------------------------------------------------------------- the model on workers
@dataclass(frozen=True)
class ModelSpec:
    """How a worker opens the model: small and picklable, the key of the per-process cache."""

    path: str
    backend: str = "auto"
    device: str = "auto"
    verify: bool = True
    num_threads: int | None = None  # None: usable CPUs / worker threads on the worker's host
    host_threads: tuple[tuple[str, int], ...] = ()  # host -> worker threads there (all workers)


_MODELS: dict[ModelSpec, Upscaler] = {}
_MODELS_LOCK = threading.Lock()
_LOADS = [0]


def model_loads() -> int:
    """How many models this process has opened for Dask tasks (the tests ask each worker)."""
    return _LOADS[0]


def worker_models() -> list[dict[str, Any]]:
    """The models this process opened for Dask tasks: artifact and runtime threads."""
    return [
        {"path": spec.path, "num_threads": getattr(up.backend, "num_threads", None)}
        for spec, up in list(_MODELS.items())
    ]


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _host(address: str) -> str:
    rest = address.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0].strip("[]")


def _runtime_threads(spec: ModelSpec) -> int | None:
    """Threads for this worker's runtime: the spec's, else the host's CPUs shared among all
    worker threads on it; None outside a distributed worker (the runtime's default)."""
    if spec.num_threads:
        return int(spec.num_threads)
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return None
    total = dict(spec.host_threads).get(_host(w.address)) or w.state.nthreads
    return max(1, usable_cpus() // max(1, int(total)))


def worker_upscaler(spec: ModelSpec) -> Upscaler:
    """The model for ``spec``, opened at most once per process (thread-safe)."""
    up = _MODELS.get(spec)
    if up is None:
        with _MODELS_LOCK:
            up = _MODELS.get(spec)
            if up is None:
                nt = _runtime_threads(spec)
                opts: dict[str, Any] = {"num_threads": nt} if nt else {}
                up = load(spec.path, backend=spec.backend, device=spec.device, verify=spec.verify, **opts)
                _MODELS[spec] = up
                _LOADS[0] += 1
    return up


def model_spec(
    model: Any,
    *,
    backend: str = "auto",
    device: str = "auto",
    num_threads: int | None = None,
    host_threads: tuple[tuple[str, int], ...] = (),
) -> tuple[Upscaler, ModelSpec]:
    """(the model in this process, how workers open it) for a path, "default" or an Upscaler."""
    if isinstance(model, Upscaler):
        up = model
        spec = ModelSpec(str(up.backend.artifact), up.backend.name, device, True, num_threads, host_threads)
    else:
        up = load(model, backend=backend, device=device)
        spec = ModelSpec(str(up.backend.artifact), backend, device, True, num_threads, host_threads)
    # this process computes with the model it already has (local scheduler, threads)
    _MODELS.setdefault(ModelSpec(spec.path, spec.backend, spec.device, spec.verify, None, ()), up)
    return up, spec


# ---------------------------------------------------------------------------- layout of a run
def default_chunk(input_chunk: int | None) -> int:
    """The block side for an input stored in ``input_chunk`` chunks: a multiple of them of at
    least DEFAULT_CHUNK (blocks then read whole input chunks), at most MAX_DEFAULT_CHUNK."""
    if not input_chunk or input_chunk < 1:
        return DEFAULT_CHUNK
    c = -(-DEFAULT_CHUNK // input_chunk) * input_chunk
    return c if c <= MAX_DEFAULT_CHUNK else max(DEFAULT_CHUNK, min(input_chunk, MAX_DEFAULT_CHUNK))


def output_chunk(block_hr: int, limit: int = MAX_OUTPUT_CHUNK) -> int:
    """The output's zarr chunk side for blocks of ``block_hr`` HR pixels: the block halved while
    above ``limit`` (a block writes whole chunks: a few per task, the size viewers like)."""
    c = int(block_hr)
    while c > limit and c % 2 == 0:
        c //= 2
    return c


def axis_chunks(n: int, chunk: int, minimum: int) -> tuple[int, ...]:
    """Blocks of ``chunk`` along an axis of ``n``; a last block shorter than ``minimum`` is
    merged into the one before it (the whole axis is one block when it is that short)."""
    chunk = max(int(chunk), int(minimum), 1)
    if n <= chunk:
        return (int(n),)
    sizes = [chunk] * (n // chunk)
    rest = n - chunk * len(sizes)
    if rest:
        if rest < minimum:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes)


@dataclass(frozen=True)
class Layout:
    """Where each block of a run sits, for the block function and for naming a bad chunk."""

    name: str
    frame_axes: str  # letters of the axes before Y, X (canonical order), e.g. "TZ"
    frame_shape: tuple[int, ...]
    cy: tuple[int, ...]  # LR block heights
    cx: tuple[int, ...]  # LR block widths
    halo: int
    tile: tuple[int, int]  # dynamic: the largest kept core per runtime call; fixed: the window
    fixed: bool
    batch: int | None
    per_channel: bool
    c_out: int
    dtype: str
    scale: int

    def where(self, loc: Sequence[int]) -> str:
        """``chunk (t 3, y 256:512, x 0:256) of NAME`` for a block's chunk-location."""
        parts = [f"{a.lower()} {i}" for a, i in zip(self.frame_axes, loc[: len(self.frame_axes)])]
        iy, ix = loc[len(self.frame_axes)], loc[len(self.frame_axes) + 1]
        y0, x0 = sum(self.cy[:iy]), sum(self.cx[:ix])
        parts += [f"y {y0}:{y0 + self.cy[iy]}", f"x {x0}:{x0 + self.cx[ix]}"]
        return f"chunk ({', '.join(parts)}) of {self.name}"

    def where_pixel(self, frame: Sequence[int], y: int, x: int) -> str:
        iy = int(np.searchsorted(np.cumsum(self.cy), y, side="right"))
        ix = int(np.searchsorted(np.cumsum(self.cx), x, side="right"))
        return self.where(tuple(frame) + (iy, ix))


@dataclass
class Setup:
    """A run prepared from the model and the image's shape: axes, blocks, the global tile."""

    axes: str
    perm: tuple[int, ...]  # input axes -> canonical (frames..., Y, X[, C])
    has_c: bool
    layout: Layout
    in_chunks: tuple[tuple[int, ...], ...]  # block sizes per input axis
    chunk: int  # the regular LR block side (blocks are this, a merged last one excepted)


def _halo(up: Upscaler, halo: int | str) -> int:
    if isinstance(halo, str):
        if halo != "auto":
            raise InputError(f"halo must be an integer or 'auto', got {halo!r}")
        return int(up.card.halo)
    if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
        raise InputError(f"halo must be an integer >= 0 or 'auto', got {halo!r}")
    if halo < up.card.halo:
        log.warning(
            "halo %d is smaller than the model's receptive-field radius %d: block seams may appear (use halo='auto')",
            halo,
            up.card.halo,
        )
    return int(halo)


def prepare(
    up: Upscaler,
    shape: Sequence[int],
    dtype: Any,
    axes: str | None = None,
    halo: int | str = "auto",
    tile: Any = None,
    batch: int | None = None,
    chunk: int | None = None,
    name: str = "image",
) -> Setup:
    """Check the image against the model and lay out the blocks (no data is read)."""
    shape = tuple(int(n) for n in shape)
    check_dtype(np.dtype(dtype))
    if not shape or 0 in shape:
        raise ModelIOError(f"empty image (shape {shape}): nothing to upscale")
    axes = resolve_axes(shape, axes)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
        raise InputError(f"batch must be an integer >= 1 (tiles per runtime call), got {batch!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise InputError(f"chunk must be an integer >= 1 (LR pixels per block side), got {chunk!r}")
    has_c = "C" in axes
    c = shape[axes.index("C")] if has_c else 1
    card = up.card
    if c == card.in_channels:
        per_channel, c_out = False, card.out_channels
    elif card.in_channels == 1 and card.out_channels == 1:
        per_channel, c_out = True, c
    else:
        raise ModelIOError(
            f"image has {c} channel{'s' if c != 1 else ''}, model {card.name!r} takes "
            f"{card.in_channels}; pass an image with that many channels"
        )
    if c_out != 1 and not has_c:
        raise ModelIOError(
            f"model {card.name!r} returns {c_out} channels from a 1-channel image; give the image a C axis"
        )
    h, w = shape[axes.index("Y")], shape[axes.index("X")]
    # the blocks' overlap: the halo, plus what aligning a space-to-depth model's reads to its
    # cells can add (make_plan, align_spans: up to size_multiple - 1, twice for a fixed window
    # planned again with the margin)
    hn = _halo(up, halo) + 2 * (card.size_multiple - 1)
    (th, tw), fixed = choose_tile(up.backend, h, w, tile, hn)  # once for the whole image, as one process
    # blocks of at least the halo (the overlap then comes from the next block only) and, for a
    # fixed-size artifact, of at least one window (no padding inside the image); one size for
    # Y and X so that the output's chunks are square
    minimum = max(hn, 1, max(th, tw) if fixed else 1)
    target = max(int(chunk or DEFAULT_CHUNK), minimum)
    cy = axis_chunks(h, target, minimum)
    cx = axis_chunks(w, target, minimum)
    frame_idx = [i for i, a in enumerate(axes) if a not in "YXC"]
    perm = tuple(frame_idx + [axes.index("Y"), axes.index("X")] + ([axes.index("C")] if has_c else []))
    in_chunks = []
    for a, n in zip(axes, shape):
        in_chunks.append(cy if a == "Y" else cx if a == "X" else (n,) if a == "C" else (1,) * n)
    layout = Layout(
        name,
        "".join(axes[i] for i in frame_idx),
        tuple(shape[i] for i in frame_idx),
        cy,
        cx,
        hn,
        (th, tw),
        fixed,
        int(batch) if batch else None,
        per_channel,
        c_out,
        np.dtype(dtype).str,
        card.scale,
    )
    return Setup(axes, perm, has_c, layout, tuple(in_chunks), target)


# ---------------------------------------------------------------------------- statistics
class _Probe(Exception):
    """Raised by a plane placeholder to report how compute_stats reads the plane."""

    def __init__(self, key: Any) -> None:
        super().__init__("probe")
        self.key = key


class _Plane:
    """Stands for a whole (H, W, C) plane in ``compute_stats``: it answers the strided read
    that the SDK takes its statistics from with the sample Dask computed (or reports the
    read), so a distributed run uses the SDK's own statistics code on the same pixels."""

    ndim = 3

    def __init__(
        self, shape: tuple[int, int, int], dtype: np.dtype, sample: np.ndarray | None = None, key: Any = None
    ) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self._sample = sample
        self._key = key

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._sample is None:
            raise _Probe(key)
        if key != self._key:
            raise InternalError(f"compute_stats read {key!r} of a plane after asking for {self._key!r}")
        return self._sample

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise InternalError("compute_stats read a whole plane; the Dask path expects a strided sample")


def _stats_key(shape: tuple[int, int, int], dtype: np.dtype, norm: Any) -> tuple[Any, Stats | None]:
    """(the plane read compute_stats makes, None) or (None, the stats) when it reads nothing."""
    try:
        return None, compute_stats(_Plane(shape, dtype), norm)  # type: ignore[arg-type]
    except _Probe as p:
        return p.key, None


def _frame_stats(
    samples: list[np.ndarray], norm: Any, key: Any, shape: tuple[int, int, int], dtype: str, layout: Layout
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Statistics of every frame from its strided sample (the Dask task behind all blocks)."""
    out = []
    frames = list(np.ndindex(*layout.frame_shape)) or [()]
    dt = np.dtype(dtype)
    for frame, sample in zip(frames, samples):
        sample = np.asarray(sample)
        if dt.kind == "f" and not np.isfinite(sample).all():
            i, j = (int(v) for v in np.argwhere(~np.isfinite(sample))[0][:2])
            y = (key[0].start or 0) + i * (key[0].step or 1)
            x = (key[1].start or 0) + j * (key[1].step or 1)
            raise ModelIOError(
                f"{layout.where_pixel(frame, y, x)}: contains NaN or infinite values (pixel "
                f"y {y}, x {x}); replace them first (e.g. np.nan_to_num)"
            )
        st = compute_stats(_Plane(shape, dt, sample, key), norm)  # type: ignore[arg-type]
        out.append((st.lo, st.scale))
    return out


# ---------------------------------------------------------------------------- one block
def _core_spans(core: int, tile: int, halo: int) -> list[Span]:
    """Tiles over a block's core [0, core) (plan coordinates) in balanced pieces of at most
    ``tile``, each read with ``halo`` of context: the neighbour's pixels the block carries, or
    the image's reflection where the block meets the image's border."""
    k = max(1, math.ceil(core / max(1, tile)))
    base, extra = divmod(core, k)
    spans, k0 = [], 0
    for i in range(k):
        ln = base + (1 if i < extra else 0)
        spans.append(Span(k0 - halo, k0 + ln + halo, k0, k0 + ln))
        k0 += ln
    return spans


def _sr_block(
    block: np.ndarray,
    *,
    spec: ModelSpec,
    stats: list[tuple[np.ndarray, np.ndarray]],
    layout: Layout,
    block_info: dict | None = None,
) -> np.ndarray:
    """Upscale one block (canonical (1.., H+halos, W+halos, C)) and return its core, HR."""
    loc = tuple(block_info[0]["chunk-location"])  # type: ignore[index]
    where = layout.where(loc)
    try:
        return _sr_block_inner(block, spec, stats, layout, loc, where)
    except ScopesrError as exc:
        msg = str(exc)
        if "chunk (" in msg:
            raise
        raise type(exc)(f"{where}: {msg}") from None
    except MemoryError:
        raise ModelError(f"{where}: out of memory; use smaller chunks (--chunk) or tiles (--tile)") from None
    except Exception as exc:  # noqa: BLE001 - a runtime failure: name the chunk it hit
        raise ModelError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _check_block(block: np.ndarray, *, layout: Layout, block_info: dict | None = None) -> np.ndarray:
    """A source block as it is, after checking it (before the overlap mixes neighbours): its
    pixel type is the array's, and a float block holds no NaN/inf. Names the chunk if not."""
    loc = tuple(block_info[0]["chunk-location"])  # type: ignore[index]
    dtype = np.dtype(layout.dtype)
    if block.dtype != dtype:
        raise ModelIOError(
            f"{layout.where(loc)}: pixel type {block.dtype}, but the image is {dtype} (the source "
            "returned a chunk that does not match its array)"
        )
    if dtype.kind == "f" and not np.isfinite(block).all():
        pos = np.argwhere(~np.isfinite(block))[0]
        nf = len(layout.frame_axes)
        y = sum(layout.cy[: loc[nf]]) + int(pos[nf])
        x = sum(layout.cx[: loc[nf + 1]]) + int(pos[nf + 1])
        raise ModelIOError(
            f"{layout.where(loc)}: contains NaN or infinite values (pixel y {y}, x {x}); replace "
            "them first (e.g. np.nan_to_num)"
        )
    return block


def _sr_block_inner(
    block: np.ndarray,
    spec: ModelSpec,
    stats: list[tuple[np.ndarray, np.ndarray]],
    layout: Layout,
    loc: tuple[int, ...],
    where: str,
) -> np.ndarray:
    dtype = np.dtype(layout.dtype)
    if block.dtype != dtype:  # _check_block has looked at every source block
        raise InternalError(f"{where}: block of type {block.dtype}, expected {dtype}")
    nf = len(layout.frame_axes)
    iy, ix = loc[nf], loc[nf + 1]
    hn = layout.halo
    top, bottom = (hn if iy > 0 else 0), (hn if iy < len(layout.cy) - 1 else 0)
    left, right = (hn if ix > 0 else 0), (hn if ix < len(layout.cx) - 1 else 0)
    ch, cw = layout.cy[iy], layout.cx[ix]
    he, we = block.shape[nf], block.shape[nf + 1]
    if (he, we) != (ch + top + bottom, cw + left + right) or any(n != 1 for n in block.shape[:nf]):
        want = (1,) * nf + (ch + top + bottom, cw + left + right)
        raise InternalError(f"{where}: block of shape {block.shape}, expected {want} (+ C)")
    plane = block.reshape(block.shape[nf:])  # (H, W, C)
    fi = int(np.ravel_multi_index(loc[:nf], layout.frame_shape)) if nf else 0
    lo, sc = stats[fi]
    st = Stats(np.asarray(lo), np.asarray(sc))
    up = worker_upscaler(spec)
    be = up.backend
    # the plan covers the block's core; reads reach a halo (more for a fixed window on a short
    # image) beyond it: into the neighbours' pixels the block carries, or, at the image's
    # border, into the image's reflection (the tiler's border rule, so equal to one process)
    y0, x0 = sum(layout.cy[:iy]), sum(layout.cx[:ix])
    m = be.card.size_multiple  # a space-to-depth model's cells follow the image's origin, not the block's
    hs = hn - 2 * (m - 1)  # the halo itself (prepare added the alignment's margin to the overlap)
    if layout.fixed:
        plan = make_plan(be, ch, cw, layout.tile, hs, (y0, x0))
    else:
        ys = align_spans(_core_spans(ch, layout.tile[0], hs), m, y0)
        xs = align_spans(_core_spans(cw, layout.tile[1], hs), m, x0)
        plan = TilePlan(ys, xs, layout.tile, hs, False)
    window = Window(
        (sum(layout.cy), sum(layout.cx)),  # the whole image
        (y0, x0),  # where the core starts
        (y0 - top, x0 - left),  # where the block (core and overlap) starts
    )
    s = layout.scale
    hr = np.empty((ch * s, cw * s, layout.c_out), dtype=dtype)
    b = layout.batch or be.default_batch
    for _ in iter_bands(be, plane, st, plan, dtype, b, layout.per_channel, progress=None, dst=hr, window=window):
        pass
    return hr.reshape((1,) * nf + hr.shape)


# ---------------------------------------------------------------------------- the lazy array
def _as_dask(array: Any, chunks: tuple[tuple[int, ...], ...], name: str) -> Any:
    da = require("dask.array")
    tokenize = require("dask.base").tokenize
    if isinstance(array, da.Array):
        return array.rechunk(chunks) if array.chunks != chunks else array
    if isinstance(array, np.memmap) and getattr(array, "filename", None):
        ms = MemmapSource(array)
        token = tokenize(ms.filename, os.path.getmtime(ms.filename), ms.offset, ms.shape, ms.dtype.str, chunks)
        return da.from_array(ms, chunks=chunks, name=f"scopesr-src-{token}", asarray=True, fancy=False)
    return da.from_array(np.asarray(array), chunks=chunks)


class MemmapSource:
    """A read-only memory-mapped file as a Dask source that pickles as its path: each worker
    maps the file itself instead of receiving the pixels."""

    def __init__(self, mm: np.memmap) -> None:
        self.filename = str(mm.filename)
        self.offset = int(mm.offset)
        self.shape = tuple(mm.shape)
        self.dtype = mm.dtype
        self.ndim = mm.ndim
        self.order: Literal["C", "F"] = "F" if (mm.flags.f_contiguous and not mm.flags.c_contiguous) else "C"

    def __getitem__(self, key: Any) -> np.ndarray:
        mm = np.memmap(
            self.filename, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape, order=self.order
        )
        return np.array(mm[key])


def _upscale_setup(src: Any, setup: Setup, up: Upscaler, spec: ModelSpec) -> Any:
    """The lazy HR array for a source already blocked as ``setup.in_chunks``."""
    dask = require("dask")
    da = require("dask.array")
    tokenize = require("dask.base").tokenize
    lay = setup.layout
    view = src.transpose(setup.perm)
    if not setup.has_c:
        view = view[..., None]
    nf = len(lay.frame_axes)
    h, w, c = view.shape[nf:]
    dtype = np.dtype(lay.dtype)
    view = view.map_blocks(
        _check_block,
        layout=lay,
        dtype=dtype,
        meta=np.empty((0,) * view.ndim, dtype),
        name=f"scopesr-check-{tokenize(src, lay)}",
    )
    key, const = _stats_key((h, w, c), dtype, up.card.normalisation)
    frames = list(np.ndindex(*lay.frame_shape)) or [()]
    if const is not None:  # e.g. "range" normalisation: the statistics need no pixels
        stats: Any = [(const.lo, const.scale)] * len(frames)
    else:
        samples = [view[f][key] for f in frames]
        stats = dask.delayed(_frame_stats, pure=True)(
            samples,
            up.card.normalisation,
            key,
            (h, w, c),
            lay.dtype,
            lay,
            dask_key_name=f"scopesr-stats-{tokenize(src, key)}",
        )
    s = lay.scale
    # no overlap along an axis that is one block (no neighbours; its border is the image's,
    # read by reflection): Dask refuses a depth beyond a chunk, e.g. a 1-pixel image
    depth = {nf: lay.halo if len(lay.cy) > 1 else 0, nf + 1: lay.halo if len(lay.cx) > 1 else 0}
    out_chunks = view.chunks[:nf] + (tuple(n * s for n in lay.cy), tuple(n * s for n in lay.cx), (lay.c_out,))
    meta = np.empty((0,) * view.ndim, dtype)
    if any(depth.values()):
        hr = da.map_overlap(
            _sr_block,
            view,
            depth=depth,
            boundary="none",
            trim=False,
            chunks=out_chunks,
            dtype=dtype,
            meta=meta,
            spec=spec,
            stats=stats,
            layout=lay,
            allow_rechunk=False,
            name=f"scopesr-sr-{tokenize(src, spec, lay)}",
        )
    else:
        hr = view.map_blocks(
            _sr_block,
            chunks=out_chunks,
            dtype=dtype,
            meta=meta,
            spec=spec,
            stats=stats,
            layout=lay,
            name=f"scopesr-sr-{tokenize(src, spec, lay)}",
        )
    if hr.numblocks != view.numblocks:
        raise InternalError(f"map_overlap changed the blocks ({view.numblocks} -> {hr.numblocks})")
    if not setup.has_c:
        hr = hr[..., 0]
    return hr.transpose(tuple(int(i) for i in np.argsort(setup.perm)))


def upscale(
    array: Any,
    model: Any = "default",
    axes: str | None = None,
    halo: int | str = "auto",
    tile: Any = None,
    batch: int | None = None,
    chunk: int | None = None,
    *,
    num_threads: int | None = None,
    name: str = "image",
) -> Any:
    """Upscale a Dask (or numpy) array lazily: a Dask array in the input's axes order and dtype.

    ``model``: a path, ``"default"`` or a loaded :class:`~scopesr.sdk.Upscaler`. ``axes``
    over T, C, Z, Y, X as in ``Upscaler.upscale``. ``chunk``: LR pixels per block side
    (default 512; the input is re-blocked to it, one frame and all channels per block).
    ``tile``, ``halo``, ``batch`` as in ``Upscaler.upscale``. ``num_threads``: runtime
    threads per worker (default: the host's CPUs shared among its worker threads, as the
    default distributed Client's scheduler counts them).
    Compute it with any Dask scheduler; the result equals ``Upscaler.upscale``.
    """
    up, spec = model_spec(model, num_threads=num_threads, host_threads=host_threads(_default_client()))
    shape = tuple(int(n) for n in np.shape(array))
    setup = prepare(up, shape, array.dtype, axes, halo, tile, batch, chunk, name)
    src = _as_dask(array, setup.in_chunks, name)
    return _upscale_setup(src, setup, up, spec)


# ---------------------------------------------------------------------------- running it
@contextmanager
def dask_client(scheduler: Any = None, workers: int | None = None) -> Iterator[Any]:
    """A distributed Client: ``scheduler`` (an address or a Client, left open), or a new
    LocalCluster of ``workers`` processes with one thread each (closed after); None (yield
    None) for the local single-process path."""
    if scheduler is None and not workers:
        yield None
        return
    distributed = require("distributed")
    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # the caller's Client
        return
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    cluster = distributed.LocalCluster(
        n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _default_client() -> Any:
    """The distributed Client this process computes on by default, if any."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def host_threads(client: Any) -> tuple[tuple[str, int], ...]:
    """Worker threads per host, from the scheduler (for each worker's runtime thread count)."""
    if client is None:
        return ()
    per: dict[str, int] = {}
    for addr, w in client.scheduler_info(n_workers=-1)["workers"].items():
        h = _host(addr)
        per[h] = per.get(h, 0) + int(w.get("nthreads", 1))
    return tuple(sorted(per.items()))


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: Linux's VmHWM (this program's own, unlike
    getrusage's ru_maxrss, which keeps the parent's peak across the exec that starts a spawned
    worker); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1 << 20) if sys.platform == "darwin" else r / 1024.0


def execute(tasks: list[Any], client: Any, bar: Any = None, on_chunk: Callable[[], None] | None = None) -> None:
    """Compute store tasks: on the cluster (as they finish, for the bar), or in this process
    (the synchronous scheduler: one block at a time, the runtime using all cores)."""
    if not tasks:
        return
    if client is None:
        dask = require("dask")
        from dask.callbacks import Callback

        class _Done(Callback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:  # noqa: A002
                if isinstance(key, tuple) and str(key[0]).startswith("scopesr-store-"):
                    if bar is not None:
                        bar.update(1)
                    if on_chunk is not None:
                        on_chunk()

        with _Done():
            dask.compute(*tasks, scheduler="synchronous")
        return
    distributed = require("distributed")
    futures = client.compute(tasks)
    try:
        for fut in distributed.as_completed(futures):
            fut.result()  # re-raises the task's error (it names the chunk)
            if bar is not None:
                bar.update(1)
            if on_chunk is not None:
                on_chunk()
    except BaseException:
        client.cancel(futures)
        raise


@dataclass
class RunReport:
    """What :func:`upscale_to_ome_zarr` did."""

    path: Path
    levels: int
    written: int  # blocks computed and written, all levels
    skipped: int  # blocks found on disk (a resumed run)
    seconds: float
    level0_blocks: int
    resumed: bool
    workers: int  # 0: this process
    worker_peak_rss_mb: dict[str, float] = field(default_factory=dict)
    model_loads: dict[str, int] = field(default_factory=dict)

    @property
    def chunks_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def open_source(src: Any, max_pixels: int | None = None) -> Image:
    """An OME-Zarr folder or URL, an image file (TIFF/PNG/JPEG; large TIFFs memory-mapped) or an Image."""
    if isinstance(src, Image):
        return src
    if is_url(src):  # before Path(): a Path drops the URL's "//"
        return read_ome_zarr(src, max_pixels=max_pixels)
    p = Path(src)
    if is_zarr_path(p):
        return read_ome_zarr(p)
    return read_image(p, max_pixels=max_pixels) if max_pixels else read_image(p)


def upscale_to_ome_zarr(
    src: Any,
    dst: str | os.PathLike,
    model: Any = "default",
    *,
    scheduler: Any = None,
    workers: int | None = None,
    chunk: int | None = None,
    tile: Any = None,
    halo: int | str = "auto",
    batch: int | None = None,
    version: str | None = None,
    levels: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_chunk: Callable[[], None] | None = None,
    num_threads: int | None = None,
    max_pixels: int | None = None,
) -> RunReport:
    """Upscale ``src`` (OME-Zarr folder or URL, image file or Image) into the OME-Zarr ``dst``.

    ``scheduler``: a ``tcp://HOST:PORT`` address or a distributed Client; ``workers``: start
    a LocalCluster of that many processes; neither: this process alone. ``chunk``: LR pixels
    per block side (default: 512, or a multiple of the input's zarr chunk up to 1024); the
    output's zarr chunks are ``chunk * scale``, halved while above 1024. ``version``: NGFF
    "0.4" (zarr v2) or "0.5" (zarr v3); default the input's, else 0.4. An unfinished ``dst``
    from the same run is resumed (its chunks on disk are skipped); ``overwrite`` starts again.
    ``on_chunk`` is called after each block is written.
    """
    img = open_source(src, max_pixels)
    ngff = img.metadata.get("ngff") or {}
    if chunk is None and ngff.get("chunks"):
        yx = [n for a, n in zip(img.axes, ngff["chunks"]) if a in "YX"]
        chunk = default_chunk(min(yx)) if yx else None
    version = version or ngff.get("version") or DEFAULT_NGFF_VERSION
    t0 = time.perf_counter()
    with dask_client(scheduler, workers) as client:
        nworkers = len(client.scheduler_info(n_workers=-1)["workers"]) if client is not None else 0
        nt = num_threads
        if nt is None and workers and not scheduler:
            nt = max(1, usable_cpus() // int(workers))  # LocalCluster: one thread per worker process
        up, spec = model_spec(model, num_threads=nt, host_threads=host_threads(client))
        url = ngff.get("url")
        name = url or (str(img.path) if img.path is not None else "image")
        setup = prepare(up, img.shape, img.dtype, img.axes, halo, tile, batch, chunk, name)
        if ngff.get("array"):
            da = require("dask.array")
            source = da.from_zarr(ngff["array"], chunks=setup.in_chunks)
        else:
            source = _as_dask(img.array, setup.in_chunks, name)
        hr = _upscale_setup(source, setup, up, spec)
        order = "".join(a for a in NGFF_ORDER if a in setup.axes)
        hr = hr.transpose([setup.axes.index(a) for a in order])
        meta = meta_from_image(img, order).upscaled(up.scale)
        run = {
            "model": up.card.name,
            "model_sha256": up.card.sha256,
            "scale": up.scale,
            "halo": setup.layout.halo,
            "tile": list(setup.layout.tile),
            "lr_chunk": setup.chunk,
            "source": url or (str(Path(img.path).resolve()) if img.path is not None else "array"),
            "source_shape": list(img.shape),
            "source_axes": img.axes,
        }
        writer = OmeZarrWriter.open(
            dst,
            hr.shape,
            hr.dtype,
            meta,
            output_chunk(setup.chunk * up.scale),
            version,
            levels,
            run,
            overwrite=overwrite,
        )
        plan = [store_tasks(writer, 0, hr)]
        for k in range(1, len(writer.arrays)):
            plan.append(store_tasks(writer, k, pyramid_level(writer, k)))
        todo = sum(len(t) for t, _ in plan)
        skipped = sum(s for _, s in plan)
        if writer.resumed:
            log.info(
                "%s: %d of %d blocks already written; computing the other %d",
                writer.path,
                skipped,
                todo + skipped,
                todo,
            )
        from tqdm import tqdm

        bar = tqdm(
            total=todo + skipped,
            initial=skipped,
            unit="chunk",
            desc=f"  {writer.path.name}",
            disable=not progress,
            leave=False,
        )
        try:
            for tasks, _ in plan:
                execute(tasks, client, bar, on_chunk)
        finally:
            bar.close()
        writer.finish()
        rss: dict[str, float] = {}
        loads: dict[str, int] = {}
        if client is not None:
            rss = {k: round(v, 1) for k, v in client.run(peak_rss_mb).items()}
            loads = dict(client.run(model_loads))
    return RunReport(
        writer.path,
        len(writer.arrays),
        todo,
        skipped,
        time.perf_counter() - t0,
        int(np.prod(hr.numblocks)),
        writer.resumed,
        nworkers,
        rss,
        loads,
    )


# ---------------------------------------------------------------------------- the CLI's path
class ClusterRun:
    """sr-upscale's OME-Zarr / Dask path: one cluster (or none) for all inputs of a command.

    Used as a context manager around the command's loop; :meth:`process` takes the place of
    ``process_file`` for each input and raises ScopesrError naming the input on failure.
    """

    def __init__(
        self,
        upscaler: Upscaler,
        *,
        scheduler: str | None = None,
        workers: int | None = None,
        chunk: int | None = None,
        version: str | None = None,
        max_pixels: int | None = None,
        every_input: bool = True,
    ) -> None:
        self.upscaler = upscaler
        self.every_input = every_input
        self.scheduler = scheduler
        self.workers = workers
        self.chunk = chunk
        self.version = version
        self.max_pixels = max_pixels
        self._ctx: Any = None
        self.client: Any = None
        self._warned_compare = False

    def __enter__(self) -> ClusterRun:
        if self.scheduler or self.workers:
            require("distributed")  # its import sets its loggers' levels: quiet them after it
        if not logging.getLogger("scopesr").isEnabledFor(logging.DEBUG):  # -v shows the cluster's own log
            for name in ("distributed", "ome_zarr", "tornado", "bokeh"):
                logging.getLogger(name).setLevel(logging.WARNING)
        self._ctx = dask_client(self.scheduler, self.workers)
        self.client = self._ctx.__enter__()
        if self.client is not None:
            log.info(
                "Dask: %d worker(s) at %s",
                len(self.client.scheduler_info(n_workers=-1)["workers"]),
                self.client.scheduler.address,
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)

    def takes(self, path: Path) -> bool:
        """Does this input get an OME-Zarr result (all do with --format ome-zarr, --workers or
        --scheduler; otherwise only OME-Zarr inputs)?"""
        return self.every_input or is_zarr_path(path)

    def output_for(self, path: Path, outdir: Path) -> Path:
        """``-o OUT.zarr`` names the result itself; any other ``-o`` is a folder for
        ``<name>_x<scale>.ome.zarr``."""
        if outdir.name.lower().endswith(".zarr"):
            return outdir
        return outdir / result_name(path, self.upscaler.scale)

    def process(
        self,
        path: Path,
        outdir: Path,
        inputs: set[Path],
        claimed: set[Path],
        opts: dict[str, Any],
        *,
        overwrite: bool = False,
        compare: bool = False,
        show_progress: bool = False,
    ) -> Path:
        out = self.output_for(path, outdir)
        rout = out.resolve()
        if rout in inputs or rout == path.resolve():
            raise ImageError(f"{path}: output {out} would overwrite an input; choose another -o")
        if rout in claimed:
            raise ImageError(
                f"{path}: output {out} is also the output of another input; give each input its "
                "own -o folder (or -o a folder, not NAME.zarr)"
            )
        if compare and not self._warned_compare:
            log.warning("--compare is not written for OME-Zarr outputs")
            self._warned_compare = True
        claimed.add(rout)
        try:
            rep = upscale_to_ome_zarr(
                path,
                out,
                self.upscaler,
                scheduler=self.client,
                chunk=self.chunk,
                version=self.version,
                overwrite=overwrite,
                progress=show_progress,
                max_pixels=self.max_pixels,
                **opts,
            )
        except ScopesrError as exc:
            msg = str(exc)
            raise type(exc)(msg if str(path) in msg else f"{path}: {msg}") from None
        log.info(
            "%s -> %s (%d levels, %d chunks written%s, %.1f s)",
            path.name,
            out,
            rep.levels,
            rep.written,
            f", {rep.skipped} already there" if rep.skipped else "",
            rep.seconds,
        )
        return out
