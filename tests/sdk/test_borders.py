"""One border rule for every backend: the network sees the image mirror-padded by the halo
(the mirror image about the border, edge pixel repeated: numpy's ``symmetric``).

So ONNX (dynamic), TFLite (fixed windows, square or not), .pt2 (torch), Core ML (macOS) and the
Dask path give the same output as one reference, ``crop(network(pad_image(image, halo)))``
computed here with a bare ONNX Runtime session, on images of any size: 1-pixel strips, images
smaller than a window, odd and non-square ones, several windows. Before the rule, the fixed
window path padded short axes after the image while the dynamic path let the network's zero
padding act: the two differed along a halo-wide band at the image's edges.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk.normalize import compute_stats
from scopesr.sdk.tiling import pad_image, reflect_index

FIX = Path(__file__).resolve().parents[1] / "fixtures"
HALO = 4  # the tiny fixtures' receptive-field radius
S = 4

# odd, tiny, 1-pixel, non-square, around the fixed windows' cores (32 - 8 = 24, 48 - 8 = 40,
# the 24x40 window's 16x32) and larger than every window
SHAPES = [
    (1, 1),
    (1, 2),
    (2, 1),
    (1, 57),
    (57, 1),
    (2, 3),
    (3, 3),
    (5, 70),
    (7, 9),
    (16, 32),
    (17, 33),
    (23, 23),
    (24, 24),
    (25, 41),
    (31, 33),
    (40, 40),
    (41, 47),
    (48, 48),
    (65, 63),
    (100, 37),
    (129, 97),
]


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 31 * h + w).random((h, w), dtype=np.float32)


@pytest.fixture(scope="module")
def session():
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(FIX / "tiny_x4.onnx"), providers=["CPUExecutionProvider"])


def reference(session, img: np.ndarray, halo: int = HALO) -> np.ndarray:
    """The rule, written out: normalise with the frame's statistics, reflect-pad by the halo,
    run the whole padded image once, crop the halo off, map back."""
    card = sr.ModelCard.load(FIX / "tiny_x4.onnx")
    stats = compute_stats(img[..., None], card.normalisation)
    x = pad_image(stats.normalise(img[..., None])[..., 0], halo)
    y = session.run(None, {"lr": x[None, None]})[0][0, 0]
    h, w = img.shape
    core = y[halo * S : (halo + h) * S, halo * S : (halo + w) * S]
    return stats.denormalise(core[..., None], np.dtype(np.float32))[..., 0]


# ---------------------------------------------------------------------------- the rule itself
@pytest.mark.edge
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("width", [0, 1, 4, 9, 23])
def test_reflect_index_is_numpys_symmetric_at_any_width(n, width):
    a = np.arange(n)
    got = a[reflect_index(np.arange(-width, n + width), n)]
    np.testing.assert_array_equal(got, np.pad(a, width, mode="symmetric"))


@pytest.mark.edge
def test_pad_image_mirrors_about_the_border():
    img = np.arange(12).reshape(3, 4)
    p = pad_image(img, 2)
    assert p.shape == (7, 8)
    np.testing.assert_array_equal(p[:2, 2:-2], img[1::-1])  # the edge row repeated, then the next
    np.testing.assert_array_equal(p, np.pad(img, 2, mode="symmetric"))
    np.testing.assert_array_equal(pad_image(np.array([[7]]), 3), np.full((7, 7), 7))


# ---------------------------------------------------------------------------- every backend, every size
@pytest.fixture(scope="module")
def onnx_up():
    return sr.load(FIX / "tiny_x4.onnx")


@pytest.fixture(scope="module")
def fixed_up():
    pytest.importorskip("ai_edge_litert")
    return sr.load(FIX / "tiny_x4_fixed.tflite")  # windows 32 and 48


@pytest.fixture(scope="module")
def rect_up():
    pytest.importorskip("ai_edge_litert")
    return sr.load(FIX / "tiny_x4_rect.tflite")  # windows 32 and 24x40


@pytest.mark.edge
@pytest.mark.parametrize("h,w", SHAPES)
def test_onnx_equals_the_rule(session, onnx_up, h, w):
    img = rand_image(h, w)
    ref = reference(session, img)
    for tile in (None, 1, 8, 16):
        got = onnx_up.upscale(img, tile=tile)
        assert got.shape == (S * h, S * w)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0, err_msg=f"{h}x{w} tile={tile}")


@pytest.mark.edge
@pytest.mark.parametrize("h,w", SHAPES)
@pytest.mark.parametrize("artifact", ["fixed", "rect"])
def test_tflite_windows_equal_the_rule(session, fixed_up, rect_up, h, w, artifact):
    """Fixed windows: smaller than a window, exactly one, or many; borders included."""
    up = fixed_up if artifact == "fixed" else rect_up
    img = rand_image(h, w)
    ref = reference(session, img)
    for tile in [None, *up.backend.tile_shapes]:
        got = up.upscale(img, tile=tile)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0, err_msg=f"{h}x{w} tile={tile}")


@pytest.mark.edge
@pytest.mark.parametrize("h,w", [(1, 1), (1, 40), (20, 20), (33, 70)])
def test_user_halo_is_the_padding(session, onnx_up, fixed_up, h, w):
    """A larger halo than the card's pads by that much: the same numbers (the network never
    sees beyond its receptive field); ONNX and TFLite agree for it as well."""
    img = rand_image(h, w, seed=2)
    ref = reference(session, img)
    np.testing.assert_allclose(onnx_up.upscale(img, halo=6), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(fixed_up.upscale(img, halo=6), ref, atol=1e-5, rtol=0)


@pytest.mark.edge
def test_a_smaller_halo_lets_the_zero_padding_in(session, onnx_up):
    """Proves the comparisons above can fail: with halo 1 (< the receptive field) the network's
    zero padding reaches 3 LR pixels into the image, and only there."""
    img = rand_image(40, 40, seed=3)
    got = onnx_up.upscale(img, halo=1, tile=64)
    err = np.abs(got - reference(session, img))
    lr = np.arange(40)
    edge = np.repeat((lr < HALO - 1) | (lr >= 40 - HALO + 1), S)
    assert err[edge].max() > 1e-2
    assert err[np.ix_(~edge, ~edge)].max() < 1e-5


@pytest.mark.edge
def test_channels_and_stacks_follow_the_rule(session, onnx_up, fixed_up):
    """Per-channel and per-frame runs pad each plane the same way."""
    rng = np.random.default_rng(5)
    stack = rng.random((3, 9, 14), dtype=np.float32)
    for up in (onnx_up, fixed_up):
        got = up.upscale(stack, axes="ZYX")
        for z in range(3):
            np.testing.assert_allclose(got[z], reference(session, stack[z]), atol=1e-5, rtol=0)
        rgb = np.moveaxis(stack, 0, -1)  # 3 channels through the 1-channel model
        got = up.upscale(rgb, axes="YXC")
        for c in range(3):
            np.testing.assert_allclose(got[..., c], reference(session, rgb[..., c]), atol=1e-5, rtol=0)


@pytest.mark.edge
@pytest.mark.parametrize("h,w", [(1, 1), (5, 70), (37, 29), (100, 37)])
def test_bands_follow_the_rule(session, onnx_up, fixed_up, h, w):
    img = rand_image(h, w, seed=7)
    ref = reference(session, img)
    for up in (onnx_up, fixed_up):
        bands = [b for _, b in up.upscale_bands(img, tile=None if up is fixed_up else 16)]
        np.testing.assert_allclose(np.concatenate(bands), ref, atol=1e-5, rtol=0)


@pytest.mark.edge
@pytest.mark.parametrize("h,w", [(96, 80), (64, 64), (33, 47), (1, 50), (7, 7), (120, 128)])
def test_bundled_default_onnx_and_tflite_fp32_agree_at_the_borders(h, w):
    """The bundled default's ONNX and TFLite fp32 (same weights) on uint16 crops of the bundled
    sample: at most 1 grey level apart anywhere (float rounding landing either side of .5);
    before the rule they differed by up to 44 grey levels (of 218) along the border band."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    tifffile = pytest.importorskip("tifffile")
    lr = tifffile.imread(Path(sr.__file__).parent / "data" / "sample_nuclei.tif")
    onnx = sr.load(sr.default_model_path("onnx"))
    tfl = sr.load(sr.default_model_path("tflite"))
    for y, x in ((0, 0), (lr.shape[0] - h, lr.shape[1] - w), (11, 5)):
        crop = lr[y : y + h, x : x + w]
        d = np.abs(onnx.upscale(crop).astype(np.int64) - tfl.upscale(crop).astype(np.int64))
        assert d.max() <= 1, f"{h}x{w} at ({y}, {x}): {d.max()} grey levels"


