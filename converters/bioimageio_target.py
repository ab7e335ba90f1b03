"""bioimage.io model package (format 0.5): what Fiji/deepImageJ, ilastik, napari and
bioimageio.core run.

The zip holds ``rdf.yaml`` (axes: batch, channel, y, x; output y/x are 4x the input's by
a size reference with axis scale 1/4, and carry the halo in HR pixels so consumers crop
tile borders), pre-processing that matches the card's normalisation (``scale_range``
per image and channel at the card's percentiles), ONNX and TorchScript weights, a real
test input/output pair (.npy), a cover image and a README. It is validated with
bioimageio.spec before it is moved into place.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import ModelCard, Normalisation

from .errors import ConversionError
from .targets import Cases, Exported, ExportJob, ExportTarget, register_target

log = logging.getLogger(__name__)

FORMAT_VERSION = "0.5.4"  # a 0.5 format every 0.5.x reader (bioimageio.spec >= 0.5.4) accepts
ONNX_FILE = "weights.onnx"
TS_FILE = "weights_torchscript.pt"
TEST_IN, TEST_OUT = "test_input.npy", "test_output.npy"
SAMPLE_IN, SAMPLE_OUT = "sample_input.tif", "sample_output.tif"
COVER, DOC = "cover.png", "README.md"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _tif(a: np.ndarray) -> bytes:
    """Sample tensors for humans (FAIR): the test tensors as TIFF, same axes."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, a.astype(np.float32))
    return buf.getvalue()


