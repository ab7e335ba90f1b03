"""Mutation fuzzing of the SDK's image reader and model-card parser.

Every input must end in a valid result or a ``ScopesrError``, within a time and a memory bound:
any other exception (a raw traceback for the user), a timeout or a crash of the process is a
finding. The same seeds and mutators drive the hypothesis tests in ``tests/fuzz/``; this script
is the long run for local use::

    nice -n 10 .venv/bin/python tools/fuzz.py --files 1000 --cards 100 --seed 1 --keep fuzz_findings/

It writes small valid TIFF (plain, RGB, z-stacks, ImageJ hyperstacks, compressed, tiled,
big-endian, BigTIFF; and the bundled real sample_nuclei.tif), PNG (grey, RGB(A), 16-bit,
palette, 1-bit, interlaced), JPEG (grey, RGB, progressive) and model cards, mutates them (bit
flips, byte values, truncation, deleted and repeated ranges, splices, and structure-aware
edits: TIFF tags and IFD links, PNG header fields with the CRC fixed, JPEG frame sizes; hostile
JSON for cards), reads each one in a forked process with ``RLIMIT_AS`` and a timeout, and prints
the counts of ok / ScopesrError / raw exception / timeout / crash. ``--keep DIR`` saves every
finding with a one-line note, ready to move into ``tests/fuzz_corpus/`` once fixed.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- seeds
_CACHE: dict[str, list[tuple[str, bytes]]] = {}


def _tiff(arr: np.ndarray, **kw: Any) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def _pil(arr: np.ndarray, fmt: str, mode: str | None = None, **kw: Any) -> bytes:
    from PIL import Image

    im = Image.fromarray(arr)
    if mode is not None:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def seed_images() -> list[tuple[str, bytes]]:
    """Small valid images of every kind the reader takes: (file name, bytes)."""
    if "images" in _CACHE:
        return _CACHE["images"]
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    u16 = rng.integers(0, 4000, (20, 17), dtype=np.uint16)
    f32 = rng.random((12, 14), dtype=np.float32)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    out = [
        ("plain_u8.tif", _tiff(u8)),
        ("res_u16.tif", _tiff(u16, resolution=(3.5, 3.5), resolutionunit=3)),
        ("float.tif", _tiff(f32)),
        ("rgb.tif", _tiff(rgb, photometric="rgb")),
        (
            "zstack.tif",
            _tiff(
                rng.integers(0, 900, (3, 16, 16), dtype=np.uint16), photometric="minisblack", metadata={"axes": "ZYX"}
            ),
        ),
        (
            "hyperstack.tif",
            _tiff(
                rng.integers(0, 900, (2, 2, 2, 8, 8), dtype=np.uint16),
                imagej=True,
                metadata={"axes": "TZCYX", "spacing": 0.5, "unit": "micron"},
            ),
        ),
        (
            "deflate_tiled.tif",
            _tiff(rng.integers(0, 900, (32, 32), dtype=np.uint16), compression="zlib", tile=(16, 16)),
        ),
        ("packbits.tif", _pil(rgb, "TIFF", compression="packbits")),
        ("bigendian.tif", _tiff(u16.astype(">u2"), byteorder=">")),
        ("bigtiff.tif", _tiff(u8, bigtiff=True)),
        ("strips.tif", _tiff(u16, rowsperstrip=3)),
        ("planar_rgb.tif", _tiff(np.moveaxis(rgb, -1, 0).copy(), photometric="rgb", planarconfig="separate")),
        ("sample_nuclei.tif", _bundled_sample()),  # a real microscopy file, as sr-bench release wrote it
        ("grey.png", _pil(u8, "PNG")),
        ("rgb.png", _pil(rgb, "PNG")),
        ("rgba.png", _pil(rgba, "PNG")),
        ("u16.png", _pil(u16, "PNG")),
        ("palette.png", _pil(rgb, "PNG", mode="P")),
        ("bilevel.png", _pil(u8, "PNG", mode="1")),
        ("interlaced.png", _interlaced_png(u8)),
        ("grey.jpg", _pil(u8, "JPEG", quality=90)),
        ("rgb.jpg", _pil(rgb, "JPEG", quality=80)),
        ("progressive.jpg", _pil(rgb, "JPEG", progressive=True, quality=75)),
    ]
    _CACHE["images"] = out
    return out


def _bundled_sample() -> bytes:
    from scopesr.sdk.samples import BUNDLED_DIR

    return (BUNDLED_DIR / "sample_nuclei.tif").read_bytes()


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def _interlaced_png(a: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit grey PNG (Pillow does not write interlaced PNGs)."""
    h, w = a.shape
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    head = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", head)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


