"""``sr-upscale``: upscale images, folders and stacks with a scopesr model.

A bad file never stops the batch: its problem is logged, the rest are processed, and the
command exits non-zero with a summary naming each failed file. Outputs are written
atomically and never over an input (nor over an existing result without --overwrite);
large results stream to disk strip by strip (BigTIFF, or PNG for 8-bit PNG/JPEG inputs).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from .atomic import check_name
from .clitools import runtime_options
from .errors import ImageError, InputError, InternalError, OutputError, ScopesrError
from .io import (
    DEFAULT_MAX_PIXELS,
    Image,
    find_inputs,
    output_suffix,
    read_image,
    release_pages,
    write_image,
    write_png_streaming,
    write_tiff_streaming,
)
from .tiles import parse_tile
from .upscaler import RUNNABLE_FORMATS, STRENGTH_RANGE, whole_plane_options

log = logging.getLogger("scopesr.sdk.cli")

#: results with more output pixels than this (in millions) stream to disk strip by strip
DEFAULT_STREAM_MPIX = 64.0

EPILOG = """\b
Formats: PNG, JPEG and TIFF in; multi-page TIFF stacks, time-lapses and ImageJ
hyperstacks (axes T, Z, C, Y, X); 8-bit, 16-bit and float32; grey, RGB or N channels
(a model with fewer channels runs channel by channel). Output keeps the input's dtype:
OUTDIR/<stem>_x<scale>.png for 8-bit PNG/JPEG inputs, .tif for TIFF inputs, 16-bit,
float and stacks (ImageJ hyperstacks stay ImageJ). Results above --stream-above
megapixels are written strip by strip (BigTIFF above 1 GB): memory stays bounded
whatever the image size.

\b
Examples:
  sr-upscale cells.tif -o out/
  sr-upscale raw/ stack.tif -o out/ --model student.onnx --tile 128 --compare