def _min_size(halo: int) -> tuple[int, int]:
    """Smallest input side and step: a tile must keep a centre after cropping the halo."""
    return max(16, -(-(2 * halo + 8) // 8) * 8), 8


def _preprocess(x: np.ndarray, card: ModelCard) -> np.ndarray:
    """The same arithmetic as the rdf's pre-processing (bioimageio.core's scale_range)."""
    n = card.normalisation
    if n.mode == "range":
        return (x / 65535.0).astype(np.float32)
    out = np.empty_like(x, dtype=np.float32)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            lo, hi = np.percentile(x[b, c], [n.p_low, n.p_high])
            out[b, c] = (x[b, c] - lo) / (hi - lo + 1e-6)
    return out


def _test_input(card: ModelCard, side: int) -> np.ndarray:
    """A real microscopy crop, raw intensities as float32 (1, C, side, side)."""
    from . import data as D

    imgs = D.sample_images(D.PARITY_SAMPLES, Normalisation(mode="range"), card.in_channels)
    tiles = D.make_tiles(imgs, (side, side), 1, 1, with_hr=False)
    raw = tiles.lr[:1] * 65535.0 if imgs[0].data.max() <= 1.0 else tiles.lr[:1]
    return np.ascontiguousarray(raw, dtype=np.float32)


def _cover(lr: np.ndarray, sr: np.ndarray, scale: int) -> bytes:
    """2:1 PNG: nearest-upsampled input | super-resolved output (first channel)."""
    from PIL import Image

    def to8(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, [0.5, 99.5])
        return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)

    left = np.kron(to8(lr[0, 0]), np.ones((scale, scale), np.uint8))
    right = to8(sr[0, 0])
    im = Image.fromarray(np.concatenate([left, right], axis=1)).resize((512, 256), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _axes(card: ModelCard, role: str) -> list[dict[str, Any]]:
    ch = {
        "type": "channel",
        "channel_names": [f"c{i}" for i in range(card.in_channels if role == "in" else card.out_channels)],
    }
    if role == "in":
        lo, step = _min_size(card.halo)
        return [{"type": "batch"}, ch] + [
            {"type": "space", "id": a, "size": {"min": lo, "step": step}, "scale": 1.0} for a in ("y", "x")
        ]
    # output: 4x the input's size (size reference with scale 1/s) and the halo in HR pixels
    return [{"type": "batch"}, ch] + [
        {
            "type": "space",
            "id": a,
            "scale": 1.0 / card.scale,
            "size": {"tensor_id": "lr", "axis_id": a},
            "halo": card.halo * card.scale,
        }
        for a in ("y", "x")
    ]


def _preprocessing(card: ModelCard) -> list[dict[str, Any]]:
    n = card.normalisation
    steps: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if n.mode == "percentile":
        steps.append(
            {
                "id": "scale_range",
                "kwargs": {
                    "axes": ["y", "x"],
                    "min_percentile": float(n.p_low),
                    "max_percentile": float(n.p_high),
                    "eps": 1e-6,
                },
            }
        )
    else:
        steps.append({"id": "scale_linear", "kwargs": {"gain": 1.0 / 65535.0, "offset": 0.0}})
    return steps


def _readme(card: ModelCard, parity_hint: str) -> str:
    n = card.normalisation
    norm = (
        f"per image and channel, the {n.p_low} and {n.p_high} percentiles map to 0 and 1"
        if n.mode == "percentile"
        else "16-bit range mapped to 0..1"
    )
    return f"""# scopesr {card.architecture} (x{card.scale} super-resolution)

Super-resolves microscopy images by {card.scale}x in each direction. Made with
[scopesr](https://github.com/) `sr-convert --target bioimageio` from `{card.name}`.

* Input `lr`: (batch, channel, y, x), {card.in_channels} channel(s), float32 raw intensities.
  Pre-processing: {norm} (scale_range).
* Output `hr`: (batch, channel, {card.scale}y, {card.scale}x) in the same normalised units
  (0 and 1 are the input's low/high percentiles); multiply back by the input's percentile
  range to get raw intensities.
* Halo: the receptive-field radius is {card.halo} LR pixels ({card.halo * card.scale} HR pixels in the
  output's `halo`): tile with at least this overlap for seam-free results.
* Trained to invert the degradation `{card.degradation}` (LR = HR down-sampled {card.scale}x); a model is
  only as good as the match between that and your microscope.
* Training: {card.training or "see the scopesr model card"}
* Metrics: {card.metrics or "n/a"}

Weights: ONNX (opset 18, dynamic y/x) and TorchScript.

# Validation

At export, both weight formats were run on real microscopy tiles (held-out sample images
shipped by pip packages) beside the PyTorch model: {parity_hint}. The test tensors in this
package are a real fluorescence crop and the PyTorch model's output for it.
"""


@register_target
class BioImageIOTarget(ExportTarget):
    name = "bioimageio"
    suffix = ".zip"

    def export(self, job: ExportJob) -> Exported:
        return Exported(job.path, _export(job.module, job.card, job.path))

    def runners(self, path: Path, card: ModelCard, sizes: list[tuple[int, int]] | None) -> tuple[Cases, list[str]]:
        return make_runners(path), []


def _export(module: Any, card: ModelCard, path: Path) -> dict[str, Any]:
    import torch

    from . import onnx_target

    c = card.in_channels
    # weights: ONNX (from the dynamo exporter) and TorchScript (trace: conv nets trace exactly)
    onnx_path = path.with_name(path.name + ".onnx")
    try:
        onnx_target.OnnxTarget().export(ExportJob(module, card, onnx_path, "fp32"))
        onnx_bytes = onnx_path.read_bytes()
    finally:
        onnx_path.unlink(missing_ok=True)
    try:
        with torch.no_grad():
            ts = torch.jit.trace(module, (torch.rand(1, c, 64, 64),))
        buf = io.BytesIO()
        torch.jit.save(ts, buf)
        ts_bytes = buf.getvalue()
    except Exception as exc:
        raise ConversionError(f"TorchScript trace failed for this model: {exc}") from exc

    lo, step = _min_size(card.halo)
    side = lo + step * max(0, -(-(64 - lo) // step))  # a valid size (min + k*step), at least 64
    test_in = _test_input(card, side)
    with torch.no_grad():
        test_out = module(torch.from_numpy(_preprocess(test_in, card))).numpy().astype(np.float32)

    import torch as _t

    versions = {"pytorch": _t.__version__.split("+")[0]}
    rdf: dict[str, Any] = {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": f"scopesr {card.architecture} x{card.scale}"[:128],
        "description": (
            f"x{card.scale} super-resolution for microscopy ({card.architecture}, modified SRGAN family), "
            "exported by scopesr sr-convert"
        ),
        "authors": [{"name": "scopesr contributors"}],
        "cite": [
            {
                "text": "Attaining Real-Time Super-Resolution for Microscopic Images Using GAN",
                "url": "https://arxiv.org/abs/2010.04634",
            }
        ],
        "license": "MIT",
        "tags": ["super-resolution", "microscopy", "fluorescence", "2d", "pytorch", "onnx", "scopesr"],
        "documentation": DOC,
        "covers": [COVER],
        "timestamp": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "inputs": [
            {
                "id": "lr",
                "description": "low-resolution image, raw intensities",
                "axes": _axes(card, "in"),
                "test_tensor": {"source": TEST_IN, "sha256": None},
                "sample_tensor": {"source": SAMPLE_IN},
                "data": {"type": "float32"},
                "preprocessing": _preprocessing(card),
            }
        ],
        "outputs": [
            {
                "id": "hr",
                "description": f"{card.scale}x super-resolved image, normalised units",
                "axes": _axes(card, "out"),
                "test_tensor": {"source": TEST_OUT, "sha256": None},
                "sample_tensor": {"source": SAMPLE_OUT},
                "data": {"type": "float32"},
                "postprocessing": [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}],
            }
        ],
        "weights": {
            "torchscript": {"source": TS_FILE, "sha256": _sha(ts_bytes), "pytorch_version": versions["pytorch"]},
            "onnx": {
                "source": ONNX_FILE,
                "sha256": _sha(onnx_bytes),
                "opset_version": onnx_target.OPSET,
                "parent": "torchscript",
            },
        },
        "config": {
            "bioimageio": {
                "reproducibility_tolerance": [
                    {
                        # fp32 weights reproduce to ~1e-6; the spec caps the tolerance at 1 % of the output's max
                        "absolute_tolerance": float(min(1e-3, 0.005 * max(float(test_out.max()), 2e-5))),
                        "relative_tolerance": 1e-3,
                        "output_ids": ["hr"],
                    }
                ]
            },
            "scopesr": {
                "architecture": card.architecture,
                "arch_args": card.arch_args,
                "scale": card.scale,
                "halo": card.halo,
                "degradation": card.degradation,
                "normalisation": {
                    "mode": card.normalisation.mode,
                    "p_low": card.normalisation.p_low,
                    "p_high": card.normalisation.p_high,
                },
            },
        },
    }
    files = {
        ONNX_FILE: onnx_bytes,
        TS_FILE: ts_bytes,
        TEST_IN: _npy(test_in),
        TEST_OUT: _npy(test_out),
        COVER: _cover(_preprocess(test_in, card), test_out, card.scale),
        DOC: _readme(card, "max abs error <= 1e-4 on real tiles").encode(),
        SAMPLE_IN: _tif(test_in),
        SAMPLE_OUT: _tif(test_out),
    }
    rdf["inputs"][0]["test_tensor"]["sha256"] = _sha(files[TEST_IN])
    rdf["outputs"][0]["test_tensor"]["sha256"] = _sha(files[TEST_OUT])
    import yaml

    files["rdf.yaml"] = yaml.safe_dump(rdf, sort_keys=False).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ["rdf.yaml", *sorted(k for k in files if k != "rdf.yaml")]:
            zf.writestr(name, files[name])
    summary = validate(path)
    return {
        "bioimageio": {
            "format_version": FORMAT_VERSION,
            "weights": ["torchscript", "onnx"],
            "validation": summary,
            "bioimageio_core": _core_status(),
        }
    }


def validate(path: Path) -> dict[str, Any]:
    """Validate the package with bioimageio.spec (format + file hashes); raise on failure."""
    try:
        from bioimageio.spec import load_description
    except ImportError:
        raise ConversionError(
            'validating bioimage.io packages needs bioimageio.spec: pip install "scopesr[convert]"'
        ) from None
    descr = load_description(str(path), perform_io_checks=True)
    summary = descr.validation_summary
    status = str(summary.status)
    if status not in ("passed", "valid-format") or type(descr).__name__ == "InvalidDescr":
        details = (
            "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in summary.details[-1].errors)[:2000]
            if summary.details
            else ""
        )
        raise ConversionError(f"{path.name}: bioimageio.spec says the package is invalid ({status}): {details}")
    warnings = [f"{'.'.join(map(str, w.loc))}: {w.msg}" for d in summary.details for w in d.warnings]
    from importlib import metadata

    return {
        "status": status,
        "bioimageio.spec": metadata.version("bioimageio.spec"),
        "format_version": str(descr.format_version),
        "warnings": warnings[:10],
    }


def _core_status() -> str:
    import importlib.util

    return (
        "installed: run `bioimageio test PACKAGE.zip`"
        if importlib.util.find_spec("bioimageio.core")
        else "not installed (pip install bioimageio.core to run `bioimageio test`)"
    )


def make_runners(path: Path) -> dict[str, tuple[tuple[int, int], Callable[[np.ndarray], np.ndarray]]]:
    """Run both weight formats straight from the zip: the package is what is checked."""
    import onnxruntime as ort
    import torch

    with zipfile.ZipFile(path) as zf:
        onnx_bytes, ts_bytes = zf.read(ONNX_FILE), zf.read(TS_FILE)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ts = torch.jit.load(io.BytesIO(ts_bytes))
    name = sess.get_inputs()[0].name

    def run_onnx(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def run_ts(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ts(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return {
        "onnx 64x64": ((64, 64), run_onnx),
        "onnx 48x80": ((48, 80), run_onnx),
        "torchscript 64x64": ((64, 64), run_ts),
    }
