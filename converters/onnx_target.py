"""ONNX: one self-contained file, dynamic H and W, fp32 / fp16 / int8 (QDQ).

torch.onnx's dynamo exporter is used (the TorchScript one is deprecated and some
downstream converters mis-size its nearest upsampling). fp16 keeps float32
inputs and outputs (Cast nodes at the edges) so every caller feeds the same tensors;
int8 is onnxruntime static QDQ quantisation calibrated on real image tiles, with the same
convolutions in float as the TFLite int8 file (``int8_rule``) and each ReLU folded into the int8
range of the convolution before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import ModelCard

from .errors import ConversionError
from .int8_rule import float_convolutions
from .targets import Cases, Exported, ExportJob, ExportTarget, dynamic_cases, register_target

log = logging.getLogger(__name__)

OPSET = 18  # >= 17 as required; 18 is what the dynamo exporter emits natively
INPUT_NAME = "lr"
OUTPUT_NAME = "hr"


@register_target
class OnnxTarget(ExportTarget):
    name = "onnx"
    suffix = ".onnx"
    precisions = ("fp32", "fp16", "int8")
    default_precision = "fp32"

    def export(self, job: ExportJob) -> Exported:
        calibration = (job.calibration or {}).get(self.calibration_shapes(None)[0])
        return Exported(job.path, _export(job.module, job.in_channels, job.path, job.precision, calibration))

    def runners(self, path: Path, card: ModelCard, sizes: list[tuple[int, int]] | None) -> tuple[Cases, list[str]]:
        return dynamic_cases(make_runner(path)), []


def _export(
    module: Any, in_channels: int, path: Path, precision: str, calibration: list[np.ndarray] | None = None
) -> dict[str, Any]:
    """Write the ONNX artifact to ``path``; return card extras."""
    import onnx
    import torch
    from torch.export import Dim

    # batch 2 in the example: a size-1 example would freeze the batch dimension at 1
    x = torch.rand(2, in_channels, 64, 64)
    dyn = ({0: Dim("N", min=1, max=1024), 2: Dim("H", min=4, max=8192), 3: Dim("W", min=4, max=8192)},)
    fp32_path = path if precision == "fp32" else path.with_name(path.name + ".fp32.onnx")
    try:
        prog = torch.onnx.export(
            module,
            (x,),
            dynamo=True,
            dynamic_shapes=dyn,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            external_data=False,
            verbose=False,
        )
        prog.save(str(fp32_path), external_data=False)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"torch.onnx.export failed for this model: {exc}") from exc
    extra: dict[str, Any] = {
        "opset": OPSET,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "dynamic_axes": ["N", "H", "W"],
        "io_dtype": "float32",
    }
    try:
        if precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            m16 = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
            _toposort(m16.graph)  # the converter appends its input Casts at the end
            onnx.save(m16, str(path))
            extra["fp16"] = "weights and compute fp16, float32 inputs/outputs (Cast at the edges)"
        elif precision == "int8":
            kept = _quantize_int8(fp32_path, path, calibration or [])
            extra["int8"] = (
                "onnxruntime static QDQ: per-channel int8 weights, uint8 activations, MinMax calibration on real "
                "tiles; ReLU folded into the int8 convolutions' output ranges"
                + (
                    "; the convolutions that read the image, the one after them and the last kept in float "
                    f"(the raw image in, its first features, the residual out): {', '.join(kept)}"
                    if kept
                    else ""
                )
            )
        onnx.checker.check_model(str(path))
    finally:
        if fp32_path != path and fp32_path.exists():
            fp32_path.unlink()
    return extra


def _toposort(graph: Any) -> None:
    """Reorder graph.node so that every node comes after its producers (ONNX requires it)."""
    nodes = list(graph.node)
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered = []
    while nodes:
        rest = [n for n in nodes if not all(i in ready for i in n.input)]
        done = [n for n in nodes if all(i in ready for i in n.input)]
        if not done:
            raise ConversionError("fp16 ONNX graph has a cycle or a dangling input")
        for n in done:
            ready.update(n.output)
        ordered.extend(done)
        nodes = rest
    del graph.node[:]
    graph.node.extend(ordered)


def float_conv_nodes(model: Any) -> list[str]:
    """Names of the Conv nodes of an ONNX model (graph order = execution order) that int8 keeps in
    float (``int8_rule``): those reading the image or what layout ops make of it (a space-to-depth
    student's cells), the first one after them and the last."""
    image = {i.name for i in model.graph.input}
    convs: list[tuple[str, str, str]] = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            convs.append((node.name, node.op_type, node.input[0]))
        elif any(i in image for i in node.input):
            image.update(node.output)
    return [name for name, _ in float_convolutions(convs, image)]


def _quantize_int8(src: Path, dst: Path, calibration: list[np.ndarray]) -> list[str]:
    """Write the int8 QDQ model of ``src`` to ``dst``; returns the Conv nodes kept in float."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ConversionError("int8 ONNX needs calibration tiles (none were made)")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            t = next(self._it, None)
            return None if t is None else {INPUT_NAME: t[None] if t.ndim == 3 else t}

    src, dst = src.resolve(), dst.resolve()
    pre = src.with_name(src.name + ".pre.onnx")
    # ONNX Runtime's shape inference leaves scratch files in the working directory when it gives up
    # (sym_shape_infer_temp.onnx and a .data file): run it where they cannot reach the user's folder
    scratch = tempfile.TemporaryDirectory(prefix="scopesr-int8-")
    try:
        with contextlib.chdir(scratch.name):
            # shape inference + folding first: onnxruntime's recommended path for static QDQ
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            except Exception as exc:  # symbolic inference gives up on some layouts (a space-to-depth
                # head's reshapes of dynamic H and W); ONNX's own shape inference is enough for QDQ
                log.info("symbolic shape inference failed (%s); using ONNX shape inference only", exc)
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        kept = float_conv_nodes(onnx.load(str(pre)))
        quantize_static(
            str(pre),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # only convolutions compute in int8; listing ReLU lets the quantiser drop each one after
            # an int8 convolution into that convolution's [0, max] output range. Without it every
            # output was rounded twice, the first time over a signed range (half the levels): the
            # bundled default's file lost 0.15 dB to fp32 on average, up to 0.46
            op_types_to_quantize=["Conv", "Relu"],
            nodes_to_exclude=kept,
            extra_options={"QDQKeepRemovableActivations": False},
        )
    finally:
        scratch.cleanup()
        if pre.exists():
            pre.unlink()
        for f in dst.parent.glob("augmented_model*.onnx"):  # left behind by the calibrator
            try:
                f.unlink()
            except OSError:
                pass
    return kept


def make_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime CPU session as a function NCHW -> NCHW."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = min(4, os.cpu_count() or 1)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run