# ---------------------------------------------------------------------------- torch (.pt2)
@pytest.fixture(scope="module")
def pt2_up(tmp_path_factory, fixture_script):
    """The ONNX fixture's network rebuilt (same seed, same weights) and torch.exported."""
    p = fixture_script.export_pt2(tmp_path_factory.mktemp("pt2"))
    return sr.load(p, device="cpu")


@pytest.mark.parametrize("h,w", SHAPES)
def test_pt2_equals_the_rule(session, pt2_up, h, w):
    img = rand_image(h, w)
    ref = reference(session, img)
    for tile in (None, 8):
        np.testing.assert_allclose(pt2_up.upscale(img, tile=tile), ref, atol=1e-5, rtol=0, err_msg=f"{h}x{w}")


# ---------------------------------------------------------------------------- Core ML (macOS)
@pytest.mark.macos
@pytest.mark.slow
@pytest.mark.parametrize("fixed", [False, True])
def test_coreml_equals_the_rule(session, tmp_path, fixed, fixture_script):
    """The same network as an .mlpackage (flexible shapes, or enumerated 32 and 48 windows)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("coremltools")
    from scopesr.converters import convert

    torch.manual_seed(0)
    model = fixture_script.TinyX4(1).eval()
    card = dataclasses.replace(sr.ModelCard.load(FIX / "tiny_x4.onnx"), format="mlpackage")
    res = convert(
        model,
        "coreml",
        out=tmp_path / "tiny_x4.mlpackage",
        precision="fp32",
        tile_sizes=[32, 48] if fixed else None,
        card=card,
        verify=False,
    )
    up = sr.load(res.path, device="cpu")
    for h, w in [(1, 1), (1, 57), (7, 9), (24, 24), (41, 47), (65, 63)]:
        img = rand_image(h, w)
        np.testing.assert_allclose(up.upscale(img), reference(session, img), atol=1e-4, rtol=0, err_msg=f"{h}x{w}")


# ---------------------------------------------------------------------------- Dask
@pytest.mark.edge
@pytest.mark.parametrize("h,w,chunk", [(1, 1, 8), (5, 70, 8), (37, 29, 8), (65, 63, 16), (100, 37, 32)])
def test_dask_blocks_follow_the_rule(session, onnx_up, fixed_up, h, w, chunk):
    """Blocks at the image's border read its reflection from their own pixels: ONNX equals one
    process bit for bit, and the rule to float rounding; the fixed windows too."""
    pytest.importorskip("dask")
    import scopesr.sdk.dask as srd

    img = rand_image(h, w, seed=8)
    got = srd.upscale(img, onnx_up, chunk=chunk).compute(scheduler="sync")
    np.testing.assert_array_equal(got, onnx_up.upscale(img))
    np.testing.assert_allclose(got, reference(session, img), atol=1e-5, rtol=0)
    got = srd.upscale(img, fixed_up, chunk=chunk).compute(scheduler="sync")
    np.testing.assert_allclose(got, reference(session, img), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- a region of a frame
def region_reference(session, frame: np.ndarray, roi, halo: int = HALO) -> np.ndarray:
    """A region's rule: the region's statistics; context from the frame, reflected only past the
    frame's border: the frame padded by the halo, cut around the region, run once, cropped."""
    x0, y0, w, h = roi
    card = sr.ModelCard.load(FIX / "tiny_x4.onnx")
    stats = compute_stats(frame[y0 : y0 + h, x0 : x0 + w, None], card.normalisation)
    padded = pad_image(stats.normalise(frame[..., None])[..., 0], halo)
    x = np.ascontiguousarray(padded[y0 : y0 + h + 2 * halo, x0 : x0 + w + 2 * halo])
    y = session.run(None, {"lr": x[None, None]})[0][0, 0]
    core = y[halo * S : (halo + h) * S, halo * S : (halo + w) * S]
    return stats.denormalise(core[..., None], np.dtype(np.float32))[..., 0]


