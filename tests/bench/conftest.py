"""Shared fixtures of the benchmark-module tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from scopesr.sdk import quality


@pytest.fixture
def blobs_image() -> Callable[[int], quality.EvalImage]:
    """seed -> smooth Gaussian blobs on a dark background, 12-bit values, 256x256: a noise-free
    reference whose LR images read ~0 noise and a fine-to-coarse ratio near 1/4."""

    def make(seed: int) -> quality.EvalImage:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
        img = np.full((256, 256), 100.0)
        for cy, cx in rng.uniform(30, 226, (12, 2)):
            img += 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 12.0**2))
        return quality.EvalImage(f"synthetic:blobs[{seed}]", f"synthetic:blobs{seed}", img.astype(np.uint16))

    return make
