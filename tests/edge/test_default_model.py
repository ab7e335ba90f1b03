"""The bundled default model, run torch-free through scopesr.sdk on HELD-OUT real images.

Held out of training (see sdk/models/README.md): the whole stardist img2d acquisition and
frames 24-29 of the napari time-lapse. LR = PIL bicubic x4 rounded to the image dtype (the
card's degradation); PSNR on raw intensities, data_range = max(HR) - min(HR), 8 px HR
border excluded - the recipe's convention, so these numbers match the cards.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from PIL import Image

import scopesr.sdk as sdk
from scopesr.sdk import ModelCard, ScopesrError, card_path_for

pytestmark = pytest.mark.edge

FORMATS = {"onnx": "onnxruntime", "tflite": "ai_edge_litert", "tflite-int8": "ai_edge_litert"}
# gains over bicubic (dB) on (stardist img2d, time-lapse frame 29), measured when the model
# was bundled: onnx/tflite fp32 (+0.35, +2.05), tflite int8 (+0.15, +1.82). Thresholds keep
# a margin for runtime/CPU differences; the cards hold the metrics on the whole held-out split.
MIN_GAIN_DB = {"onnx": (0.25, 1.7), "tflite": (0.25, 1.7), "tflite-int8": (0.08, 1.5)}


def _psnr(ref: np.ndarray, x: np.ndarray) -> float:
    b = 8
    ref = ref.astype(np.float64)[b:-b, b:-b]
    x = x.astype(np.float64)[b:-b, b:-b]
    dr = float(ref.max() - ref.min())
    return 10 * math.log10(dr * dr / float(np.mean((ref - x) ** 2)))


def _pil(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32)).resize(size, Image.Resampling.BICUBIC), dtype=np.float32)


def _to_dtype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(a), info.min, info.max).astype(dtype)


@pytest.fixture(scope="module")
def heldout(real_image):
    """[(name, LR, HR)] for two held-out real fluorescence images."""
    tifffile = pytest.importorskip("tifffile")
    pairs = []
    hr = tifffile.imread(real_image("stardist-nuclei-2d"))
    lr = tifffile.imread(sdk.upscaler.MODELS_DIR.parent / "data" / "sample_nuclei.tif")
    pairs.append(("stardist img2d (bundled sample)", lr, hr))
    stack = tifffile.imread(real_image("napari-timelapse"))
    hr = stack[29][:508, :508]
    lr = _to_dtype(_pil(hr, (127, 127)), hr.dtype)
    pairs.append(("time-lapse frame 29", lr, hr))
    return pairs


def test_bundled_sample_is_the_lr_of_a_heldout_image(heldout):
    name, lr, hr = heldout[0]
    assert lr.shape == (128, 128) and lr.dtype == hr.dtype == np.uint16
    expect = _to_dtype(_pil(hr.astype(np.float32), (128, 128)), hr.dtype)
    assert np.array_equal(lr, expect), "sdk/data/sample_nuclei.tif must be PIL-bicubic x4 of stardist img2d"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_bundled_model_beats_bicubic_on_heldout(fmt, heldout):
    pytest.importorskip(FORMATS[fmt])
    path = sdk.default_model_path(fmt)
    assert path.stat().st_size < 1_000_000, "bundled artifacts stay small"
    up = sdk.load(path)  # validates the card and verifies the sha256
    card = up.card
    assert card.scale == 4 and card.in_channels == 1 and card.normalisation.mode == "percentile"
    assert card.halo >= 1
    # squares for images plus the Pi camera frames 160x120 and 320x240 (as [H, W]) in one call each
    assert card.tile_sizes == (None if fmt == "onnx" else [64, [120, 160], 128, [240, 320], 256])
    assert card.precision == ("int8" if fmt == "tflite-int8" else "fp32")
    assert card.metrics["heldout"]["gain_db_vs_bicubic"] > 0, "the card records the measured held-out gain"
    gains = []
    for name, lr, hr in heldout:
        out = up.upscale(lr)
        assert out.shape == hr.shape and out.dtype == hr.dtype, name
        bic = _to_dtype(_pil(lr.astype(np.float32), hr.shape[::-1]), hr.dtype)
        gains.append(_psnr(hr, out) - _psnr(hr, bic))
    for (name, _, _), gain, floor in zip(heldout, gains, MIN_GAIN_DB[fmt]):
        assert gain > floor, f"{fmt} on {name}: {gain:+.3f} dB over bicubic, expected > {floor}"


def test_default_load_picks_an_installed_runtime():
    up = sdk.load("default")
    assert up.card.architecture.startswith("student")
    out = up.upscale(np.full((20, 24), 100, dtype=np.uint8))
    assert out.shape == (80, 96)


def test_tampered_default_is_refused(tmp_path):
    src = sdk.default_model_path("onnx")
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(card_path_for(src), card_path_for(dst))
    data = bytearray(dst.read_bytes())
    data[-10] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(ScopesrError, match="sha256"):
        ModelCard.load(dst)


@pytest.mark.parametrize("fmt", ["tflite", "tflite-int8"])
def test_camera_frame_runs_whole_in_its_signature(fmt, real_image):
    """A 160x120 camera frame (H=120, W=160) takes the lr120x160 signature in one call, and
    fp32 equals whole-frame ONNX exactly (no tiles, no padding); int8 stays close."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    tifffile = pytest.importorskip("tifffile")
    from scopesr.sdk import make_plan

    frame = tifffile.imread(real_image("napari-timelapse"))[26][100:220, 100:260]  # held-out frame
    assert frame.shape == (120, 160)
    up = sdk.load(sdk.default_model_path(fmt))
    plan = make_plan(up.backend, 120, 160, None, up.card.halo)
    assert plan.n_tiles == 1 and plan.tile == (120, 160) and plan.label == "1 x 120x160"
    got = up.upscale(frame).astype(np.float64)
    ref = sdk.load(sdk.default_model_path("onnx")).upscale(frame).astype(np.float64)
    assert got.shape == ref.shape == (480, 640)
    if fmt == "tflite":
        assert np.abs(got - ref).max() <= 1  # same fp32 weights: integer rounding at most
    else:
        rng = float(ref.max() - ref.min())
        assert np.abs(got - ref).mean() < 0.01 * rng