\b
Exit status: 0 every file upscaled; 1 some inputs failed (each is named in the summary;
the others are written), no input images were found, or the model could not be loaded;
2 usage error (an unknown option or a bad value).
"""


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    # another entry point in the same process (tests, notebooks) may have set the package level
    logging.getLogger("scopesr").setLevel(level)
    if not verbose:  # tifffile warns loudly about every odd tag; our errors say what matters
        logging.getLogger("tifffile").setLevel(logging.ERROR)


def _parse_halo(ctx: click.Context | None, param: click.Parameter | None, value: str) -> int | str:
    if value == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a number of LR pixels or 'auto'") from None
    if n < 0:
        raise click.BadParameter("must be >= 0")
    return n


def _parse_tile(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> int | tuple[int, int] | None:
    if value is None:
        return None
    try:
        shape = parse_tile(value)
    except ScopesrError as exc:
        raise click.BadParameter(str(exc)) from None
    assert shape is not None  # parse_tile returns None only for a None tile
    h, w = shape
    if min(h, w) < 1:
        raise click.BadParameter("tile sizes must be >= 1 LR pixel")
    return h if h == w else (h, w)


def _parse_stream_above(ctx: click.Context | None, param: click.Parameter | None, value: float) -> float:
    if math.isnan(value):
        raise click.BadParameter("give a number of megapixels (inf: never stream), not nan")
    return value


def _out_pixels(img: Image, scale: int) -> int:
    return int(np.prod(img.shape, dtype=np.int64)) * scale * scale


def _can_stream(img: Image, in_channels: int) -> bool:
    """Streaming goes plane by plane, each plane (H, W) or (H, W, C) with C last. A channel
    axis before Y is fine only when the model takes one channel (planes are then channels)."""
    yi = img.axes.index("Y")
    if img.axes[yi:] not in ("YX", "YXC"):
        return False
    return "C" not in img.axes[:yi] or in_channels == 1


#: streaming keeps about two output bands (one row of tiles each) in memory; without an explicit
#: --tile, a very wide image gets a shorter tile so that a band stays under this many bytes
BAND_BUDGET_BYTES = 32 << 20
MIN_STREAM_TILE = 64


def _band_budget_tile(upscaler: Any, img: Image, opts: dict[str, Any]) -> dict[str, Any]:
    """Memory flat in the image width: shrink the default tile when one output band (tile*s rows
    of the full output width) would exceed BAND_BUDGET_BYTES. Tiling stays seam-free (the halo
    is unchanged); only the halo overhead grows a little."""
    from .tiling import DEFAULT_TILE

    if opts.get("tile") is not None or not getattr(upscaler.backend, "dynamic", False):
        return opts
    s = upscaler.scale
    c_out = (
        img.channels
        if upscaler.card.in_channels == 1 and "C" in img.axes[img.axes.index("Y") :]
        else (upscaler.card.out_channels if "C" in img.axes[img.axes.index("Y") :] else 1)
    )
    row_bytes = img.width * s * c_out * img.dtype.itemsize
    tile = int(BAND_BUDGET_BYTES // max(1, row_bytes * s))
    tile = max(MIN_STREAM_TILE, min(DEFAULT_TILE, tile))
    if tile < DEFAULT_TILE:
        log.debug("%s: tile %d so that one output band stays under %d MB", img.path, tile, BAND_BUDGET_BYTES >> 20)
        return {**opts, "tile": tile}
    return opts


def _stream(
    upscaler: Any, img: Image, out: Path, opts: dict[str, Any], show_progress: bool, overwrite: bool = True
) -> None:
    """Upscale plane by plane, band by band, straight into a BigTIFF (a PNG for a ``.png``
    output): the whole result is never in memory (a 8192x8192 uint16 input makes a 2 GB
    output)."""
    from tqdm import tqdm

    s = upscaler.scale
    yi = img.axes.index("Y")
    lead = img.shape[:yi]
    plane_axes = img.axes[yi:]
    out_shape = tuple(lead) + tuple(d * s if a in "YX" else d for a, d in zip(plane_axes, img.shape[yi:]))
    out_h = img.shape[yi] * s
    n_planes = int(np.prod(lead, dtype=np.int64))
    opts = _band_budget_tile(upscaler, img, opts)
    assert img.path is not None  # the image came from read_image, which records its file
    bar = tqdm(total=out_h * n_planes, unit="row", desc=f"  {img.path.name}", leave=False, disable=not show_progress)

    def bands() -> Iterator[np.ndarray]:
        for idx in np.ndindex(*lead):
            plane = img.array[idx] if idx else img.array
            expected = 0
            for y0, band in upscaler.upscale_bands(plane, axes=plane_axes, **opts):
                if y0 != expected or band.dtype != img.dtype:
                    raise InternalError(
                        f"{img.path}: internal error: band at row {y0} ({band.dtype}), "
                        f"expected row {expected} ({img.dtype})"
                    )
                expected += band.shape[0]
                bar.update(band.shape[0])
                yield band
                release_pages(img.array)  # keep a memory-mapped input's RSS at one band
            if expected != out_h:
                raise InternalError(f"{img.path}: internal error: bands covered {expected} of {out_h} rows")

    try:
        if out.suffix.lower() == ".png":  # 8-bit 2-D: stays a PNG, as the in-memory path writes it
            write_png_streaming(out, out_shape, bands(), overwrite=overwrite)
        else:
            write_tiff_streaming(
                out, out_shape, img.dtype, img.axes, bands(), img.metadata, scale=s, overwrite=overwrite
            )
    finally:
        bar.close()


def _compare_path(path: Path, outdir: Path, inputs: set[Path], claimed: set[Path]) -> Path:
    """OUTDIR/<stem>_compare.png; when another input of this run has the same stem (a.tif and
    a.png) it took that name, and this one gets <stem>_<suffix>_compare.png: neither replaces
    the other's."""
    from .zarr_io import base_name, is_zarr_path

    stem = base_name(path.name) if is_zarr_path(path) else path.stem
    cmp = check_name(outdir / f"{stem}_compare.png")
    if cmp.resolve() in claimed:
        cmp = check_name(outdir / f"{stem}_{path.suffix.lstrip('.').lower() or 'file'}_compare.png")
        if cmp.resolve() in claimed:
            raise ImageError(
                f"{path}: its comparison picture {cmp.name} is also that of another input with "
                "the same name; upscale them into different folders"
            )
    if cmp.resolve() in inputs:
        raise ImageError(f"{path}: {cmp} would overwrite an input; choose another -o folder")
    return cmp


def _whole_plane_options(ensemble: int, strength: float) -> str:
    """The options given that work on whole in-memory planes (not on streamed or OME-Zarr
    results), as the user typed them, e.g. "--ensemble"; "" when none is."""
    return " and ".join(f"--{n}" for n in whole_plane_options(ensemble, strength))