#: a valid card (the shape of tests/fixtures/tiny_x4.card.json, without an artifact to check)
SEED_CARD: dict[str, Any] = {
    "name": "fuzz",
    "architecture": "tiny-x4-test",
    "scale": 4,
    "in_channels": 1,
    "out_channels": 1,
    "halo": 4,
    "format": "onnx",
    "artifact": "fuzz.onnx",
    "sha256": "0" * 64,
    "arch_args": {"width": 16},
    "layout": "NCHW",
    "precision": "fp32",
    "tile_sizes": [64, [48, 80]],
    "normalisation": {"mode": "percentile", "p_low": 0.1, "p_high": 99.9},
    "degradation": "pil-bicubic",
    "training": {},
    "metrics": {"heldout": {"psnr": 30.0}},
    "versions": {"scopesr": "0"},
    "extra": {},
    "format_version": 1,
}

# --------------------------------------------------------------------------- mutators
INTERESTING = (0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
#: TIFF tags worth changing: sizes, sample layout, codec, strip tables, tiles, description
TIFF_TAGS = (256, 257, 258, 259, 262, 270, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 338, 339)


def _ifd_entries(data: bytes) -> list[tuple[int, int, int, int, str]]:
    """(entry offset, tag, type, count, byte order) of the classic-TIFF IFD entries, first pages."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return []
    bo = "<" if data[:2] == b"II" else ">"
    if struct.unpack(bo + "H", data[2:4])[0] != 42:
        return []
    out = []
    off = struct.unpack(bo + "I", data[4:8])[0]
    for _ in range(8):
        if off <= 0 or off + 2 > len(data):
            break
        n = struct.unpack(bo + "H", data[off : off + 2])[0]
        for i in range(min(n, 64)):
            e = off + 2 + 12 * i
            if e + 12 > len(data):
                break
            tag, typ, count = struct.unpack(bo + "HHI", data[e : e + 8])
            out.append((e, tag, typ, count, bo))
        nxt = off + 2 + 12 * n
        if nxt + 4 > len(data):
            break
        off = struct.unpack(bo + "I", data[nxt : nxt + 4])[0]
    return out


def _tiff_mutation(data: bytearray, rng: random.Random) -> str:
    entries = _ifd_entries(bytes(data))
    if not entries:
        return _generic(data, rng)
    chosen = [e for e in entries if e[1] in TIFF_TAGS] or entries
    e, tag, typ, count, bo = rng.choice(chosen)
    what = rng.randrange(5)
    if what == 0:  # the value (or the offset of the values)
        v = rng.choice(INTERESTING)
        if typ == 3 and count == 1:
            struct.pack_into(bo + "H", data, e + 8, v & 0xFFFF)
        else:
            struct.pack_into(bo + "I", data, e + 8, v & 0xFFFFFFFF)
        return f"tiff tag {tag} value -> {v}"
    if what == 1:
        v = rng.choice(INTERESTING)
        struct.pack_into(bo + "I", data, e + 4, v & 0xFFFFFFFF)
        return f"tiff tag {tag} count {count} -> {v}"
    if what == 2:
        v = rng.choice((0, 1, 2, 3, 4, 5, 7, 11, 12, 13, 16, 17, 18, 99))
        struct.pack_into(bo + "H", data, e + 2, v)
        return f"tiff tag {tag} type {typ} -> {v}"
    if what == 3:
        v = rng.choice(TIFF_TAGS + (0, 0xFFFF, 50838, 50839))
        struct.pack_into(bo + "H", data, e, v)
        return f"tiff tag {tag} renamed {v}"
    # the first IFD's offset, or its next-IFD link, pointed somewhere odd (itself: a loop)
    first = struct.unpack(bo + "I", bytes(data[4:8]))[0]
    v = rng.choice((0, 8, first, len(data), len(data) - 2, 0xFFFFFFF0))
    struct.pack_into(bo + "I", data, 4, v)
    return f"tiff first IFD offset -> {v}"


def _text_mutation(data: bytearray, rng: random.Random) -> str | None:
    """Numbers in an ImageJ description or shaped-TIFF JSON (images=60, "shape": [3, 16, 16])."""
    import re

    text = bytes(data)
    hits = [m for m in re.finditer(rb"(images|slices|frames|channels)=(\d+)|\[(\d+), ", text)]
    if not hits:
        return None
    m = rng.choice(hits)
    g = 2 if m.group(2) else 3
    new = str(rng.choice((0, 1, 2, 60, 65535, 10**9, 10**18))).encode()
    a, b = m.span(g)
    data[a:b] = new
    return f"tiff description number {text[a:b]!r} -> {new!r}"


def _png_mutation(data: bytearray, rng: random.Random) -> str:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return _generic(data, rng)
    what = rng.randrange(4)
    if what == 0:  # an IHDR field, with a valid CRC so that the decoder looks further
        field, fmt, off = rng.choice(
            (
                ("width", ">I", 16),
                ("height", ">I", 20),
                ("depth", ">B", 24),
                ("ctype", ">B", 25),
                ("interlace", ">B", 28),
            )
        )
        v = rng.choice(INTERESTING if fmt == ">I" else (0, 1, 2, 3, 4, 6, 7, 8, 16, 32, 255))
        struct.pack_into(fmt, data, off, v & (0xFFFFFFFF if fmt == ">I" else 0xFF))
        struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
        return f"png IHDR {field} -> {v}"
    chunks = []
    pos = 8
    while pos + 8 <= len(data):
        n = struct.unpack(">I", data[pos : pos + 4])[0]
        if pos + 12 + n > len(data):
            break
        chunks.append((pos, n, bytes(data[pos + 4 : pos + 8])))
        pos += 12 + n
    idat = [c for c in chunks if c[2] == b"IDAT"]
    if what == 1 and idat:  # IDAT bytes changed, CRC recomputed: the zlib stream is the damage
        pos, n, _ = rng.choice(idat)
        for _ in range(rng.randint(1, 4)):
            if n:
                data[pos + 8 + rng.randrange(n)] = rng.randrange(256)
        struct.pack_into(">I", data, pos + 8 + n, zlib.crc32(bytes(data[pos + 4 : pos + 8 + n])) & 0xFFFFFFFF)
        return "png IDAT bytes (CRC fixed)"
    if what == 2 and chunks:
        pos, n, t = rng.choice(chunks)
        v = rng.choice(INTERESTING)
        struct.pack_into(">I", data, pos, v)
        return f"png {t!r} length {n} -> {v}"
    if idat:  # an IDAT dropped or repeated
        pos, n, _ = rng.choice(idat)
        piece = bytes(data[pos : pos + 12 + n])
        if rng.random() < 0.5:
            del data[pos : pos + 12 + n]
            return "png IDAT chunk dropped"
        data[pos:pos] = piece
        return "png IDAT chunk repeated"
    return _generic(data, rng)


def _jpeg_mutation(data: bytearray, rng: random.Random) -> str:
    sofs = [i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2)]
    if not sofs or rng.random() < 0.3:
        segs = [i for i in range(2, len(data) - 4) if data[i] == 0xFF and 0xC0 <= data[i + 1] <= 0xFE]
        if segs:
            i = rng.choice(segs)
            if rng.random() < 0.5:
                data[i + 1] = rng.choice((0xC0, 0xC2, 0xC4, 0xC9, 0xD9, 0xDA, 0xDB, 0xDD, 0xE1, 0xFE))
                return f"jpeg marker at {i} -> {data[i + 1]:#x}"
            struct.pack_into(">H", data, i + 2, rng.choice((0, 1, 2, 0xFFFF, 0x100)))
            return f"jpeg segment length at {i}"
        return _generic(data, rng)
    i = rng.choice(sofs)
    field, off, fmt = rng.choice(
        (("precision", 4, ">B"), ("height", 5, ">H"), ("width", 7, ">H"), ("components", 9, ">B"))
    )
    v = rng.choice((0, 1, 2, 3, 4, 8, 12, 16, 255, 0x7FFF, 0xFFFF) if fmt == ">H" else (0, 1, 2, 3, 4, 8, 12, 16, 255))
    struct.pack_into(fmt, data, i + off, v)
    return f"jpeg SOF {field} -> {v}"


def _generic(data: bytearray, rng: random.Random) -> str:
    n = len(data)
    if n == 0:
        data.extend(rng.randbytes(rng.randint(1, 64)))
        return "random bytes"
    what = rng.randrange(7)
    if what == 0:
        k = rng.randint(1, 8)
        for _ in range(k):
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
        return f"{k} bit flip(s)"
    if what == 1:
        i = rng.randrange(n)
        data[i] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
        return f"byte {i} set"
    if what == 2:
        i = rng.randrange(max(1, n - 4))
        v = rng.choice(INTERESTING)
        data[i : i + 4] = struct.pack(rng.choice("<>") + "I", v)[: max(0, min(4, n - i))]
        return f"u32 at {i} -> {v}"
    if what == 3:
        cut = rng.choice((rng.randrange(n), n - 1, n - rng.randint(1, min(n, 64)), n // 2))
        del data[max(1, cut) :]
        return f"truncated to {len(data)} of {n} bytes"
    if what == 4:
        a = rng.randrange(n)
        b = min(n, a + rng.randint(1, 256))
        del data[a:b]
        return f"bytes {a}:{b} deleted"
    if what == 5:
        a = rng.randrange(n)
        b = min(n, a + rng.randint(1, 256))
        data[a:a] = data[a:b] * rng.randint(1, 4)
        return f"bytes {a}:{b} repeated"
    i = rng.randrange(n)
    data[i:i] = rng.randbytes(rng.randint(1, 32))
    return f"random bytes inserted at {i}"


def mutate_image(name: str, data: bytes, rng: random.Random, steps: int | None = None) -> tuple[bytes, str]:
    """``data`` changed by 1-3 mutations that fit its format; returns (bytes, what was done)."""
    buf = bytearray(data)
    done = []
    for _ in range(steps or rng.choice((1, 1, 1, 2, 3))):
        r = rng.random()
        if name.endswith(".tif") and r < 0.5:
            done.append((_text_mutation(buf, rng) if r < 0.08 else None) or _tiff_mutation(buf, rng))
        elif name.endswith(".png") and r < 0.5:
            done.append(_png_mutation(buf, rng))
        elif name.endswith(".jpg") and r < 0.5:
            done.append(_jpeg_mutation(buf, rng))
        elif r < 0.55:  # a splice: the head of this file, the tail of another
            other = rng.choice(seed_images())[1]
            cut = rng.randrange(1, max(2, len(buf)))
            buf[cut:] = other[rng.randrange(len(other)) :]
            done.append("spliced with another seed")
        else:
            done.append(_generic(buf, rng))
    return bytes(buf), "; ".join(done)


# --------------------------------------------------------------------------- hostile cards
HOSTILE_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    1.5,
    10**400,
    -(10**30),
    float("nan"),
    float("inf"),
    "",
    "x" * 5000,
    "\ud800",
    "../../etc/passwd",
    "/etc/passwd",
    ".",
    "sub/m.onnx",
    "a\x00b",
    [],
    [0],
    [[1, 2, 3]],
    [[0, 0]],
    [[10**6, 64]],
    [True],
    {},
    {"a": {"b": {}}},
    {"mode": "range", "p_low": "0"},
)


def hostile_card(rng: random.Random) -> tuple[bytes, str]:
    """Card bytes: the seed card with fields replaced, removed or added, deep nesting, huge
    numbers, non-UTF-8 or non-JSON text; returns (bytes, what was done)."""
    card = json.loads(json.dumps(SEED_CARD))
    what = rng.randrange(10)
    if what <= 4:
        keys = rng.sample(sorted(card), rng.randint(1, 3))
        for k in keys:
            card[k] = rng.choice(HOSTILE_VALUES)
        note = f"fields {keys} set to hostile values"
    elif what == 5:
        k = rng.choice(sorted(card))
        del card[k]
        card[rng.choice(("extra_field", "Name", ""))] = 1
        note = f"field {k} removed, an unknown one added"
    elif what == 6:
        depth = rng.choice((100, 1000, 5000, 100000))
        blob = "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
        text = json.dumps(card)[:-1] + f', "training": {blob}' + "}" if rng.random() < 0.5 else blob
        return text.encode(), f"JSON nested {depth} deep"
    elif what == 7:
        card["normalisation"] = rng.choice(HOSTILE_VALUES + ({"p_low": 50, "p_high": 10}, {"mode": "x", "q": 1}))
        note = "normalisation hostile"
    elif what == 8:
        raw = json.dumps(card, allow_nan=True).encode()
        i = rng.randrange(len(raw))
        raw = raw[:i] + rng.choice((b"\xff\xfe", b"\x00", b"\xc3", b"9" * 5000, b"NaN", b"-Infinity")) + raw[i:]
        return raw, f"bytes inserted at {i}"
    else:
        card["tile_sizes"] = rng.choice(
            ([0], [-5], [4097], [[64]], [[64, 64, 64]], ["64"], [1.5], [None], list(range(10**4)))
        )
        note = "tile_sizes hostile"
    return json.dumps(card, allow_nan=True).encode("utf-8", "surrogatepass"), note


# --------------------------------------------------------------------------- checks
def check_image_file(path: Path, memmap: bool | None = None, model: Path | None = None) -> str:
    """Read ``path`` (and, with ``model``, upscale what was read): "ok" (a valid Image, and a
    finite result of the right shape), "ScopesrError", or raises what escaped."""
    import scopesr.sdk as sr
    from scopesr.sdk import ScopesrError, read_image
    from scopesr.sdk.io import AXES_ORDER, SUPPORTED_DTYPES

    try:
        img = read_image(path, memmap=memmap, max_pixels=1 << 24)
    except ScopesrError:
        return "ScopesrError"
    a = np.asarray(img.array)
    assert a.dtype in SUPPORTED_DTYPES and a.size > 0, (a.dtype, a.shape)
    assert len(img.axes) == a.ndim and set(img.axes) <= set(AXES_ORDER), (img.axes, a.shape)
    if a.dtype.kind == "f":
        assert np.isfinite(a).all()
    if model is not None:
        try:
            up = sr.load(model, num_threads=1)
            out = up.upscale(img.array, axes=img.axes)
        except ScopesrError:
            return "ScopesrError"
        want = [n * up.scale if ax in "YX" else n for n, ax in zip(a.shape, img.axes)]
        assert list(out.shape) == want and out.dtype == a.dtype, (out.shape, want, out.dtype)
        assert out.dtype.kind != "f" or np.isfinite(out).all(), "NaN/inf out of finite input"
    return "ok"


def check_card_file(path: Path) -> str:
    """Read a card: "ok" (valid, round-trips through to_json) or "ScopesrError"."""
    from scopesr.sdk import ModelCard, ScopesrError

    try:
        card = ModelCard.read(path)
    except ScopesrError:
        return "ScopesrError"
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again == card
    return "ok"


def isolated(fn: Callable[[], str], timeout_s: float, mem_bytes: int) -> tuple[str, str]:
    """``fn()`` in a forked child under RLIMIT_AS and a timeout: (outcome, detail) with outcome
    one of ok, ScopesrError, raw, timeout, crash."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, hard))
            msg = fn()
        except MemoryError:
            msg = "raw\tMemoryError (over the memory bound)"
        except BaseException as exc:  # noqa: BLE001 - every escape is the finding
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            msg = f"raw\t{type(exc).__name__}: {str(exc)[:200]} ({Path(tb.filename).name}:{tb.lineno})"
        try:
            os.write(w, msg.encode("utf-8", "replace")[:4000])
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return "timeout", f"over {timeout_s:g} s"
        time.sleep(0.002)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    if os.WIFSIGNALED(status) or not out:
        return "crash", f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else "no result"
    text = out.decode()
    kind, _, detail = text.partition("\t")
    return kind, detail


def _memory_limit(extra: int) -> int:
    """The child's address-space bound: what the parent maps already plus ``extra``."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE") + extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="mutated image files (default 1000)")
    ap.add_argument("--cards", type=int, default=100, help="hostile model cards (default 100)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock; printed)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per input (default 20)")
    ap.add_argument("--memory-mb", type=int, default=1024, help="address space per input above the start (MB)")
    ap.add_argument("--keep", type=Path, default=None, help="folder for the findings (input + .note)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument(
        "--upscale",
        type=Path,
        default=None,
        metavar="MODEL",
        help="also upscale every file that reads, with this artifact (e.g. tests/fixtures/tiny_x4.onnx)",
    )
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    import tempfile

    import tifffile  # noqa: F401
    from PIL import Image  # noqa: F401

    import scopesr.sdk  # noqa: F401 - imported once here, shared by the forked children

    logging.disable(logging.CRITICAL)  # the decoders' own warnings about each broken file
    work = args.work or Path(tempfile.mkdtemp(prefix="scopesr-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    mem = _memory_limit(args.memory_mb << 20)
    counts: dict[str, Counter[str]] = {"files": Counter(), "cards": Counter()}
    kinds: Counter[str] = Counter()
    by_seed: dict[str, Counter[str]] = {}
    findings: list[str] = []
    seeds = seed_images()
    t0 = time.monotonic()
    jobs: list[tuple[str, int]] = [("files", i) for i in range(args.files)] + [("cards", i) for i in range(args.cards)]
    for what, i in jobs:
        if what == "files":
            name, data = seeds[i % len(seeds)]
            blob, note = mutate_image(name, data, rng)
            suffix = Path(name).suffix
            kinds[suffix] += 1
            path = work / f"f{i:05d}{suffix}"
            path.write_bytes(blob)
            mm = rng.choice((None, None, True))
            outcome, detail = isolated(lambda p=path, m=mm: check_image_file(p, m, args.upscale), args.timeout, mem)
            note = f"{name}: {note}" + (" (memmap=True)" if mm else "")
            by_seed.setdefault(name, Counter())[outcome] += 1
        else:
            blob, note = hostile_card(rng)
            path = work / f"c{i:05d}.card.json"
            path.write_bytes(blob)
            outcome, detail = isolated(lambda p=path: check_card_file(p), args.timeout, mem)
        counts[what][outcome] += 1
        if outcome in ("raw", "timeout", "crash"):
            line = f"{path.name}: {outcome}: {detail} <- {note}"
            findings.append(line)
            print(line, flush=True)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / path.name).write_bytes(blob)
                (args.keep / (path.name + ".note")).write_text(line + "\n")
        path.unlink()
    dt = time.monotonic() - t0
    print(f"seed {seed}; {dt:.0f} s; timeout {args.timeout:g} s and +{args.memory_mb} MB address space per input")
    if args.upscale:
        print(f"every file that read was upscaled with {args.upscale}")
    print(f"files by kind: {dict(sorted(kinds.items()))}")
    for name, c in by_seed.items():
        print(f"  {name:18s} {sum(c.values()):4d}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    for what in ("files", "cards"):
        c = counts[what]
        print(
            f"{what}: {sum(c.values())}: ok {c['ok']}, ScopesrError {c['ScopesrError']}, raw {c['raw']}, "
            f"timeout {c['timeout']}, crash {c['crash']}"
        )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
