"""Seam-free tiling with one border rule: a tile plan, and tiled execution of one 2-D image.

The border rule, the same for every backend (ONNX, TFLite, .pt2, Core ML; dynamic-shape or
fixed-size): **the network sees the image reflect-padded by the halo.** Every tile reads its
kept core plus ``halo`` pixels of context on each side; where that context lies outside the
image it is the image's mirror image about its border, the edge pixel repeated
(``... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...``, numpy's ``np.pad(mode="symmetric")``, Dask's
``boundary="reflect"``; repeated for an axis shorter than the halo; a 1-pixel axis repeats its
pixel). With ``halo`` >= the network's receptive-field radius (``card.halo``, the default),
no output pixel of the image ever sees the network's own zero padding, which sits at least a
halo beyond the image; so every backend, every tile size and every image size gives the
output of one rule: ``crop(network(pad_image(image, halo)))``, to float rounding. Without it
a fixed-size artifact (whose tiles must be padded when the image is smaller than a tile) and
a dynamic one (whose border would see the zero padding) differed along a halo-wide band at
the image's edges. Of the mirror images, this one was measured best for the bundled default:
over 96x80 crops of held-out images, PSNR in the border band was 0.06-0.14 dB higher than
with the mirror that skips the edge pixel (numpy's ``reflect``) on four of five degradations
(0.06 dB lower under strong noise), and within 0.09 dB of the network's own zero padding
(``benchmarks/results/borders_pad_modes.md``).

Why it is seam-free: every kept output pixel has ``halo`` LR pixels of context in its tile
(real pixels, or the reflection at the image border), which is all it depends on, so tiled
equals one-tile inference up to float rounding. Tiles are never shifted or clamped at the
border: their reads simply extend past it into the reflection.

* ``tile`` is in LR pixels: N (square) or (H, W). Dynamic-shape backends: ``tile`` is the
  kept core (default 256) and every read is ``tile + 2*halo`` (``n + 2*halo`` for an axis
  of n <= tile). Fixed-size backends: the read window (tile with halo) is one of the card's
  ``tile_sizes`` (N or [H, W], e.g. a camera frame's 120x160), by default the one that
  computes the fewest pixels for this image; the core is ``size - 2*halo``. An image
  shorter than ``size - 2*halo`` reads more of the reflection; those extra pixels are
  beyond the receptive field of every kept pixel, so they change nothing.
* The last tile of a row/column moves back so that its read ends a halo past the border
  (overlapping its neighbour); the kept regions never overlap, they partition the output.
* The cost: ``2*halo`` more rows and columns of compute per image than the image itself
  (the default model, halo 9: a 64x64 ROI computes 82x82; a 512x512 image 1.07x), and a
  fixed-size artifact needs a window ``2*halo`` larger than the frame to run it in one call.
* Same-size tiles are stacked into batches; input may be an np.memmap (tiles are read
  lazily) and results are produced band by band (one row of tiles), so output can go
  straight to disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends.base import Backend
from .errors import InputError, InternalError, ModelError, ModelIOError
from .normalize import Stats
from .tiles import parse_tile, tile_label

log = logging.getLogger(__name__)

DEFAULT_TILE = 256
#: names the border rule (module docstring); what a frame costs depends on it, so timings taken
#: under another rule (the picker's cache) are not reused
BORDER_RULE = "symmetric-by-halo"


@dataclass(frozen=True)
class Span:
    """One tile position along one axis (LR pixels, in the plan's coordinates).

    The read may start before 0 or end after the axis: that part comes from the reflection
    of the image about its border (see the module docstring).
    """

    read0: int  # region the network sees: [read0, read1), keep +- at least the halo
    read1: int
    keep0: int  # output region this tile fills: [keep0, keep1); spans partition [0, n)
    keep1: int

    @property
    def length(self) -> int:
        return self.read1 - self.read0


def plan_axis(n: int, tile: int, halo: int, fixed: bool = False) -> list[Span]:
    """Tile positions along an axis of length ``n``; every read is its keep plus at least
    ``halo`` on each side, reaching past [0, n) into the reflection at the border.

    ``fixed=False``: ``tile`` is the kept core, reads are ``tile + 2*halo`` (``n + 2*halo``
    when the axis fits one tile). ``fixed=True``: ``tile`` is the exact read length; the core
    is ``tile - 2*halo``.
    """
    if n < 1:
        raise ModelIOError("empty image axis (size 0)")
    if tile < 1 or halo < 0:
        raise InputError(f"tile must be >= 1 and halo >= 0, got tile={tile}, halo={halo}")
    if not fixed:
        if n <= tile:
            return [Span(-halo, n + halo, 0, n)]
        starts = list(range(0, n - tile, tile)) + [n - tile]  # the last one ends at the border
        spans, prev = [], 0
        for s in starts:
            spans.append(Span(s - halo, s + tile + halo, prev, s + tile))
            prev = s + tile
        return spans
    core = tile - 2 * halo
    if core < 1:
        raise InputError(f"tile size {tile} leaves no centre with halo {halo} (needs > {2 * halo})")
    spans, r, prev = [], -halo, 0
    while r + tile - halo < n:  # this window's core ends inside the axis: more windows follow
        spans.append(Span(r, r + tile, prev, r + tile - halo))
        prev = r + tile - halo
        r += core
    r = max(-halo, n + halo - tile)  # the last window reads a halo past the border (more when n is short)
    spans.append(Span(r, r + tile, prev, n))
    return spans


@dataclass(frozen=True)
class TilePlan:
    ys: list[Span]
    xs: list[Span]
    tile: tuple[int, int]  # (H, W): dynamic: the kept core; fixed: the read window (halo included)
    halo: int
    fixed: bool

    @property
    def n_tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def pixels(self) -> int:
        """LR pixels the network computes for the image: every read window, halo included."""
        return sum(sy.length * sx.length for sy in self.ys for sx in self.xs)

    @property
    def label(self) -> str:
        """e.g. ``"2 x 128"`` or ``"1 x 120x160"`` (fixed) / ``"4 x 256+halo"`` (dynamic)."""
        return f"{self.n_tiles} x {tile_label(self.tile)}{'' if self.fixed else '+halo'}"


#: per-call cost of one tile, in LR pixels of compute: a runtime call, (de)normalising and
#: copying a tile cost about as much as this many more pixels (measured on the default
#: student, TFLite int8: 64x64 takes 0.79 ms, 120x160 3.45 ms)
TILE_OVERHEAD_PX = 1024


def _fixed_cost(h: int, w: int, shape: tuple[int, int], halo: int) -> int:
    th, tw = shape
    n = len(plan_axis(h, th, halo, True)) * len(plan_axis(w, tw, halo, True))
    return n * (th * tw + TILE_OVERHEAD_PX)


def choose_tile(backend: Backend, h: int, w: int, tile: Any, halo: int) -> tuple[tuple[int, int], bool]:
    """((tile_h, tile_w), fixed) for an (h, w) image: validate a user tile, or pick the default.

    Fixed-size artifacts: the window that computes the fewest pixels for this image (tiles x
    window area, padding included, plus a per-tile overhead), e.g. a 120x160 signature for a
    160x120 camera frame instead of two padded 128x128 tiles.
    """
    want = parse_tile(tile)
    if backend.dynamic:
        want = want or (DEFAULT_TILE, DEFAULT_TILE)
        if min(want) < 1:
            raise InputError(f"tile must be >= 1 LR pixel, got {tile}")
        return want, False
    shapes = backend.tile_shapes
    labels = ", ".join(tile_label(t) for t in shapes)
    m = backend.card.size_multiple
    usable = [t for t in shapes if min(t) - 2 * halo >= 1 and t[0] % m == 0 and t[1] % m == 0]
    if want is not None:
        if want not in shapes:
            raise InputError(
                f"{backend.artifact.name} is a fixed-size artifact: tile (with halo) must be one of "
                f"{labels}, got {tile_label(want)}; or leave tile unset"
            )
        if want not in usable:
            raise InputError(
                f"tile {tile_label(want)} leaves no centre with halo {halo}; use a larger size "
                f"from {labels} or a smaller halo"
            )
        return want, True
    if not usable:
        raise ModelError(
            f"{backend.artifact.name}: no tile size in {labels} is larger than twice "
            f"the halo {halo}; re-export with larger tiles"
        )
    # fewest pixels computed; ties go to the larger window (fewer calls)
    return min(usable, key=lambda t: (_fixed_cost(h, w, t, halo), -t[0] * t[1])), True


def align_spans(spans: list[Span], multiple: int, origin: int = 0, fixed: bool = False) -> list[Span]:
    """``spans`` with every read starting on a multiple of ``multiple`` in image coordinates
    (plan coordinate + ``origin``), moved back by at most ``multiple - 1``; a dynamic read is
    then lengthened to a multiple, a fixed one keeps its length. Keeps are unchanged.

    A space-to-depth network (card ``size_multiple``) computes each output from cells of
    ``multiple`` x ``multiple`` pixels, so it gives the same result for a pixel only where the
    cells are cut alike: aligned reads make a tiled image equal to the whole-image result.
    """
    if multiple <= 1:
        return spans
    out = []
    for sp in spans:
        r0 = (sp.read0 + origin) // multiple * multiple - origin
        r1 = r0 + sp.length if fixed else r0 + -(-(sp.read1 - r0) // multiple) * multiple
        out.append(Span(r0, r1, sp.keep0, sp.keep1))
    return out


def make_plan(backend: Backend, h: int, w: int, tile: Any, halo: int, origin: tuple[int, int] = (0, 0)) -> TilePlan:
    """The tiles for an (h, w) image (or region starting at ``origin`` of a larger one)."""
    m = backend.card.size_multiple
    plan = _aligned_plan(backend, h, w, tile, halo, origin, m)
    if m > 1 and plan.fixed and not _covers(plan, halo):
        # a fixed window moved back to a cell boundary lost up to m - 1 pixels of context at its
        # far end: plan again with that much more (an aligned exact fit, e.g. a ROI that is its
        # own image on the live path's halo 0, keeps its window)
        plan = _aligned_plan(backend, h, w, tile, halo + m - 1, origin, m)
    return plan


def _aligned_plan(backend: Backend, h: int, w: int, tile: Any, halo: int, origin: tuple[int, int], m: int) -> TilePlan:
    (th, tw), fixed = choose_tile(backend, h, w, tile, halo)
    ys = align_spans(plan_axis(h, th, halo, fixed), m, origin[0], fixed)
    xs = align_spans(plan_axis(w, tw, halo, fixed), m, origin[1], fixed)
    return TilePlan(ys, xs, (th, tw), halo, fixed)


def _covers(plan: TilePlan, halo: int) -> bool:
    """Every read holds its keep plus at least ``halo`` on each side."""
    return all(sp.read0 <= sp.keep0 - halo and sp.read1 >= sp.keep1 + halo for sp in (*plan.ys, *plan.xs))


# ---------------------------------------------------------------------------- the border rule
def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Image coordinates (any integers) -> [0, n): the mirror image about the border, the edge
    pixel repeated, ``... 1 0 | 0 1 ... n-1 | n-1 n-2 ...``, periodic (2n) so any distance works
    (a 1-pixel axis repeats its pixel). The same indices as ``np.pad(mode="symmetric")`` for any
    width."""
    idx = np.asarray(idx, dtype=np.int64)
    period = 2 * n
    m = np.mod(idx, period)
    return np.where(m < n, m, period - 1 - m)


@dataclass(frozen=True)
class Window:
    """Where a plan and a plane sit in the image, for reads that cross the image's border.

    ``image_hw``: the whole image's size (the reflection is about its border). ``at``: the
    image position of the plan's coordinate 0. ``plane_at``: the image position of the
    plane's first row and column (a Dask block starts a halo before its core, or at the
    border). ``Upscaler`` reads a whole image: both (0, 0).
    """

    image_hw: tuple[int, int]
    at: tuple[int, int] = (0, 0)
    plane_at: tuple[int, int] = (0, 0)


def _axis_index(span: Span, n: int, at: int, plane_at: int, plane_n: int) -> slice | np.ndarray:
    """The plane rows (or columns) of a span's read: a slice inside the image, else the
    reflected indices."""
    r0, r1 = span.read0 + at, span.read1 + at  # image coordinates
    if r0 >= 0 and r1 <= n:
        idx: slice | np.ndarray = slice(r0 - plane_at, r1 - plane_at)
        lo, hi = r0 - plane_at, r1 - plane_at
    else:
        idx = reflect_index(np.arange(r0, r1), n) - plane_at
        lo, hi = int(idx.min()), int(idx.max()) + 1
    if lo < 0 or hi > plane_n:
        raise InternalError(
            f"a tile reads image pixels {r0}:{r1} (reflected into 0:{n}) outside the plane's "
            f"{plane_at}:{plane_at + plane_n}"
        )
    return idx


def tile_index(span: Span, n: int, at: int = 0) -> slice | np.ndarray:
    """The rows (or columns) a span reads from a whole image axis of ``n``: a slice, or the
    reflected indices where the read crosses the border. ``at``: the image position of the
    plan's coordinate 0 (a region's first row or column)."""
    return _axis_index(span, n, at, 0, n)


def read_tile(plane: np.ndarray, iy: slice | np.ndarray, ix: slice | np.ndarray, ch: int | None = None) -> np.ndarray:
    """``plane[iy, ix(, ch:ch+1)]`` as an in-memory array, reading a memmap only over the
    bounding box of the indices (a border tile's reflected rows are gathered from it)."""
    by = iy if isinstance(iy, slice) else slice(int(iy.min()), int(iy.max()) + 1)
    bx = ix if isinstance(ix, slice) else slice(int(ix.min()), int(ix.max()) + 1)
    block = np.asarray(plane[by, bx] if ch is None else plane[by, bx, ch : ch + 1])
    if not isinstance(iy, slice):
        block = block[iy - by.start]
    if not isinstance(ix, slice):
        block = block[:, ix - bx.start]
    return block


def pad_image(plane: np.ndarray, halo: int) -> np.ndarray:
    """The image as the network sees it: (H, W[, C]) mirror-padded by ``halo`` on every side
    (the rule stated in the module docstring; for tests and whole-image references)."""
    h, w = plane.shape[:2]
    iy = reflect_index(np.arange(-halo, h + halo), h)
    ix = reflect_index(np.arange(-halo, w + halo), w)
    return np.asarray(plane)[iy][:, ix]


def iter_bands(
    backend: Backend,
    plane: np.ndarray,
    stats: Stats,
    plan: TilePlan,
    dtype: np.dtype,
    batch: int,
    per_channel: bool,
    progress=None,
    dst: np.ndarray | None = None,
    window: Window | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Run a (H, W, C) ``plane`` tile by tile; yield ``(hr_y0, band)`` top to bottom.

    Each band is ``(bh, W*s, Cout)`` in ``dtype`` (W: the plan's width); the bands partition
    the output rows. ``dst``: the whole ``(H*s, W*s, Cout)`` output; bands are then views into
    it, written in place (no band copy: per camera frame that copy is a full pass over the
    output). ``per_channel``: the model has one input channel and the plane's C channels run
    as separate batch items (each with its own statistics). ``window``: where the plan and the
    plane sit in a larger image (a Dask block); default: the plane is the image.

    Reads past the image's border are its reflection (the border rule, module docstring).
    Memory is bounded by ``batch``: a runtime call gets at most ``batch`` items (a tile, or
    one channel of a tile when ``per_channel``), and each call's input is made only when the
    runtime asks for it, so a 60-channel image or a wide band costs one batch, not all of it.
    """
    s = backend.scale
    ph, pw, c = plane.shape
    win = window or Window((ph, pw))
    (ih, iw), (ay, ax), (py, px) = win.image_hw, win.at, win.plane_at
    w = plan.xs[-1].keep1  # the plan's keeps partition [0, w)
    c_out = c if per_channel else backend.out_channels
    dtype = np.dtype(dtype)
    floating = dtype.kind == "f"
    # per channel: each channel its own affine map (the statistics were taken per channel)
    # (a channel index ``ch`` is only ever given when per_channel)
    chstats = [Stats(stats.lo[i : i + 1], stats.scale[i : i + 1]) for i in range(c)] if per_channel else []
    xidx = {sx: _axis_index(sx, iw, ax, px, pw) for sx in plan.xs}

    def tile_input(iy: slice | np.ndarray, sx: Span, ch: int | None) -> np.ndarray:
        """(1, Cin, h, w) float32: one tile (one channel of it when ``ch`` is given), normalised."""
        raw = read_tile(plane, iy, xidx[sx], ch)
        x = stats.normalise(raw) if ch is None else chstats[ch].normalise(raw)
        return x.transpose(2, 0, 1)[None]  # (1, Cin, h, w)

    for sy in plan.ys:
        iy = _axis_index(sy, ih, ay, py, ph)
        if dst is not None:
            band = dst[sy.keep0 * s : sy.keep1 * s]
        else:
            band = np.empty(((sy.keep1 - sy.keep0) * s, w * s, c_out), dtype=dtype)
        # this row's items grouped by read shape so same-size tiles share a batch
        groups: dict[tuple[int, int], list[tuple[Span, int | None]]] = {}
        for sx in plan.xs:
            items = groups.setdefault((sy.length, sx.length), [])
            if per_channel:
                items.extend((sx, ch) for ch in range(c))
            else:
                items.append((sx, None))
        chunks = [items[i : i + batch] for items in groups.values() for i in range(0, len(items), batch)]
        inputs = (np.concatenate([tile_input(iy, sx, ch) for sx, ch in chunk], axis=0) for chunk in chunks)
        outputs = backend.run_many(inputs)
        for chunk, y in zip(chunks, outputs):
            for k, (sx, ch) in enumerate(chunk):
                yt = y[k]  # (Cout, H, W)
                oy0 = (sy.keep0 - sy.read0) * s
                ox0 = (sx.keep0 - sx.read0) * s
                core = yt[:, oy0 : oy0 + (sy.keep1 - sy.keep0) * s, ox0 : ox0 + (sx.keep1 - sx.keep0) * s]
                if ch is None:
                    target, st = band[:, sx.keep0 * s : sx.keep1 * s], stats
                else:
                    target, st = band[:, sx.keep0 * s : sx.keep1 * s, ch : ch + 1], chstats[ch]
                st.denormalise(
                    core.transpose(1, 2, 0), dtype, out=target, overwrite_input=True
                )  # y is this loop's own scratch
                if floating and not np.isfinite(target).all():
                    raise ModelError(
                        f"{backend.artifact.name}: the model returned NaN for a finite image "
                        "(a broken or overflowing artifact); re-export it, or try its fp32 "
                        "version"
                    )
                if progress is not None and (ch is None or ch == c - 1):
                    progress.update(1)
        yield sy.keep0 * s, band