def process_file(
    upscaler: Any,
    path: Path,
    outdir: Path,
    inputs: set[Path],
    claimed: set[Path],
    opts: dict[str, Any],
    *,
    overwrite: bool = False,
    compare: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    stream_mpix: float = DEFAULT_STREAM_MPIX,
    show_progress: bool = False,
    ensemble: int = 1,
    strength: float = 1.0,
) -> Path:
    """Upscale one file into ``outdir``; raises ScopesrError (naming the file) on any problem.
    ``ensemble``: copies averaged, ``strength``: the blend with bicubic (``Upscaler.upscale``);
    neither for results streamed to disk."""
    img = read_image(path, max_pixels=max_pixels)  # an OME-Zarr folder: lazily, axes in TZCYX order
    s = upscaler.scale
    stem = path.stem
    if img.format == "ome-zarr":
        from .zarr_io import base_name

        stem = base_name(path.name)
    out = check_name(outdir / f"{stem}_x{s}{output_suffix(img.dtype, img.axes, img.format)}")
    rout = out.resolve()
    if rout in inputs:
        raise ImageError(f"{path}: output {out} would overwrite an input; choose another -o folder")
    if rout in claimed:
        raise ImageError(
            f"{path}: output {out} is also the output of another input with the same "
            "name; upscale them into different folders"
        )
    if out.is_dir():
        raise OutputError(f"{path}: the output name {out} is a folder; move it away or choose another -o folder")
    if out.exists() and not overwrite:
        raise ImageError(f"{path}: {out} exists; pass --overwrite to replace it")
    cmp = _compare_path(path, outdir, inputs, claimed) if compare else None
    if cmp is not None and cmp.exists() and not overwrite:  # checked before any work is done
        raise ImageError(f"{path}: {cmp} exists; pass --overwrite to replace it")
    claimed.add(rout)
    if cmp is not None:
        claimed.add(cmp.resolve())
    t0 = time.perf_counter()
    streamed = _out_pixels(img, s) > stream_mpix * 1e6 and _can_stream(img, upscaler.card.in_channels)
    whole = _whole_plane_options(ensemble, strength)
    if streamed and whole:
        raise ImageError(
            f"{path}: its {_out_pixels(img, s) / 1e6:.0f}-megapixel result is streamed to disk, which "
            f"{whole} does not do; raise --stream-above above that or run without {whole}"
        )
    result = None
    if streamed:
        log.info(
            "%s: %s %s -> %s, streamed to disk strip by strip", path.name, img.axes, "x".join(map(str, img.shape)), out
        )
        _stream(upscaler, img, out, opts, show_progress, overwrite=overwrite)
    else:
        # a tile progress bar only where it is worth watching (> 16 output megapixels)
        result = upscaler.upscale(
            img.array,
            axes=img.axes,
            progress=show_progress and _out_pixels(img, s) * ensemble > 16e6,
            ensemble=ensemble,
            strength=strength,
            **opts,
        )
        if result.ndim != img.array.ndim or result.dtype != img.dtype:
            raise InternalError(
                f"{path}: internal error: result {result.shape} {result.dtype} "
                f"does not match the input {img.shape} {img.dtype}"
            )
        # not --overwrite: the final name is taken exclusively, so of two runs writing it at
        # once one gets an error instead of both "succeeding" (the last one winning)
        write_image(out, result, img.axes, img.metadata, scale=s, overwrite=overwrite)
    log.info("%s -> %s (%.2f s)", path.name, out, time.perf_counter() - t0)
    if cmp is not None:
        from .compare import make_compare

        if result is None:  # streamed: read the crop back from disk, memory-mapped
            result = read_image(out, max_pixels=2**62, memmap=True, check_finite=False).array
        make_compare(cmp, img.array, img.axes, result, s, title=upscaler.card.name, overwrite=overwrite)
        log.info("%s -> %s", path.name, cmp)
    return out