# inside, touching each border, the whole frame, 1-pixel ROIs, one larger than every fixed window
ROIS = [(20, 10, 24, 24), (0, 0, 16, 16), (37, 30, 20, 17), (0, 0, 57, 47), (56, 46, 1, 1), (3, 5, 50, 41)]


@pytest.mark.edge
@pytest.mark.parametrize("roi", ROIS)
def test_a_region_takes_its_context_from_the_frame(session, onnx_up, fixed_up, rect_up, roi):
    frame = rand_image(47, 57, seed=5)
    ref = region_reference(session, frame, roi)
    for name, up in (("onnx", onnx_up), ("tflite-fixed", fixed_up), ("tflite-rect", rect_up)):
        for tile in (None, 8):
            got = up.upscale_region(frame, roi, tile=tile if name == "onnx" else None)
            np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0, err_msg=f"{name} {roi} tile={tile}")
    x0, y0, w, h = roi
    if (x0, y0, w, h) == (0, 0, 57, 47):  # the whole frame is upscale() itself
        np.testing.assert_allclose(ref, onnx_up.upscale(frame), atol=1e-5, rtol=0)


@pytest.mark.edge
def test_halo_zero_on_one_tile_is_the_networks_own_zero_padding(session, onnx_up, fixed_up, caplog):
    """The live path's halo 0: a frame that runs as one tile has no seams (no warning), and the
    network sees exactly the frame, its own zero padding past the edge, on every backend."""
    img = rand_image(32, 32, seed=5)  # one of the fixed file's windows: no padding there either
    want = reference(session, img, halo=0)
    with caplog.at_level(logging.WARNING):
        got = onnx_up.upscale(img, halo=0)
        got_fixed = fixed_up.upscale(img, halo=0)
    assert "seams" not in caplog.text
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_fixed, want, atol=2e-4, rtol=0)
    assert np.abs(got - onnx_up.upscale(img)).max() > 1e-3  # the mirror rule's edge differs
    frame = rand_image(60, 60, seed=9)
    roi = (16, 16, 28, 28)
    np.testing.assert_allclose(
        onnx_up.upscale_region(frame, roi, halo=0), onnx_up.upscale(sr.crop_roi(frame, roi), halo=0), atol=1e-5
    )


