"""The tile-size grammar, in one place: how sizes are written in cards, on command lines and
in calls, and how they convert into ``(H, W)`` shapes.

* A tile size is N (an N x N tile) or (H, W), e.g. a camera frame's (120, 160).
* A card stores them as JSON: ``N`` or ``[H, W]`` (:func:`tile_entry`), a list of them in
  ``tile_sizes``; :func:`tile_shapes` turns that list into sorted, distinct ``(H, W)`` pairs.
* On a command line they are ``"64,128,120x160"`` (:func:`parse_tile_sizes`; HxW is height x
  width), and one size is ``"N"`` or ``"HxW"`` (:func:`parse_tile`).
* :func:`tile_label` writes one shape back: ``"64"`` or ``"120x160"``; a TFLite artifact holds
  one signature per shape, named ``"lr" + tile_label`` (:func:`signature_name`).

Only the standard library: the grammar is used by cards, which a Raspberry Pi reads.
"""

from __future__ import annotations

from typing import Any

from .errors import CardError, InputError


def is_tile_size(t: Any) -> bool:
    """True for N or an (H, W) pair of positive integers (bools are not sizes)."""
    return _is_pos_int(t) or (isinstance(t, (list, tuple)) and len(t) == 2 and all(map(_is_pos_int, t)))


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def tile_shapes(tile_sizes: Any) -> list[tuple[int, int]]:
    """The card's ``tile_sizes`` as sorted, distinct ``(H, W)`` pairs (N means (N, N))."""
    if not tile_sizes:
        return []
    if not all(is_tile_size(t) for t in tile_sizes):
        raise CardError(f"tile sizes must be positive integers N or [H, W] pairs, got {tile_sizes!r}")
    return sorted({(t, t) if isinstance(t, int) else (int(t[0]), int(t[1])) for t in tile_sizes})


def parse_tile_sizes(text: str) -> list[int | list[int]]:
    """``"64,128,120x160"`` -> ``[64, 128, [120, 160]]`` (CLI syntax; HxW is height x width)."""
    out: list[int | list[int]] = []
    for part in text.lower().replace(" ", "").split(","):
        if not part:
            continue
        dims = part.split("x")
        if len(dims) not in (1, 2) or not all(d.isdigit() and int(d) > 0 for d in dims):
            raise CardError(
                f"tile size {part!r}: give N (an N x N tile) or HxW with positive integers, e.g. 64,128,120x160"
            )
        out.append(int(dims[0]) if len(dims) == 1 else [int(dims[0]), int(dims[1])])
    if not out:
        raise CardError(f"no tile sizes in {text!r}; e.g. 64,128,120x160")
    return out


def parse_tile(tile: Any) -> tuple[int, int] | None:
    """One tile as given by a user: None, N, (H, W), or the text "N" / "HxW"."""
    import numbers

    if tile is None:
        return None
    if isinstance(tile, str):
        try:
            sizes = parse_tile_sizes(tile)
        except CardError:
            sizes = []
        if len(sizes) != 1:
            raise InputError(f"tile {tile!r}: give one size, N or HxW (height x width), e.g. 128 or 120x160")
        tile = sizes[0]
    if isinstance(tile, numbers.Integral) and not isinstance(tile, bool):  # numpy integers too
        return (int(tile), int(tile))
    if isinstance(tile, (tuple, list)) and len(tile) == 2:
        try:
            return (int(tile[0]), int(tile[1]))
        except (TypeError, ValueError):
            pass
    raise InputError(f"tile {tile!r}: give N (an N x N tile) or (H, W)")


def tile_label(shape: tuple[int, int]) -> str:
    """``"64"`` for a square tile, ``"120x160"`` otherwise (TFLite signature suffix, CLI syntax)."""
    h, w = shape
    return str(h) if h == w else f"{h}x{w}"


def tile_entry(shape: tuple[int, int]) -> int | list[int]:
    """The card's JSON form of one shape: N for a square, [H, W] otherwise."""
    h, w = shape
    return h if h == w else [h, w]


def signature_name(shape: tuple[int, int]) -> str:
    """The TFLite signature that holds one tile shape: ``lr64`` (64x64), ``lr120x160`` (H=120, W=160)."""
    return "lr" + tile_label(shape)


def parse_signature(name: str) -> tuple[int, int] | None:
    """Inverse of ``signature_name``; None for a name that is not ours."""
    if not name.startswith("lr"):
        return None
    parts = name[2:].split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        return None
    h, w = int(parts[0]), int(parts[-1])
    return (h, w)
