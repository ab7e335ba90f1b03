"""sr-convert: turn a trained generator into a deployable artifact, and prove it.

Exit status: 0 converted and parity passed (or --no-verify); 1 parity failed (the artifact
and its card are still written, the card records the failure); 2 usage error, bad input or
a conversion error (message names the file and the fix).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Sequence

import click

from scopesr.sdk import CardError, parse_tile_sizes, tile_label, tile_shapes
from scopesr.sdk.card import MAX_TILE_SIDE
from scopesr.sdk.clitools import EXIT_FAILED, EXIT_OK, EXIT_USAGE, run_command

from .api import DEFAULT_TILE_SIZES, TARGETS, convert
from .parity import DEFAULT_TOLERANCES

#: exit statuses, the same for every scopesr command

EPILOG = """\b
Examples:
  sr-convert runs/student.safetensors --target tflite --precision int8 --calibration my_images/
  sr-convert runs/paper.safetensors --target onnx -o deploy/paper      (writes deploy/paper.onnx)
  sr-convert runs/paper.safetensors --target bioimageio                  (Fiji / ilastik / napari)

\b
Targets and precisions:
  onnx        fp32 | fp16 | int8   one file, dynamic H/W (onnxruntime)
  tflite      fp32 | fp16 | int8   one signature lr<N> or lr<H>x<W> per tile size, NHWC
  coreml      fp16 | fp32 | int8   ML Program .mlpackage, flexible H/W (macOS runs it)
  torch       fp32                 .pt2 (torch.export, dynamic H/W)
  bioimageio  fp32                 bioimage.io model package .zip (ONNX + TorchScript)

\b
Parity: every artifact runs on real image tiles beside the PyTorch model; fp32 must agree
to max abs error <= 1e-4, fp16 to >= 45 dB PSNR, int8 may lose <= 0.5 dB against ground
truth. A failure exits 1 (the artifact is kept, its card says so).

