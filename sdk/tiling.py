"""Seam-free tiling: a tile plan, and tiled execution of one 2-D image through a Backend.

Why it is seam-free: every tile is read with a halo >= the network's receptive-field radius
(``card.halo``), halos are clamped at the image border and never padded beyond it, and only
each tile's centre is kept. Every kept output pixel then sees exactly the input context it
sees in whole-image inference (the network's own zero padding sits at the same image
border in both), so the result equals whole-image inference up to float rounding.

* ``tile`` is in LR pixels: N (square) or (H, W). Dynamic-shape backends: ``tile`` is the
  kept core (default 256) and each read is ``tile + 2*halo`` (less at the border).
  Fixed-size backends: the read window (tile with halo) is one of the card's
  ``tile_sizes`` (N or [H, W], e.g. a camera frame's 120x160), by default the one that
  computes the fewest pixels for this image; the core is ``size - 2*halo``.
* Tiles stay inside the image: the last tile of a row/column moves back to sit flush with
  the border (overlapping its neighbour); the kept regions never overlap, they partition
  the output.
* The ONLY padding: a fixed-size artifact given an image smaller than its size along an
  axis gets that axis reflect-padded (edge-padded for a 1-pixel axis) up to the size and
  the result cropped. That border is then not exactly whole-image inference (there is no
  whole-image inference for a fixed-size model), but there are no seams.
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
from .errors import InputError, ModelError, ModelIOError
from .normalize import Stats
from .tiles import parse_tile, tile_label

log = logging.getLogger(__name__)

DEFAULT_TILE = 256


@dataclass(frozen=True)
class Span:
    """One tile position along one axis (LR pixels)."""

    read0: int  # image region read: [read0, read1)
    read1: int
    keep0: int  # output region this tile fills: [keep0, keep1); spans partition [0, n)
    keep1: int
    pad: int = 0  # padding added after read1 (fixed-size artifacts on a short axis only)

    @property
    def length(self) -> int:
        return self.read1 - self.read0 + self.pad


def plan_axis(n: int, tile: int, halo: int, fixed: bool = False) -> list[Span]:
    """Tile positions along an axis of length ``n``.

    ``fixed=False``: ``tile`` is the kept core, reads are ``tile + 2*halo`` clamped to [0, n).
    ``fixed=True``: ``tile`` is the exact read length; the core is ``tile - 2*halo``.
    """
    if n < 1:
        raise ModelIOError("empty image axis (size 0)")
    if tile < 1 or halo < 0:
        raise InputError(f"tile must be >= 1 and halo >= 0, got tile={tile}, halo={halo}")
    if not fixed:
        if n <= tile:
            return [Span(0, n, 0, n)]
        starts = list(range(0, n - tile, tile)) + [n - tile]  # last one flush with the border
        spans, prev = [], 0
        for s in starts:
            spans.append(Span(max(0, s - halo), min(n, s + tile + halo), prev, s + tile))
            prev = s + tile
        return spans
    core = tile - 2 * halo
    if core < 1:
        raise InputError(f"tile size {tile} leaves no centre with halo {halo} (needs > {2 * halo})")
    if n <= tile:
        return [Span(0, n, 0, n, pad=tile - n)]
    spans, r, prev = [], 0, 0
    while r + tile < n:
        spans.append(Span(r, r + tile, prev, r + tile - halo))
        prev = r + tile - halo
        r += core
    spans.append(Span(n - tile, n, prev, n))
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
    usable = [t for t in shapes if min(t) - 2 * halo >= 1]
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


def make_plan(backend: Backend, h: int, w: int, tile: Any, halo: int) -> TilePlan:
    (th, tw), fixed = choose_tile(backend, h, w, tile, halo)
    return TilePlan(plan_axis(h, th, halo, fixed), plan_axis(w, tw, halo, fixed), (th, tw), halo, fixed)


def _pad_mode(n: int) -> str:
    return "reflect" if n > 1 else "edge"


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
) -> Iterator[tuple[int, np.ndarray]]:
    """Run a (H, W, C) ``plane`` tile by tile; yield ``(hr_y0, band)`` top to bottom.

    Each band is ``(bh, W*s, Cout)`` in ``dtype``; the bands partition the output rows.
    ``dst``: the whole ``(H*s, W*s, Cout)`` output; bands are then views into it, written in
    place (no band copy: per camera frame that copy is a full pass over the output).
    ``per_channel``: the model has one input channel and the plane's C channels run as
    separate batch items (each with its own statistics).

    Memory is bounded by ``batch``: a runtime call gets at most ``batch`` items (a tile, or
    one channel of a tile when ``per_channel``), and each call's input is made only when the
    runtime asks for it, so a 60-channel image or a wide band costs one batch, not all of it.
    """
    s = backend.scale
    h, w, c = plane.shape
    c_out = c if per_channel else backend.out_channels
    dtype = np.dtype(dtype)
    floating = dtype.kind == "f"
    # per channel: each channel its own affine map (the statistics were taken per channel)
    chstats = [Stats(stats.lo[i : i + 1], stats.scale[i : i + 1]) for i in range(c)] if per_channel else None

    def tile_input(sy: Span, sx: Span, ch: int | None) -> np.ndarray:
        """(1, Cin, h, w) float32: one tile (one channel of it when ``ch`` is given), normalised."""
        if ch is None:
            x = stats.normalise(np.asarray(plane[sy.read0 : sy.read1, sx.read0 : sx.read1]))
        else:
            x = chstats[ch].normalise(np.asarray(plane[sy.read0 : sy.read1, sx.read0 : sx.read1, ch : ch + 1]))
        if sy.pad:  # fixed-size artifact, image shorter than the tile: the only padding
            x = np.pad(x, ((0, sy.pad), (0, 0), (0, 0)), mode=_pad_mode(x.shape[0]))
        if sx.pad:
            x = np.pad(x, ((0, 0), (0, sx.pad), (0, 0)), mode=_pad_mode(x.shape[1]))
        return x.transpose(2, 0, 1)[None]  # (1, Cin, h, w)

    for sy in plan.ys:
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
        inputs = (np.concatenate([tile_input(sy, sx, ch) for sx, ch in chunk], axis=0) for chunk in chunks)
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
