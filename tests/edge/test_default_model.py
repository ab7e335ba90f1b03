"""The bundled default model, run torch-free through scopesr.sdk on a HELD-OUT real image.

The stardist nuclei image is a source the model never saw in training (its card lists the
held-out sources). Every LR image here is made by ``scopesr.sdk.quality`` - the same
degradation rows and scoring convention as the cards, sr-bench and the release step - so
the thresholds below are floors under the numbers the cards record, with a margin for
runtime and CPU differences.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import scopesr.sdk as sdk
from scopesr.sdk import ModelCard, ScopesrError, card_path_for, quality

pytestmark = pytest.mark.edge

FORMATS = {
    "onnx": "onnxruntime",
    "tflite": "ai_edge_litert",
    "tflite-int8": "ai_edge_litert",
    "onnx-int8": "onnxruntime",
}
HELDOUT = "sample:stardist-nuclei-2d"
# Regression floors of the gain over bicubic (dB) on the held-out stardist image, per row, set
# when the fifth default was released (about 0.15 dB under what it measured: bicubic +0.04,
# binning +0.11, noise-snr20 +0.46, noise-snr8 +3.09, cubic-noaa +0.30, psf +0.40). The eighth
# measures +0.25, +0.23, +0.66, +3.42, +0.51 and psf +0.20: since the oversampled references
# (seventh and eighth defaults) it deblurs less on purpose, so the PSF floor is 0.15 (the
# issue's PSF target is >= 0). These floors stop the model from getting worse.
FLOOR_DB = {"bicubic": -0.15, "binning": -0.1, "noise-snr20": 0.25, "noise-snr8": 2.8, "cubic-noaa": 0.05, "psf": 0.15}
# int8 vs fp32 on the same LR image: the target (the release measured at most 0.09 dB over the
# held-out images x degradations, with the first and last convolutions in float)
INT8_MAX_DROP_DB = 0.1


@pytest.fixture(scope="module")
def stardist(real_image):
    tifffile = pytest.importorskip("tifffile")
    return quality.EvalImage(HELDOUT, HELDOUT, tifffile.imread(real_image("stardist-nuclei-2d")))


@pytest.fixture(scope="module")
def lr_images(stardist):
    """(LR, target) per degradation row, with seeded noise."""
    out = {}
    for name in FLOOR_DB:
        deg = quality.degradation_from_name(name)
        out[name] = deg.apply(stardist.data, np.random.default_rng([0, 0, 0]))
    return out


def test_bundled_samples_are_degradations_of_a_heldout_image(stardist):
    tifffile = pytest.importorskip("tifffile")
    data = sdk.upscaler.MODELS_DIR.parent / "data"
    clean = tifffile.imread(data / "sample_nuclei.tif")
    expect, _ = quality.degradation_from_name("bicubic").apply(stardist.data, np.random.default_rng([0, 0]))
    assert clean.dtype == np.uint16 and np.array_equal(clean, expect)
    noisy = tifffile.imread(data / "sample_nuclei_noisy.tif")
    expect, _ = quality.degradation_from_name("noise-snr8").apply(stardist.data, np.random.default_rng([0, 0]))
    assert np.array_equal(noisy, expect)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_card_says_what_it_was_trained_on_and_scored_on(fmt):
    pytest.importorskip(FORMATS[fmt])
    card = ModelCard.load(sdk.default_model_path(fmt))
    assert card.scale == 4 and card.in_channels == 1 and card.normalisation.mode == "percentile"
    assert card.degradation == "microscopy"
    held = card.metrics["heldout"]
    assert HELDOUT in held["sources"]
    assert set(quality.EVAL_DEGRADATIONS) <= set(held["summary"])
    trained = [p["source"] for p in card.training["data"]["provenance"]]
    assert not set(trained) & set(held["sources"]), "held-out sources must never be training data"
    assert all(p.get("licence") for p in card.training["data"]["provenance"])
    # TFLite: the live sizes (64x64 ROI, 160x120 and 320x240 frames) as they are (the live path's
    # halo 0) and plus the mirrored halo on each side (the border rule), so each runs in one call;
    # then 128 and 256 squares
    if fmt.startswith("onnx"):
        assert card.tile_sizes is None
    else:
        h2 = 2 * card.halo
        live = [(64, 64), (120, 160), (240, 320)]
        want = set(live) | {(h + h2, w + h2) for h, w in live} | {(128, 128), (256, 256)}
        assert {(t, t) if isinstance(t, int) else tuple(t) for t in card.tile_sizes} == want


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_beats_bicubic_on_heldout_per_degradation(fmt, lr_images):
    pytest.importorskip(FORMATS[fmt])
    up = sdk.load(sdk.default_model_path(fmt))  # validates the card and verifies the sha256
    for name, (lr, target) in lr_images.items():
        out = up.upscale(lr)
        assert out.shape == target.shape and out.dtype == lr.dtype
        bic = np.clip(np.rint(quality.upscale_bicubic(lr, 4)), 0, 65535).astype(lr.dtype)
        gain = quality.psnr(target, out, border=8) - quality.psnr(target, bic, border=8)
        assert gain > FLOOR_DB[name], f"{fmt} on {name}: {gain:+.3f} dB over bicubic, floor {FLOOR_DB[name]:+.2f}"


def test_model_passes_less_noise_than_bicubic(stardist):
    """On a noisy frame the model must not sharpen shot noise into speckle: the part of its
    output that the noise changes (noisy LR vs the same LR noise-free) has no more RMS than
    bicubic's."""
    pytest.importorskip("onnxruntime")
    up = sdk.load(sdk.default_model_path("onnx"))
    clean_lr, _ = quality.degradation_from_name("bicubic").apply(stardist.data)
    noisy_lr, _ = quality.degradation_from_name("noise-snr8").apply(stardist.data, np.random.default_rng(1))

    def rms(f) -> float:
        d = f(noisy_lr).astype(np.float64) - f(clean_lr).astype(np.float64)
        return float(np.sqrt(np.mean(d[8:-8, 8:-8] ** 2)))

    model_rms = rms(up.upscale)
    bicubic_rms = rms(lambda lr: quality.upscale_bicubic(lr, 4))
    assert model_rms <= bicubic_rms, (model_rms, bicubic_rms)


