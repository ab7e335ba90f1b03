"""TFLite (LiteRT): fixed tile sizes, one signature ``lr{N}`` / ``lr{H}x{W}`` per size, shared weights, NHWC I/O.

Dynamic H/W does not work in TFLite for these models (the nearest-upsample size is frozen
at conversion and a resized interpreter silently returns the wrong size), so
the artifact holds one signature per LR tile size (the tensor size, halo included) and
the SDK's tiler picks among them. Every parity run checks the output shape.
fp16: weights cast to float16 (float compute). int8: ai-edge-quantizer static int8
(weights and activations) calibrated per signature on real tiles; the model's inputs and
outputs stay float32 so callers need no (de)quantisation of their own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import ModelCard, parse_signature, signature_name  # the SDK reads what we name

from .errors import ConversionError
from .int8_rule import float_convolutions
from .targets import Cases, Exported, ExportJob, ExportTarget, register_target

log = logging.getLogger(__name__)

INPUT_NAME = "args_0"  # litert-torch's names for the first positional input / output
OUTPUT_NAME = "output_0"


@register_target
class TFLiteTarget(ExportTarget):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8")
    default_precision = "fp32"
    fixed_sizes = "always"

    def export(self, job: ExportJob) -> Exported:
        sizes = list(job.sizes or [])
        extra = _export(job.module, job.in_channels, job.path, job.precision, sizes, job.calibration)
        return Exported(job.path, extra, layout="NHWC", tile_sizes=sizes)

    def runners(self, path: Path, card: ModelCard, sizes: list[tuple[int, int]] | None) -> tuple[Cases, list[str]]:
        rs = make_runners(path)
        missing = [signature_name(t) for t in (sizes or []) if t not in rs]
        if missing:
            raise ConversionError(f"{path}: signatures {missing} missing after conversion")
        return {signature_name(t): (t, rs[t]) for t in sorted(rs)}, []


def _export(
    module: Any,
    in_channels: int,
    path: Path,
    precision: str,
    tile_sizes: list[tuple[int, int]],
    calibration: dict[tuple[int, int], list[np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Write the .tflite to ``path``; return card extras (signatures, io dtype, recipe)."""
    import os

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its progress lines drown the report
    import litert_torch
    import torch

    from .rewrite import replace_conv_transpose

    module, n_rewritten = replace_conv_transpose(module)  # litert-torch cannot lower ConvTranspose2d
    # NHWC at the model's edges (what TFLite runtimes and camera frames use); the
    # transposes fold into the graph.
    wrapper = litert_torch.to_channel_last_io(module, args=[0], outputs=[0]).eval()
    conv = None
    for shape in tile_sizes:
        x = torch.zeros(1, *shape, in_channels)
        conv = (
            litert_torch.signature(signature_name(shape), wrapper, (x,))
            if conv is None
            else conv.signature(signature_name(shape), wrapper, (x,))
        )
    try:
        edge = conv.convert()
    except Exception as exc:
        raise ConversionError(f"litert-torch conversion failed for this model: {exc}") from exc
    float_path = path if precision == "fp32" else path.with_name(path.name + ".float.tflite")
    edge.export(str(float_path))
    extra: dict[str, Any] = {
        "signatures": {
            signature_name(t): {"input": INPUT_NAME, "output": OUTPUT_NAME, "input_shape": [1, *t, in_channels]}
            for t in tile_sizes
        },
        "io_dtype": "float32",
    }
    if n_rewritten:
        extra["rewrites"] = f"{n_rewritten} ConvTranspose2d as zero-stuffing (PixelShuffle) + Conv2d (exact)"
    try:
        if precision != "fp32":
            _names_per_signature(float_path)
        if precision == "fp16":
            _quantize(float_path, path, _fp16_recipe(), None)
            extra["fp16"] = "weights stored as float16, float32 compute and I/O (ai-edge-quantizer FLOAT_CASTING)"
        elif precision == "int8":
            if not calibration:
                raise ConversionError("int8 TFLite needs calibration tiles (none were made)")
            data = {
                signature_name(shape): [{INPUT_NAME: t[None].transpose(0, 2, 3, 1).copy()} for t in tiles]
                for shape, tiles in calibration.items()
            }
            ends = _float_convs(float_path)
            _quantize(float_path, path, _int8_recipe(ends), data)
            extra["int8"] = (
                "ai-edge-quantizer static int8: int8 per-channel weights, int8 activations "
                "(MinMax calibration on real tiles, per signature), float32 inputs/outputs; "
                f"{', '.join(INT8_FLOAT_OPS)} kept in float (anchor and output at full precision)"
                + (
                    "; the convolutions that read the image, the one after them and the last kept in float "
                    "(the raw image in, its first features, the residual out)"
                    if ends
                    else ""
                )
            )
    finally:
        if float_path != path and float_path.exists():
            float_path.unlink()
    return extra


