"""scopesr.bench.noise_levels: the SDK's noise estimate per source and row, against a threshold."""

from __future__ import annotations

import numpy as np

from scopesr.bench import noise_levels
from scopesr.sdk import Normalisation, quality


def _image(seed: int) -> quality.EvalImage:
    """Smooth blobs on a dark background, 12-bit values: a noise-free reference."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
    img = np.full((256, 256), 100.0)
    for cy, cx in rng.uniform(30, 226, (12, 2)):
        img += 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 12.0**2))
    return quality.EvalImage(f"synthetic:blobs[{seed}]", f"synthetic:blobs{seed}", img.astype(np.uint16))


def test_noisy_rows_read_noisier_than_clean_ones_and_the_threshold_counts():
    data = noise_levels.measure(
        [_image(0), _image(1)], Normalisation(), threshold=0.03, degradations=["bicubic", "noise-snr8"]
    )
    s = data["summary"]
    assert s["bicubic"]["max"] < 0.01 < 0.03 < s["noise-snr8"]["min"]  # smooth: ~0; SNR 8: several %
    assert s["bicubic"]["warn"] == 0 and s["noise-snr8"]["warn"] == 2 and s["noise-snr8"]["noisy"]
    assert data["false_warnings"] == 0 and data["noise_free_max"] == s["bicubic"]["max"]
    assert len(data["rows"]) == 4
    md = noise_levels.markdown(data, "python benchmarks/bench_noise_levels.py")
    assert "| noise-snr8 (noisy) | **" in md and "2 of 2" in md and "threshold 3.0 %" in md