@pytest.mark.edge
def test_fast_halo_is_zero_only_where_the_region_runs_as_one_tile(onnx_up, fixed_up):
    """halo="fast" (live frames): 0 where the region runs as one tile without a halo and so
    computes fewer pixels; else the receptive field (halo 0 would leave seams between tiles, or a
    fixed-size file would pad to a larger window anyway). Its pixels are those of that halo."""
    assert onnx_up.resolve_halo("fast", 32, 32) == 0
    assert onnx_up.resolve_halo("fast", 600, 800) == HALO  # several tiles of the default size
    assert fixed_up.resolve_halo("fast", 32, 32) == 0  # the file has a 32x32 window
    assert fixed_up.resolve_halo("fast", 30, 30) == 0  # the 32x32 window instead of the 48x48
    assert fixed_up.resolve_halo("fast", 40, 40) == HALO  # the 48x48 window either way: same cost
    assert onnx_up.resolve_halo("auto", 32, 32) == HALO and onnx_up.resolve_halo(2, 32, 32) == 2
    with pytest.raises(sr.InputError, match="'fast'"):
        onnx_up.resolve_halo("wide", 32, 32)
    frame = rand_image(60, 60, seed=9)
    roi = (16, 16, 32, 32)
    np.testing.assert_array_equal(
        onnx_up.upscale_region(frame, roi, halo="fast"), onnx_up.upscale_region(frame, roi, halo=0)
    )
    img = rand_image(32, 32, seed=3)
    np.testing.assert_array_equal(onnx_up.upscale(img, halo="fast"), onnx_up.upscale(img, halo=0))
    bands = np.concatenate([b for _, b in onnx_up.upscale_bands(img, halo="fast")])
    np.testing.assert_array_equal(bands, onnx_up.upscale(img, halo=0))  # one rule for every entry point
    # flipped/transposed ensemble copies keep the receptive field
    np.testing.assert_array_equal(onnx_up.upscale(img, halo="fast", ensemble=2), onnx_up.upscale(img, ensemble=2))


