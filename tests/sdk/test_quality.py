"""scopesr.sdk.quality: metrics against scikit-image, and the degradation model's physics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from scopesr.sdk import quality as q

pytestmark = pytest.mark.edge


def _img(seed: int = 0, shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return 100 + 800 * np.exp(-((yy - 40) ** 2 + (xx - 30) ** 2) / 300.0) + 20 * rng.random(shape)


# ---------------------------------------------------------------------------- metrics
def test_psnr_and_ssim_match_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.random((64, 70))
    b = a + 0.05 * rng.standard_normal(a.shape)
    assert q.psnr(a, b, data_range=1.0) == pytest.approx(metrics.peak_signal_noise_ratio(a, b, data_range=1.0))
    ref = metrics.structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert q.ssim(a, b, data_range=1.0) == pytest.approx(ref, abs=1e-12)


def test_metrics_known_values_and_errors() -> None:
    a = np.zeros((32, 32))
    b = a.copy()
    b[0, 0] = 1.0
    # one wrong pixel of 1024 at full range: MSE 1/1024 -> PSNR 10*log10(1024)
    assert q.psnr(a, b, data_range=1.0) == pytest.approx(10 * math.log10(1024))
    assert q.psnr(a, a) == math.inf
    assert q.ssim(_img(), _img()) == pytest.approx(1.0)
    assert q.psnr(a, b, data_range=1.0, border=2) == math.inf  # the wrong pixel is in the border
    with pytest.raises(q.QualityError, match="shapes differ"):
        q.psnr(a, b[:-1])
    with pytest.raises(q.QualityError, match="smaller than"):
        q.ssim(a[:8, :8], b[:8, :8])


# ---------------------------------------------------------------------------- kernels and sampling
@pytest.mark.parametrize("kernel", [q.gaussian_kernel(1.3), q.gaussian_kernel(2.0, 0.7, 0.6), q.defocus_kernel(3.2)])
def test_kernels_are_normalised_and_centred(kernel: np.ndarray) -> None:
    assert kernel.sum() == pytest.approx(1.0)
    h, w = kernel.shape
    yy, xx = np.mgrid[0:h, 0:w]
    assert (kernel * yy).sum() == pytest.approx((h - 1) / 2)  # no shift of the image
    assert (kernel * xx).sum() == pytest.approx((w - 1) / 2)


def test_blur_keeps_a_flat_image_flat() -> None:
    flat = np.full((40, 50), 7.0)
    assert np.allclose(q.convolve_reflect(flat, q.gaussian_kernel(3.0)), 7.0)


def test_binning_is_the_exact_block_mean() -> None:
    a = np.arange(64, dtype=np.float64).reshape(8, 8)
    lr = q.downsample(a, 4, "area")
    assert lr.shape == (2, 2)
    assert lr[0, 0] == a[:4, :4].mean() and lr[1, 1] == a[4:, 4:].mean()


def test_aliasing_kernels_differ_from_the_anti_aliased_one() -> None:
    # a Nyquist-rate grating: anti-aliased sampling removes it, plain sampling aliases it
    a = np.tile(np.array([0.0, 1.0]), (64, 32))
    aa, cubic, dec = (q.downsample(a, 4, k) for k in ("bicubic-aa", "cubic", "decimate"))
    assert np.ptp(aa[2:-2, 2:-2]) < 0.05
    assert dec.std() == 0  # decimation always lands on the same phase: a constant image
    assert cubic.shape == aa.shape == (16, 16)


def test_cubic_matches_opencv_when_available() -> None:
    cv2 = pytest.importorskip("cv2")
    x = np.random.default_rng(2).random((64, 48)) * 1000
    ref = cv2.resize(x, (12, 16), interpolation=cv2.INTER_CUBIC)
    assert np.allclose(q.downsample(x, 4, "cubic"), ref, atol=1e-9)


# ---------------------------------------------------------------------------- noise and camera
def test_poisson_gaussian_mean_and_variance_match_their_parameters() -> None:
    read = 3.0
    d = q.Degradation(downsample="area", peak_snr=10.0, read_noise=read)
    peak = q.photons_for_snr(10.0, read)
    assert peak / math.sqrt(peak + read**2) == pytest.approx(10.0)
    level = 0.5  # the flat image sits at half the bright level
    hr = np.full((800, 800), level)
    hr[0, 0], hr[0, 1] = 0.0, 1.0  # fixes lo = 0 and hi = 1 of the percentiles explicitly below
    lr, target = d.apply(hr, np.random.default_rng(3), lo=0.0, hi=1.0, dtype="float32")
    v = lr.astype(np.float64)[1:, 1:]
    # electrons ~ Poisson(peak * level) + N(0, read^2), divided by peak
    assert v.mean() == pytest.approx(level, rel=2e-3)
    expected_var = (peak * level + read**2) / peak**2
    assert v.var() == pytest.approx(expected_var, rel=0.03)
    assert np.allclose(target[8:, 8:], level)


def test_camera_quantises_to_its_bit_depth_and_clips() -> None:
    d = q.Degradation(bits=12, exposure=0.5, offset=0.02, downsample="area")
    lr, target = d.apply(_img(), None)
    assert lr.dtype == np.uint16 and lr.max() <= 4095
    assert np.array_equal(lr, np.rint(lr))
    # the bright level sits at half of full scale above the offset
    assert np.percentile(target, 99.9) == pytest.approx(0.02 * 4095 + 0.5 * 4095, rel=0.02)
    d8 = q.Degradation(bits=8, exposure=1.0, downsample="area", jpeg_quality=80)
    lr8, _ = d8.apply(_img(), None)
    assert lr8.dtype == np.uint8


def test_source_dtype_mode_keeps_the_units() -> None:
    hr = _img().astype(np.uint16)
    lr, target = q.Degradation(downsample="area").apply(hr)
    assert lr.dtype == np.uint16
    assert np.allclose(target, hr[:96, :80])  # noise-free, unblurred: the reference is the image itself
    expected = hr.astype(np.float64).reshape(24, 4, 20, 4).mean(axis=(1, 3))
    assert np.array_equal(lr, np.rint(expected).astype(np.uint16))


def test_draws_are_reproducible_and_cover_the_ranges() -> None:
    r = q.DegradationRanges()
    a = [r.sample(np.random.default_rng([5, i])) for i in range(300)]
    b = [r.sample(np.random.default_rng([5, i])) for i in range(300)]
    assert a == b
    kinds = {d.downsample for d in a}
    assert kinds == set(q.DOWNSAMPLERS)
    assert any(not d.noisy for d in a) and any(d.noisy for d in a)
    assert {d.bits for d in a} == {0, 8, 12, 16}
    snrs = [d.peak_snr for d in a if d.noisy]
    assert min(snrs) >= 4.0 and max(snrs) <= 60.0
    img = _img()
    l1, _ = a[7].apply(img, np.random.default_rng(9))
    l2, _ = b[7].apply(img, np.random.default_rng(9))
    assert np.array_equal(l1, l2)


def test_config_round_trip_and_validation() -> None:
    r = q.DegradationRanges(snr=(5.0, 30.0), bits={8: 1.0})
    assert q.DegradationRanges.from_dict(r.to_dict()) == r
    d = q.EVAL_DEGRADATIONS["noise-snr8"]
    assert q.Degradation.from_dict(d.to_dict()) == d
    assert q.Degradation.from_dict(q.Degradation().to_dict()).peak_snr == math.inf
    with pytest.raises(q.QualityError, match="unknown"):
        q.DegradationRanges.from_dict({"snr_range": (1, 2)})
    with pytest.raises(q.QualityError, match="downsample"):
        q.Degradation(downsample="lanczos")
    with pytest.raises(q.QualityError, match="JPEG|jpeg"):
        q.Degradation(bits=16, jpeg_quality=80)
    with pytest.raises(q.QualityError, match="rng"):
        q.Degradation(peak_snr=5.0).apply(_img())


# ---------------------------------------------------------------------------- evaluation
def test_evaluate_scores_baselines_per_degradation_and_source() -> None:
    imgs = [q.EvalImage("a", "src1", _img(0).astype(np.uint16)), q.EvalImage("b", "src2", _img(1).astype(np.uint16))]

    def bicubic(lr: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(q.upscale_bicubic(lr, 4)), 0, 65535).astype(lr.dtype)

    res = q.evaluate(bicubic, imgs, ["bicubic", "noise-snr8"], with_ssim=True)
    assert set(res["summary"]) == {"bicubic", "noise-snr8"}
    for entry in res["summary"].values():
        assert entry["gain_db_vs_bicubic"] == pytest.approx(0.0)  # the "model" is bicubic itself
        assert set(entry["per_source"]) == {"src1", "src2"}
        assert entry["mean"]["psnr_bicubic"] > entry["mean"]["psnr_nearest"]
    noisy = res["summary"]["noise-snr8"]["mean"]["psnr_bicubic"]
    clean = res["summary"]["bicubic"]["mean"]["psnr_bicubic"]
    assert noisy < clean
    again = q.evaluate(bicubic, imgs, ["noise-snr8"], with_ssim=False)
    assert again["rows"][0]["psnr_model"] == res["rows"][2]["psnr_model"]  # seeded noise


def test_eval_rows_are_distinct_degradations() -> None:
    rows = {k: dataclasses.astuple(v) for k, v in q.EVAL_DEGRADATIONS.items()}
    assert len(set(rows.values())) == len(rows)
    assert {"bicubic", "binning", "psf", "noise-snr20", "noise-snr8", "cubic-noaa"} <= set(rows)


def test_psnr_ceiling_is_what_a_perfect_prediction_scores() -> None:
    """A reference with its own noise: the noise-free image scores its ceiling, bicubic stays below."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:96, 0:80]
    clean = 100 + 800 * np.exp(-((yy - 40) ** 2 + (xx - 30) ** 2) / 300.0)
    ref = clean + rng.normal(0.0, 0.02 * float(np.ptp(clean)), clean.shape)
    ceiling = q.psnr_ceiling(ref, border=8)
    assert q.psnr(ref, clean, border=8) == pytest.approx(ceiling, abs=0.3)
    # x4: the LR keeps 1/16 of the reference's noise power, which a prediction may carry
    x4 = q.psnr_ceiling(ref, border=8, scale=4)
    assert x4 - ceiling == pytest.approx(-10 * math.log10(15 / 16), abs=1e-9)
    assert q.psnr_ceiling(clean, border=8) > ceiling + 10  # the clean one is far less noisy
    assert math.isinf(q.psnr_ceiling(np.zeros((32, 32)) + 7.0))
    res = q.evaluate(lambda lr: q.upscale_nearest(lr, 4), [q.EvalImage("r", "s", ref)], ["bicubic"], with_ssim=False)
    mean = res["summary"]["bicubic"]["mean"]
    assert mean["psnr_ceiling"] == pytest.approx(x4, abs=1e-9)
    assert mean["psnr_bicubic"] < mean["psnr_ceiling"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_bicubic_baseline_is_pil_bicubic_rounded_to_the_lr_dtype(dtype) -> None:
    """The "bicubic" of every table: the same values as PIL bicubic, in the LR image's dtype, so it
    is rounded and clipped exactly as a model's output is."""
    rng = np.random.default_rng(3)
    lr = (rng.random((12, 10)) * 200).astype(dtype)
    out = q.bicubic_baseline(lr, 4)
    assert out.shape == (48, 40) and out.dtype == lr.dtype
    np.testing.assert_array_equal(out, q.round_to_dtype(q.upscale_bicubic(lr, 4), dtype))
    if dtype is np.uint8:  # the cubic kernel's overshoot past 255 is clipped, not wrapped to 0
        edge = np.zeros((8, 8), np.uint8)
        edge[:, 4:] = 255
        assert q.bicubic_baseline(edge, 4)[:, 18:].min() > 200
