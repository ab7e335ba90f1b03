"""``upscale(..., strength=T)`` / ``sr-upscale --strength T``: ``bicubic + T * (model - bicubic)``
per plane in float, rounded once; 1 is the model, 0 PIL bicubic. Torch-free (marked edge): runs
on the committed tiny ONNX fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk import quality

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def up():
    return sr.load(FIX / "tiny_x4.onnx", num_threads=1)


def _blend(up, img: np.ndarray, t: float, ensemble: int = 1) -> np.ndarray:
    """The definition, from the plain result and PIL's bicubic (float64)."""
    b = quality.upscale_bicubic(img, 4)
    y = up.upscale(img.astype(np.float32), ensemble=ensemble).astype(np.float64)
    return b + t * (y - b)


@pytest.mark.parametrize("t", [0.0, 0.5, 1.5])
def test_strength_blends_the_model_with_bicubic(up, t):
    img = np.random.default_rng(1).random((23, 37), dtype=np.float32)
    got = up.upscale(img, strength=t)
    assert got.dtype == np.float32 and got.shape == (92, 148)
    np.testing.assert_allclose(got, _blend(up, img, t), atol=1e-5, rtol=0)
    # the model does differ from bicubic here, so the blend is not the model itself
    assert np.abs(got - up.upscale(img)).max() > 1e-3


def test_strength_one_is_the_plain_result(up):
    img = (np.random.default_rng(2).random((31, 29)) * 4000).astype(np.uint16)
    assert np.array_equal(up.upscale(img, strength=1.0), up.upscale(img))
    assert np.array_equal(up.upscale(img, strength=1), up.upscale(img))


def test_integer_images_blend_in_float_then_round_once(up):
    img = (np.random.default_rng(3).random((20, 26)) * 4000).astype(np.uint16)
    zero = up.upscale(img, strength=0.0)
    assert zero.dtype == np.uint16
    # strength 0 is PIL bicubic of the image, as every quality table scores it (ties may round apart)
    diff = np.abs(zero.astype(np.int64) - quality.bicubic_baseline(img, 4))
    assert diff.max() <= 1 and diff.mean() < 0.01
    half = up.upscale(img, strength=0.5)
    ref = np.clip(np.floor(_blend(up, img, 0.5) + 0.5), 0, 65535)
    assert np.abs(half - ref).max() <= 1  # float32 vs uint16 input paths


def test_with_the_ensemble_stacks_channels_and_tiles(up):
    rng = np.random.default_rng(4)
    img = rng.random((18, 22), dtype=np.float32)
    got = up.upscale(img, strength=0.5, ensemble=4)
    np.testing.assert_allclose(got, _blend(up, img, 0.5, ensemble=4), atol=1e-5, rtol=0)
    stack = (rng.random((3, 18, 22, 2)) * 255).astype(np.uint8)  # ZYXC, channel by channel
    got = up.upscale(stack, axes="ZYXC", strength=0.5, tile=8)
    assert got.shape == (3, 72, 88, 2) and got.dtype == np.uint8
    for z in range(3):
        np.testing.assert_array_equal(got[z], up.upscale(stack[z], axes="YXC", strength=0.5))


def test_bad_strengths_are_refused_with_the_range(up):
    for bad in (-0.1, 2.01, float("nan"), float("inf"), True, "0.5", None):
        with pytest.raises(sr.InputError, match="strength must be a number from 0"):
            up.upscale(np.zeros((8, 8), np.float32), strength=bad)


def test_cli_strength(tmp_path):
    import tifffile
    from click.testing import CliRunner

    from scopesr.sdk.cli import main

    img = (np.random.default_rng(5).random((24, 30)) * 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", img)
    base = [str(tmp_path / "a.tif"), "--model", str(FIX / "tiny_x4.onnx")]
    r = CliRunner().invoke(main, [*base, "-o", str(tmp_path / "o"), "--strength", "0.5"])
    assert r.exit_code == 0, r.output
    expected = sr.load(FIX / "tiny_x4.onnx").upscale(img, strength=0.5)
    assert np.abs(tifffile.imread(tmp_path / "o" / "a_x4.tif").astype(np.int64) - expected).max() <= 1
    r = CliRunner().invoke(main, [*base, "-o", str(tmp_path / "bad"), "--strength", "3"])
    assert r.exit_code == 2 and "--strength" in r.output
    r = CliRunner().invoke(main, [*base, "-o", str(tmp_path / "s"), "--strength", "0.5", "--stream-above", "0.001"])
    assert r.exit_code != 0 and "a.tif" in r.output and "--strength" in r.output
    r = CliRunner().invoke(main, [*base, "-o", str(tmp_path / "z"), "--strength", "0.5", "--format", "ome-zarr"])
    assert r.exit_code == 2 and "--strength works on in-memory results" in r.output
