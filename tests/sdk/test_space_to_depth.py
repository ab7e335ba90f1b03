"""Space-to-depth models (card ``arch_args.unshuffle``): the network computes on 2x2 cells, so
its input sides must be even and a pixel's result depends on where the cells are cut. The SDK
pads odd inputs and aligns every tile read to the image's cells, so tiled, region, block and
fixed-window results equal the whole-image one.

Torch-free (marked edge): the committed tiny_x4_s2d fixtures (tests/fixtures/make_fixtures.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk.tiling import Span, align_spans

pytestmark = pytest.mark.edge


@pytest.fixture(scope="module")
def s2d(fixtures_dir):
    return sr.load(fixtures_dir / "tiny_x4_s2d.onnx")


@pytest.fixture(scope="module")
def s2d_fixed(fixtures_dir):
    try:
        return sr.load(fixtures_dir / "tiny_x4_s2d_fixed.tflite")
    except sr.BackendUnavailable as exc:
        pytest.skip(str(exc))


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 31 * h + w).random((h, w), dtype=np.float32)


def test_card_and_backend_know_the_multiple(s2d, fixtures_dir):
    assert s2d.card.size_multiple == 2 and s2d.backend.size_multiple == 2
    assert s2d.card.halo == 5
    assert sr.load(fixtures_dir / "tiny_x4.onnx").card.size_multiple == 1


def test_card_refuses_a_bad_multiple(s2d):
    import dataclasses

    bad = dataclasses.replace(s2d.card, arch_args={**s2d.card.arch_args, "unshuffle": 0})
    with pytest.raises(sr.CardError, match="unshuffle"):
        bad.validate()


def test_odd_input_is_mirrored_to_even_and_cropped(s2d):
    """A direct backend call with odd sides: the far edges mirrored by one pixel, then cropped."""
    x = rand_image(13, 21)[None, None]
    got = s2d.backend.run(x)
    assert got.shape == (1, 1, 52, 84)
    even = s2d.backend.run(np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), mode="symmetric"))
    np.testing.assert_array_equal(got, even[:, :, :52, :84])


def test_align_spans_moves_reads_back_to_cells():
    spans = [Span(-5, 12, 0, 7), Span(2, 20, 7, 15)]
    got = align_spans(spans, 2, origin=1)
    assert all((s.read0 + 1) % 2 == 0 and s.length % 2 == 0 for s in got)
    assert [(s.keep0, s.keep1) for s in got] == [(0, 7), (7, 15)]
    assert all(g.read0 <= s.read0 and g.read1 >= s.read1 for g, s in zip(got, spans))
    fixed = align_spans(spans, 2, origin=0, fixed=True)
    assert [(s.read0, s.length) for s in fixed] == [(-6, 17), (2, 18)]
    assert align_spans(spans, 1) is spans


@pytest.mark.parametrize("which", ["s2d", "s2d_fixed"])
def test_every_read_is_aligned_and_covers_its_keep_with_the_halo(which, request):
    """The plan's invariants, for halo 0 (the live path's) as well: reads start on the image's
    cells, dynamic reads span whole cells, and every keep has at least the halo around it."""
    from scopesr.sdk.tiling import make_plan

    up = request.getfixturevalue(which)
    for h, w in ((1, 1), (7, 30), (48, 48), (61, 97)):
        for halo in (0, 5, 6):
            for origin in ((0, 0), (1, 0), (3, 5)):
                plan = make_plan(up.backend, h, w, None, halo, origin)
                for spans, o in ((plan.ys, origin[0]), (plan.xs, origin[1])):
                    for sp in spans:
                        assert (sp.read0 + o) % 2 == 0 and sp.length % 2 == 0, (h, w, halo, origin, sp)
                        assert sp.read0 <= sp.keep0 - halo and sp.read1 >= sp.keep1 + halo, (h, w, halo, origin, sp)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 7), (31, 33), (40, 40), (65, 63), (100, 37)])
def test_tiled_equals_whole_image(s2d, h, w):
    img = rand_image(h, w)
    whole = s2d.upscale(img, tile=max(h, w))
    assert whole.shape == (4 * h, 4 * w)
    for tile in (1, 5, 16, 31):
        for batch in (1, 3):
            tiled = s2d.upscale(img, tile=tile, batch=batch)
            np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0, err_msg=f"{h}x{w} tile={tile} batch={batch}")


@pytest.mark.parametrize("x0,y0", [(10, 12), (11, 12), (10, 13), (21, 7)])
def test_region_equals_the_same_region_of_the_whole_frame(s2d, x0, y0):
    """A camera ROI at an odd offset is cut into the frame's cells, not its own: the same
    pixels as the whole frame's result. (A frame with 5 % of its pixels at 0 and at 255 gives
    the ROI and the frame the same percentile range, hence the same normalisation.)"""
    rng = np.random.default_rng(4)
    frame = rng.integers(1, 255, (60, 70)).astype(np.uint8)
    pick = rng.random(frame.shape)
    frame[pick < 0.05], frame[pick > 0.95] = 0, 255
    whole = s2d.upscale(frame)
    for tile in (8, None):
        got = s2d.upscale_region(frame, (x0, y0, 24, 20), tile=tile)
        np.testing.assert_array_equal(got, whole[4 * y0 : 4 * (y0 + 20), 4 * x0 : 4 * (x0 + 24)])


@pytest.mark.parametrize("h,w", [(48, 48), (49, 50), (97, 130), (20, 7)])
@pytest.mark.parametrize("tile", [32, 48, None])
def test_fixed_tflite_matches_onnx_through_tiler(s2d, s2d_fixed, h, w, tile):
    """Fixed windows whose starts are moved back to the cells: equal to whole-image ONNX."""
    img = rand_image(h, w, seed=5)
    np.testing.assert_allclose(s2d_fixed.upscale(img, tile=tile), s2d.upscale(img, tile=max(h, w)), atol=1e-5)


def test_dask_blocks_equal_one_process(s2d, s2d_fixed):
    """Blocks start wherever the chunking puts them (odd offsets included); the cells follow
    the image's origin, so the result is the single-process one."""
    pytest.importorskip("dask")
    import scopesr.sdk.dask as srd

    img = (rand_image(101, 87, seed=6) * 4000).astype(np.uint16)
    for up in (s2d, s2d_fixed):
        ref = up.upscale(img)
        for chunk in (33, 50):
            got = srd.upscale(img, up, chunk=chunk).compute(scheduler="sync")
            np.testing.assert_allclose(got, ref, atol=1, err_msg=f"{up.card.name} chunk={chunk}")
