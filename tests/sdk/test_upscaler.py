"""Upscaler: axes, dtypes, channels, stacks, normalisation, stream, describe, load('default')."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk import Normalisation, normalize

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def up():
    return sr.load(FIX / "tiny_x4.onnx")


@pytest.fixture(scope="module")
def rgb_up():
    return sr.load(FIX / "tiny_x4_rgb.onnx")


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0)])
def test_output_keeps_dtype_and_range(up, dtype, top):
    img = (rng().random((30, 20)) * top).astype(dtype)
    out = up.upscale(img)
    assert out.dtype == dtype and out.shape == (120, 80)
    if np.issubdtype(dtype, np.integer):
        # anchor = nearest upsampling, so the result tracks the input's intensities
        assert abs(float(out.mean()) - float(img.mean())) < 0.2 * top


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-5), (np.float16, 2e-3)])
def test_other_floats_run_in_float32_and_keep_dtype(up, dtype, atol):
    img = rng().random((25, 31)).astype(dtype)
    out = up.upscale(img)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.astype(np.float32), up.upscale(img.astype(np.float32)), atol=atol, rtol=atol)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint32, bool, np.complex64])
def test_ambiguous_dtypes_are_refused(up, dtype):
    with pytest.raises(sr.ModelIOError, match="unsupported pixel type"):
        up.upscale(np.zeros((8, 8), dtype=dtype))


def test_uint8_output_is_clipped_not_wrapped(up):
    img = np.zeros((20, 20), np.uint8)
    img[5:15, 5:15] = 255  # hard edges: the network overshoots above 255 and below 0
    out = up.upscale(img)
    assert out.dtype == np.uint8
    ref = up.upscale(img.astype(np.float32))  # same stats in float, unclipped
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_are_refused(up, bad):
    img = rng().random((16, 16)).astype(np.float32)
    img[3, 7] = bad
    with pytest.raises(sr.ModelIOError, match="NaN or infinite"):
        up.upscale(img)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0, 3), ()])
def test_empty_image(up, shape):
    with pytest.raises(sr.ModelIOError):
        up.upscale(np.zeros(shape, np.uint8))


# ---------------------------------------------------------------------------- normalisation
def test_percentile_normalisation_makes_exposure_irrelevant(up):
    """Affine in, same affine out: 3*img+10 upscales to 3*up(img)+10."""
    img = rng(1).random((40, 40), dtype=np.float32)
    np.testing.assert_allclose(up.upscale(3 * img + 10), 3 * up.upscale(img) + 10, atol=1e-4)


def test_constant_image_does_not_divide_by_zero(up):
    out = up.upscale(np.full((12, 12), 700, np.uint16))
    assert out.dtype == np.uint16 and out.shape == (48, 48)


def test_stats_from_bounded_subsample_of_memmap(tmp_path, monkeypatch):
    monkeypatch.setattr(normalize, "MAX_STAT_VALUES", 10_000)
    data = (rng(2).random((600, 500)) * 4000).astype(np.uint16)
    mm = np.memmap(tmp_path / "a.raw", dtype=np.uint16, mode="w+", shape=data.shape)
    mm[:] = data
    sub = normalize.subsample(mm[..., None], normalize.MAX_STAT_VALUES)
    assert sub.size <= 10_000
    st = normalize.compute_stats(mm[..., None], Normalisation("percentile", 1.0, 99.0))
    lo, hi = np.percentile(data, [1.0, 99.0])
    assert abs(st.lo[0] - lo) < 0.02 * 4000 and abs(st.lo[0] + st.scale[0] - hi) < 0.02 * 4000


def test_range_normalisation():
    st = normalize.compute_stats(np.zeros((4, 4, 2), np.uint16), Normalisation("range"))
    assert list(st.scale) == [65535.0, 65535.0] and list(st.lo) == [0.0, 0.0]
    st8 = normalize.compute_stats(np.zeros((4, 4, 1), np.uint8), Normalisation("range"))
    assert st8.scale[0] == 255.0


# ---------------------------------------------------------------------------- axes, channels, stacks
def test_axes_inference():
    from scopesr.sdk.upscaler import resolve_axes

    assert resolve_axes((10, 12), None) == "YX"
    assert resolve_axes((10, 12, 3), None) == "YXC"
    assert resolve_axes((7, 10, 12), None) == "ZYX"
    assert resolve_axes((5, 10, 12, 2), None) == "TYXC"
    assert resolve_axes((2, 10, 12), "cyx") == "CYX"
    for shape, axes in [((10, 12), "YXC"), ((10, 12), "YY"), ((10, 12), "AB"), ((3, 10, 12), "CZX")]:
        with pytest.raises(sr.ModelIOError, match="axes"):
            resolve_axes(shape, axes)


def test_stack_is_frame_by_frame(up):
    stack = (rng(3).random((3, 20, 24)) * 60000).astype(np.uint16)
    out = up.upscale(stack)
    assert out.shape == (3, 80, 96) and out.dtype == np.uint16
    for i in range(3):
        np.testing.assert_array_equal(out[i], up.upscale(stack[i]))


def test_axes_order_is_kept(up):
    yxc = (rng(4).random((20, 24, 2)) * 255).astype(np.uint8)
    a = up.upscale(yxc)
    b = up.upscale(np.ascontiguousarray(yxc.transpose(2, 0, 1)), axes="CYX")
    assert a.shape == (80, 96, 2) and b.shape == (2, 80, 96)
    np.testing.assert_array_equal(a, b.transpose(1, 2, 0))
    tzyx = rng(5).random((2, 3, 10, 12)).astype(np.float32)
    out = up.upscale(tzyx, axes="TZYX")
    assert out.shape == (2, 3, 40, 48)
    np.testing.assert_allclose(out[1, 2], up.upscale(tzyx[1, 2]), atol=1e-6)


def test_n_channels_through_grey_model_run_channel_by_channel(up):
    img = rng(6).random((18, 22, 5)).astype(np.float32)
    img[..., 3] *= 100  # each channel its own statistics
    out = up.upscale(img, axes="YXC")
    assert out.shape == (72, 88, 5)
    for c in range(5):
        np.testing.assert_allclose(out[..., c], up.upscale(img[..., c]), atol=1e-4, rtol=1e-6)


def test_rgb_model_runs_channels_together(rgb_up):
    img = (rng(7).random((21, 19, 3)) * 255).astype(np.uint8)
    out = rgb_up.upscale(img)
    assert out.shape == (84, 76, 3) and out.dtype == np.uint8


def test_wrong_channel_count(rgb_up):
    with pytest.raises(sr.ModelIOError, match="image has 5 channels, model 'tiny_x4_rgb' takes 3"):
        rgb_up.upscale(np.zeros((10, 10, 5), np.uint8), axes="YXC")
    with pytest.raises(sr.ModelIOError, match="image has 1 channel, model 'tiny_x4_rgb' takes 3"):
        rgb_up.upscale(np.zeros((10, 10), np.uint8))


def test_out_array_is_checked(up):
    with pytest.raises(sr.ModelIOError, match="out has shape"):
        up.upscale(np.zeros((10, 10), np.uint8), out=np.zeros((40, 41), np.uint8))
    with pytest.raises(sr.ModelIOError, match="dtype"):
        up.upscale(np.zeros((10, 10), np.uint8), out=np.zeros((40, 40), np.uint16))


def test_bad_halo_and_batch(up):
    img = np.zeros((10, 10), np.uint8)
    with pytest.raises(sr.ScopesrError, match="halo"):
        up.upscale(img, halo="big")
    with pytest.raises(sr.ScopesrError, match="halo"):
        up.upscale(img, halo=-1)
    with pytest.raises(sr.ScopesrError, match="batch"):
        up.upscale(img, batch=0)


def test_progress_bar(up, capsys):
    up.upscale(np.zeros((40, 40), np.uint8), tile=16, progress=True)
    assert "9/9" in capsys.readouterr().err


# ---------------------------------------------------------------------------- stream
def test_stream_frames_and_roi(up):
    frames = [(rng(i).random((30, 40)) * 255).astype(np.uint8) for i in range(6)]
    got = list(up.stream(iter(frames)))
    assert [f.index for f in got] == list(range(6))
    assert all(f.image.shape == (120, 160) and f.fps > 0 and f.latency_s > 0 for f in got)
    np.testing.assert_array_equal(got[4].image, up.upscale(frames[4]))  # per-frame statistics
    rois = list(up.stream(frames, roi=(5, 2, 16, 10)))
    assert rois[0].image.shape == (40, 64)
    np.testing.assert_array_equal(rois[1].image, up.upscale_region(frames[1], (5, 2, 16, 10)))  # real context
    with pytest.raises(sr.ModelIOError, match="not inside"):
        next(up.stream(frames, roi=(30, 0, 16, 10)))


# ---------------------------------------------------------------------------- describe, load
def test_describe(up):
    d = up.describe()
    assert d["scale"] == 4 and d["halo"] == 4 and d["in_channels"] == 1
    assert d["backend"]["backend"] == "onnx" and d["default_tile"] == 256
    assert d["normalisation"]["mode"] == "percentile"
    assert up.scale == 4 and up.card.name == "tiny_x4"
    t = sr.load(FIX / "tiny_x4_fixed.tflite").describe()
    assert t["tile_sizes"] == [32, 48] and t["default_tile"].startswith("per image")


def test_load_via_card_file():
    up = sr.load(FIX / "tiny_x4_rgb.card.json")
    assert up.card.in_channels == 3 and up.backend.name == "onnx"


def test_load_missing_file(tmp_path):
    with pytest.raises(sr.ScopesrError, match="not found"):
        sr.load(tmp_path / "nope.onnx")


def test_default_model():
    from scopesr.sdk import DEFAULT_MODELS, MODELS_DIR

    with pytest.raises(sr.ScopesrError, match="not one of"):
        sr.default_model_path("gguf")
    for fmt, name in DEFAULT_MODELS.items():
        assert sr.default_model_path(fmt, must_exist=False) == MODELS_DIR / name
        if (MODELS_DIR / name).exists():
            assert sr.default_model_path(fmt) == MODELS_DIR / name
        else:
            with pytest.raises(sr.ScopesrError, match="not in this install"):
                sr.default_model_path(fmt)
    if (MODELS_DIR / DEFAULT_MODELS["onnx"]).exists():
        assert sr.load("default").card.scale >= 2
    # the stems differ, so the formats do not share (and overwrite) one card file
    stems = [n.rsplit(".", 1)[0] for n in DEFAULT_MODELS.values()]
    assert len(set(stems)) == len(stems)


def test_default_follows_the_installed_runtime(monkeypatch):
    """ONNX Runtime installed: the fp32 ONNX file; TFLite only (a Pi): the int8 file if its card
    passes the quality floor, else the TFLite fp32 file."""
    import scopesr.sdk.upscaler as U

    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    assert U._default_for("auto").name == "default.onnx"
    assert U._default_for("tflite").name == "default-int8.tflite"
    real = U.has_module
    monkeypatch.setattr(U, "has_module", lambda m: m != "onnxruntime" and real(m))
    assert U._default_for("auto").name == "default-int8.tflite"
    up = sr.load("default")
    # the picker's static preference holds the quality floor: the int8 file only when its card says
    # int8 costs at most 0.2 dB against fp32, else the TFLite fp32 file
    from scopesr.sdk import picker

    # (each file held against the best of the runnable files on every held-out row)
    int8_card = sr.ModelCard.load(U.MODELS_DIR / "default-int8.tflite")
    fp32_card = sr.ModelCard.load(U.MODELS_DIR / "default-fp32.tflite")
    reference = picker.best_worst_gains([int8_card, fp32_card])
    want = "fp32" if picker.quality_floor_reason(int8_card, reference=reference) else "int8"
    assert up.backend.name == "tflite" and up.card.precision == want
    with pytest.raises(sr.ScopesrError, match="no coreml artifact"):
        U._default_for("coreml")


def test_real_microscopy_image_tiled_equals_whole(up, real_image):
    """A real 512x512 16-bit fluorescence image: default tiles (256 + halo) == one tile."""
    import tifffile

    img = tifffile.imread(real_image("stardist-nuclei-2d"))
    assert img.dtype == np.uint16
    tiled = up.upscale(img)
    whole = up.upscale(img, tile=max(img.shape))
    assert tiled.shape == (4 * img.shape[0], 4 * img.shape[1]) and tiled.dtype == np.uint16
    assert np.abs(tiled.astype(np.int64) - whole).max() <= 1
    # the output keeps the input's intensity scale (values 0..235 in a uint16 container)
    assert tiled.max() < 2000 and abs(float(tiled.mean()) - float(img.mean())) < 10


def test_nan_in_a_later_frame_is_refused_before_any_work(up, monkeypatch):
    stack = rng(9).random((4, 12, 12)).astype(np.float32)
    stack[3, 5, 5] = np.nan
    calls = []
    monkeypatch.setattr(up.backend, "run", lambda x: calls.append(x) or pytest.fail("ran"))
    with pytest.raises(sr.ModelIOError, match="NaN"):
        up.upscale(stack)
    assert calls == []