\b
Exit status: 0 converted and parity passed (or --no-verify); 1 the parity check failed (the
artifact and its card are still written, the card records the failure); 2 usage error, bad
input or a conversion error (an unknown or bad option or value, a missing model or card, a
corrupt checkpoint, an empty --calibration folder, an existing output and no --overwrite, an
exporter that fails on this model; the message names the file and the fix).
"""

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _tile_sizes(
    ctx: click.Context | None, param: click.Parameter | None, text: str | None
) -> list[int | list[int]] | None:
    if text is None:
        return None
    try:
        sizes = parse_tile_sizes(text)
    except CardError as exc:
        raise click.BadParameter(str(exc)) from None
    big = [t for t in sizes if max(t if isinstance(t, list) else [t]) > MAX_TILE_SIDE]
    if big:  # a 100000 px tile would ask for tens of GB at export, and no card accepts it
        raise click.BadParameter(f"a tile side is at most {MAX_TILE_SIDE} LR pixels, got {', '.join(map(str, big))}")
    return sizes


def _import_quietly(module: str) -> None:
    """Import ``module`` with what it writes straight to file descriptor 2 discarded.

    TensorFlow's C++ start-up lines (absl, oneDNN) bypass Python's logging and
    TF_CPP_MIN_LOG_LEVEL; importing the module here, quietly, keeps them out of the report.
    A failed import is left to the converter, which raises a clear error when it needs it.
    """
    import importlib
    import os

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - reported by the converter itself
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@click.command(
    help="Convert a scopesr generator (.safetensors + card) to ONNX, TFLite, Core ML, torch.export or "
    "a bioimage.io package, and check it against PyTorch on real images.\n\n"
    "MODEL: generator checkpoint written by sr-train (MODEL.safetensors, with MODEL.card.json beside it).",
    epilog=EPILOG,
    context_settings=_CONTEXT,
)
@click.argument("model")
@click.option("--target", "-t", required=True, type=click.Choice(list(TARGETS)), help="Artifact format.")
@click.option(
    "--precision",
    "-p",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default=None,
    help="Numeric precision (default: fp16 for coreml, fp32 otherwise).",
)
@click.option(
    "--tile-sizes",
    callback=_tile_sizes,
    default=None,
    metavar="N,HxW,...",
    help="LR tile sizes incl. halo for fixed-shape targets, N (square) or HxW, e.g. "
    "64,128,256,120x160 (a 160x120 camera frame in one call) (tflite; coreml: enumerated "
    f"shapes instead of flexible). Default {','.join(map(str, DEFAULT_TILE_SIZES))} "
    "(sizes not above twice the halo are dropped).",
)
@click.option(
    "--calibration",
    metavar="DIR",
    default=None,
    help="Folder of real images for int8 calibration (default: real sample images "
    "shipped by pip packages, else the two demo images bundled with scopesr; your own images "
    "calibrate better). Without those packages these images are also used for the parity "
    "check and bioimage.io sample tensors.",
)
@click.option(
    "-o",
    "--output",
    "--out",
    "output",
    default=None,
    metavar="OUT",
    help="Output path; the target's suffix is added when OUT has none "
    "(default: MODEL-<target>-<precision>.<suffix> beside MODEL); an existing file "
    "is refused unless --overwrite.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact at the output path (and its card).")
@click.option("--no-verify", is_flag=True, help="Skip the parity check.")
@click.option(
    "--max-err",
    type=float,
    default=DEFAULT_TOLERANCES["fp32_max_abs"],
    help=f"fp32 tolerance: max abs error vs PyTorch (default {DEFAULT_TOLERANCES['fp32_max_abs']:g}).",
)
@click.option(
    "--min-psnr",
    type=float,
    default=DEFAULT_TOLERANCES["fp16_min_psnr"],
    help=f"fp16 tolerance: min PSNR vs PyTorch in dB (default {DEFAULT_TOLERANCES['fp16_min_psnr']:g}).",
)
@click.option(
    "--max-drop",
    type=float,
    default=DEFAULT_TOLERANCES["int8_max_drop_db"],
    help="int8 tolerance: max PSNR drop vs fp32 against ground truth in dB "
    f"(default {DEFAULT_TOLERANCES['int8_max_drop_db']:g}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress.")
def cli(
    model: str,
    target: str,
    precision: str | None,
    tile_sizes: list[int | list[int]] | None,
    calibration: str | None,
    output: str | None,
    overwrite: bool,
    no_verify: bool,
    max_err: float,
    min_psnr: float,
    max_drop: float,
    as_json: bool,
    verbose: bool,
) -> int:
    if not verbose:  # TensorFlow Lite / absl C++ INFO lines would bury the report
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("scopesr").setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        for noisy in ("onnxscript", "onnx_ir", "root", "torch", "torch.utils._pytree"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger().setLevel(logging.ERROR)  # third-party INFO spam (quantiser, exporter)
        if target == "tflite":
            _import_quietly("litert_torch")
    from scopesr.sdk import ScopesrError

    tol = {
        **DEFAULT_TOLERANCES,
        "fp32_max_abs": max_err,
        "fp16_min_psnr": min_psnr,
        "int8_max_drop_db": max_drop,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = convert(
                model,
                target,
                output,
                precision=precision,
                tile_sizes=tile_sizes,
                calibration=calibration,
                verify=not no_verify,
                tolerances=tol,
                overwrite=overwrite,
            )
        except ScopesrError as exc:
            click.echo(f"sr-convert: error: {exc}", err=True)
            return EXIT_USAGE
    for m in result.warnings:
        click.echo(f"sr-convert: warning: {m}", err=True)
    if as_json:
        out = {
            "artifact": str(result.artifact),
            "card": str(result.card_path),
            "passed": result.passed,
            "parity": result.parity.to_dict() if result.parity else None,
        }
        click.echo(json.dumps(out, indent=2))
    else:
        c = result.card
        click.echo(
            f"wrote {result.artifact} ({c.format}, {c.precision}, layout {c.layout}, "
            f"tiles {', '.join(tile_label(t) for t in tile_shapes(c.tile_sizes)) or 'dynamic'}, "
            f"halo {c.halo}) and {result.card_path.name}"
        )
        if result.parity is not None:
            click.echo(f"parity on real tiles from {result.parity.tiles_from}:")
            if result.parity.cases:
                click.echo(result.parity.table())
            for n in result.parity.notes:
                click.echo(f"note: {n}")
            if result.parity.skipped:
                click.echo(f"parity: SKIPPED ({result.parity.skipped})")
            else:
                click.echo("parity: PASSED" if result.parity.passed else "parity: FAILED")
        else:
            click.echo("parity: not checked (--no-verify)")
    del caught
    return EXIT_OK if result.passed else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run sr-convert on ``argv`` (default: the process's arguments); returns the exit status."""
    return run_command(cli, argv, "sr-convert")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
