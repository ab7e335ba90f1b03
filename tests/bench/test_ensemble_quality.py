"""scopesr.bench.ensemble_quality (benchmarks/bench_ensemble.py) runs end to end on a real ONNX
session: one copy scores exactly as quality.evaluate scores the model, and the table lists every size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.bench import ensemble_quality
from scopesr.sdk import quality

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def test_ensemble_quality_measure_and_markdown():
    pytest.importorskip("onnxruntime")
    up = sr.load(FIX / "tiny_x4.onnx", num_threads=1)
    yy, xx = np.mgrid[:64, :64]
    img = (100 + 80 * np.sin(xx / 4.0) * np.cos(yy / 5.0)).astype(np.uint8)
    images = [quality.EvalImage("waves", "synthetic:waves", img)]
    data = ensemble_quality.measure(up, images, sizes=(1, 2))
    plain = quality.evaluate(up.upscale, images, ["bicubic", "noise-snr8"], with_ssim=False)["summary"]
    for dname in ("bicubic", "noise-snr8"):
        assert data["rows"][dname]["ensemble 1"]["gain_db"] == pytest.approx(plain[dname]["gain_db_vs_bicubic"])
        assert data["rows"][dname]["ensemble 2"]["gain_db"] != data["rows"][dname]["ensemble 1"]["gain_db"]
    assert data["time_ratio"]["ensemble 1"] == 1.0 and data["time_ratio"]["ensemble 2"] > 0
    md = ensemble_quality.markdown({"model": "tiny", **data}, "python benchmarks/bench_ensemble.py")
    assert "| bicubic | " in md and "ensemble 2" in md
