"""The one-tile path of ``Upscaler.upscale`` (a camera ROI or frame) gives the tiler's result.

A one-channel 2-D image that is one tile skips the tiler's band machinery (its overhead was
most of the SDK's cost on a 64x64 frame); these tests hold it to the tiler, bit for bit, and
check that everything else still goes through the tiler.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk import upscaler as U

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _tiler(up: sr.Upscaler, img: np.ndarray) -> np.ndarray:
    """The tiler's result (upscale_bands never takes the one-tile path)."""
    return np.concatenate([b for _, b in up.upscale_bands(img)], axis=0)


def _frame(dtype, shape, seed=0) -> np.ndarray:
    r = np.random.default_rng(seed)
    if dtype == np.float32:
        return r.random(shape).astype(np.float32)
    top = np.iinfo(dtype).max
    img = r.integers(0, top // 3, shape).astype(dtype)
    img[3:9, 5:12] = top  # saturated spot: the network overshoots, the output must clip
    return img


@pytest.mark.parametrize(
    "artifact,shape",
    [
        ("tiny_x4.onnx", (64, 64)),
        ("tiny_x4.onnx", (40, 52)),
        ("tiny_x4_fixed.tflite", (40, 40)),  # a 48 window with the halo (4) on each side
        ("tiny_x4_fixed.tflite", (24, 24)),  # a 32 window likewise
        ("tiny_x4_fixed.tflite", (20, 9)),  # a 32 window reading further into the mirror image
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_one_tile_path_equals_the_tiler(artifact, shape, dtype, monkeypatch):
    if artifact.endswith(".tflite"):
        pytest.importorskip("ai_edge_litert")
    else:
        pytest.importorskip("onnxruntime")
    up = sr.load(FIX / artifact)
    img = _frame(dtype, shape)
    calls = []
    real = U.Upscaler._one_tile
    monkeypatch.setattr(U.Upscaler, "_one_tile", lambda self, *a, **k: calls.append(r := real(self, *a, **k)) or r)
    got = up.upscale(img)
    assert calls == [True], "a one-tile 2-D frame takes the one-tile path"
    ref = _tiler(up, img)
    assert got.dtype == ref.dtype == img.dtype and got.shape == ref.shape == (4 * shape[0], 4 * shape[1])
    assert np.array_equal(got, ref)
    # the stream goes through upscale: same frames, same result
    f = next(up.stream(itertools.repeat(img)))
    assert np.array_equal(f.image, ref)


def test_everything_else_goes_through_the_tiler(monkeypatch):
    """Several tiles (a frame that fills a window leaves no room for the halo), stacks,
    channels and progress bars take the tiler."""
    pytest.importorskip("ai_edge_litert")
    onnx = sr.load(FIX / "tiny_x4.onnx")
    fixed = sr.load(FIX / "tiny_x4_fixed.tflite")
    calls = []
    real = U.Upscaler._one_tile
    monkeypatch.setattr(U.Upscaler, "_one_tile", lambda self, *a, **k: calls.append(r := real(self, *a, **k)) or r)
    img = _frame(np.uint8, (40, 40))
    cases = [
        (onnx, {"image": img, "tile": 16}),  # several tiles
        (fixed, {"image": _frame(np.uint8, (48, 48))}),  # 48 + 2 x 4 needs several windows
        (fixed, {"image": _frame(np.uint8, (64, 64))}),  # several fixed tiles
        (onnx, {"image": np.stack([img, img])}),  # a stack
        (onnx, {"image": np.stack([img, img], axis=-1)}),  # two channels, one at a time
    ]
    for up, kw in cases:
        out = up.upscale(**kw)
        assert calls[-1] is False, kw["image"].shape
        assert out.dtype == np.uint8
    with pytest.raises(sr.InputError, match="batch"):
        onnx.upscale(img, batch=0)