def _fp16_recipe() -> list[dict[str, Any]]:
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rm = recipe_manager.RecipeManager()
    rm.add_quantization_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        ),
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    return rm.get_quantization_recipe()


#: ops left in float in int8 models: element-wise add, concat and the layout ops (depth-to-space
#: is lowered to transposes/reshapes). Convolutions, the compute, stay int8. Why: with them in
#: int8 the anchor (the input copy the student adds back) and the output are 8-bit, 1/256 of the
#: range per step, which bands dark background; measured on the default student's held-out
#: images: SSIM 0.801 -> 0.811 (bicubic 0.806), PSNR gain +0.86 -> +1.00 dB, same speed (they
#: move data, they do not multiply).
INT8_FLOAT_OPS = ("ADD", "CONCATENATION", "TRANSPOSE", "RESHAPE")

#: Some convolutions also stay in float: those that read the image (the first, and a bicubic
#: anchor's beside it), the one after them, and the last. The first reads the image itself: an
#: int8 input keeps 8 bits of a 12- or 16-bit camera's range. The one after it reads the first
#: features, which still span the image's whole dynamic range: bright spots beside a dim
#: background (HybISS RNA dots) leave the fine detail too few of 256 levels. The last makes the
#: residual that is added to the anchor: 8 bits of its range band smooth gradients. Measured on
#: the bundled default (fourth version, 6 held-out sources x 6 planes x 7 degradations, int8
#: minus fp32): first and last in float mean -0.029 dB, worst -0.117 (HybISS, SNR 20); plus the
#: one after the first -0.022 / -0.064; plus the second-to-last instead -0.024 / -0.114; more
#: calibration tiles or a different brightening peak moved the worst by < 0.01 or traded it for the
#: mean. (An older default, all convolutions int8: -0.096 / -0.174.) The float ones are a small
#: share of the work: the first has one input channel, the second is one of six hidden layers.
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


#: TFLite builtin operator codes of the convolutions (schema BuiltinOperator)
_CONV_CODES = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D"}


