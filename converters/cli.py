"""sr-convert: turn a trained generator into a deployable artifact, and prove it.

Exit status: 0 converted and parity passed (or --no-verify); 1 parity failed (the artifact
and its card are still written, the card records the failure); 2 bad input or a
conversion error (message names the file and the fix).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence

from scopesr.sdk import CardError, parse_tile_sizes, tile_label, tile_shapes
from scopesr.sdk.card import MAX_TILE_SIDE

from .api import DEFAULT_TILE_SIZES, TARGETS, convert
from .parity import DEFAULT_TOLERANCES

EPILOG = """\
examples:
  sr-convert runs/student.safetensors --target tflite --precision int8 --calibration my_images/
  sr-convert runs/paper.safetensors --target onnx -o deploy/paper      (writes deploy/paper.onnx)
  sr-convert runs/paper.safetensors --target bioimageio                  (Fiji / ilastik / napari)

Targets and precisions:
  onnx        fp32 | fp16 | int8   one file, dynamic H/W (onnxruntime)
  tflite      fp32 | fp16 | int8   one signature lr<N> or lr<H>x<W> per tile size, NHWC
  coreml      fp16 | fp32 | int8   ML Program .mlpackage, flexible H/W (macOS runs it)
  torch       fp32                 .pt2 (torch.export, dynamic H/W)
  bioimageio  fp32                 bioimage.io model package .zip (ONNX + TorchScript)

Parity: every artifact runs on real image tiles beside the PyTorch model; fp32 must agree
to max abs error <= 1e-4, fp16 to >= 45 dB PSNR, int8 may lose <= 0.5 dB against ground
truth. A failure exits 1 (the artifact is kept, its card says so).
"""


def _tile_sizes(text: str) -> list[int | list[int]]:
    try:
        sizes = parse_tile_sizes(text)
    except CardError as exc:
        raise argparse.ArgumentTypeError(f"--tile-sizes: {exc}") from None
    big = [t for t in sizes if max(t if isinstance(t, list) else [t]) > MAX_TILE_SIDE]
    if big:  # a 100000 px tile would ask for tens of GB at export, and no card accepts it
        raise argparse.ArgumentTypeError(
            f"--tile-sizes: a tile side is at most {MAX_TILE_SIDE} LR pixels, got {', '.join(map(str, big))}"
        )
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sr-convert",
        description="Convert a scopesr generator (.safetensors + card) to ONNX, TFLite, "
        "Core ML, torch.export or a bioimage.io package, and check it against PyTorch on real images.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model", help="generator checkpoint written by sr-train (MODEL.safetensors, with MODEL.card.json beside it)"
    )
    p.add_argument("--target", "-t", required=True, choices=list(TARGETS), help="artifact format")
    p.add_argument(
        "--precision",
        "-p",
        choices=["fp32", "fp16", "int8"],
        default=None,
        help="numeric precision (default: fp16 for coreml, fp32 otherwise)",
    )
    p.add_argument(
        "--tile-sizes",
        type=_tile_sizes,
        default=None,
        metavar="N,HxW,...",
        help="LR tile sizes incl. halo for fixed-shape targets, N (square) or HxW, e.g. "
        "64,128,256,120x160 (a 160x120 camera frame in one call) (tflite; coreml: enumerated "
        f"shapes instead of flexible). Default {','.join(map(str, DEFAULT_TILE_SIZES))} "
        "(sizes not above twice the halo are dropped)",
    )
    p.add_argument(
        "--calibration",
        metavar="DIR",
        default=None,
        help="folder of real images for int8 calibration (default: real sample images "
        "shipped by pip packages; your own images calibrate better). Without those packages "
        "these images are also used for the parity check and bioimage.io sample tensors",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="OUT",
        help="output path; the target's suffix is added when OUT has none "
        "(default: MODEL-<target>-<precision>.<suffix> beside MODEL); an existing file "
        "is refused unless --overwrite",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing artifact at the output path (and its card)"
    )
    p.add_argument("--no-verify", action="store_true", help="skip the parity check")
    p.add_argument(
        "--max-err",
        type=float,
        default=DEFAULT_TOLERANCES["fp32_max_abs"],
        help="fp32 tolerance: max abs error vs PyTorch (default %(default)g)",
    )
    p.add_argument(
        "--min-psnr",
        type=float,
        default=DEFAULT_TOLERANCES["fp16_min_psnr"],
        help="fp16 tolerance: min PSNR vs PyTorch in dB (default %(default)g)",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=DEFAULT_TOLERANCES["int8_max_drop_db"],
        help="int8 tolerance: max PSNR drop vs fp32 against ground truth in dB (default %(default)g)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return p


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # TensorFlow Lite / absl C++ INFO lines would bury the report
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("scopesr").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:
        for noisy in ("onnxscript", "onnx_ir", "root", "torch", "torch.utils._pytree"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger().setLevel(logging.ERROR)  # third-party INFO spam (quantiser, exporter)
        if args.target == "tflite":
            _import_quietly("litert_torch")
    from scopesr.sdk import ScopesrError

    tol = {
        **DEFAULT_TOLERANCES,
        "fp32_max_abs": args.max_err,
        "fp16_min_psnr": args.min_psnr,
        "int8_max_drop_db": args.max_drop,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = convert(
                args.model,
                args.target,
                args.output,
                precision=args.precision,
                tile_sizes=args.tile_sizes,
                calibration=args.calibration,
                verify=not args.no_verify,
                tolerances=tol,
                overwrite=args.overwrite,
            )
        except ScopesrError as exc:
            print(f"sr-convert: error: {exc}", file=sys.stderr)
            return 2
    for m in result.warnings:
        print(f"sr-convert: warning: {m}", file=sys.stderr)
    if args.json:
        out = {
            "artifact": str(result.artifact),
            "card": str(result.card_path),
            "passed": result.passed,
            "parity": result.parity.to_dict() if result.parity else None,
        }
        print(json.dumps(out, indent=2))
    else:
        c = result.card
        print(
            f"wrote {result.artifact} ({c.format}, {c.precision}, layout {c.layout}, "
            f"tiles {', '.join(tile_label(t) for t in tile_shapes(c.tile_sizes)) or 'dynamic'}, "
            f"halo {c.halo}) and {result.card_path.name}"
        )
        if result.parity is not None:
            print(f"parity on real tiles from {result.parity.tiles_from}:")
            if result.parity.cases:
                print(result.parity.table())
            for n in result.parity.notes:
                print(f"note: {n}")
            if result.parity.skipped:
                print(f"parity: SKIPPED ({result.parity.skipped})")
            else:
                print("parity: PASSED" if result.parity.passed else "parity: FAILED")
        else:
            print("parity: not checked (--no-verify)")
    del caught
    return 0 if result.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