@pytest.mark.edge
def test_a_region_differs_from_its_crop_only_within_a_halo_of_its_edge(onnx_up):
    """upscale(crop) mirrors the crop's own edge; the region sees the real neighbours. Beyond a
    halo from the region's edge the two agree (same statistics, same pixels in reach)."""
    frame = rand_image(60, 60, seed=9)
    roi = (16, 16, 28, 28)
    region = onnx_up.upscale_region(frame, roi)
    crop = onnx_up.upscale(sr.crop_roi(frame, roi))
    inner = slice(HALO * S, (28 - HALO) * S)
    np.testing.assert_allclose(region[inner, inner], crop[inner, inner], atol=1e-5, rtol=0)
    assert np.abs(region - crop).max() > 1e-3  # the edge band did change


@pytest.mark.edge
def test_regions_of_colour_frames_stacks_and_bad_rois(session, onnx_up):
    rgb = np.stack([rand_image(30, 40, seed=k) for k in range(3)], axis=-1)
    roi = (5, 6, 20, 12)
    got = onnx_up.upscale_region(rgb, roi)  # a 1-channel model runs channel by channel
    assert got.shape == (48, 80, 3) and got.dtype == rgb.dtype
    for c in range(3):
        np.testing.assert_allclose(got[..., c], region_reference(session, rgb[..., c], roi), atol=1e-5, rtol=0)
    chw = onnx_up.upscale_region(np.moveaxis(rgb, -1, 0), roi, axes="CYX")
    np.testing.assert_allclose(chw, np.moveaxis(got, -1, 0), atol=1e-6, rtol=0)
    u16 = (rand_image(30, 40) * 4000).astype(np.uint16)
    assert onnx_up.upscale_region(u16, roi).dtype == np.uint16
    with pytest.raises(sr.ModelIOError, match="not inside the 40x30 frame"):
        onnx_up.upscale_region(u16, (30, 0, 20, 10))
    with pytest.raises(sr.ModelIOError, match=r"\(x, y, w, h\)"):
        onnx_up.upscale_region(u16, (1, 2, 3))
    with pytest.raises(sr.ModelIOError, match="one 2-D image"):
        onnx_up.upscale_region(np.zeros((2, 30, 40), np.float32), roi, axes="ZYX")
    bad = u16.astype(np.float32)
    bad[0, 0] = np.nan  # within the region's context (a halo from it): refused
    with pytest.raises(sr.ModelIOError, match="NaN"):
        onnx_up.upscale_region(bad, (2, 2, 8, 8))
    assert onnx_up.upscale_region(bad, (20, 10, 8, 8)).shape == (32, 32)  # out of reach: fine


@pytest.mark.edge
def test_stream_roi_is_the_region_of_each_frame(onnx_up):
    frames = [rand_image(40, 50, seed=k) for k in range(3)]
    roi = (10, 8, 24, 20)
    for f, frame in zip(onnx_up.stream(frames, roi=roi), frames):
        np.testing.assert_array_equal(f.image, onnx_up.upscale_region(frame, roi))
