"""The noise-level estimator behind noise-aware models (scopesr.sdk.noise)."""

from __future__ import annotations

import numpy as np
import pytest

from scopesr.sdk import noise, quality

pytestmark = pytest.mark.edge


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.2])
def test_white_noise_sigma_is_recovered(sigma):
    rng = np.random.default_rng(1)
    plane = 0.5 + rng.normal(0.0, sigma, (256, 256))
    assert noise.estimate_noise_sigma(plane) == pytest.approx(sigma, rel=0.05)


def test_smooth_content_adds_little():
    """A smooth gradient with structure on the scale of many pixels is not noise."""
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    smooth = 0.5 + 0.4 * np.sin(6 * xx) * np.cos(5 * yy)
    assert noise.estimate_noise_sigma(smooth) < 1e-3
    rng = np.random.default_rng(2)
    assert noise.estimate_noise_sigma(smooth + rng.normal(0, 0.03, smooth.shape)) == pytest.approx(0.03, rel=0.08)


def test_shot_noise_is_measured_where_the_signal_is():
    """Poisson noise on a dark background with bright objects: the sigma of the bright half."""
    rng = np.random.default_rng(3)
    photons = np.full((256, 256), 4.0)
    photons[:, 128:] = 400.0  # bright half: sigma 20 photons; dark half: 2
    noisy = rng.poisson(photons).astype(np.float64)
    assert noise.estimate_noise_sigma(noisy) == pytest.approx(20.0, rel=0.1)


def test_noisier_degradations_give_larger_levels():
    yy, xx = np.mgrid[0:256, 0:256]
    hr = (1000 + 800 * np.sin(xx / 7.0) * np.sin(yy / 9.0)).astype(np.uint16)
    levels = {}
    for name in ("bicubic", "noise-snr20", "noise-snr8"):
        lr, _ = quality.EVAL_DEGRADATIONS[name].apply(hr, np.random.default_rng(0))
        x = lr.astype(np.float64)
        levels[name] = noise.noise_map_value((x - x.min()) / np.ptp(x))
    assert levels["bicubic"] < levels["noise-snr20"] < levels["noise-snr8"]


def test_fine_to_coarse_tells_white_noise_from_smooth_and_textured_content():
    """2 for white noise (block means halve it), 1/4 for smooth content, and a textured clean
    image stays well below a noisy copy of it whatever the contrast."""
    rng = np.random.default_rng(5)
    assert noise.fine_to_coarse(rng.normal(0.0, 0.1, (256, 256))) == pytest.approx(2.0, rel=0.05)
    yy, xx = np.mgrid[0:256, 0:256]
    smooth = 0.5 + 0.4 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    assert noise.fine_to_coarse(smooth) == pytest.approx(0.25, abs=0.03)  # a mixed derivative: 4x per scale
    texture = 0.5 + 0.4 * np.sin(xx / 1.9) * np.cos(yy / 2.3)  # fine but band-limited detail
    clean = noise.fine_to_coarse(texture)
    assert clean < 1.0
    assert noise.fine_to_coarse(texture + rng.normal(0.0, 0.2, texture.shape)) > clean + 0.5
    assert noise.fine_to_coarse(10 * texture) == pytest.approx(clean, rel=1e-6)  # no unit
    assert noise.fine_to_coarse(np.zeros((3, 64))) == 0.0  # too small for two scales
    assert noise.fine_to_coarse(np.zeros((64, 64))) == 0.0


def test_noise_map_values_are_the_first_n_features():
    rng = np.random.default_rng(6)
    plane = 0.5 + rng.normal(0.0, 0.05, (128, 128))
    one = noise.noise_map_values(plane, 1)
    two = noise.noise_map_values(plane, 2)
    assert one == [noise.noise_map_value(plane)] and two[0] == one[0]
    assert one[0] == pytest.approx(0.05 * noise.NOISE_MAP_GAIN, rel=0.1)
    assert two[1] == pytest.approx(noise.fine_to_coarse(plane))
    with pytest.raises(ValueError, match="1 to 2"):
        noise.noise_map_values(plane, 3)


@pytest.mark.parametrize("shape", [(0, 0), (1, 5), (1, 1), (3, 1)])
def test_tiny_planes_give_zero(shape):
    assert noise.estimate_noise_sigma(np.zeros(shape)) == 0.0


def test_non_finite_values_are_ignored_and_bad_shapes_refused():
    rng = np.random.default_rng(4)
    plane = rng.normal(0.0, 0.1, (64, 64))
    plane[5, 5], plane[9, 9] = np.nan, np.inf
    assert np.isfinite(noise.estimate_noise_sigma(plane))
    with pytest.raises(ValueError, match="2-D"):
        noise.estimate_noise_sigma(np.zeros((4, 4, 2)))


