"""benchmarks/bench_small_frame.py's measuring code (scopesr.bench.small_frame) runs end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

import scopesr.sdk as sr
from scopesr.bench import small_frame

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("artifact", ["tiny_x4.onnx", "tiny_x4_fixed.tflite"])
def test_small_frame_measure_and_markdown(artifact):
    """Raw runtime call, backend.run, upscale and stream on the same tile; no speed asserted
    (shared CPUs), only that every figure is there and the ratios are to the raw call."""
    pytest.importorskip("onnxruntime" if artifact.endswith(".onnx") else "ai_edge_litert")
    up = sr.load(FIX / artifact, num_threads=1)
    size = (32, 32) if artifact.endswith(".tflite") else (64, 64)
    row = small_frame.measure(up, size=size, repeats=3, warmup=1)
    for k in ("raw", "backend_run", "upscale", "stream"):
        assert row[f"{k}_ms"] > 0
    assert row["upscale_ratio"] == pytest.approx(row["upscale_ms"] / row["raw_ms"], rel=1e-2)
    row["artifact"] = artifact
    md = small_frame.markdown([row], "python benchmarks/bench_small_frame.py", 1)
    assert artifact in md and "upscale / raw" in md
