"""scopesr.bench.live_halo (benchmarks/bench_live_halo.py): the live path's halo 0 against "auto",
scored per degradation on frames and ROIs; a real ONNX session."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.bench import live_halo
from scopesr.sdk import quality

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _images() -> list[quality.EvalImage]:
    yy, xx = np.mgrid[:520, :680]
    cells = 90 + 70 * np.sin(xx / 7.0) * np.cos(yy / 9.0) + 40 * np.sin((xx + yy) / 3.0)
    return [quality.EvalImage("cells", "synthetic:cells", np.clip(cells, 0, 255).astype(np.uint8))]


class BicubicAsModel:
    """Bicubic behind the SDK's two calls: its gain over bicubic must come out as exactly 0."""

    scale = 4
    card = SimpleNamespace(halo=4)

    def upscale(self, lr: np.ndarray, halo: object = "auto") -> np.ndarray:
        return quality.bicubic_baseline(lr, 4)

    def upscale_region(self, img: np.ndarray, roi: tuple[int, int, int, int], halo: object = "auto") -> np.ndarray:
        x, y, w, h = roi
        return self.upscale(img[y : y + h, x : x + w])


def test_bicubic_scores_zero_in_every_cell():
    got = live_halo.measure(BicubicAsModel(), _images(), rows=("bicubic", "noise-snr8"))
    for row in got.values():
        assert set(row) == {"frame_halo_auto", "frame_halo_0", "roi_halo_auto", "roi_halo_0"}
        for cell in row.values():
            assert cell["mean"] == pytest.approx(0.0, abs=1e-9)


def test_the_halo_reaches_the_model_and_the_page_shows_both():
    pytest.importorskip("onnxruntime")
    up = sr.load(FIX / "tiny_x4.onnx", num_threads=1)
    got = live_halo.measure(up, _images(), rows=("bicubic",), per_axis=1)
    row = got["bicubic"]
    assert row["frame_halo_auto"]["mean"] != row["frame_halo_0"]["mean"]
    assert row["roi_halo_auto"]["mean"] != row["roi_halo_0"]["mean"]
    data = {
        "model": "tiny_x4.onnx",
        "sources": ["synthetic:cells"],
        "images": 1,
        "quality": got,
        "timing": [{"backend": "tiny_x4.onnx", "case": "roi", "auto_ms": 2.0, "zero_ms": 1.0, "espcn_ms": None}],
    }
    md = live_halo.markdown(data, "python benchmarks/bench_live_halo.py")
    assert "| bicubic | " in md and "| tiny_x4.onnx | roi | 2.000 | 1.000 | 2.00x |" in md


def test_positions_stay_inside_with_the_margin():
    assert live_halo._positions(100, 64, 9, 2) == [9, 27]
    assert live_halo._positions(80, 64, 9, 2) == []  # no room for the margin on both sides