def _names_per_signature(float_path: Path) -> None:
    """Prefix every tensor name with its signature's key (``lr64/...``), in place.

    litert-torch names each signature's tensors after the same layers with a suffix that differs
    between signatures, so a name in one signature can be another tensor in the next (an
    activation here, a weight there). The quantiser keys calibration ranges and its per-tensor
    rules by name alone: its ranges then mixed across signatures (adding one 64x64 window moved
    the bundled int8 file's worst held-out image from 0.061 to 0.096 dB below fp32) and a rule
    for one signature's tensor missed or hit another's. Unique names make each signature's int8
    ranges its own calibration's, whatever other windows the file holds."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(float_path)
    keys = {int(sd.subgraphIndex): sd.signatureKey for sd in model.signatureDefs or []}
    for i, sg in enumerate(model.subgraphs):
        key = keys.get(i)
        if key is None:
            continue
        key = key.encode() if isinstance(key, str) else key
        for t in sg.tensors:
            t.name = key + b"/" + (t.name or b"")
    fb.write_model(model, float_path)


def _float_convs(float_path: Path) -> list[tuple[str, str]]:
    """(output tensor name, op name) of the float model's convolutions that stay in float, in
    every signature: those that read the image (the first, and a bicubic anchor's beside it), the
    first one after them when at least one other is left for int8, and the last (the residual);
    or [] when the model cannot be read (all convolutions then go int8, with a warning)."""
    try:
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

        model = fb.read_model(float_path)
        out: list[tuple[str, str]] = []
        for sg in model.subgraphs:
            convs = []
            # the image and what layout ops make of it before any convolution (a space-to-depth
            # student's cells): the tensors that still hold the camera's pixels
            image = {int(i) for i in sg.inputs}
            for op in sg.operators:  # in execution order
                oc = model.operatorCodes[op.opcodeIndex]
                code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
                if code not in _CONV_CODES and any(int(i) in image for i in op.inputs):
                    image.update(int(o) for o in op.outputs)
                if code in _CONV_CODES and len(op.outputs) and len(op.inputs):
                    name = sg.tensors[op.outputs[0]].name
                    convs.append(
                        (name.decode() if isinstance(name, bytes) else name, _CONV_CODES[code], int(op.inputs[0]))
                    )
            out += float_convolutions(convs, image)
        return out
    except Exception as exc:  # an unreadable model: a less exact, working int8 file
        log.warning("cannot list the model's convolutions (%s): all of them go int8", exc)
        return []


def _int8_recipe(float_convs: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    from ai_edge_quantizer import qtyping, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rm = recipe_manager.RecipeManager()
    rm.load_quantization_recipe(recipe.static_wi8_ai8())
    # float32 model inputs/outputs (the quantise/dequantise happens inside the graph), and a
    # float anchor/output path
    ops = [qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT]
    ops += [getattr(qtyping.TFLOperationName, name) for name in INT8_FLOAT_OPS]
    for op in ops:
        rm.add_quantization_config(regex=".*", operation_name=op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    for name, op_name in float_convs or []:
        rm.add_quantization_config(
            # matched (re.search) against the op's scope: its output tensor names, each ending in ";"
            regex=f"^{re.escape(name)};",
            operation_name=getattr(qtyping.TFLOperationName, op_name),
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
    return rm.get_quantization_recipe()


def _quantize(
    src: Path, dst: Path, rec: list[dict[str, Any]], calibration: dict[str, list[dict[str, np.ndarray]]] | None
) -> None:
    from ai_edge_quantizer import quantizer

    q = quantizer.Quantizer(str(src), rec)
    try:
        result = _calibrate_min_max(src, q, calibration) if q.need_calibration else None
        out = q.quantize(result, enable_progress_report=False)
    except Exception as exc:
        raise ConversionError(f"ai-edge-quantizer failed: {exc}") from exc
    dst.write_bytes(bytes(out.quantized_model))


def _calibrate_min_max(src: Path, q: Any, calibration: dict[str, list[dict[str, np.ndarray]]] | None) -> Any:
    """Activation ranges = true min/max over all calibration tiles.

    Quantizer.calibrate() merges samples with a 0.95 moving average, so the first tile
    decides the ranges and brighter later tiles barely widen them (measured: bright nuclei
    clipped, max error ~1.0 on normalised outputs). The Calibrator takes a min/max merge.
    """
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    if not calibration:
        raise ConversionError("int8 TFLite needs calibration tiles (none were made)")
    try:
        calib = calibrator.Calibrator(src.read_bytes(), num_threads=2, qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate(calibration, q._recipe_manager)  # the recipe the quantiser will apply
        return calib.get_model_qsvs()
    except (AttributeError, TypeError) as exc:  # a future ai-edge-quantizer changed these internals
        log.warning("min/max calibration unavailable (%s); using the quantiser's moving average", exc)
        return q.calibrate(calibration)


def make_runners(path: Path) -> dict[tuple[int, int], Callable[[np.ndarray], np.ndarray]]:
    """One function NCHW -> NCHW per signature, by tile shape (H, W), run in ai-edge-litert."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=2)
    runners: dict[tuple[int, int], Callable[[np.ndarray], np.ndarray]] = {}
    for sig in interp.get_signature_list():
        shape = parse_signature(sig)
        if shape is None:
            continue
        runner = interp.get_signature_runner(sig)
        in_name = next(iter(runner.get_input_details()))
        out_name = next(iter(runner.get_output_details()))

        def run(x: np.ndarray, runner=runner, in_name=in_name, out_name=out_name) -> np.ndarray:
            y = runner(**{in_name: np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)})[out_name]
            return np.asarray(y).transpose(0, 3, 1, 2)

        runners[shape] = run
    return runners