def test_mean_noise_variance_averages_shot_noise_over_brightness():
    """Poisson noise on a ramp: the variance equals the signal, so its pixel mean is the ramp's mean;
    the bright-half sigma of estimate_noise_sigma would overstate it."""
    rng = np.random.default_rng(3)
    ramp = np.tile(np.linspace(5.0, 2000.0, 512), (512, 1))
    shot = rng.poisson(ramp).astype(np.float64)
    assert noise.mean_noise_variance(shot) == pytest.approx(ramp.mean(), rel=0.05)
    assert noise.estimate_noise_sigma(shot) ** 2 > 1.3 * ramp.mean()
    white = ramp + rng.normal(0.0, 3.0, ramp.shape)
    assert noise.mean_noise_variance(white) == pytest.approx(9.0, rel=0.05)
    assert noise.mean_noise_variance(ramp) < 1e-6  # smooth content is not noise
    assert noise.mean_noise_variance(np.ones((1, 9))) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        noise.mean_noise_variance(np.ones((2, 4, 4)))


# ---------------------------------------------------------------------------- the low-noise warning
@pytest.fixture
def warned_model(tmp_path):
    """The tiny ONNX fixture with a card that, like the bundled low-noise model's, names a noise
    level to warn above (scopesr.sdk.NOISE_WARNING_KEY)."""
    pytest.importorskip("onnxruntime")
    import shutil
    from pathlib import Path

    import scopesr.sdk as sdk

    fix = Path(__file__).resolve().parents[1] / "fixtures"
    dst = tmp_path / "tiny_x4.onnx"
    shutil.copy(fix / "tiny_x4.onnx", dst)
    card = sdk.ModelCard.read(sdk.card_path_for(fix / "tiny_x4.onnx"))
    card.extra[sdk.NOISE_WARNING_KEY] = 0.03
    card.save(sdk.card_path_for(dst))
    return dst


def _frames(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 12-bit frame and the same with shot noise at peak SNR 8."""
    yy, xx = np.mgrid[0:96, 0:128] / 96.0
    smooth = 200 + 3000 * (0.5 + 0.5 * np.sin(5 * xx) * np.cos(4 * yy))
    noisy = rng.poisson(smooth / smooth.max() * 64) * (smooth.max() / 64)
    return smooth.astype(np.uint16), np.clip(noisy, 0, 4095).astype(np.uint16)


def test_a_model_trained_without_noise_warns_once_on_a_noisy_frame(warned_model, caplog, logged_warnings):
    import scopesr.sdk as sdk

    clean, noisy = _frames(np.random.default_rng(0))
    up = sdk.load(warned_model)
    with caplog.at_level("WARNING", logger="scopesr.sdk.upscaler"):
        up.upscale(clean)
        assert not logged_warnings()  # a clean frame: nothing to say
        up.upscale(noisy)
        (rec,) = logged_warnings()
        assert "looks noisy" in rec.getMessage() and "default model" in rec.getMessage()
        up.upscale(noisy)
        up.upscale_region(noisy, (0, 0, 32, 32))
        assert len(logged_warnings()) == 1  # once per Upscaler: a stream would repeat it every frame


def test_a_model_without_the_card_field_never_checks(tmp_path, caplog, logged_warnings):
    pytest.importorskip("onnxruntime")
    from pathlib import Path

    import scopesr.sdk as sdk

    up = sdk.load(Path(__file__).resolve().parents[1] / "fixtures" / "tiny_x4.onnx")
    assert up._noise_limit is None
    with caplog.at_level("WARNING", logger="scopesr.sdk.upscaler"):
        up.upscale(_frames(np.random.default_rng(0))[1])
    assert not logged_warnings()


def test_a_stream_of_alike_frames_is_checked_once_a_second(warned_model, caplog, monkeypatch, logged_warnings):
    """Files and the first frames of a stream are all checked; after NOISE_CHECK_RUN clean frames
    of one shape (a live stream) the check runs once a second, so it costs live frames nothing."""
    import scopesr.sdk as sdk
    from scopesr.sdk import upscaler as U

    clock = [1000.0]
    monkeypatch.setattr(U.time, "monotonic", lambda: clock[0])
    clean, noisy = _frames(np.random.default_rng(0))
    up = sdk.load(warned_model)
    calls = []
    real = U.noise_fraction
    monkeypatch.setattr(U, "noise_fraction", lambda *a, **k: calls.append(1) or real(*a, **k))
    with caplog.at_level("WARNING", logger="scopesr.sdk.upscaler"):
        for _ in range(U.NOISE_CHECK_RUN + 5):
            up.upscale(clean)
        assert len(calls) == U.NOISE_CHECK_RUN  # then no check within the second
        up.upscale(noisy)
        assert not logged_warnings()  # a noisy frame inside the quiet second: not looked at
        clock[0] += U.NOISE_CHECK_INTERVAL_S
        up.upscale(noisy)
    assert len(calls) == U.NOISE_CHECK_RUN + 1 and len(logged_warnings()) == 1
