"""Seam-free tiling: tiled == one-tile inference of the reflect-padded image, with real ONNX
Runtime / TFLite sessions (the border rule itself, over many sizes and backends, is in
test_borders.py).

All torch-free (marked edge): they run on the committed tiny artifacts in tests/fixtures.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk.tiling import Span, plan_axis

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"
HALO = 4  # the tiny fixture's receptive-field radius (from its card; checked below)

# sizes that are multiples of nothing in particular, smaller than a tile, and 1-pixel strips
SIZES = [(1, 1), (1, 57), (57, 1), (2, 3), (5, 70), (31, 33), (40, 40), (65, 63), (100, 37), (129, 97)]


@pytest.fixture(scope="module")
def onnx_up():
    return sr.load(FIX / "tiny_x4.onnx")


@pytest.fixture(scope="module")
def tfl_up():
    return sr.load(FIX / "tiny_x4_fixed.tflite")


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 31 * h + w).random((h, w), dtype=np.float32)


# ---------------------------------------------------------------------------- the plan
def _check_partition(spans: list[Span], n: int, tile: int, halo: int, fixed: bool) -> None:
    assert spans[0].keep0 == 0 and spans[-1].keep1 == n
    for a, b in zip(spans, spans[1:]):
        assert a.keep1 == b.keep0  # kept regions partition [0, n), in order
    for s in spans:
        assert 0 <= s.keep0 < s.keep1 <= n  # the keeps lie in the image
        # every kept pixel has a full halo of context, at the image border too (there it is
        # the image's reflection): the network's zero padding never reaches a kept pixel
        assert s.keep0 - s.read0 >= halo and s.read1 - s.keep1 >= halo
        if fixed:
            assert s.length == tile  # every read is exactly the fixed size
        else:
            assert s.length == min(tile, n) + 2 * halo  # one read size per axis: one batch


@pytest.mark.parametrize("n", [1, 2, 7, 16, 17, 31, 32, 33, 48, 49, 100, 255, 257, 1000])
@pytest.mark.parametrize("tile,halo", [(1, 0), (8, 4), (16, 2), (32, 4), (256, 10)])
def test_plan_dynamic_partitions_axis(n, tile, halo):
    spans = plan_axis(n, tile, halo, fixed=False)
    _check_partition(spans, n, tile, halo, fixed=False)
    if n > tile:  # the last tile moved back to end at the border: same read size as the others
        assert spans[-1].read1 == n + halo and spans[-1].keep1 - spans[-1].keep0 <= tile


@pytest.mark.parametrize("n", [1, 5, 31, 32, 33, 47, 48, 49, 95, 96, 97, 500])
@pytest.mark.parametrize("tile,halo", [(32, 4), (48, 4), (48, 10), (32, 15)])
def test_plan_fixed_partitions_axis(n, tile, halo):
    _check_partition(plan_axis(n, tile, halo, fixed=True), n, tile, halo, fixed=True)


@pytest.mark.parametrize("n", [1, 5, 46, 47, 100])
def test_plan_fixed_reads_a_halo_past_each_border(n):
    """A 64 window with halo 9 keeps 46: the first read starts a halo before the image, the
    last ends a halo after it (or further, for an image shorter than the core)."""
    spans = plan_axis(n, 64, 9, fixed=True)
    assert spans[0].read0 == -9 and spans[-1].read1 == max(n + 9, 64 - 9)
    assert len(spans) == -(-n // 46)


def test_plan_rejects_tile_without_centre():
    with pytest.raises(sr.ScopesrError, match="no centre"):
        plan_axis(100, 8, 4, fixed=True)


# ---------------------------------------------------------------------------- tiled == whole
def test_card_halo_is_the_fixture_radius(onnx_up):
    assert onnx_up.card.halo == HALO


def test_whole_image_path_is_plain_inference(onnx_up):
    """The single-tile path is exactly: percentile-normalise, mirror-pad by the halo (edge pixel
    repeated), run the session, crop the halo off, map back."""
    import onnxruntime as ort

    img = rand_image(37, 29)
    lo, hi = np.percentile(img, [0.1, 99.9])
    sess = ort.InferenceSession(str(FIX / "tiny_x4.onnx"), providers=["CPUExecutionProvider"])
    x = np.pad(((img - lo) / (hi - lo)).astype(np.float32), HALO, mode="symmetric")
    y = sess.run(None, {"lr": x[None, None]})[0][0, 0, 4 * HALO : -4 * HALO, 4 * HALO : -4 * HALO]
    ref = y * (hi - lo) + lo
    got = onnx_up.upscale(img, tile=1000)
    assert got.shape == (148, 116) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("h,w", SIZES)
def test_tiled_equals_whole_image(onnx_up, h, w):
    img = rand_image(h, w)
    whole = onnx_up.upscale(img, tile=max(h, w))
    assert whole.shape == (4 * h, 4 * w)
    for tile in (1, 5, 16, 32):
        for halo in ("auto", 6):
            for batch in (1, 3):
                tiled = onnx_up.upscale(img, tile=tile, halo=halo, batch=batch)
                np.testing.assert_allclose(
                    tiled, whole, atol=1e-5, rtol=0, err_msg=f"{h}x{w} tile={tile} halo={halo} batch={batch}"
                )


def test_tiled_equals_whole_rgb_uint16():
    up = sr.load(FIX / "tiny_x4_rgb.onnx")
    img = (np.random.default_rng(3).random((53, 71, 3)) * 50000).astype(np.uint16)
    whole = up.upscale(img, tile=100)
    tiled = up.upscale(img, tile=16)
    assert tiled.dtype == np.uint16 and tiled.shape == (212, 284, 3)
    # integers: identical except where float rounding lands on either side of .5
    assert np.abs(tiled.astype(np.int64) - whole).max() <= 1


def test_small_halo_warning_is_logged_once_per_value(caplog):
    """A stream calls upscale per frame: the seam warning must not repeat on every frame."""
    up = sr.load(FIX / "tiny_x4.onnx")  # its own upscaler: the module's may have warned already
    img = rand_image(32, 32)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            up.upscale(img, tile=16, halo=2)
        up.upscale(img, tile=16, halo=1)
    texts = [r.getMessage() for r in caplog.records if "seams may appear" in r.getMessage()]
    assert len(texts) == 2
    assert texts[0].startswith("halo 2 ") and texts[1].startswith("halo 1 ")


def test_halo_smaller_than_receptive_field_shows_seams(onnx_up, caplog):
    """Proves the comparison above can fail: too small a halo gives visible differences."""
    img = rand_image(64, 64)
    whole = onnx_up.upscale(img, tile=64)
    with caplog.at_level(logging.WARNING):
        seamy = onnx_up.upscale(img, tile=16, halo=1)
    assert "seams may appear" in caplog.text
    err = np.abs(seamy - whole)
    assert err.max() > 1e-2
    # and the differences sit only at the tile borders: within radius-halo = 3 LR pixels of
    # a seam (multiples of 16) or of the image's border (padded by 1, not 4: the network's
    # zero padding reaches 3 pixels in); everything further in is still exact
    lr = np.arange(64)
    near = np.isin(lr % 16, [0, 1, 2, 13, 14, 15])
    far = np.repeat(~near, 4)
    assert err[np.ix_(far, far)].max() < 1e-5
    assert err[np.repeat(near, 4)].max() > 1e-2


def test_default_tile_is_256(onnx_up):
    img = rand_image(300, 20)
    np.testing.assert_allclose(onnx_up.upscale(img), onnx_up.upscale(img, tile=300), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- fixed-size TFLite
@pytest.mark.parametrize("h,w", [(48, 48), (49, 50), (50, 77), (97, 130), (130, 49)])
@pytest.mark.parametrize("tile", [32, 48, None])
def test_fixed_tflite_matches_onnx_through_tiler(onnx_up, tfl_up, h, w, tile):
    """Same weights in two runtimes: the fixed-size tiler reproduces whole-image ONNX.

    Tolerance 1e-5: both are fp32 with the same weights, so they differ only in summation
    order (XNNPACK vs MLAS), measured ~1.5e-7 here; a misplaced tile or a missing halo
    gives errors > 1e-2 (see the seam test), far above it.
    """
    img = rand_image(h, w, seed=5)
    ref = onnx_up.upscale(img, tile=max(h, w))
    got = tfl_up.upscale(img, tile=tile)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("h,w", [(20, 20), (1, 60), (60, 7), (1, 1), (24, 24)])
def test_fixed_tflite_smaller_than_a_window_equals_onnx(onnx_up, tfl_up, h, w):
    """Smaller than the fixed size: the window reads the image's reflection beyond its border
    (as the dynamic path does), so every pixel, borders included, equals ONNX."""
    img = rand_image(h, w, seed=9)
    got = tfl_up.upscale(img)
    assert got.shape == (4 * h, 4 * w)
    np.testing.assert_allclose(got, onnx_up.upscale(img), atol=1e-5, rtol=0)


def test_fixed_tflite_rejects_unlisted_tile(tfl_up):
    with pytest.raises(sr.ScopesrError, match=r"one of 32, 48, got 40"):
        tfl_up.upscale(rand_image(64, 64), tile=40)


# ---------------------------------------------------------------------------- non-square fixed tiles
@pytest.fixture(scope="module")
def rect_up():
    return sr.load(FIX / "tiny_x4_rect.tflite")  # signatures lr32 and lr24x40 (H=24, W=40)


def test_rect_signatures_listed(rect_up):
    assert rect_up.backend.tile_shapes == [(24, 40), (32, 32)]
    assert rect_up.describe()["tile_sizes"] == [[24, 40], 32]


@pytest.mark.parametrize(
    "h,w,want", [(16, 32, (24, 40)), (12, 28, (24, 40)), (24, 24, (32, 32)), (20, 20, (32, 32)), (32, 16, (24, 40))]
)
def test_rect_tile_chosen_by_cost(rect_up, h, w, want):
    """A frame that fits the 24x40 window with its halo (16x32 + 2 x 4) runs in one call of it,
    not in squares; a 32x16 one is still cheaper as two 24x40 windows (2 x 960 px) than two
    32x32s."""
    from scopesr.sdk import make_plan

    plan = make_plan(rect_up.backend, h, w, None, HALO)
    assert plan.tile == want and plan.fixed
    if (h, w) == (16, 32):
        assert plan.n_tiles == 1 and plan.label == "1 x 24x40"


@pytest.mark.parametrize("h,w", [(24, 40), (20, 36), (60, 90), (97, 41)])
@pytest.mark.parametrize("tile", [None, (24, 40), "24x40", 32])
def test_rect_tflite_matches_onnx_through_tiler(onnx_up, rect_up, h, w, tile):
    """Non-square windows keep the seam-free guarantee: tiled == whole-image ONNX, borders too."""
    img = rand_image(h, w, seed=11)
    ref = onnx_up.upscale(img, tile=max(h, w))
    got = rect_up.upscale(img, tile=tile)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_rect_backend_rejects_transposed_window(rect_up):
    x = np.zeros((1, 1, 40, 24), np.float32)  # W x H swapped: not a signature
    with pytest.raises(sr.ModelIOError, match=r"tiles of 24x40, 32 LR px, got 40x24"):
        rect_up.backend.run(x)
    with pytest.raises(sr.ScopesrError, match=r"one of 24x40, 32, got 40x24"):
        rect_up.upscale(rand_image(64, 64), tile="40x24")


def test_parse_tile_forms():
    from scopesr.sdk import parse_tile

    assert parse_tile(None) is None
    assert parse_tile(64) == parse_tile("64") == (64, 64)
    assert parse_tile((120, 160)) == parse_tile("120x160") == parse_tile([120, 160]) == (120, 160)
    for bad in ("12x", "x12", "a", "1x2x3", "64,128", 1.5):
        with pytest.raises(sr.ScopesrError):
            parse_tile(bad)


# ---------------------------------------------------------------------------- memmap and bands
def test_memmap_in_and_out(onnx_up, tmp_path):
    img = rand_image(90, 70)
    src = np.memmap(tmp_path / "in.raw", dtype=np.float32, mode="w+", shape=img.shape)
    src[:] = img
    src.flush()
    src = np.memmap(tmp_path / "in.raw", dtype=np.float32, mode="r", shape=img.shape)
    dst = np.memmap(tmp_path / "out.raw", dtype=np.float32, mode="w+", shape=(360, 280))
    res = onnx_up.upscale(src, tile=32, out=dst)
    assert res is dst
    back = np.fromfile(tmp_path / "out.raw", dtype=np.float32).reshape(360, 280)
    np.testing.assert_allclose(back, onnx_up.upscale(img, tile=90), atol=1e-5, rtol=0)


def test_bands_cover_output_once_in_order(onnx_up):
    img = (rand_image(75, 41) * 60000).astype(np.uint16)
    full = onnx_up.upscale(img, tile=16)
    y = 0
    parts = []
    for y0, band in onnx_up.upscale_bands(img, tile=16):
        assert y0 == y and band.dtype == np.uint16 and band.shape[1] == 164 and band.ndim == 2
        y += band.shape[0]
        parts.append(band)
    assert y == 300
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_bands_reject_stacks(onnx_up):
    with pytest.raises(sr.ModelIOError, match="one 2-D image"):
        next(onnx_up.upscale_bands(np.zeros((6, 20, 20), np.uint8)))


def test_same_size_tiles_are_batched(onnx_up, monkeypatch):
    calls = []
    real = onnx_up.backend.run

    def spy(x):
        calls.append(x.shape)
        return real(x)

    monkeypatch.setattr(onnx_up.backend, "run", spy)
    img = rand_image(64, 64)
    onnx_up.upscale(img, tile=16, batch=4)
    # 4x4 tiles: every read is 16 + 2 x 4 = 24 px (at the image border too, reading its
    # reflection), so each row of tiles is one call of 4; every tile is run exactly once
    assert calls == [(4, 1, 24, 24)] * 4
    calls.clear()
    onnx_up.upscale(np.stack([img, img, img], axis=-1), tile=64)  # 3 channels through a 1-channel model
    assert calls == [(3, 1, 72, 72)]  # the channels ride in one batch
