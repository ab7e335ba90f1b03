"""scopesr.bench.brightness_bands (benchmarks/bench_gain_by_brightness.py): the gain over bicubic
split by the reference's brightness is exact where it can be checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scopesr.bench import brightness_bands as bb
from scopesr.sdk import quality


def test_bands_partition_every_pixel_by_brightness_quantile():
    t = np.random.default_rng(0).random((64, 64))
    masks = bb.band_masks(t)
    assert len(masks) == len(bb.BAND_NAMES)
    assert np.array_equal(sum(m.astype(int) for m in masks), np.ones_like(t, dtype=int))
    assert masks[0].mean() == pytest.approx(0.5, abs=0.01) and masks[-1].mean() == pytest.approx(0.05, abs=0.01)
    assert t[masks[-1]].min() >= t[masks[0]].max()  # brightest band above the dim half


def _images() -> list[quality.EvalImage]:
    yy, xx = np.mgrid[:96, :96]
    blobs = 40 + 180 * np.exp(-(((yy - 40) ** 2 + (xx - 50) ** 2) / 60.0)) + 20 * np.sin(xx / 3.0)
    return [quality.EvalImage("blobs", "synthetic:blobs", blobs.astype(np.uint8))]


def test_bicubic_gains_nothing_and_added_noise_loses_only_where_it_is_added():
    images, scale = _images(), 4

    def bicubic(lr):
        return quality.bicubic_baseline(lr, scale)

    same = bb.measure(bicubic, images, ["bicubic"], scale)["bicubic"]["sources"]["synthetic:blobs"]
    assert same["gain_db"] == pytest.approx(0.0, abs=1e-9)
    assert all(b["gain_db"] == pytest.approx(0.0, abs=1e-9) for b in same["bands"])
    assert sum(b["share_of_bicubic_error"] for b in same["bands"]) == pytest.approx(1.0)

    def noisy_in_bright_band(lr):
        # bicubic, plus noise only where the *upscaled* image is brightest: the top band loses,
        # the dim half (far from the blob) does not
        up = bicubic(lr).astype(np.float64)
        bright = up > np.quantile(up, 0.97)
        up[bright] += np.random.default_rng(1).normal(0, 8, bright.sum())
        return up

    res = bb.measure(noisy_in_bright_band, images, ["bicubic"], scale)["bicubic"]["sources"]["synthetic:blobs"]
    top, dim = res["bands"][-1], res["bands"][0]
    assert top["gain_db"] < -1.0 and top["detail_model"] > top["detail_bicubic"]
    assert dim["gain_db"] == pytest.approx(0.0, abs=1e-9)
    md = bb.markdown({"model": "m.onnx", "results": {"bicubic": {"description": "d", "sources": {"s": res}}}}, "cmd")
    assert "| s | " in md and "top 5 %" in md