@pytest.mark.parametrize("fp32,int8", [("tflite", "tflite-int8"), ("onnx", "onnx-int8")])
def test_int8_stays_within_a_tenth_of_a_db_of_fp32(lr_images, fp32, int8):
    pytest.importorskip(FORMATS[int8])
    fp = sdk.load(sdk.default_model_path(fp32))
    i8 = sdk.load(sdk.default_model_path(int8))
    for name, (lr, target) in lr_images.items():
        drop = quality.psnr(target, fp.upscale(lr), border=8) - quality.psnr(target, i8.upscale(lr), border=8)
        assert drop <= INT8_MAX_DROP_DB, f"{int8} loses {drop:.3f} dB to {fp32} on {name}"


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
def test_camera_frame_equals_onnx_borders_included(fmt, real_image):
    """A 160x120 camera frame (H=120, W=160): fp32 TFLite equals whole-frame ONNX to integer
    rounding, borders included (both see the frame reflect-padded by the halo); int8 stays
    close. With that padding the frame runs in one call in the 138x178 window; whichever
    windows a file holds, the tiler takes the cheapest plan of them."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    tifffile = pytest.importorskip("tifffile")
    from scopesr.sdk import make_plan

    frame = tifffile.imread(real_image("napari-timelapse"))[26][100:220, 100:260]  # a held-out source
    assert frame.shape == (120, 160)
    up = sdk.load(sdk.default_model_path(fmt))
    plan = make_plan(up.backend, 120, 160, None, up.card.halo)
    assert plan.fixed and plan.tile in up.backend.tile_shapes
    got = up.upscale(frame).astype(np.float64)
    ref = sdk.load(sdk.default_model_path("onnx")).upscale(frame).astype(np.float64)
    assert got.shape == ref.shape == (480, 640)
    if fmt == "tflite":
        assert np.abs(got - ref).max() <= 1  # same fp32 weights: integer rounding at most
    else:
        rng = float(ref.max() - ref.min())
        assert np.abs(got - ref).mean() < 0.01 * rng
