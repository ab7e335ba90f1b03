"""scopesr.bench.host_overhead: the SDK's work around a no-op model call, and the real call restored."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import scopesr.sdk as sr  # noqa: E402
from scopesr.bench.host_overhead import host_overhead  # noqa: E402
from scopesr.sdk.errors import ScopesrError  # noqa: E402

pytestmark = pytest.mark.integration


def test_host_overhead_times_each_case_and_restores_the_model() -> None:
    up = sr.load(sr.default_model_path("onnx"), num_threads=1)
    img = (np.random.default_rng(0).random((48, 40)) * 4000).astype(np.uint16)
    before = up.upscale(img)
    rows = host_overhead(up, {"one tile": (img, {}), "tiled": (img, {"tile": 16})}, repeats=3, budget_s=2)
    assert [r["case"] for r in rows] == ["one tile", "tiled"]
    assert all(r["median_s"] > 0 and r["n"] >= 2 for r in rows)
    assert rows[0]["out_mpx"] == pytest.approx(48 * 40 * up.scale**2 / 1e6)
    # the backend's own calls are back: the same output as before, not the no-op's zeros
    after = up.upscale(img)
    np.testing.assert_array_equal(after, before)
    assert after.max() > 0
    assert "run" not in vars(up.backend) and "run_many" not in vars(up.backend)


def test_host_overhead_restores_the_model_after_a_failing_case() -> None:
    up = sr.load(sr.default_model_path("onnx"), num_threads=1)
    bad = np.full((8, 8), np.nan, np.float32)  # NaN pixels: refused before any model call
    with pytest.raises(ScopesrError):
        host_overhead(up, {"bad": (bad, {})}, repeats=2)
    assert "run" not in vars(up.backend) and "run_many" not in vars(up.backend)