def _make_outdir(outdir: Path) -> None:
    """Create ``-o`` (and its parents), or stop with a message that says why it cannot be."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        bad = next((p for p in [outdir, *outdir.parents] if p.exists() and not p.is_dir()), None)
        if bad is not None:
            why = f"{bad} is a file, not a folder"
        else:
            why = {
                errno.EACCES: "permission denied",
                errno.EPERM: "permission denied",
                errno.EROFS: "read-only file system",
            }.get(exc.errno or 0, exc.strerror or str(exc))
        raise click.ClickException(f"-o {outdir}: cannot create the output folder ({why}); choose another") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise click.ClickException(
            f"-o {outdir}: cannot write into this folder (permission denied); choose a writable one"
        )


def _describe_lines(d: dict[str, Any]) -> list[str]:
    """``Upscaler.describe()`` as a few labelled lines (sr-upscale --describe)."""
    be = d.get("backend") or {}
    lines = [
        (
            f"model      {d['name']} ({d['architecture']}), x{d['scale']}, {d['in_channels']} -> "
            f"{d['out_channels']} channel(s), halo {d['halo']} LR px, {d['normalisation']['mode']} normalisation"
        ),
        (
            f"artifact   {be.get('artifact', '?')} ({d['format']}, {d['precision']}, {d['layout']}), "
            f"sha256 {str(d.get('sha256') or '?')[:16]}..."
        ),
    ]
    cost = d.get("cost")
    if isinstance(cost, dict) and isinstance(cost.get("macs_per_lr_pixel"), (int, float)):
        params = cost.get("params")
        lines.append(
            f"cost       {cost['macs_per_lr_pixel'] / 1000:.1f} k multiply-accumulates per LR pixel"
            + (f", {params:,} parameters" if isinstance(params, int) else "")
        )
    tiles = d.get("tile_sizes")
    if tiles:
        sizes = ", ".join(str(t) if isinstance(t, int) else f"{t[0]}x{t[1]}" for t in tiles)
        lines.append(f"tiles      fixed sizes {sizes} LR px; {d['default_tile']}")
    else:
        lines.append(f"tiles      any size; default {d['default_tile']} LR px + halo")
    metrics = d.get("metrics")
    m = metrics if isinstance(metrics, dict) else {}
    heldout = m.get("heldout")
    held = heldout if isinstance(heldout, dict) else {}
    q = []
    if isinstance(held.get("summary"), dict):
        for row, e in held["summary"].items():
            if isinstance(e, dict) and isinstance(e.get("gain_db_vs_bicubic"), (int, float)):
                w = e.get("worst_gain_db")
                q.append(
                    f"{row} {e['gain_db_vs_bicubic']:+.2f} dB"
                    + (f" (worst image {w:+.2f})" if isinstance(w, (int, float)) else "")
                )
    elif isinstance(held.get("gain_db_vs_bicubic"), (int, float)):
        q.append(f"{held['gain_db_vs_bicubic']:+.2f} dB")
    if q:
        lines.append("quality    held-out gain over bicubic: " + "; ".join(q))
    limit = d.get("noise_warning_above")
    if isinstance(limit, (int, float)):
        lines.append(
            f"input      trained without noise: warns when a frame's estimated noise is above {100 * limit:.1f} % "
            "of its range (use the default model for noisy frames)"
        )
    worst = (m.get("int8_vs_fp32") or {}).get("worst") if isinstance(m.get("int8_vs_fp32"), dict) else None
    if isinstance(worst, dict) and isinstance(worst.get("delta_db"), (int, float)):
        lines.append(f"int8       vs fp32: worst {worst['delta_db']:+.3f} dB")
    cpu = d.get("cpu") or {}
    threads = be.get("num_threads")
    runtime = be.get("runtime") or ", ".join(be.get("providers") or []) or ""
    threads_text = str(threads) if threads else f"the runtime's default ({cpu.get('cores', '?')} usable cores)"
    if be.get("threading"):
        threads_text += f" ({be['threading']})"
    lines.append(
        f"backend    {be.get('backend', '?')}{f' ({runtime})' if runtime else ''} on {be.get('device', 'cpu')}, "
        f"threads: {threads_text}"
    )
    lines.append(f"CPU        {cpu.get('line') or ''}".rstrip())
    sel = d.get("selection")
    if sel:
        lines.append(f"chosen     {sel['artifact']} ({sel['how']}): {sel['reason']}")
        for name, why in (sel.get("skipped") or {}).items():
            lines.append(f"skipped    {name}: {why}")
        if sel.get("cache"):
            lines.append(f"cache      {sel['cache']} (CPU key {sel.get('cpu_key')})")
    return lines


def _describe(model: str | None, backend: str, device: str, run_opts: dict[str, Any] | None = None) -> None:
    """sr-upscale --describe: load the model as a run would, print what it is and runs on."""
    try:
        up = _load_model(model, backend, device, run_opts)
    except ScopesrError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(_describe_lines(up.describe())))


def _load_model(model: str | None, backend: str, device: str, torch_opts: dict[str, Any] | None = None) -> Any:
    from . import load

    opts = torch_opts or {}
    try:
        if model is None:
            try:
                return load("default", backend=backend, device=device, **opts)
            except ScopesrError as exc:
                msg = str(exc)
                if "--model" not in msg:
                    msg += "; pass --model PATH (an .onnx/.tflite/.pt2/.mlpackage file with its .card.json)"
                raise click.ClickException(msg) from None
        return load(model, backend=backend, device=device, **opts)
    except ScopesrError as exc:
        if opts and "does not take option" in str(exc) and "'spin'" in str(exc).split("; it takes")[0]:
            raise InputError(f"{exc}. --spin/--no-spin applies to ONNX and TFLite models only") from None
        if opts and "does not take option" in str(exc):
            raise InputError(
                f"{exc}. --torch-dtype, --channels-last, --compile and --cuda-graphs apply to "
                ".pt2 models (the torch backend) only"
            ) from None
        raise


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
# INPUTS and -o are required unless --describe is given (checked in main, exit 2 as click would)
@click.argument("inputs", nargs=-1, required=False, metavar="INPUTS...", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--outdir",
    required=False,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the results (created if missing). Required unless --describe.",
)
@click.option(
    "--model",
    "model",
    default=None,
    metavar="PATH|NAME",
    help="Model artifact (.onnx, .tflite, .pt2, .mlpackage) with its .card.json beside it, or a "
    "bundled model by name: 'default' (blind to noise, binning, blur and aliasing) or 'low-noise' "
    "(for images with little noise, e.g. averaged confocal or long exposures: sharper there, "
    "weaker than the default on noisy frames) or 'large' (the default's task with 4.7x its work per "
    "pixel: better on clean, binned and noisy stills, too slow for live frames on a Pi). "
    "Default: the bundled default model, the artifact (ONNX or TFLite, fp32 or int8) "
    "that runs fastest on this CPU, measured once (about a second) and cached per CPU; "
    f"SCOPESR_ARTIFACT={'|'.join(RUNNABLE_FORMATS)} names one, SCOPESR_PROBE=0 skips the "
    "measurement (ONNX fp32 with onnxruntime installed, else int8 TFLite).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnx", "tflite", "coreml"]),
    default="auto",
    show_default=True,
    help="Runtime; auto picks the best available for the artifact and device.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (a CUDA GPU where the runtime has one, else the CPU), cpu or cuda.",
)
@click.option(
    "--tile",
    default=None,
    metavar="N|HxW",
    callback=_parse_tile,
    help="Tile size in LR (input) pixels, N or HxW. Default: 256 for dynamic-shape models; "
    "fixed-size artifacts (TFLite) pick, per image, the size in their card that computes "
    "the fewest pixels. Tiles are seam-free: each is read with a halo.",
)
@click.option(
    "--halo",
    default="auto",
    show_default=True,
    metavar="N|auto",
    callback=_parse_halo,
    help="Overlap around each tile, in LR pixels. auto = the model's receptive-field radius "
    "(from its card), which makes tiled output equal whole-image output.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Tiles per forward pass (larger helps GPUs). Default: the model's default.",
)
@click.option(
    "--ensemble",
    type=click.Choice(["1", "2", "4", "8"]),
    default="1",
    show_default=True,
    metavar="N",
    help="Average the model over N flipped/transposed copies of each image (1, 2, 4 or 8): "
    "higher quality at N times the time (with the default model, 8 copies gained 0.05-0.1 dB more than "
    "one on held-out images, and the aliased worst case improved most; README). Not for streamed (very large) "
    "or OME-Zarr outputs.",
)
@click.option(
    "--strength",
    type=click.FloatRange(*STRENGTH_RANGE),
    default=1.0,
    show_default=True,
    metavar="T",
    help="How much of the model's change over bicubic to keep: bicubic + T x (model - bicubic); 1 is the "
    "model, 0 bicubic. About 0.5 suits low-noise images sampled finer than their optics resolve (averaged "
    "confocal or Airyscan at high zoom), where the default sharpens smooth structure too much (such an "
    "image sampled without anti-aliasing: 1.0 dB below bicubic at 1, level with it at 0.5); on noisy "
    "images it also halves the denoising (docs/degradation.md, 'One number per image'). Not for streamed "
    "(very large) or OME-Zarr outputs.",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Also write OUTDIR/<stem>_compare.png: nearest | bicubic | model, labelled "
    "(middle plane of a stack; a centre crop of a huge image). When two inputs share a "
    "stem (a.png, a.tif), the second gets <stem>_<suffix>_compare.png.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace existing outputs and comparison pictures (inputs are never overwritten). "
    "Without it an existing one is refused, also one another run writes meanwhile.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse inputs with more pixels than this (decompression-bomb guard).",
)
@click.option(
    "--stream-above",
    "stream_mpix",
    type=click.FloatRange(min=0),
    default=DEFAULT_STREAM_MPIX,
    show_default=True,
    metavar="MPIX",
    callback=_parse_stream_above,
    help="Stream results larger than this many megapixels to disk strip by strip (BigTIFF above 1 GB).",
)
@click.option(
    "--torch-dtype",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default=None,
    help="torch (.pt2) models: compute in this precision by autocast; weights stay fp32.",
)
@click.option("--channels-last", is_flag=True, help="torch (.pt2) models: NHWC memory format (GPU tensor cores).")
@click.option(
    "--compile",
    "compile_",
    is_flag=True,
    help="torch (.pt2) models: torch.compile (slow to start; pays off on long runs).",
)
@click.option("--cuda-graphs", is_flag=True, help="torch (.pt2) models on CUDA: replay one CUDA graph per tile shape.")
@runtime_options
@click.option("-v", "--verbose", count=True, help="More log output (debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bar.")
@click.option(
    "--describe",
    is_flag=True,
    help="Print the model (card summary), the backend and its threads, this CPU and why this "
    "artifact was chosen, then exit 0 (no INPUTS or -o needed).",
)
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["auto", "ome-zarr", "tiff"]),
    default="auto",
    show_default=True,
    help="auto: PNG/TIFF as today, OME-Zarr for OME-Zarr (.zarr) inputs; ome-zarr: every result is an "
    "OME-Zarr (OUTDIR/<name>_x<scale>.ome.zarr, or -o OUT.zarr for one input), chunked, with a "
    "pyramid; tiff: OME-Zarr inputs too give OUTDIR/<name>_x<scale>.tif (their full-resolution "
    "level, in this process; pixel size, unit and z spacing kept). OME-Zarr needs "
    'pip install "scopesr[cluster]".',
)
@click.option(
    "--ngff-version",
    type=click.Choice(["0.4", "0.5"]),
    default=None,
    help="OME-Zarr results: NGFF 0.4 (zarr v2) or 0.5 (zarr v3). Default: the input's, else 0.4.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="OME-Zarr results: LR pixels per block side (one Dask task; output zarr chunks are N x scale, "
    "halved while above 1024). Default: 512, or a multiple of the input's zarr chunk up to 1024.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Compute OME-Zarr results on a local Dask cluster of N worker processes (implies --format ome-zarr).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT",
    help="Compute OME-Zarr results on a running dask.distributed cluster (implies --format ome-zarr; "
    "model, inputs and -o at the same paths on every worker).",
)
def main(
    inputs: tuple[Path, ...],
    outdir: Path | None,
    model: str | None,
    backend: str,
    device: str,
    tile: int | tuple[int, int] | None,
    halo: int | str,
    batch: int | None,
    compare: bool,
    overwrite: bool,
    max_pixels: int,
    stream_mpix: float,
    verbose: int,
    quiet: bool,
    torch_dtype: str | None = None,
    ensemble: str = "1",
    strength: float = 1.0,
    channels_last: bool = False,
    compile_: bool = False,
    cuda_graphs: bool = False,
    describe: bool = False,
    threads: int | None = None,
    spin: bool | None = None,
    out_format: str = "auto",
    ngff_version: str | None = None,
    chunk: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> None:
    """Super-resolve microscopy images: IN may be image files, folders (their images,
    sorted) or multi-page TIFF stacks."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    _setup_logging(verbose, quiet)
    run_opts: dict[str, Any] = {"num_threads": threads} if threads else {}
    if spin is not None:
        run_opts["spin"] = spin
    if describe:
        _describe(model, backend, device, run_opts)
        return
    if not inputs:
        raise click.UsageError("Missing argument 'INPUTS...'.")
    if outdir is None:
        raise click.UsageError("Missing option '-o' / '--outdir'.")
    if workers and scheduler:
        raise click.UsageError("--workers starts a local cluster, --scheduler uses a running one: give one of them")
    if out_format == "tiff" and (workers or scheduler):
        raise click.UsageError("--workers and --scheduler write OME-Zarr results; --format tiff runs in this process")
    n_copies = int(ensemble)
    whole = _whole_plane_options(n_copies, strength)
    if whole and (out_format == "ome-zarr" or workers or scheduler):
        raise click.UsageError(f"{whole} works on in-memory results; OME-Zarr / Dask runs do not take it")
    from .zarr_io import find_inputs_with_zarr, is_zarr_path

    zarr_all = out_format == "ome-zarr" or bool(workers or scheduler)
    try:  # a URL is refused here with a message saying how to read it
        zarr_in = zarr_all or any(is_zarr_path(p) for p in inputs)
        files = find_inputs_with_zarr(inputs) if zarr_in else find_inputs(inputs)
    except ScopesrError as exc:
        raise click.ClickException(str(exc)) from None
    if not files:
        raise click.ClickException("no input images found")
    try:
        torch_opts = {
            k: v
            for k, v in (
                ("dtype", torch_dtype),
                ("channels_last", channels_last),
                ("compile", compile_),
                ("cuda_graphs", cuda_graphs),
            )
            if v
        }
        upscaler = _load_model(model, backend, device, {**torch_opts, **run_opts})
    except ScopesrError as exc:
        raise click.ClickException(str(exc)) from None
    log.info(
        "model %s: x%d, %d channel(s) in, halo %d",
        upscaler.card.name,
        upscaler.scale,
        upscaler.card.in_channels,
        upscaler.card.halo,
    )
    _make_outdir(outdir)
    opts = {"tile": tile, "halo": halo, "batch": batch}
    in_set = {f.resolve() for f in files}
    claimed: set[Path] = set()
    failed: list[tuple[Path, str]] = []
    show = not quiet and sys.stderr.isatty()
    zrun = None
    if out_format != "tiff" and (zarr_all or any(is_zarr_path(f) for f in files)):  # OME-Zarr results, Dask
        from .dask import ClusterRun

        zrun = ClusterRun(
            upscaler,
            scheduler=scheduler,
            workers=workers,
            chunk=chunk,
            version=ngff_version,
            max_pixels=max_pixels,
            every_input=zarr_all,
        )
    with logging_redirect_tqdm(), contextlib.ExitStack() as stack:
        if zrun is not None:
            try:
                stack.enter_context(zrun)
            except ScopesrError as exc:
                raise click.ClickException(str(exc)) from None
        for f in tqdm(files, unit="file", desc="sr-upscale", disable=not show or len(files) < 2):
            try:
                if zrun is not None and zrun.takes(f):
                    if whole:
                        raise ImageError(
                            f"{f}: its result is an OME-Zarr written block by block, which {whole} "
                            f"does not do; run it without {whole}"
                        )
                    zrun.process(
                        f, outdir, in_set, claimed, opts, overwrite=overwrite, compare=compare, show_progress=show
                    )
                else:
                    process_file(
                        upscaler,
                        f,
                        outdir,
                        in_set,
                        claimed,
                        opts,
                        overwrite=overwrite,
                        compare=compare,
                        max_pixels=max_pixels,
                        stream_mpix=stream_mpix,
                        show_progress=show,
                        ensemble=n_copies,
                        strength=strength,
                    )
            except ScopesrError as exc:
                msg = str(exc)
                log.error("%s", msg if str(f) in msg else f"{f}: {msg}")
                failed.append((f, msg))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken file must not end the batch
                log.debug("%s", f, exc_info=True)
                msg = f"{f}: unexpected error ({type(exc).__name__}: {exc}); rerun with -v for details"
                log.error("%s", msg)
                failed.append((f, msg))
    done = len(files) - len(failed)
    if failed:
        click.echo(f"{len(failed)} of {len(files)} files failed:", err=True)
        for f, msg in failed:
            # messages start with the full path; the summary names the file once
            short = msg[len(str(f)) + 2 :] if msg.startswith(f"{f}: ") else msg
            click.echo(f"  {f.name}: {short}", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(f"{done} file(s) upscaled x{upscaler.scale} into {outdir}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
