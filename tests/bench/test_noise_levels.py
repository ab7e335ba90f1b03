"""scopesr.bench.noise_levels: the SDK's noise estimate per source and row, against a threshold."""

from __future__ import annotations

from scopesr.bench import noise_levels
from scopesr.sdk import Normalisation


def test_noisy_rows_read_noisier_than_clean_ones_and_the_threshold_counts(blobs_image):
    data = noise_levels.measure(
        [blobs_image(0), blobs_image(1)], Normalisation(), threshold=0.03, degradations=["bicubic", "noise-snr8"]
    )
    s = data["summary"]
    assert s["bicubic"]["max"] < 0.01 < 0.03 < s["noise-snr8"]["min"]  # smooth: ~0; SNR 8: several %
    assert s["bicubic"]["warn"] == 0 and s["noise-snr8"]["warn"] == 2 and s["noise-snr8"]["noisy"]
    assert data["false_warnings"] == 0 and data["noise_free_max"] == s["bicubic"]["max"]
    assert len(data["rows"]) == 4
    md = noise_levels.markdown(data, "python benchmarks/bench_noise_levels.py")
    assert "| noise-snr8 (noisy) | **" in md and "2 of 2" in md and "threshold 3.0 %" in md
