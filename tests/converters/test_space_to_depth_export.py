"""A space-to-depth student (student-wide's layout) through the real converters and back into
the SDK: ONNX and int8 TFLite pass parity, the cards carry the cell size, odd tile sizes are
refused, and the SDK's tiled result equals the whole-image one on odd-sized images."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import scopesr.sdk as sr  # noqa: E402
from scopesr.converters import ConversionError, check_tile_sizes, convert  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wide_student(tmp_path_factory):
    from scopesr.trainer import create_model, save_generator

    torch.manual_seed(0)
    # student-wide's layout, narrower and shallower so the test is quick
    model = create_model("student-wide", channels=8, depth=1, anchor_kernel="bicubic")
    for p in model.parameters():  # the tail starts at zero: make the body matter
        torch.nn.init.normal_(p, std=0.05)
    out = tmp_path_factory.mktemp("wide") / "wide.safetensors"
    save_generator(model, out, "student-wide", model.cfg)
    return out


def test_odd_tile_sizes_are_refused_for_cells_of_two():
    with pytest.raises(ConversionError, match="multiples of 2"):
        check_tile_sizes([64, 97], halo=7, explicit=True, multiple=2)
    assert check_tile_sizes([64, (120, 160)], halo=7, explicit=True, multiple=2)[0] == [64, [120, 160]]


@pytest.mark.parametrize("target,precision", [("onnx", "fp32"), ("tflite", "int8")])
def test_converts_with_parity_and_tiles_seam_free(wide_student, tmp_path, target, precision):
    r = convert(
        wide_student,
        target,
        tmp_path / f"wide-{precision}.{target}",
        precision=precision,
        tile_sizes=[32, 48] if target == "tflite" else None,
    )
    assert r.passed, r.parity.table()
    assert r.card.size_multiple == 2 and r.card.halo == 7  # 2 x (1 + 1 + 1) + 1
    up = sr.load(r.artifact)
    # 5 % of the pixels at each end of the range: a region and the frame normalise alike
    rng = np.random.default_rng(1)
    img = rng.integers(1, 4000, (61, 45)).astype(np.uint16)
    pick = rng.random(img.shape)
    img[pick < 0.05], img[pick > 0.95] = 0, 4000
    # int8 windows of different sizes are calibrated apart (per signature), so compare one size
    tile = 64 if target == "onnx" else 32
    whole = up.upscale(img, tile=tile)
    assert whole.shape == (244, 180)
    if target == "onnx":
        np.testing.assert_array_equal(up.upscale(img, tile=9), whole)
    for x0, y0 in ((7, 10), (8, 11)):  # a region at odd offsets is cut into the frame's cells
        got = up.upscale_region(img, (x0, y0, 20, 24), tile=tile)
        np.testing.assert_array_equal(got, whole[4 * y0 : 4 * (y0 + 24), 4 * x0 : 4 * (x0 + 20)])
    with pytest.raises(ConversionError, match="multiples of 2"):
        convert(wide_student, "tflite", tmp_path / "odd.tflite", tile_sizes=[33])


@pytest.mark.parametrize("anchor_first", [True, False])
def test_int8_keeps_both_image_readers_in_float(anchor_first):
    """A space-to-depth head reads the image rearranged into cells (tensor 5, made from the
    input by layout ops), the bicubic anchor reads the image itself (the signature's input, 0):
    both, the first hidden layer and the tail (the residual) stay float, as for a plain
    student; the other hidden layers go int8."""
    from scopesr.converters.int8_rule import float_convolutions

    head, anchor = ("head", "CONV_2D", 5), ("anchor", "DEPTHWISE_CONV_2D", 0)
    hidden = [(f"h{i}", "CONV_2D", 6 + i) for i in range(4)] + [("tail", "CONV_2D", 10)]
    convs = [anchor, head, *hidden] if anchor_first else [head, *hidden, anchor]
    kept = {n for n, _ in float_convolutions(convs, {0, 5})}  # 5: the input rearranged by a layout op
    assert kept == {"head", "anchor", "h0", "tail"}


def test_release_windows_fit_live_sizes_with_the_alignment_margin(wide_student):
    """The release's TFLite windows hold a 64x64 ROI and a 160x120 frame in one call: for a
    space-to-depth model with the extra cell margin the tiler plans (make_plan), else the halo."""
    from scopesr.bench.release import tflite_tiles

    assert tflite_tiles(9) == [64, (120, 160), (240, 320), 82, (138, 178), (258, 338), 128, 256]
    r = convert(wide_student, "tflite", wide_student.parent / "w.tflite", tile_sizes=tflite_tiles(7, 2), verify=False)
    up = sr.load(r.artifact)
    for h, w in ((64, 64), (120, 160)):
        plan = sr.make_plan(up.backend, h, w, None, up.card.halo)
        assert plan.n_tiles == 1, (h, w, plan.label)
    assert sr.make_plan(up.backend, 64, 64, None, up.card.halo).tile == (80, 80)  # 64 + 2 x (7 + 1)


def test_onnx_int8_keeps_the_cell_reading_head_in_float(wide_student, tmp_path, monkeypatch):
    """In ONNX too (converters.onnx_target.float_conv_nodes): the head reads the image through the
    layout ops that cut it into cells, the anchor reads it as it is; both stay float, the
    hidden layer goes int8, and the file passes parity. ONNX Runtime's shape inference gives up
    on these reshapes and used to leave its scratch files in the working directory: none now."""
    import onnx

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    r = convert(wide_student, "onnx", tmp_path / "wide-int8.onnx", precision="int8")
    assert r.passed, r.parity.table()
    assert not list(cwd.iterdir())
    g = onnx.load(str(r.artifact)).graph
    producer = {o: n for n in g.node for o in n.output}
    image = {g.input[0].name}
    for n in g.node:  # the input and what non-convolution ops make of it before any convolution
        if n.op_type not in ("Conv", "QuantizeLinear", "DequantizeLinear") and any(i in image for i in n.input):
            image.update(n.output)
    convs = [n for n in g.node if n.op_type == "Conv"]
    int8 = {n.name for n in convs if n.input[1] in producer and producer[n.input[1]].op_type == "DequantizeLinear"}
    readers = [n for n in convs if n.input[0] in image]
    assert len(readers) == 2 and not {n.name for n in readers} & int8  # head (cells) and anchor: float
    assert any(n.input[0] != g.input[0].name for n in readers)  # one of them reads the cells
    assert int8, "no convolution went int8"
