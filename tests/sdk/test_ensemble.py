"""Self-ensemble (``upscale(..., ensemble=N)``, ``sr-upscale --ensemble N``): the average of the
model over flipped/transposed copies, computed exactly, in every dtype, for stacks, with clear
errors. Torch-free (marked edge): runs on the committed tiny ONNX fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk import ensemble as E

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def up():
    return sr.load(FIX / "tiny_x4.onnx", num_threads=1)


def _by_hand(up, img: np.ndarray, n: int) -> np.ndarray:
    """The definition, with numpy's rot90/fliplr (not the module's own transforms)."""
    # id, left-right, top-bottom (= 180 then left-right), 180; then the four with a quarter turn
    copies = [(0, False), (0, True), (2, True), (2, False), (1, False), (1, True), (3, False), (3, True)][:n]
    acc = np.zeros((img.shape[0] * 4, img.shape[1] * 4))
    for k, flip in copies:
        x = np.rot90(img, k)
        x = np.fliplr(x) if flip else x
        y = up.upscale(np.ascontiguousarray(x)).astype(np.float64)
        y = np.fliplr(y) if flip else y
        acc += np.rot90(y, -k)
    return acc / len(copies)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ensemble_is_the_mean_of_the_turned_back_copies(up, n):
    img = np.random.default_rng(n).random((23, 37), dtype=np.float32)  # not square: transposes show
    got = up.upscale(img, ensemble=n)
    assert got.dtype == np.float32 and got.shape == (92, 148)
    np.testing.assert_allclose(got, _by_hand(up, img, n), atol=1e-5, rtol=0)
    assert np.abs(got - up.upscale(img)).max() > 1e-3  # the copies do differ: the test can fail


def test_one_copy_is_the_plain_result(up):
    img = np.random.default_rng(0).random((31, 29), dtype=np.float32)
    assert np.array_equal(up.upscale(img, ensemble=1), up.upscale(img))


def test_integer_images_are_averaged_in_float_then_rounded_once(up):
    img = (np.random.default_rng(1).random((20, 26)) * 4000).astype(np.uint16)
    got = up.upscale(img, ensemble=8)
    assert got.dtype == np.uint16
    # the float result of the same copies, rounded half up once
    ref = np.clip(np.floor(_by_hand(up, img.astype(np.float32), 8) + 0.5), 0, 65535).astype(np.uint16)
    assert np.abs(got.astype(np.int64) - ref).max() <= 1  # float32 vs uint16 input paths


def test_stacks_channels_and_tiles(up):
    rng = np.random.default_rng(2)
    stack = (rng.random((3, 18, 22, 2)) * 255).astype(np.uint8)  # ZYXC, channel by channel
    got = up.upscale(stack, axes="ZYXC", ensemble=4, tile=8)
    assert got.shape == (3, 72, 88, 2) and got.dtype == np.uint8
    for z in range(3):
        np.testing.assert_array_equal(got[z], up.upscale(stack[z], axes="YXC", ensemble=4))


def test_bad_ensemble_sizes_are_refused_with_the_choices(up):
    for bad in (3, 0, 16, True, 2.0, "8"):
        with pytest.raises(sr.InputError, match="ensemble must be one of 1, 2, 4, 8"):
            up.upscale(np.zeros((8, 8), np.float32), ensemble=bad)


def test_transforms_round_trip():
    a = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    for t in E.transforms(8):
        assert np.array_equal(E.inverse(E.forward(a, t), t), a)
    assert len({E.forward(a, t).tobytes() + bytes(E.forward(a, t).shape) for t in range(8)}) == 8


def test_cli_ensemble(tmp_path):
    import tifffile
    from click.testing import CliRunner

    from scopesr.sdk.cli import main

    img = (np.random.default_rng(3).random((24, 30)) * 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", img)
    r = CliRunner().invoke(
        main,
        [str(tmp_path / "a.tif"), "-o", str(tmp_path / "o"), "--model", str(FIX / "tiny_x4.onnx"), "--ensemble", "8"],
    )
    assert r.exit_code == 0, r.output
    out = tifffile.imread(tmp_path / "o" / "a_x4.tif")
    expected = sr.load(FIX / "tiny_x4.onnx").upscale(img, ensemble=8)
    assert np.abs(out.astype(np.int64) - expected).max() <= 1
    r = CliRunner().invoke(
        main,
        [
            str(tmp_path / "a.tif"),
            "-o",
            str(tmp_path / "s"),
            "--model",
            str(FIX / "tiny_x4.onnx"),
            "--ensemble",
            "2",
            "--stream-above",
            "0.001",
        ],
    )
    assert r.exit_code != 0 and "a.tif" in r.output and "--ensemble" in r.output
