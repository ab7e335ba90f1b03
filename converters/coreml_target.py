"""Core ML: an ML Program ``.mlpackage``, flexible H/W (RangeDim) or enumerated tile sizes.

fp16 compute by default (what the Neural Engine runs); fp32 on request; int8 = weights
linearly quantised to int8 (``linear_quantize_weights``), fp16 compute. Prediction needs
macOS, so on Linux the saved package is re-read and its spec checked: input and output
names, ranks, shape ranges or enumerated shapes, and the ops in the program.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import ModelCard

from .errors import ConversionError
from .targets import DYNAMIC_PARITY_SIZES, Cases, Exported, ExportJob, ExportTarget, register_target

log = logging.getLogger(__name__)

INPUT_NAME = "lr"
OUTPUT_NAME = "hr"
MIN_SIDE, MAX_SIDE, DEFAULT_SIDE = 8, 2048, 64


@register_target
class CoreMLTarget(ExportTarget):
    name = "coreml"
    suffix = ".mlpackage"
    precisions = ("fp32", "fp16", "int8")
    default_precision = "fp16"
    fixed_sizes = "optional"  # enumerated sizes when given, else flexible H and W

    def export(self, job: ExportJob) -> Exported:
        extra = _export(job.module, job.card, job.path, job.precision, job.sizes)
        return Exported(job.path, extra, tile_sizes=list(job.sizes) if job.sizes else None)

    def runners(self, path: Path, card: ModelCard, sizes: list[tuple[int, int]] | None) -> tuple[Cases, list[str]]:
        return make_runners(path, card, sizes)


def _export(
    module: Any, card: ModelCard, path: Path, precision: str, sizes: list[tuple[int, int]] | None
) -> dict[str, Any]:
    import coremltools as ct
    import torch

    c = card.in_channels
    x = torch.rand(1, c, DEFAULT_SIDE, DEFAULT_SIDE)
    with torch.no_grad():
        traced = torch.jit.trace(module, (x,))  # the trace path supports both flexible kinds
    if sizes:
        shape: Any = ct.EnumeratedShapes(shapes=[[1, c, h, w] for h, w in sizes], default=[1, c, *sizes[0]])
    else:
        shape = ct.Shape(
            shape=(
                1,
                c,
                ct.RangeDim(MIN_SIDE, MAX_SIDE, default=DEFAULT_SIDE),
                ct.RangeDim(MIN_SIDE, MAX_SIDE, default=DEFAULT_SIDE),
            )
        )
    cp = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    try:
        mlmodel = ct.convert(
            traced,
            inputs=[ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            convert_to="mlprogram",
            compute_precision=cp,
            minimum_deployment_target=ct.target.iOS16,
        )
        if precision == "int8":
            from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

            cfg = OptimizationConfig(
                global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=256)
            )
            mlmodel = linear_quantize_weights(mlmodel, config=cfg)
        mlmodel.short_description = (
            f"scopesr {card.architecture} x{card.scale}: normalised LR (0..1) -> normalised HR; halo {card.halo} LR px"
        )
        mlmodel.save(str(path))
    except Exception as exc:
        raise ConversionError(f"coremltools conversion failed for this model: {exc}") from exc
    spec = validate_spec(path, card, sizes)
    return {
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "io_dtype": "float32",
        "compute_precision": "fp32" if precision == "fp32" else "fp16",
        "weights": "int8 (linear symmetric, per channel)"
        if precision == "int8"
        else ("fp32" if precision == "fp32" else "fp16"),
        "minimum_deployment_target": "iOS16/macOS13",
        "spec": spec,
        **({"int8_weight_tensors": spec["ops"].get("constexpr_affine_dequantize", 0)} if precision == "int8" else {}),
    }


def validate_spec(path: Path, card: ModelCard, sizes: list[tuple[int, int]] | None) -> dict[str, Any]:
    """Re-read the saved package (no compilation: works on Linux) and check its interface."""
    import coremltools as ct

    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:
        raise ConversionError(f"{path}: the saved .mlpackage cannot be read back ({exc})") from exc
    if spec.WhichOneof("Type") != "mlProgram":
        raise ConversionError(f"{path}: expected an ML Program, got {spec.WhichOneof('Type')}")
    ins, outs = list(spec.description.input), list(spec.description.output)
    if [i.name for i in ins] != [INPUT_NAME] or [o.name for o in outs] != [OUTPUT_NAME]:
        raise ConversionError(
            f"{path}: inputs {[i.name for i in ins]} / outputs {[o.name for o in outs]}, "
            f"expected [{INPUT_NAME}] / [{OUTPUT_NAME}]"
        )
    arr = ins[0].type.multiArrayType
    shape = list(arr.shape)
    info: dict[str, Any] = {"input_shape_default": shape}
    if sizes:
        enum = [list(s.shape) for s in arr.enumeratedShapes.shapes]
        want = [[1, card.in_channels, h, w] for h, w in sizes]
        if sorted(enum) != sorted(want):
            raise ConversionError(f"{path}: enumerated shapes {enum}, expected {want}")
        info["enumerated_shapes"] = enum
    else:
        ranges = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
        if (
            len(ranges) != 4
            or ranges[2] != (MIN_SIDE, MAX_SIDE)
            or ranges[3] != (MIN_SIDE, MAX_SIDE)
            or ranges[1] != (card.in_channels, card.in_channels)
        ):
            raise ConversionError(
                f"{path}: input shape ranges {ranges}, expected flexible H/W "
                f"{MIN_SIDE}..{MAX_SIDE} with {card.in_channels} channels"
            )
        info["shape_ranges"] = [list(r) for r in ranges]
    out_rank = len(outs[0].type.multiArrayType.shape) or None
    ops: dict[str, int] = {}
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                ops[op.type] = ops.get(op.type, 0) + 1
    if "conv" not in ops:
        raise ConversionError(f"{path}: no conv op in the program (ops: {sorted(ops)})")
    info.update(
        {"ops": dict(sorted(ops.items())), "output_rank": out_rank, "spec_version": int(spec.specificationVersion)}
    )
    return info


def make_runners(
    path: Path, card: ModelCard, sizes: list[tuple[int, int]] | None
) -> tuple[dict[str, tuple[tuple[int, int], Callable]], list[str]]:
    """Numeric parity runs only where Core ML runs (macOS); elsewhere a note says so."""
    if sys.platform != "darwin":
        return {}, [
            "Core ML prediction needs macOS: numeric parity not run here; the saved spec "
            "(inputs, outputs, shape ranges, ops) was validated instead"
        ]
    import coremltools as ct

    model = ct.models.MLModel(str(path))

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict({INPUT_NAME: x.astype(np.float32)})[OUTPUT_NAME], dtype=np.float32)

    cases = list(sizes) if sizes else list(DYNAMIC_PARITY_SIZES)
    return {f"{h}x{w}": ((h, w), run) for h, w in cases}, []
