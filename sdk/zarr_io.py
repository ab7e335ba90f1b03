"""OME-Zarr in and out (zarr v2 + NGFF 0.4, zarr v3 + NGFF 0.5), chunk by chunk and resumable.

Reading goes through ``ome-zarr``'s reader (the full-resolution level of an image, any axes
of T, C, Z, Y, X, as a lazy Dask array), from a local folder or a URL (``http(s)://``, and any
other protocol fsspec has installed, e.g. ``s3://`` with s3fs); writing creates the arrays with ``zarr`` and the
NGFF metadata with ``ome-zarr``'s ``write_multiscales_metadata`` (so the files are what
the ecosystem writes and reads: napari, Fiji/BigDataViewer, QuPath, OMERO), and
``ome-zarr-models`` validates them in the tests.

A result is written chunk by chunk: each Dask block writes whole zarr chunks (zarr's local
store writes a chunk to a temporary file and renames it, so a chunk is there whole or not
at all), and every chunk is written even when it holds only zeros. An interrupted run
restarted with the same parameters therefore finds which chunks are done by looking for
their files and computes only the others. The parameters of the run are kept in the group's
``scopesr`` attribute, with ``complete`` set once every level is written.

The pyramid: level ``sN`` is the 2x2 mean of ``sN-1`` (Y and X only; T, C, Z kept), read
back from the store, until Y and X fit in one chunk. Physical pixel sizes and translations
follow: a result upscaled by ``s`` has ``1/s`` of the input's pixel size, its translation
moved so that the pixel centres sit where the input's pixels were.

zarr, ome-zarr and dask come with the ``cluster`` extra (``pip install "scopesr[cluster]"``)
and are imported inside the functions: ``import scopesr.sdk`` does not need them.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DependencyError, ImageError, InputError, OutputError
from .io import SUPPORTED_DTYPES, Image, check_axes, find_inputs, register_container_reader

log = logging.getLogger(__name__)

CLUSTER_INSTALL = 'pip install "scopesr[cluster]"'
#: the NGFF axis order (time, channel, space); every array written here uses a subset of it
NGFF_ORDER = "TCZYX"
NGFF_VERSIONS = ("0.4", "0.5")  # 0.4: zarr v2; 0.5: zarr v3
DEFAULT_NGFF_VERSION = "0.4"  # the version most viewers read today (0.5 with --ngff-version 0.5)
AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
#: folder suffix of a written result: NAME_x4.ome.zarr
OME_ZARR_SUFFIX = ".ome.zarr"
#: files whose presence marks a folder as a zarr hierarchy (v3, then v2)
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zattrs", ".zarray")
#: TIFF resolution units and ImageJ unit spellings -> NGFF (UDUNITS-2) unit names
_TIFF_UNITS = {2: "inch", 3: "centimeter"}
_UNIT_NAMES = {
    "micron": "micrometer",
    "um": "micrometer",
    "\u00b5m": "micrometer",
    "\u03bcm": "micrometer",
    "microns": "micrometer",
    "micrometer": "micrometer",
    "nm": "nanometer",
    "nanometer": "nanometer",
    "mm": "millimeter",
    "millimeter": "millimeter",
    "cm": "centimeter",
    "centimeter": "centimeter",
    "m": "meter",
    "meter": "meter",
    "inch": "inch",
    "in": "inch",
    "pixel": None,
    "pixels": None,
    "s": "second",
    "sec": "second",
    "second": "second",
    "ms": "millisecond",
    "min": "minute",
    "h": "hour",
}
#: downsampling, as the NGFF multiscales "metadata" field records it
PYRAMID_METHOD = {
    "description": "each level is the 2x2 mean of the level above it in Y and X "
    "(integers rounded half up); T, C and Z are kept",
    "method": "scopesr.sdk.zarr_io.halve",
}


def require(module: str) -> Any:
    """Import an optional package of the ``cluster`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyError(f"OME-Zarr and Dask runs need {module.split('.')[0]}: {CLUSTER_INSTALL}") from None


# ---------------------------------------------------------------------------- finding inputs
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: object) -> bool:
    """``http://...``, ``https://...``, ``s3://...``: an address fsspec opens (a ``str``; a
    ``Path`` is always local, and turning a URL into one loses the ``//``)."""
    return isinstance(path, str) and bool(_URL.match(path))


def _lost_url(path: object) -> str | None:
    """The URL a ``Path`` was made of (``Path("https://h/a")`` is ``https:/h/a``), if it was one
    and no such local path exists."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):/([^/].*)$", str(path))
    if m is None or Path(path).exists():  # type: ignore[arg-type]
        return None
    return f"{m.group(1)}://{m.group(2)}"


def is_zarr_path(path: str | Path) -> bool:
    """A folder holding a zarr hierarchy (v2 or v3), a path named ``*.zarr``, or a URL (scopesr
    reads only OME-Zarr from URLs)."""
    if is_url(path) or _lost_url(path) is not None:
        return True
    p = Path(path)
    if p.is_dir():
        return any((p / m).exists() for m in _ZARR_MARKERS) or p.suffix.lower() == ".zarr"
    return p.suffix.lower() == ".zarr"


def find_inputs_with_zarr(paths: Iterable[str | Path]) -> list[Path]:
    """:func:`scopesr.sdk.io.find_inputs`, with OME-Zarr folders kept as inputs (not expanded)."""
    out: list[Path] = []
    rest: list[Path] = []
    for p in paths:
        url = p if is_url(p) else _lost_url(p)
        if url is not None:
            raise InputError(
                f"{url}: sr-upscale reads local files and folders; open a URL from Python: "
                "scopesr.sdk.dask.upscale_to_ome_zarr(URL, OUT, model) or scopesr.sdk.read_image(URL)"
            )
        (out if is_zarr_path(p) else rest).append(Path(p))
    seen = {p.resolve() for p in out}
    out.extend(f for f in find_inputs(rest) if f.resolve() not in seen)
    return out


def base_name(name: str) -> str:
    """``cells.ome.zarr`` / ``cells.zarr`` / ``cells.ome.tif`` / ``cells.tif`` -> ``cells``."""
    for suf in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem


def result_name(path: Path, scale: int) -> str:
    """``cells.ome.zarr`` / ``cells.tif`` -> ``cells_x4.ome.zarr``."""
    return f"{base_name(path.name)}_x{scale}{OME_ZARR_SUFFIX}"


# ---------------------------------------------------------------------------- metadata
@dataclass
class NgffMeta:
    """What the NGFF metadata of one image says, per axis of ``axes`` (a subset of TCZYX)."""

    axes: str
    scale: list[float]
    translation: list[float] | None = None
    units: dict[str, str] = field(default_factory=dict)  # axis letter -> unit
    name: str = "image"
    omero: dict[str, Any] | None = None
    channel_names: list[str] | None = None

    def axes_json(self) -> list[dict[str, str]]:
        out = []
        for a in self.axes:
            d = {"name": a.lower(), "type": AXIS_TYPES[a]}
            if a in self.units:
                d["unit"] = self.units[a]
            out.append(d)
        return out

    def transforms(self, factor: Sequence[int]) -> list[dict[str, Any]]:
        """Scale (and translation) of a level ``factor`` times coarser than level 0, per axis."""
        scale = [float(s * f) for s, f in zip(self.scale, factor)]
        tr = [float(t) for t in (self.translation or [0.0] * len(self.axes))]
        # a coarser pixel's centre sits (f - 1)/2 fine pixels in from the fine grid's first centre
        tr = [t + (f - 1) * s / 2 for t, f, s in zip(tr, factor, self.scale)]
        out: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if self.translation is not None or any(t != 0 for t in tr):
            out.append({"type": "translation", "translation": tr})
        return out

    def upscaled(self, s: int) -> NgffMeta:
        """The metadata of this image upscaled ``s`` times in Y and X: pixel size / s, the pixel
        centres moved so that the result covers the same physical area."""
        scale, tr = [], []
        base = self.translation or [0.0] * len(self.axes)
        for a, sz, t in zip(self.axes, self.scale, base):
            if a in "YX":
                scale.append(sz / s)
                tr.append(t + (sz / s - sz) / 2)
            else:
                scale.append(sz)
                tr.append(t)
        omero = _omero_for_result(self.omero)
        return NgffMeta(self.axes, scale, tr, dict(self.units), self.name, omero, self.channel_names)


def _omero_for_result(omero: dict[str, Any] | None) -> dict[str, Any] | None:
    """The input's omero block (channel labels, colours, display windows): intensities are
    kept by the upscaler, so it applies to the result as it is."""
    if not omero or not isinstance(omero, dict):
        return None
    return {k: v for k, v in omero.items() if k in ("channels", "rdefs", "name", "id", "version")}


def _unit(u: Any) -> str | None:
    if not isinstance(u, str):
        return None
    return _UNIT_NAMES.get(u.strip().lower(), u.strip().lower() or None)


def meta_from_image(img: Image, axes: str) -> NgffMeta:
    """NGFF metadata (in ``axes`` order) for an image read by :func:`read_image` or
    :func:`read_ome_zarr`: OME-Zarr metadata as it is, a TIFF's resolution and ImageJ
    spacing, frame interval and unit converted."""
    ngff = img.metadata.get("ngff")
    if ngff:
        order = [ngff["axes"].index(a) for a in axes]
        tr = ngff.get("translation")
        return NgffMeta(
            axes,
            [float(ngff["scale"][i]) for i in order],
            [float(tr[i]) for i in order] if tr else None,
            {a: u for a, u in ngff.get("units", {}).items() if a in axes},
            ngff.get("name") or (img.path.name if img.path else "image"),
            ngff.get("omero"),
            ngff.get("channel_names"),
        )
    md = img.metadata or {}
    size = {a: 1.0 for a in axes}
    units: dict[str, str] = {}
    ij = md.get("imagej") or {}
    space_unit = _unit(ij.get("unit")) if ij.get("unit") else None
    res = md.get("resolution")
    if res:
        rx, ry = res
        if rx and ry and rx > 0 and ry > 0:
            size["X"], size["Y"] = 1.0 / float(rx), 1.0 / float(ry)
            if space_unit is None:
                space_unit = _TIFF_UNITS.get(int(md.get("resolutionunit", 1) or 1))
    if ij.get("spacing") and "Z" in axes:
        size["Z"] = float(ij["spacing"])
    if space_unit:
        units.update({a: space_unit for a in "ZYX" if a in axes})
    if ij.get("finterval") and "T" in axes:
        size["T"] = float(ij["finterval"])
        units["T"] = "second"
    name = img.path.stem if img.path is not None else "image"
    return NgffMeta(axes, [size[a] for a in axes], None, units, name)


# ---------------------------------------------------------------------------- reading
def _format(version: str) -> Any:
    fmt = require("ome_zarr.format")
    if version not in NGFF_VERSIONS:
        raise InputError(f"NGFF version {version!r}: scopesr writes {' or '.join(NGFF_VERSIONS)}")
    return fmt.FormatV05() if version == "0.5" else fmt.FormatV04()


def _detect_version(path: Path) -> str:
    return "0.5" if (path / "zarr.json").exists() else "0.4"


#: network failures of fsspec's HTTP file system (aiohttp) and the OS, reported as "cannot reach"
_NET_ERRORS = ("ClientConnectorError", "ClientConnectionError", "ClientOSError", "ServerTimeoutError")


def _remote_error(url: str, exc: BaseException) -> ImageError:
    """A clear message for a URL that cannot be read: unreachable, not found, or not OME-Zarr."""
    names = {c.__name__ for c in type(exc).__mro__}
    status = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if names & set(_NET_ERRORS) or isinstance(exc, (ConnectionError, TimeoutError)):
        why = str(exc) or type(exc).__name__
        return ImageError(f"{url}: cannot reach the server ({why}); check the address and the network")
    if isinstance(status, int) and status in (401, 403):
        return ImageError(f"{url}: access denied (HTTP {status}); the store needs credentials")
    if "NotFoundError" in " ".join(names) or isinstance(exc, FileNotFoundError) or status == 404:
        return ImageError(f"{url}: no zarr group at this address (nothing found, or not a zarr store)")
    if isinstance(exc, ValueError) and "protocol" in str(exc).lower():
        return ImageError(f"{url}: {exc} (fsspec opens http(s):// itself; other protocols need their package)")
    return ImageError(f"{url}: cannot read this OME-Zarr ({type(exc).__name__}: {exc})")


def _url_version(url: str) -> str:
    """NGFF 0.5 for a zarr v3 group at ``url``, else 0.4; raises a clear ImageError when the
    address cannot be read."""
    zarr = require("zarr")
    try:
        group = zarr.open_group(url, mode="r")
    except ImportError as exc:  # the protocol's fsspec implementation is not installed
        raise ImageError(f"{url}: this protocol needs a package that is not installed ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - network and store errors come in many types
        raise _remote_error(url, exc) from None
    return "0.5" if group.metadata.zarr_format == 3 else "0.4"


def tiff_metadata(ngff: dict[str, Any]) -> dict[str, Any]:
    """What a TIFF result can carry of an OME-Zarr's metadata (``metadata["ngff"]`` of
    :func:`read_ome_zarr`): the X/Y pixel size as TIFF resolution (pixels per unit; the
    writers multiply it by the scale), the unit, Z spacing and frame interval as ImageJ
    fields. Empty when the image states no physical size."""
    axes, scale, units = ngff["axes"], ngff["scale"], ngff.get("units") or {}
    size = dict(zip(axes, scale))
    out: dict[str, Any] = {}
    ij: dict[str, Any] = {}
    sx, sy = size.get("X", 1.0), size.get("Y", 1.0)
    unit = units.get("X") or units.get("Y")
    if (unit or (sx, sy) != (1.0, 1.0)) and sx > 0 and sy > 0:
        out["resolution"] = (1.0 / sx, 1.0 / sy)
        if unit in ("centimeter", "inch"):
            out["resolutionunit"] = 3 if unit == "centimeter" else 2
        elif unit:
            ij["unit"] = _IMAGEJ_UNITS.get(unit, unit)
    if "Z" in size and size["Z"] > 0 and (size["Z"] != 1.0 or "Z" in units):
        ij["spacing"] = float(size["Z"])
    t_unit = units.get("T")
    if "T" in size and size["T"] > 0 and t_unit in _SECONDS:
        ij["finterval"] = float(size["T"]) * _SECONDS[t_unit]
    if ij:
        out["imagej"] = ij
    return out


#: NGFF (UDUNITS-2) length units -> the spelling ImageJ shows; time units -> seconds
_IMAGEJ_UNITS = {"micrometer": "micron", "nanometer": "nm", "millimeter": "mm", "meter": "m"}
_SECONDS = {"second": 1.0, "millisecond": 1e-3, "microsecond": 1e-6, "minute": 60.0, "hour": 3600.0}


def read_ome_zarr(path: str | Path, *, axes_order: str | None = None, max_pixels: int | None = None) -> Image:
    """Open the full-resolution level of an OME-Zarr image as a lazy Dask array.

    ``path``: a local folder, or a URL (``https://host/image.ome.zarr``: fsspec's HTTP file
    system; ``s3://`` and other protocols with their fsspec package). Returns an
    :class:`~scopesr.sdk.io.Image` (``format="ome-zarr"``) whose ``axes`` are the image's (a
    subset of TCZYX, in its order), or ``axes_order``'s order when given (e.g. ``"TZCYX"``,
    the order TIFF and ImageJ write); ``metadata["ngff"]`` holds the NGFF version, axes,
    units, level-0 scale and translation, channel names and omero block (and ``url`` for a
    remote image), and the rest of ``metadata`` what a TIFF result carries of it
    (:func:`tiff_metadata`). ``max_pixels``: refuse larger images (None: no limit; the
    array is lazy, nothing is read here but metadata).
    """
    require("zarr")
    require("dask.array")
    reader = require("ome_zarr.reader")
    io = require("ome_zarr.io")
    url = str(path).rstrip("/") if is_url(path) else None
    if url is not None:
        src = url
        version = _url_version(url)
    else:
        path = Path(path)
        if not path.is_dir():
            raise ImageError(
                f"{path}: no such OME-Zarr folder" if not path.exists() else f"{path}: not an OME-Zarr folder (a file)"
            )
        src = str(path)
        version = _detect_version(path)
    try:
        loc = io.parse_url(src, mode="r", fmt=_format(version))
        if loc is None:
            raise ImageError(f"{src}: not a zarr group (no zarr.json / .zgroup)")
        attrs = loc.root_attrs
        if "plate" in attrs or "well" in attrs:
            raise ImageError(f"{src}: an HCS plate/well; pass one image inside it (e.g. {src}/A/1/0)")
        if "multiscales" not in attrs:
            if "bioformats2raw.layout" in attrs:
                raise ImageError(f"{src}: a bioformats2raw container; pass one image inside it (e.g. {src}/0)")
            raise ImageError(f"{src}: not an OME-Zarr image (no 'multiscales' metadata)")
        nodes = list(reader.Reader(loc)())
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means a file we cannot use
        if url is not None:
            raise _remote_error(url, exc) from None
        raise ImageError(f"{src}: cannot read this OME-Zarr ({type(exc).__name__}: {exc})") from None
    node = next((n for n in nodes if any(type(s).__name__ == "Multiscales" for s in n.specs)), None)
    if node is None or not node.data:
        raise ImageError(f"{src}: OME-Zarr holds no image data")
    meta = node.metadata
    axes_json = meta.get("axes") or [{"name": n} for n in "tczyx"[-node.data[0].ndim :]]
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes_json]
    axes = "".join(n.upper() for n in names)
    if any(len(n) != 1 or n.upper() not in NGFF_ORDER for n in names):
        raise ImageError(f"{src}: axes {names} are not all of t, c, z, y, x (scopesr reads those)")
    arr = node.data[0]
    try:
        check_axes(axes, arr.ndim, arr.shape)
    except InputError as exc:
        raise ImageError(f"{src}: {exc}") from None
    if np.dtype(arr.dtype) not in SUPPORTED_DTYPES:
        raise ImageError(
            f"{src}: unsupported pixel type {arr.dtype} (scopesr takes uint8, uint16 or float32 "
            "images); convert it first"
        )
    npix = math.prod(int(n) for n in arr.shape)
    if max_pixels is not None and npix > max_pixels:
        raise ImageError(
            f"{src}: image is {'x'.join(map(str, arr.shape))} = {npix:,} pixels, more than the limit of "
            f"{max_pixels:,}. If that is meant, raise the limit (max_pixels=..., sr-upscale --max-pixels)."
        )
    scale = [1.0] * len(axes)
    translation = None
    cts = meta.get("coordinateTransformations")
    for t in (cts[0] if cts else None) or []:
        if t.get("type") == "scale" and "scale" in t:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and "translation" in t:
            translation = [float(v) for v in t["translation"]]
    units = {}
    for a, aj in zip(axes, axes_json):
        if isinstance(aj, dict) and aj.get("unit"):
            units[a] = str(aj["unit"])
    ms = attrs["multiscales"][0]
    dataset = ms["datasets"][0]["path"]
    omero = attrs.get("omero")
    names_c = meta.get("channel_names")
    base = url.rsplit("/", 1)[-1] if url is not None else Path(src).name
    ngff: dict[str, Any] = {
        "version": version,
        "axes": axes,
        "scale": scale,
        "translation": translation,
        "units": units,
        "name": ms.get("name") or base,
        "omero": omero,
        "channel_names": list(names_c) if names_c else None,
        "array": f"{src}/{dataset}" if url is not None else str(Path(src) / dataset),
        "chunks": tuple(int(c[0]) for c in arr.chunks),
    }
    if url is not None:
        ngff["url"] = url
    if axes_order is not None:
        order = "".join(a for a in axes_order.upper() if a in axes)
        if sorted(order) != sorted(axes):
            raise InputError(f"axes_order {axes_order!r} must name every axis of {axes!r}")
        if order != axes:
            perm = [axes.index(a) for a in order]
            arr = arr.transpose(perm)
            ngff["chunks"] = tuple(ngff["chunks"][i] for i in perm)
            ngff.pop("array")  # the stored array is in the file's order, not this one
            axes = order
    img_path = None if url is not None else Path(src)
    return Image(arr, axes, img_path, "ome-zarr", {**tiff_metadata(ngff), "ngff": ngff})


# ---------------------------------------------------------------------------- writing
def level_shapes(shape: Sequence[int], axes: str, chunk_yx: int, levels: int | None = None) -> list[tuple[int, ...]]:
    """Shapes of the pyramid: halve Y and X (rounding up) until both fit in one chunk, or
    ``levels`` levels when given."""
    yi, xi = axes.index("Y"), axes.index("X")
    out = [tuple(int(n) for n in shape)]
    while (levels is None and max(out[-1][yi], out[-1][xi]) > chunk_yx) or (levels is not None and len(out) < levels):
        prev = list(out[-1])
        if prev[yi] == 1 and prev[xi] == 1:
            break
        prev[yi], prev[xi] = math.ceil(prev[yi] / 2), math.ceil(prev[xi] / 2)
        out.append(tuple(prev))
    return out


def chunk_shape(shape: Sequence[int], axes: str, chunk_yx: int) -> tuple[int, ...]:
    """One plane, one channel and ``chunk_yx`` x ``chunk_yx`` pixels per zarr chunk."""
    return tuple(min(int(n), chunk_yx) if a in "YX" else 1 for a, n in zip(axes, shape))


def _compressor(zarr_format: int) -> dict[str, Any]:
    """Blosc zstd level 5 with byte shuffle: what ome-zarr writes by default."""
    if zarr_format == 2:
        numcodecs = require("numcodecs")
        return {
            "compressors": numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
            "chunk_key_encoding": {"name": "v2", "separator": "/"},
        }
    zarr = require("zarr")
    return {"compressors": zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")}


class OmeZarrWriter:
    """An OME-Zarr image created (or re-opened to resume) for writing chunk by chunk.

    ``arrays[k]`` is level ``sk``; ``block_done(k, region)`` says whether every chunk that a
    region covers is on disk; ``finish()`` marks the run complete.
    """

    def __init__(self, path: Path, group: Any, arrays: list[Any], axes: str, version: str, resumed: bool) -> None:
        self.path = path
        self.group = group
        self.arrays = arrays
        self.axes = axes
        self.version = version
        self.resumed = resumed

    # -------------------------------------------------------------- create / resume
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        shape: Sequence[int],
        dtype: Any,
        meta: NgffMeta,
        chunk_yx: int,
        version: str = DEFAULT_NGFF_VERSION,
        levels: int | None = None,
        run: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> OmeZarrWriter:
        """Create the image (arrays and NGFF metadata) at ``path``, or re-open it to resume.

        ``run`` describes the computation (model, parameters, input); an existing, unfinished
        image written by the same ``run`` is resumed, one from another run is refused, and a
        finished one is refused unless ``overwrite``.
        """
        zarr = require("zarr")
        writer = require("ome_zarr.writer")
        if is_url(path):
            raise OutputError(
                f"{path}: results are written to a local (or shared) folder, not a URL: resuming "
                "checks which chunk files are on disk; write locally, then copy the folder"
            )
        path = Path(path)
        fmt = _format(version)
        axes = meta.axes
        shape = tuple(int(n) for n in shape)
        dtype = np.dtype(dtype)
        check_axes(axes, len(shape), shape)
        if axes != "".join(a for a in NGFF_ORDER if a in axes):
            raise InputError(f"OME-Zarr axes must be in the order t, c, z, y, x; got {axes!r}")
        if chunk_yx < 1:
            raise InputError(f"chunk size must be >= 1 pixel, got {chunk_yx}")
        run = dict(run or {})
        run.update(shape=list(shape), dtype=dtype.str, axes=axes, chunk=int(chunk_yx), ngff=version, levels=levels)
        existing = cls._existing(path)
        if existing is not None:
            prev = existing.get("run")
            if overwrite:
                shutil.rmtree(path)
            elif existing.get("complete"):
                raise OutputError(f"{path} exists (a finished result); pass --overwrite to replace it")
            elif prev != run:
                diff = sorted(k for k in set(run) | set(prev or {}) if (prev or {}).get(k) != run.get(k))
                raise OutputError(
                    f"{path} holds an unfinished result of a different run (differs in: "
                    f"{', '.join(diff) or 'everything'}); pass --overwrite to start again, or "
                    "rerun the command that wrote it to finish it"
                )
            else:
                group = zarr.open_group(str(path), mode="r+", zarr_format=fmt.zarr_format)
                shapes = level_shapes(shape, axes, chunk_yx, levels)
                arrays = [
                    zarr.open_array(store=str(path), path=f"s{k}", mode="r+", config={"write_empty_chunks": True})
                    for k in range(len(shapes))
                ]
                for k, (a, s) in enumerate(zip(arrays, shapes)):
                    if tuple(a.shape) != s:
                        raise OutputError(f"{path}/s{k}: shape {a.shape}, expected {s}; pass --overwrite")
                log.info("%s: resuming an unfinished result", path)
                return cls(path, group, arrays, axes, version, True)
        elif path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise OutputError(
                f"{path} exists and is not an OME-Zarr written by scopesr; choose another name or move it away"
            )
        try:
            group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
            shapes = level_shapes(shape, axes, chunk_yx, levels)
            arrays = []
            extra = {} if fmt.zarr_format == 2 else {"dimension_names": [a.lower() for a in axes]}
            for k, s in enumerate(shapes):
                arrays.append(
                    group.create_array(
                        f"s{k}",
                        shape=s,
                        chunks=chunk_shape(s, axes, chunk_yx),
                        dtype=dtype,
                        fill_value=0,
                        config={"write_empty_chunks": True},
                        **_compressor(fmt.zarr_format),
                        **extra,
                    )
                )
            yi, xi = axes.index("Y"), axes.index("X")
            datasets = []
            for k in range(len(shapes)):
                factor = [1] * len(axes)
                factor[yi] = factor[xi] = 2**k
                datasets.append({"path": f"s{k}", "coordinateTransformations": meta.transforms(factor)})
            md: dict[str, Any] = dict(PYRAMID_METHOD)
            omero = _complete_omero(meta, shape, dtype)
            if omero:
                md["omero"] = omero
            writer.write_multiscales_metadata(
                group, datasets=datasets, fmt=fmt, axes=meta.axes_json(), name=meta.name, metadata=md
            )
            group.attrs["scopesr"] = {"run": run, "complete": False}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise OutputError(f"{path}: cannot create the OME-Zarr ({type(exc).__name__}: {exc})") from None
        return cls(path, group, arrays, axes, version, False)

    @staticmethod
    def _existing(path: Path) -> dict[str, Any] | None:
        """The ``scopesr`` attribute of an OME-Zarr that scopesr started at ``path``, else None."""
        if not (path.is_dir() and any((path / m).exists() for m in _ZARR_MARKERS)):
            return None
        zarr = require("zarr")
        try:
            attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
        except Exception:  # noqa: BLE001 - unreadable: not ours
            return None
        s = attrs.get("scopesr")
        if not isinstance(s, dict):
            raise OutputError(
                f"{path} is an OME-Zarr that scopesr did not write; choose another name, or pass "
                "--overwrite to replace it"
            )
        return s

    # -------------------------------------------------------------- chunks
    def chunk_key(self, level: int, index: Sequence[int]) -> Path:
        a = self.arrays[level]
        return self.path / a.path / a.metadata.encode_chunk_key(tuple(int(i) for i in index))

    def block_done(self, level: int, region: Sequence[tuple[int, int]]) -> bool:
        """Are all zarr chunks that ``region`` ((start, stop) per axis) covers on disk?"""
        chunks = self.arrays[level].chunks
        ranges = [range(a // c, -(-b // c)) for (a, b), c in zip(region, chunks)]
        return all(self.chunk_key(level, idx).is_file() for idx in itertools.product(*ranges))

    def finish(self) -> None:
        """Mark the result complete; drop temporary files a killed writer may have left."""
        for p in self.path.rglob("*.partial"):
            p.unlink(missing_ok=True)
        s = dict(self.group.attrs.get("scopesr", {}))
        s["complete"] = True
        self.group.attrs["scopesr"] = s


def _complete_omero(meta: NgffMeta, shape: Sequence[int], dtype: np.dtype) -> dict[str, Any] | None:
    """An omero block whose channels all have label, colour and window (NGFF requires the
    last two): the input's, filled in where it left something out."""
    names = meta.channel_names
    omero = dict(meta.omero) if meta.omero else None
    if omero is None and not names:
        return None
    n = int(shape[meta.axes.index("C")]) if "C" in meta.axes else 1
    chans = list((omero or {}).get("channels") or [])
    if dtype.kind == "u":
        lo, hi = 0.0, float(np.iinfo(dtype).max)
    else:
        lo, hi = 0.0, 1.0
    out = []
    for i in range(n):
        c = dict(chans[i]) if i < len(chans) and isinstance(chans[i], dict) else {}
        if "label" not in c:
            c["label"] = names[i] if names and i < len(names) else f"channel {i}"
        c.setdefault("color", "FFFFFF")
        window = c.get("window")
        w = window if isinstance(window, dict) else {}
        c["window"] = {
            "min": w.get("min", lo),
            "max": w.get("max", hi),
            "start": w.get("start", lo),
            "end": w.get("end", hi),
        }
        c.setdefault("active", True)
        out.append(c)
    omero = dict(omero or {})
    omero["channels"] = out
    return omero


# ---------------------------------------------------------------------------- dask writing
def halve(block: np.ndarray, yi: int, xi: int) -> np.ndarray:
    """2x2 mean in Y and X (an odd last row/column is averaged with itself), rounded half up
    for integers: the pyramid's downsampling. Integers are summed exactly in 32/64-bit
    integers, (sum + 2) // 4 (a float64 mean cost a third of a level-0 block's SR time)."""
    integer = block.dtype.kind in "ui"
    x = block.astype(np.uint32 if block.dtype.itemsize <= 2 else np.int64) if integer else block.astype(np.float64)
    for ax in (yi, xi):
        if x.shape[ax] % 2:
            last = np.take(x, [-1], axis=ax)
            x = np.concatenate([x, last], axis=ax)
        sl0 = [slice(None)] * x.ndim
        sl1 = [slice(None)] * x.ndim
        sl0[ax] = slice(0, None, 2)
        sl1[ax] = slice(1, None, 2)
        x = x[tuple(sl0)] + x[tuple(sl1)]
    if integer:
        x += 2
        x //= 4
        return x.astype(block.dtype)  # a mean of values of the dtype fits the dtype
    return (x * 0.25).astype(block.dtype)


def _store_block(block: np.ndarray, array: Any, block_info: dict | None = None) -> np.ndarray:
    """Write one Dask block into its zarr region (whole chunks); a 1-element marker comes back."""
    loc = block_info[0]["array-location"]  # type: ignore[index]
    array[tuple(slice(a, b) for a, b in loc)] = block
    return np.ones((1,) * block.ndim, dtype=np.uint8)


def store_tasks(writer: OmeZarrWriter, level: int, darr: Any) -> tuple[list[Any], int]:
    """One Dask task per block of ``darr`` that writes it into level ``level``, for the blocks
    whose chunks are not all on disk yet; returns (tasks, blocks skipped)."""
    tokenize = require("dask.base").tokenize
    arr = writer.arrays[level]
    if tuple(darr.shape) != tuple(arr.shape):
        raise InputError(f"array of shape {darr.shape} does not fit level s{level} {arr.shape}")
    for c, zc in zip(darr.chunks, arr.chunks):  # each block must cover whole chunks only
        edges = np.cumsum((0,) + tuple(c))[:-1]
        if any(e % zc for e in edges):
            raise InputError(f"Dask chunks {darr.chunks} do not align with the zarr chunks {arr.chunks}")
    marks = darr.map_blocks(
        _store_block,
        array=arr,
        dtype=np.uint8,
        chunks=tuple((1,) * len(c) for c in darr.chunks),
        meta=np.empty((0,) * darr.ndim, np.uint8),
        name=f"scopesr-store-s{level}-{tokenize(darr, writer.path.as_posix(), level)}",
    )
    delayed = marks.to_delayed(optimize_graph=True)
    starts = [np.cumsum((0,) + tuple(c)) for c in darr.chunks]
    tasks, skipped = [], 0
    for idx in np.ndindex(*darr.numblocks):
        region = [(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx)]
        if writer.resumed and writer.block_done(level, region):
            skipped += 1
            continue
        tasks.append(delayed[idx])
    return tasks, skipped


def pyramid_level(writer: OmeZarrWriter, level: int) -> Any:
    """Level ``level`` (>= 1) as a Dask array: the 2x2 mean of level ``level - 1`` read back
    from the store, in blocks of one zarr chunk of the new level."""
    da = require("dask.array")
    src = writer.arrays[level - 1]
    dst = writer.arrays[level]
    yi, xi = writer.axes.index("Y"), writer.axes.index("X")
    chunks = tuple(2 * c if i in (yi, xi) else c for i, c in enumerate(dst.chunks))
    prev = da.from_zarr(src, chunks=chunks)
    out_chunks = tuple(tuple(-(-n // 2) for n in c) if i in (yi, xi) else c for i, c in enumerate(prev.chunks))
    return prev.map_blocks(
        halve, yi, xi, chunks=out_chunks, dtype=src.dtype, meta=np.empty((0,) * prev.ndim, src.dtype)
    )


def write_ome_zarr(
    path: str | Path,
    image: Any,
    axes: str,
    *,
    chunk: int = 1024,
    version: str = DEFAULT_NGFF_VERSION,
    levels: int | None = None,
    name: str | None = None,
    channel_names: Sequence[str] | None = None,
    scale: Sequence[float] | None = None,
    units: dict[str, str] | None = None,
    overwrite: bool = False,
    scheduler: Any = None,
) -> Path:
    """Write a numpy or Dask array (``axes`` over TCZYX, any order) as an OME-Zarr image
    with its pyramid: chunked, compressed, NGFF ``version`` 0.4 (zarr v2) or 0.5 (zarr v3).

    ``scale``: physical pixel size per axis of ``axes``; ``units``: axis letter -> unit
    (e.g. ``{"Y": "micrometer", "X": "micrometer"}``). ``scheduler``: passed to
    ``dask.compute`` (None: the current default).
    """
    dask = require("dask")
    da = require("dask.array")
    check_axes(axes, np.ndim(image), np.shape(image))
    order = "".join(a for a in NGFF_ORDER if a in axes)
    perm = [axes.index(a) for a in order]
    if not isinstance(image, da.Array):
        image = da.from_array(np.asarray(image), chunks=-1)
    image = image.transpose(perm)
    sc = [float(scale[i]) for i in perm] if scale is not None else [1.0] * len(order)
    meta = NgffMeta(
        order,
        sc,
        None,
        dict(units or {}),
        name or base_name(Path(path).name),
        None,
        list(channel_names) if channel_names else None,
    )
    w = OmeZarrWriter.open(
        path, image.shape, image.dtype, meta, chunk, version, levels, run={"source": "array"}, overwrite=overwrite
    )
    for k in range(len(w.arrays)):
        darr = image.rechunk(w.arrays[0].chunks) if k == 0 else pyramid_level(w, k)
        tasks, _ = store_tasks(w, k, darr)
        dask.compute(*tasks, scheduler=scheduler)
    w.finish()
    return w.path


def _claims(path: Any) -> bool:
    """What read_image hands to this module: a URL, or a local folder holding an OME-Zarr image."""
    return is_url(path) or (Path(path).is_dir() and is_zarr_path(path))


def _read(path: Any, axes_order: str, max_pixels: int) -> Image:
    return read_ome_zarr(path if isinstance(path, str) else Path(path), axes_order=axes_order, max_pixels=max_pixels)


register_container_reader(_claims, _read)
