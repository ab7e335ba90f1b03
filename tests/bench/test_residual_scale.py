"""scopesr.bench.residual_scale (benchmarks/bench_residual_scale.py): the model's change over bicubic
scaled by t, scored per row exactly as the release table scores the model itself."""

from __future__ import annotations

import numpy as np
import pytest

from scopesr.bench import residual_scale as rs
from scopesr.sdk import quality

TS = [0.0, 0.5, 1.0, 1.5]


def _images() -> list[quality.EvalImage]:
    yy, xx = np.mgrid[:64, :64]
    blobs = 30 + 150 * np.exp(-(((yy - 30) ** 2 + (xx - 34) ** 2) / 40.0)) + 25 * np.sin(xx / 2.5)
    spots = 20 + 200 * (np.hypot(yy % 16 - 8, xx % 16 - 8) < 3)
    return [
        quality.EvalImage("blobs", "synthetic:blobs", blobs.astype(np.uint8)),
        quality.EvalImage("spots", "synthetic:spots", spots.astype(np.uint16)),
    ]


def _nearest(lr: np.ndarray) -> np.ndarray:
    return quality.upscale_nearest(lr, 4).astype(np.float32)


def test_t1_is_the_release_tables_gain_and_t0_is_bicubic():
    images = _images()
    got = rs.scale_curves(_nearest, images, TS)
    table = quality.evaluate(_nearest, images, with_ssim=False)["summary"]
    assert set(got) == set(quality.EVAL_DEGRADATIONS)
    for row, e in got.items():
        curve = e["mean_gain_at_t"]
        assert curve[TS.index(0.0)] == 0.0
        assert curve[TS.index(1.0)] == pytest.approx(table[row]["gain_db_vs_bicubic"], abs=1e-9)
        assert e["worst_at_t1"] == pytest.approx(table[row]["worst_gain_db"], abs=1e-9)
        # the oracle takes each image's best t, so it is at least every t's mean (and t = 0 is bicubic)
        assert e["oracle_mean"] >= max(curve) - 1e-12 and e["oracle_worst"] >= 0.0
        assert set(e["best_t"]) == {"blobs", "spots"} and set(e["best_t"].values()) <= set(TS)
        assert set(e["per_source_gain_at_t"]) == {"synthetic:blobs", "synthetic:spots"}
    # nearest upsampling is worse than bicubic on these smooth-edged images: less of it is better
    assert got["bicubic"]["mean_gain_at_t"][TS.index(1.0)] < 0 and got["bicubic"]["best_t"]["blobs"] < 1


def test_each_t_is_the_blend_rounded_to_the_lr_dtype():
    images = _images()[:1]
    got = rs.scale_curves(_nearest, images, TS)
    deg = quality.EVAL_DEGRADATIONS["binning"]
    lr, target = quality.eval_pair(deg, "binning", images[0], 0)
    b = quality.upscale_bicubic(lr, 4)
    y = _nearest(lr).astype(np.float64)
    base = quality.psnr(target, quality.bicubic_baseline(lr, 4), border=quality.DEFAULT_BORDER)
    for k, t in enumerate(TS):
        by_hand = quality.psnr(target, quality.round_to_dtype(b + t * (y - b), lr.dtype), border=8) - base
        assert got["binning"]["mean_gain_at_t"][k] == pytest.approx(by_hand, abs=1e-9)


def test_markdown_has_every_row_and_source():
    curves = rs.scale_curves(_nearest, _images(), TS)
    md = rs.markdown({"model": "m.onnx", "sha256": "ab" * 32, "t": TS, "t_compare": 0.5, "sets": {"s": curves}}, "cmd")
    for row in quality.EVAL_DEGRADATIONS:
        assert f"| {row} |" in md
    assert "| synthetic:spots |" in md and "t=1 -> t=0.5" in md
