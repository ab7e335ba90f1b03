"""Reading and writing microscopy images: PNG/JPEG (Pillow) and TIFF stacks (tifffile).

An image is an array plus an *axes* string over ``T Z C Y X`` (``"YX"``, ``"YXC"``,
``"CYX"``, ``"ZYX"``, ``"TZCYX"`` ...), so stacks, time-lapses, ImageJ hyperstacks and
N-channel images reach the upscaler with their meaning attached. Large uncompressed TIFFs
are memory-mapped (read-only: an input is never modified). Every problem with a file
becomes an :class:`~scopesr.sdk.errors.ImageError` that names the file and says what is
wrong, so a batch run can report it and carry on; a bad argument (axes that do not fit the
array, bands that do not fit the declared shape) is an :class:`~scopesr.sdk.errors.InputError`
(also a ``ValueError``). No other ``ValueError``/``KeyError`` leaves a public call here.

Writes are atomic (temporary file in the destination folder, then ``os.replace``), and
:func:`write_tiff_streaming` writes a BigTIFF strip by strip from an iterator of row bands,
so an output larger than memory (8192x8192 uint16 x4 = 2 GB) never sits in memory.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import ImageError, InputError, ScopesrError

log = logging.getLogger(__name__)

#: suffixes that find_inputs picks up in folders (lower case)
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
#: dtypes the runtime accepts; anything else is refused with a clear message
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: default limit on the pixel count of one input (all planes and channels together). It stops
#: decompression bombs (a few KB of compressed data that claim terapixels) before any
#: allocation; 2**31 is 4 GB of uint16, far beyond any camera frame, still below a bomb.
DEFAULT_MAX_PIXELS = 1 << 31
#: uncompressed TIFFs above this size are memory-mapped instead of read into memory
MEMMAP_THRESHOLD_BYTES = 16 << 20
AXES_ORDER = "TZCYX"

# tifffile axis letters -> ours. 'S' (samples: RGB/extra samples) is a channel axis; the
# generic page axes (Q: unknown, I: image sequence) are stacks: we call them Z.
_TIFF_AXIS_MAP = {"S": "C", "Q": "Z", "I": "Z", "T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X"}


@dataclass
class Image:
    """An image or stack as read from disk.

    ``array`` may be an ``np.memmap`` (read-only) for large uncompressed TIFFs.
    ``axes`` has one letter of ``TZCYX`` per array dimension. ``metadata`` holds what is
    needed to write a result back (TIFF resolution, the source format).
    """

    array: np.ndarray
    axes: str
    path: Path | None = None
    format: str = "tiff"  # "tiff", "png" or "jpeg"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_axes(self.axes, np.ndim(self.array), self.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def is_memmap(self) -> bool:
        return isinstance(self.array, np.memmap)

    @property
    def height(self) -> int:
        return self.array.shape[self.axes.index("Y")]

    @property
    def width(self) -> int:
        return self.array.shape[self.axes.index("X")]

    @property
    def channels(self) -> int:
        return self.array.shape[self.axes.index("C")] if "C" in self.axes else 1

    @property
    def is_stack(self) -> bool:
        """True when the image has a T or Z axis (more than one 2-D plane per channel)."""
        return any(a in self.axes for a in "TZ")


def check_axes(axes: Any, ndim: int, shape: Any = None) -> None:
    """Raise InputError unless ``axes`` names each of ``ndim`` dimensions once, over TZCYX,
    Y and X included."""
    what = f"an array of shape {tuple(shape)}" if shape is not None else f"a {ndim}-D array"
    if not isinstance(axes, str) or len(axes) != ndim:
        raise InputError(f"axes {axes!r} do not match {what} (one letter of {AXES_ORDER} per dimension)")
    if set(axes) - set(AXES_ORDER) or len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise InputError(
            f"axes {axes!r}: use each of {AXES_ORDER} at most once, with Y and X, e.g. YX, YXC, ZYX, TZCYX"
        )


# ---------------------------------------------------------------------------- reading
#: readers of inputs that are not image files (an OME-Zarr folder or URL) as (claims(path) -> bool,
#: read(path, axes_order=..., max_pixels=...) -> Image) pairs. The module that owns the format
#: registers itself (scopesr.sdk.zarr_io, imported by scopesr.sdk), so this module, which that one
#: builds on, never imports it.
_CONTAINER_READERS: list[tuple[Callable[[Any], bool], Callable[..., Image]]] = []


def register_container_reader(claims: Callable[[Any], bool], read: Callable[..., Image]) -> None:
    """Let :func:`read_image` hand the inputs ``claims`` accepts to ``read`` (once per pair)."""
    if (claims, read) not in _CONTAINER_READERS:
        _CONTAINER_READERS.append((claims, read))


def read_image(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, memmap: bool | None = None, check_finite: bool = True
) -> Image:
    """Read a PNG/JPEG/TIFF (incl. multi-page stacks and ImageJ hyperstacks), or an OME-Zarr
    image (a folder or an ``http(s)://`` URL; needs the ``cluster`` extra): its full-resolution
    level as a lazy Dask array in TZCYX order, its pixel size as TIFF metadata for
    :func:`write_image` (see :func:`scopesr.sdk.zarr_io.read_ome_zarr`).

    ``max_pixels`` bounds the total pixel count (decompression-bomb guard; raise it for
    truly huge images). ``memmap``: None = memory-map uncompressed TIFFs larger than
    64 MB, True = always try, False = never. Raises ImageError naming the file and the problem.
    """
    for claims, read in _CONTAINER_READERS:
        if claims(path):
            return read(path, axes_order=AXES_ORDER, max_pixels=max_pixels)
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path}: is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):
        # a FIFO would block the read forever, a device never ends
        raise ImageError(f"{path}: not a regular file (a pipe, device or socket); scopesr reads image files")
    size = st.st_size
    if size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        img = _read_tiff(path, max_pixels, memmap, size)
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        _check_png(path, max_pixels)
        img = _read_pillow(path, max_pixels, "png")
    elif head[:3] == b"\xff\xd8\xff":
        _check_jpeg(path, size)
        img = _read_pillow(path, max_pixels, "jpeg")
    else:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise ImageError(
                f"{path}: not a valid {path.suffix.lstrip('.').upper()} file "
                "(the file's content is not an image of that format; corrupt or mis-named)"
            )
        raise ImageError(f"{path}: not an image (supported: PNG, JPEG, TIFF)")
    _validate(img, check_finite)
    return img


def _read_tiff(path: Path, max_pixels: int, memmap: bool | None, fsize: int) -> Image:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageError(f"{path}: TIFF holds no image")
            series = tif.series[0]
            shape = tuple(int(s) for s in series.shape)
            dtype = np.dtype(series.dtype) if series.dtype is not None else None
            taxes = series.axes
            page = tif.pages.first
            meta: dict[str, Any] = {}
            try:
                meta["resolution"] = tuple(float(r) for r in page.resolution)
                meta["resolutionunit"] = int(page.resolutionunit)
            except Exception:  # resolution is optional; never fail a read for it
                pass
            if tif.is_imagej and tif.imagej_metadata:
                ij = tif.imagej_metadata
                meta["imagej"] = {k: ij[k] for k in ("spacing", "unit", "finterval") if k in ij}
            meta = clean_metadata(meta, path)  # what cannot be written back is dropped now, not
            # found out after the whole image was computed
            _check_declared_planes(path, tif, shape, taxes)
            compressed = any(int(p.compression) != 1 for p in tif.pages[:1])
            npix = int(np.prod(shape, dtype=np.int64)) if shape else 0
            if npix > max_pixels:
                raise ImageError(
                    f"{path}: image claims {'x'.join(map(str, shape))} = {npix:,} pixels, more than "
                    f"the limit of {max_pixels:,} (possible decompression bomb). If the image is "
                    "genuine, raise the limit (read_image(max_pixels=...), sr-upscale --max-pixels)."
                )
            if npix == 0:
                raise ImageError(f"{path}: empty image (shape {shape})")
            if dtype is not None and dtype not in SUPPORTED_DTYPES:
                raise ImageError(_dtype_message(path, dtype))
            # before any pixel is decoded: every strip the pages declare is in the file, and
            # no strip claims more pixels than its bytes can hold (zero-filled gaps, bombs)
            _check_tiff_data(path, tif, series, fsize)
            nbytes = npix * (dtype.itemsize if dtype is not None else 1)
            want_mm = memmap if memmap is not None else nbytes > MEMMAP_THRESHOLD_BYTES
            native = tif.byteorder == ("<" if sys.byteorder == "little" else ">")
            arr = None
            if want_mm and not compressed and native:  # big-endian data cannot be mapped as is
                try:
                    arr = tifffile.memmap(path, mode="r", series=0)
                except (ValueError, OSError) as exc:
                    # not contiguous on disk, or the file is shorter than its header says
                    if _memmap_short(path, exc):
                        raise ImageError(f"{path}: truncated TIFF (the file ends before its pixel data)") from None
                    log.debug("%s: cannot memory-map (%s); reading into memory", path, exc)
                if arr is not None and not arr.dtype.isnative:
                    arr = None
            if arr is None:
                arr = series.asarray()
                if not arr.dtype.isnative:
                    arr = arr.astype(arr.dtype.newbyteorder("="))
    except ImageError:
        raise
    except tifffile.TiffFileError as exc:
        raise ImageError(f"{path}: corrupt or unsupported TIFF ({exc})") from None
    except MemoryError:
        raise ImageError(f"{path}: image too large to read into memory") from None
    except RecursionError:
        raise ImageError(f"{path}: corrupt TIFF (nested too deeply)") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure (zlib, lzw, struct, ...) = bad file
        if "requires the 'imagecodecs' package" in str(exc):  # a valid file in a codec tifffile lacks
            raise ImageError(
                f"{path}: this TIFF's compression ({exc}) needs the imagecodecs package: pip install "
                "imagecodecs, or save the image uncompressed or with Deflate (zlib) compression"
            ) from None
        raise ImageError(f"{path}: truncated or corrupt TIFF ({type(exc).__name__}: {exc})") from None
    if arr.shape != shape:  # tifffile squeezes differently in corner cases: trust the array
        log.debug("%s: series shape %s, array shape %s", path, shape, arr.shape)
    axes = _map_axes(path, taxes, arr.ndim)
    return Image(arr, axes, path, "tiff", meta)


def _check_declared_planes(path: Path, tif: Any, shape: tuple[int, ...], taxes: str) -> None:
    """A stack cut short can still parse: tifffile then falls back to the pages it finds
    (an ImageJ stack of 60 becomes one 2-D image). Compare with what the header declares."""
    planes = int(np.prod([n for n, a in zip(shape, taxes) if a not in "YXS"], dtype=np.int64))
    declared = None
    if tif.is_imagej and tif.imagej_metadata:
        declared = tif.imagej_metadata.get("images")
    elif tif.is_shaped and tif.shaped_metadata:
        dshape = tif.shaped_metadata[0].get("shape")
        if dshape and int(np.prod(dshape, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
            raise ImageError(
                f"{path}: truncated TIFF stack (the header declares shape {tuple(dshape)}, the file holds {shape})"
            )
    if declared is not None and int(declared) > planes:
        raise ImageError(
            f"{path}: truncated TIFF stack (the header declares {declared} planes, the file holds {planes})"
        )


def _memmap_short(path: Path, exc: BaseException) -> bool:
    """Does a memmap failure mean the file is shorter than its header claims?"""
    msg = str(exc).lower()
    return "greater than file size" in msg or "larger than" in msg or "beyond" in msg


#: the most a TIFF codec can expand its data (decoded / stored bytes), with a margin: a page
#: whose strips claim more pixels than this cannot be genuine (cut short, or a decompression
#: bomb). Deflate tops out near 1032:1, LZW (12-bit codes) near 1400:1, PackBits at 64:1.
_TIFF_MAX_RATIO = {1: 1.0, 5: 4100.0, 8: 1100.0, 32946: 1100.0, 32773: 130.0}


def _check_tiff_data(path: Path, tif: Any, series: Any, fsize: int) -> None:
    """Refuse, before decoding, a TIFF whose declared pixels are not all in the file.

    tifffile fills what is missing with zeros (a warning in the log) instead of failing: frames
    of an OME series whose SizeT was raised, strips past the end of a cut-off upload, strip
    tables shorter than the image (a SamplesPerPixel of 65535 over 3 planes' strips). A black
    band upscaled as if it were data is worse than an error, and a table that claims gigabytes
    from kilobytes would be decoded for minutes first.
    """
    pages = list(series.pages)
    missing = sum(p is None for p in pages)
    if missing:
        raise ImageError(
            f"{path}: truncated TIFF series ({missing} of {len(pages)} planes the header declares are not in the file)"
        )
    dataoffset = getattr(series, "dataoffset", None)
    if dataoffset is not None and int(dataoffset) + int(series.nbytes) > fsize:
        raise ImageError(f"{path}: truncated TIFF (the file ends before its pixel data)")
    for i, page in enumerate(pages):
        page = page.aspage() if hasattr(page, "aspage") else page
        offs, cnts = page.dataoffsets, page.databytecounts
        want = int(np.prod(page.chunked, dtype=np.int64)) if getattr(page, "chunked", None) else len(offs)
        if len(offs) < want or len(cnts) < want:
            raise ImageError(
                f"{path}: corrupt TIFF (page {i} declares {want:,} strips or tiles of pixel data "
                f"but lists {min(len(offs), len(cnts)):,})"
            )
        if not offs:
            continue
        if min(cnts) <= 0 or min(offs) <= 0:
            raise ImageError(f"{path}: truncated or corrupt TIFF (page {i} has strips with no data)")
        if max(o + c for o, c in zip(offs, cnts)) > fsize:
            raise ImageError(f"{path}: truncated TIFF (pixel data missing: page {i} ends past the end of the file)")
        stored = int(sum(cnts))
        bits = int(page.size) * int(getattr(page, "bitspersample", 8) or 8)
        ratio = _TIFF_MAX_RATIO.get(int(page.compression))
        if ratio == 1.0 and stored * 8 < bits * 0.99:
            raise ImageError(
                f"{path}: truncated TIFF (page {i} holds {stored:,} bytes of pixel data, its "
                f"{'x'.join(map(str, page.shape))} pixels need {bits // 8:,})"
            )
        if ratio is not None and ratio > 1.0 and bits / 8 > stored * ratio + 4096:
            raise ImageError(
                f"{path}: corrupt TIFF or a decompression bomb (page {i} claims "
                f"{'x'.join(map(str, page.shape))} pixels from {stored:,} bytes of compressed "
                "data, more than the codec can hold)"
            )


def _map_axes(path: Path, taxes: str, ndim: int) -> str:
    axes = "".join(_TIFF_AXIS_MAP.get(a, "?") for a in taxes)
    if len(axes) != ndim or "?" in axes or len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise ImageError(
            f"{path}: unsupported TIFF axes {taxes!r} (scopesr reads images with axes "
            f"among T, Z, C, Y, X, e.g. YX, YXC, ZYX, TZCYX)"
        )
    return axes


#: PNG colour type -> samples per pixel
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (x0, y0, dx, dy)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
#: deflate cannot expand data more than about 1032:1
_DEFLATE_MAX_RATIO = 1032


def _png_raw_size(w: int, h: int, depth: int, ctype: int, interlace: int) -> int | None:
    """Bytes of filtered scanlines a PNG of this header decompresses to (None: unknown type)."""
    if ctype not in _PNG_SAMPLES:
        return None
    bits = depth * _PNG_SAMPLES[ctype]

    def lines(pw: int, ph: int) -> int:
        return ph * (1 + (pw * bits + 7) // 8) if pw > 0 and ph > 0 else 0

    if interlace == 0:
        return lines(w, h)
    return sum(lines((w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy) for x0, y0, dx, dy in _ADAM7)


def _png_chunks(fh: Any, fsize: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, data offset, length) of each chunk, up to IEND (or the end of the file)."""
    pos = 8
    while pos + 8 <= fsize:
        fh.seek(pos)
        length, ctype = struct.unpack(">I4s", fh.read(8))
        yield ctype, pos + 8, length
        if ctype == b"IEND":
            return
        pos += 12 + length


def _check_png(path: Path, max_pixels: int) -> None:
    """Refuse a PNG whose image data cannot fill the size its header declares.

    Pillow decodes what the zlib stream holds and leaves the other rows zero, without an
    error, when a header's height was raised (40,000 declared, 48 there): inflate the data
    once, counting bytes (nothing is kept), and compare with the declared scanlines. A size
    that its compressed bytes could not reach even at deflate's best ratio is refused
    before inflating (a decompression bomb, or cut off).
    """
    try:
        fsize = path.stat().st_size
        with open(path, "rb") as fh:
            chunks = list(_png_chunks(fh, fsize))
            if not chunks or chunks[0][0] != b"IHDR" or chunks[0][2] < 13:
                return  # Pillow says what is wrong
            fh.seek(chunks[0][1])
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", fh.read(13))
            expected = _png_raw_size(w, h, depth, ctype, interlace)
            if expected is None or w * h > max_pixels or w == 0 or h == 0:
                return  # Pillow and the size check report these
            idat = [(off, n) for t, off, n in chunks if t == b"IDAT"]
            stored = sum(n for _, n in idat)
            if expected > stored * _DEFLATE_MAX_RATIO + 4096:
                raise ImageError(
                    f"{path}: truncated PNG or a decompression bomb (the header declares "
                    f"{w}x{h} pixels, the file holds {stored:,} bytes of image data: too few "
                    "for that size)"
                )
            z = zlib.decompressobj()
            produced = 0
            for off, n in idat:
                fh.seek(off)
                left = n
                while left > 0 and produced < expected and not z.eof:
                    buf = fh.read(min(left, 1 << 20))
                    if not buf:
                        break
                    left -= len(buf)
                    while buf and produced < expected and not z.eof:
                        produced += len(z.decompress(buf, 1 << 22))
                        buf = z.unconsumed_tail
                if produced >= expected or z.eof:
                    break
    except ImageError:
        raise
    except (OSError, struct.error, zlib.error, ValueError):
        return  # unreadable or corrupt: Pillow reports it with its own words
    if produced < expected:
        rows = expected // max(1, h)
        raise ImageError(
            f"{path}: truncated PNG (the header declares {h} rows, the image data holds "
            f"about {produced // max(1, rows)}); the rest would be read as black"
        )


#: JPEG start-of-frame markers: Huffman-coded ones (every 8x8 block costs at least one bit)
#: and arithmetic-coded ones (no such floor)
_JPEG_SOF_HUFFMAN = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}
_JPEG_SOF_ARITH = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(path: Path, fsize: int) -> tuple[int, int, int] | None:
    """(marker, width, height) from a JPEG's start-of-frame segment, or None."""
    with open(path, "rb") as fh:
        pos = 2
        for _ in range(4096):  # segments before the frame header (APPn, DQT, DHT, ...)
            fh.seek(pos)
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0xFF:
                return None
            marker = head[1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            if marker in (0xDA, 0xD9):  # scan or end before a frame header
                return None
            length = struct.unpack(">H", head[2:4])[0]
            if marker in _JPEG_SOF_HUFFMAN or marker in _JPEG_SOF_ARITH:
                body = fh.read(5)
                if len(body) < 5:
                    return None
                _, h, w = struct.unpack(">BHH", body)
                return marker, w, h
            pos += 2 + length
            if pos >= fsize:
                return None
    return None


def _check_jpeg(path: Path, fsize: int) -> None:
    """Refuse a JPEG that declares more pixels than its bytes can code.

    libjpeg fills a scan that ends early with grey and only warns: a 2 KB file that claims
    20000x20000 would decode to 1.6 GB (17.9 GiB as RGB) of nothing. A Huffman-coded JPEG
    spends at least one bit on each 8x8 block of its full-resolution component.
    """
    try:
        sof = _jpeg_size(path, fsize)
    except (OSError, struct.error):
        return
    if sof is None:
        return
    marker, w, h = sof
    blocks = math.ceil(w / 8) * math.ceil(h / 8)
    if marker in _JPEG_SOF_HUFFMAN and blocks > 8 * fsize + 64:
        raise ImageError(
            f"{path}: truncated JPEG or a decompression bomb (the header declares {w}x{h} "
            f"pixels; {fsize:,} bytes cannot code that many, every 8x8 block takes at least "
            "one bit)"
        )


def _read_pillow(path: Path, max_pixels: int, fmt: str) -> Image:
    from PIL import Image as PILImage

    old = PILImage.MAX_IMAGE_PIXELS
    try:
        # Pillow's own guard (DecompressionBombError at 2x its limit) set to ours; we check
        # the declared size ourselves first so the message is the same for every format.
        PILImage.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                w, h = im.size
                bands = len(im.getbands())
                if w * h * bands > max_pixels:
                    raise ImageError(
                        f"{path}: image claims {w}x{h} = {w * h:,} pixels, more than the limit of "
                        f"{max_pixels:,} (possible decompression bomb). If the image is genuine, raise "
                        "the limit (read_image(max_pixels=...), sr-upscale --max-pixels)."
                    )
                if w == 0 or h == 0:
                    raise ImageError(f"{path}: empty image ({w}x{h})")
                im.load()
                arr, axes = _pil_to_array(path, im)
    except ImageError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{path}: image claims more pixels than the limit of {max_pixels:,} "
            f"(possible decompression bomb: {exc}). If the image is genuine, raise the "
            "limit (read_image(max_pixels=...), sr-upscale --max-pixels)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure = a bad file
        # Pillow says "image file is truncated" / "broken PNG file" / "cannot identify image file"
        raise ImageError(f"{path}: truncated or corrupt {fmt.upper()} ({exc})") from None
    finally:
        PILImage.MAX_IMAGE_PIXELS = old
    return Image(arr, axes, path, fmt, {})


def _pil_to_array(path: Path, im: Any) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L")), "YX"
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.uint16), "YX"
    if mode == "I":
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            raise ImageError(_dtype_message(path, np.dtype(np.int32)))
        return a.astype(np.uint16), "YX"
    if mode == "F":
        return np.asarray(im, dtype=np.float32), "YX"
    if mode == "RGBA":
        a = np.asarray(im)
        if (a[..., 3] != 255).any():
            log.warning("%s: dropping the alpha channel", path)
        return np.ascontiguousarray(a[..., :3]), "YXC"
    # RGB, P (palette), CMYK, YCbCr ... -> RGB
    return np.asarray(im.convert("RGB")), "YXC"


def _dtype_message(path: Path | None, dtype: np.dtype) -> str:
    return (
        f"{path}: unsupported pixel type {dtype} (scopesr reads uint8, uint16 and float32; "
        "convert the image, e.g. to uint16 or float32, first)"
    )


def _validate(img: Image, check_finite: bool) -> None:
    path = img.path
    if img.array.size == 0 or 0 in img.array.shape:
        raise ImageError(f"{path}: empty image (shape {img.shape})")
    if img.dtype not in SUPPORTED_DTYPES:
        raise ImageError(_dtype_message(path, img.dtype))
    if check_finite and img.dtype.kind == "f":
        bad = _count_nonfinite(img.array)
        if bad:
            raise ImageError(
                f"{path}: {bad:,} pixel(s) are NaN or infinite; replace them (e.g. numpy.nan_to_num) before upscaling"
            )


def _count_nonfinite(a: np.ndarray, chunk_bytes: int = 64 << 20) -> int:
    """Count NaN/inf in chunks, so a memory-mapped float stack is not loaded whole."""
    flat = a.reshape(-1) if a.flags.c_contiguous else np.asarray(a).reshape(-1)
    step = max(1, chunk_bytes // a.dtype.itemsize)
    return int(sum(int((~np.isfinite(flat[i : i + step])).sum()) for i in range(0, flat.size, step)))


def release_pages(array: np.ndarray) -> None:
    """Drop the resident pages of a read-only memory-mapped input (Linux/macOS madvise).

    Pages of a file mapping that were read stay in the process's RSS until unmapped; when
    a huge input is processed top to bottom they would add up to the whole file. Dropping
    them is safe for a read-only mapping: a page touched again is re-read from the cache.
    """
    mm = getattr(array, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise"):
        return
    import mmap

    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError, AttributeError):  # not supported here: only RSS is affected
        pass


def find_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand folders into their image files (sorted; image suffixes only, not recursive).

    Explicit files are kept whatever their suffix (reading them reports the problem);
    a path that does not exist is kept too, so the caller reports it with the other failures.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            )
            if not found:
                log.warning("%s: folder holds no images (%s)", p, ", ".join(IMAGE_SUFFIXES))
            items = found
        else:
            items = [p]
        for f in items:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


# ---------------------------------------------------------------------------- writing
def output_suffix(dtype: np.dtype, axes: str, source_format: str | None = None) -> str:
    """TIFF for 16-bit, float and stacks (PNG cannot hold them); PNG for 8-bit 2-D images
    with 1, 3 or 4 channels (also when the input was JPEG: no second lossy step)."""
    dtype = np.dtype(dtype)
    plain_2d = axes in ("YX", "YXC")
    if dtype == np.uint8 and plain_2d and source_format in (None, "png", "jpeg"):
        return ".png"
    return ".tif"


def _png_ok(array: np.ndarray, axes: str) -> bool:
    return array.dtype == np.uint8 and (axes == "YX" or (axes == "YXC" and array.shape[-1] in (1, 3, 4)))


def _tiff_kwargs(axes: str, shape: Sequence[int], dtype: np.dtype) -> dict[str, Any]:
    kw: dict[str, Any] = {"metadata": {"axes": axes}}
    if axes.endswith("C"):
        c = shape[-1]
        kw["planarconfig"] = "contig"
        kw["photometric"] = "rgb" if c == 3 and np.dtype(dtype) in (np.uint8, np.uint16) else "minisblack"
    else:
        kw["photometric"] = "minisblack"
    return kw


#: non-ASCII spellings of micrometres, written as ImageJ's "micron" (its description is ASCII)
_MICRO_UNITS = {"\u00b5m", "\u03bcm"}


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _ascii_unit(unit: Any) -> str | None:
    if not isinstance(unit, str):
        return None
    u = unit.strip()
    if u in _MICRO_UNITS:
        return "micron"
    u = u.replace("\u00b5", "u").replace("\u03bc", "u")
    if not u or len(u) > 32 or not u.isascii() or not u.isprintable() or "=" in u:
        return None
    return u


def clean_metadata(metadata: dict[str, Any] | None, path: Any = None, strict: bool = False) -> dict[str, Any]:
    """The part of ``metadata`` a TIFF can carry back: resolution (finite, > 0) with a valid
    unit (1 none, 2 inch, 3 cm), ImageJ ``spacing``/``finterval`` (finite, > 0) and ``unit``
    (ASCII: an ImageJ description is; micrometres become ImageJ's ``micron``).

    Reading (``strict=False``): what does not fit is dropped with a log line, so a result never
    fails to write after it was computed. Writing (``strict=True``): metadata a caller passed
    that cannot be written is an ImageError naming the file, before anything is written."""
    if not metadata:
        return {}
    out = {k: v for k, v in metadata.items() if k not in ("resolution", "resolutionunit", "imagej")}
    dropped = []
    res = metadata.get("resolution")
    if res is not None:
        try:
            rx, ry = (_positive(r) for r in res)
        except (TypeError, ValueError):
            rx = ry = None
        if rx and ry:
            out["resolution"] = (rx, ry)
        else:
            dropped.append(f"resolution {res!r}")
    unit = metadata.get("resolutionunit")
    if unit is not None:
        if "resolution" in out and isinstance(unit, (int, np.integer)) and int(unit) in (1, 2, 3):
            out["resolutionunit"] = int(unit)
        else:
            dropped.append(f"resolution unit {unit!r}")
    ij = metadata.get("imagej")
    if ij is not None:
        cij: dict[str, Any] = {}
        if isinstance(ij, dict):
            for k in ("spacing", "finterval"):
                if k in ij:
                    v = _positive(ij[k])
                    if v is None:
                        dropped.append(f"ImageJ {k} {ij[k]!r}")
                    else:
                        cij[k] = v
            if "unit" in ij:
                u = _ascii_unit(ij["unit"])
                if u is None:
                    dropped.append(f"ImageJ unit {ij['unit']!r}")
                else:
                    cij["unit"] = u
        out["imagej"] = cij  # an ImageJ input stays ImageJ
    if dropped and strict:
        raise ImageError(
            f"{path}: cannot write this image's metadata: {', '.join(dropped)} (a TIFF takes a "
            "finite positive resolution with unit 1, 2 or 3, ImageJ spacing/finterval > 0 and an "
            "ASCII unit)"
        )
    if dropped:
        log.warning(
            "%s: %s cannot be written to a TIFF; left out of the result", path or "metadata", ", ".join(dropped)
        )
    return out


def _resolution_kwargs(metadata: dict[str, Any] | None, scale: int) -> dict[str, Any]:
    """Pixels per unit grow with the upscaling factor: the physical size stays the same."""
    if not metadata or "resolution" not in metadata:
        return {}
    rx, ry = metadata["resolution"]
    if not (rx > 0 and ry > 0):
        return {}
    kw: dict[str, Any] = {"resolution": (rx * scale, ry * scale)}
    if "resolutionunit" in metadata:
        kw["resolutionunit"] = metadata["resolutionunit"]
    return kw


def _imagej_ok(metadata: dict[str, Any] | None, axes: str, dtype: np.dtype) -> bool:
    """Write ImageJ format when the input was ImageJ and the result fits its rules
    (uint8/uint16/float32, axes in TZCYX order)."""
    return (
        metadata is not None  # (an empty dict has no "imagej" either)
        and "imagej" in metadata
        and np.dtype(dtype) in SUPPORTED_DTYPES
        and axes == "".join(a for a in AXES_ORDER if a in axes)
    )


def write_image(
    path: str | os.PathLike,
    array: np.ndarray,
    axes: str,
    metadata: dict[str, Any] | None = None,
    scale: int = 1,
    overwrite: bool = True,
) -> Path:
    """Write ``array`` (axes over TZCYX) atomically: PNG when the suffix is .png and the data
    fits PNG (8-bit 2-D), else TIFF (BigTIFF above 2 GB). ``metadata``/``scale`` carry the
    input's TIFF resolution over, scaled. ``overwrite=False``: an existing ``path`` (also one
    that another process wrote meanwhile) is an OutputError, never replaced. Returns the path
    written."""
    path = Path(path)
    array = np.asarray(array)
    check_axes(axes, array.ndim, array.shape)
    metadata = clean_metadata(metadata, path, strict=True)
    suffix = path.suffix.lower()
    if suffix == ".png" and not _png_ok(array, axes):
        raise ImageError(f"{path}: PNG cannot hold a {array.dtype} image with axes {axes}; write a .tif instead")
    if suffix not in TIFF_SUFFIXES + (".png",):
        raise ImageError(f"{path}: cannot write {suffix!r} files (use .tif or .png)")
    with _writing(path), atomic_path(path, overwrite=overwrite) as tmp:
        if suffix == ".png":
            from PIL import Image as PILImage

            a = array[..., 0] if axes == "YXC" and array.shape[-1] == 1 else array
            PILImage.fromarray(np.ascontiguousarray(a)).save(tmp, format="PNG")
        elif suffix in TIFF_SUFFIXES:
            import tifffile

            kw = _tiff_kwargs(axes, array.shape, array.dtype)
            big = array.nbytes > (2 << 30) - (32 << 20)
            if _imagej_ok(metadata, axes, array.dtype) and not big:
                # an ImageJ hyperstack stays one, with its z spacing / frame interval / unit,
                # so Fiji opens the result with the same dimensions
                kw = {"imagej": True, "metadata": {"axes": axes, **metadata["imagej"]}}
            tifffile.imwrite(tmp, np.ascontiguousarray(array), bigtiff=big, **kw, **_resolution_kwargs(metadata, scale))
    return path


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Writers (Pillow, tifffile) refuse odd data or metadata with ValueError/KeyError/TypeError:
    report it as an ImageError naming the file; the atomic write leaves nothing behind."""
    try:
        yield
    except ScopesrError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"{path}: cannot write this image ({type(exc).__name__}: {exc})") from None


def write_tiff_streaming(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any,
    axes: str,
    bands: Iterable[np.ndarray],
    metadata: dict[str, Any] | None = None,
    scale: int = 1,
    rows_per_strip: int = 64,
    overwrite: bool = True,
) -> Path:
    """Write a (Big)TIFF strip by strip from row ``bands``, atomically.

    ``bands`` yields row blocks in file order: plane after plane (over the axes before Y),
    top to bottom within a plane; each block has shape ``(h, W)`` or ``(h, W, C)``. Bands
    of any height are re-cut into strips of ``rows_per_strip`` rows, so at most one band
    and one strip are in memory: an output larger than RAM streams straight to disk.
    An ImageJ input (``metadata["imagej"]``) stays an ImageJ hyperstack with its spacing,
    frame interval and unit, as in :func:`write_image`. ``overwrite``: as in write_image.
    """
    import tifffile

    path = Path(path)
    try:
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: shape {shape!r} / dtype {dtype!r}: {exc}") from None
    check_axes(axes, len(shape), shape)
    yi = axes.index("Y")
    if axes[yi:] not in ("YX", "YXC"):
        raise InputError(f"streaming needs Y, X (and C) as the last axes, got {axes!r}")
    height = shape[yi]
    row_shape = shape[yi + 1 :]
    planes = int(np.prod(shape[:yi], dtype=np.int64))
    rows = max(1, min(rows_per_strip, height))

    def strips() -> Iterator[bytes]:
        pending: list[np.ndarray] = []
        npend = 0
        plane_rows = 0
        done_planes = 0
        for band in bands:
            band = np.asarray(band)
            if band.shape[1:] != row_shape or band.dtype != dtype:
                raise InputError(f"band of shape {band.shape} {band.dtype} does not fit rows of {row_shape} {dtype}")
            if done_planes >= planes:
                raise InputError("more rows than the declared shape")
            if plane_rows + band.shape[0] > height:
                raise InputError(f"band crosses the end of plane {done_planes} (a band must lie inside one plane)")
            pending.append(band)
            npend += band.shape[0]
            plane_rows += band.shape[0]
            # emit every full strip; the plane's last strip may be short
            while npend >= rows or (plane_rows == height and npend > 0):
                buf = np.concatenate(pending, axis=0) if len(pending) > 1 else pending[0]
                take = min(rows, npend)
                yield np.ascontiguousarray(buf[:take]).tobytes()
                rest = buf[take:]
                pending = [rest] if rest.shape[0] else []
                npend = rest.shape[0]
            if plane_rows == height:
                plane_rows = 0
                done_planes += 1
        if done_planes != planes or npend:
            raise InputError(f"bands covered {done_planes} of {planes} planes (+{plane_rows} rows)")

    metadata = clean_metadata(metadata, path, strict=True)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    big = nbytes > (1 << 30)
    kw = _tiff_kwargs(axes, shape, dtype)
    if _imagej_ok(metadata, axes, dtype) and nbytes <= (2 << 30) - (32 << 20):
        kw = {"imagej": True, "metadata": {"axes": axes, **metadata["imagej"]}}
        big = False  # ImageJ hyperstacks are classic TIFF (the in-memory writer's rule)
    with _writing(path), atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            strips(),
            shape=shape,
            dtype=dtype,
            rowsperstrip=rows,
            bigtiff=big,
            **kw,
            **_resolution_kwargs(metadata, scale),
        )
    return path


_PNG_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> grey, RGB, RGBA


def _png_chunk(fh: Any, ctype: bytes, data: bytes) -> None:
    fh.write(struct.pack(">I", len(data)) + ctype + data)
    fh.write(struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF))


def write_png_streaming(
    path: str | os.PathLike, shape: Sequence[int], bands: Iterable[np.ndarray], overwrite: bool = True, level: int = 6
) -> Path:
    """Write an 8-bit PNG, ``shape`` (H, W) or (H, W, C) with C of 1, 3 or 4, from row
    ``bands`` top to bottom, atomically: one band in memory at a time.

    The PNG twin of :func:`write_tiff_streaming`, so an 8-bit PNG/JPEG input whose result is
    too large to hold stays a PNG under its ``.png`` name (scanlines use PNG's Sub filter).
    """
    path = Path(path)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: shape {shape!r}: {exc}") from None
    c = shape[2] if len(shape) == 3 else 1
    if len(shape) not in (2, 3) or c not in _PNG_COLOUR_TYPE or min(shape) < 1:
        raise InputError(f"{path}: a PNG holds (H, W) or (H, W, C) with C of 1, 3 or 4, got shape {shape}")
    h, w = shape[:2]
    with _writing(path), atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        _png_chunk(fh, b"IHDR", struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOUR_TYPE[c], 0, 0, 0))
        z = zlib.compressobj(level)
        rows = 0
        for band in bands:
            band = np.asarray(band)
            if band.dtype != np.uint8 or band.shape[1:] != shape[1:]:
                raise InputError(f"band of shape {band.shape} {band.dtype} does not fit rows of {shape[1:]} uint8")
            if rows + band.shape[0] > h:
                raise InputError("more rows than the declared shape")
            a = band.reshape(band.shape[0], w * c)
            f = np.empty((a.shape[0], w * c + 1), np.uint8)
            f[:, 0] = 1  # filter type Sub: each byte minus the one a pixel to its left (mod 256)
            f[:, 1 : 1 + c] = a[:, :c]
            np.subtract(a[:, c:], a[:, :-c], out=f[:, 1 + c :])
            data = z.compress(f.tobytes())
            if data:
                _png_chunk(fh, b"IDAT", data)
            rows += a.shape[0]
        if rows != h:
            raise InputError(f"bands covered {rows} of {h} rows")
        _png_chunk(fh, b"IDAT", z.flush())
        _png_chunk(fh, b"IEND", b"")
    return path
