"""sr-upscale end to end on the committed tiny models and real images (torch-free: edge)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image as PILImage

import scopesr.sdk as sr
from scopesr.sdk import read_image, write_image
from scopesr.sdk import upscaler as upscaler_mod
from scopesr.sdk.cli import main
from scopesr.sdk.compare import GAP, HEADER, _outline, detail_window, to_uint8

pytestmark = pytest.mark.edge
RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def model(fixtures_dir) -> Path:
    return fixtures_dir / "tiny_x4.onnx"


@pytest.fixture(scope="module")
def up(model):
    return sr.load(model)


def run(*args) -> click.testing.Result:  # noqa: F821
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def no_temp_files(folder: Path) -> bool:
    return not [f for f in folder.rglob("*") if f.name.startswith(".") or f.suffix == ".tmp"]


def test_files_folders_and_stacks(tmp_path, model, up):
    src = tmp_path / "in"
    src.mkdir()
    images = {
        "grey16.tif": (RNG.integers(0, 4000, (40, 52)).astype(np.uint16), "YX"),
        "grey8.png": (RNG.integers(0, 255, (33, 47)).astype(np.uint8), "YX"),
        "rgb.png": (RNG.integers(0, 255, (30, 35, 3)).astype(np.uint8), "YXC"),
        "stack.tif": (RNG.integers(0, 255, (3, 24, 28)).astype(np.uint8), "ZYX"),
        "lapse.tif": (RNG.random((2, 20, 22), dtype=np.float32), "TYX"),
        "multi.tif": (RNG.integers(0, 60000, (20, 26, 5)).astype(np.uint16), "YXC"),
    }
    for name, (a, axes) in images.items():
        write_image(src / name, a, axes)
    extra = tmp_path / "single.tif"
    write_image(extra, images["grey16.tif"][0][:17, :9], "YX")
    out = tmp_path / "out"
    res = run(src, extra, "-o", out, "--model", model)
    assert res.exit_code == 0, res.output
    expected_names = {
        "grey16_x4.tif",
        "grey8_x4.png",
        "rgb_x4.png",
        "stack_x4.tif",
        "lapse_x4.tif",
        "multi_x4.tif",
        "single_x4.tif",
    }
    assert {f.name for f in out.iterdir()} == expected_names
    for name, (a, axes) in images.items():
        stem, _ = name.rsplit(".", 1)
        got = read_image(next(out.glob(f"{stem}_x4.*")))
        assert got.axes == axes and got.dtype == a.dtype
        np.testing.assert_array_equal(got.array, up.upscale(a, axes=axes))  # the SDK's own result
    assert no_temp_files(out)


def test_imagej_hyperstack_stays_imagej(tmp_path, model, up):
    a = RNG.integers(0, 4000, (2, 3, 2, 16, 20)).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "h.tif",
        a,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TZCYX", "spacing": 0.7, "unit": "um", "finterval": 5.0},
    )
    res = run(tmp_path / "h.tif", "-o", tmp_path / "o", "--model", model)
    assert res.exit_code == 0, res.output
    with tifffile.TiffFile(tmp_path / "o" / "h_x4.tif") as t:
        assert t.is_imagej and t.series[0].axes == "TZCYX"
        ij = t.imagej_metadata
        assert (ij["spacing"], ij["unit"], ij["finterval"]) == (0.7, "um", 5.0)
        assert t.pages[0].resolution == pytest.approx((8.0, 8.0))  # pixels per um x4
        np.testing.assert_array_equal(t.asarray(), up.upscale(a, axes="TZCYX"))


def test_real_image_and_compare(tmp_path, model, up, real_image):
    src = real_image("stardist-nuclei-2d")
    res = run(src, "-o", tmp_path, "--model", model, "--compare", "--tile", "100")
    assert res.exit_code == 0, res.output
    lr = read_image(src)
    hr = read_image(tmp_path / "img2d_x4.tif")
    assert hr.shape == (2048, 2048) and hr.dtype == np.uint16
    np.testing.assert_array_equal(hr.array, up.upscale(lr.array, tile=100))
    cmp = np.asarray(PILImage.open(tmp_path / "img2d_compare.png"))
    # 3 panels of a 256x256 LR centre crop at x4, side by side under a label strip, and below
    # them a row of the same 256x256 detail of each, 4x larger
    assert cmp.shape == (2 * HEADER + 2 * 1024, 3 * 1024 + 2 * GAP)
    crop = lr.array[128:384, 128:384]
    lo, hi = np.percentile(crop, (0.5, 99.8))
    nearest = to_uint8(np.repeat(np.repeat(crop, 4, 0), 4, 1), lo, hi)
    model = to_uint8(hr.array[512:1536, 512:1536], lo, hi)
    dy, dx, size = detail_window(model)
    assert size == 256 and model[dy : dy + size, dx : dx + size].std() >= model[:size, :size].std()
    top = slice(HEADER, HEADER + 1024)
    np.testing.assert_array_equal(cmp[top, :1024], _outline(nearest, dy, dx, size))
    np.testing.assert_array_equal(cmp[top, 2 * (1024 + GAP) :], _outline(model, dy, dx, size))
    zoomed = np.repeat(np.repeat(model[dy : dy + size, dx : dx + size], 4, 0), 4, 1)
    np.testing.assert_array_equal(cmp[2 * HEADER + 1024 :, 2 * (1024 + GAP) :], zoomed)
    assert (cmp[:HEADER] > 0).any() and (cmp[HEADER + 1024 : 2 * HEADER + 1024] > 0).any()  # labels drawn
    bicubic = cmp[top, 1024 + GAP : 2 * 1024 + GAP].astype(int)
    assert np.abs(bicubic - nearest).mean() > 0.5  # a different method, not a copy


def test_compare_stack_rgb(tmp_path, model):
    a = RNG.integers(0, 255, (5, 20, 24)).astype(np.uint8)
    write_image(tmp_path / "s.tif", a, "ZYX")
    rgb = RNG.integers(0, 255, (20, 24, 3)).astype(np.uint8)
    write_image(tmp_path / "c.png", rgb, "YXC")
    res = run(tmp_path / "s.tif", tmp_path / "c.png", "-o", tmp_path / "o", "--model", model, "--compare")
    assert res.exit_code == 0, res.output
    s = np.asarray(PILImage.open(tmp_path / "o" / "s_compare.png"))
    assert s.shape == (HEADER + 80, 3 * 96 + 2 * GAP)
    np.testing.assert_array_equal(s[HEADER:, :96], np.repeat(np.repeat(a[2], 4, 0), 4, 1))  # middle slice
    c = np.asarray(PILImage.open(tmp_path / "o" / "c_compare.png"))
    assert c.shape == (HEADER + 80, 3 * 96 + 2 * GAP, 3)


def test_streaming_equals_in_memory(tmp_path, model, up):
    """The BigTIFF strip writer path gives the same bytes as the in-memory path (600x500)."""
    a = RNG.integers(0, 30000, (500, 600)).astype(np.uint16)
    stack = RNG.integers(0, 255, (2, 70, 90, 3)).astype(np.uint8)
    write_image(tmp_path / "big.tif", a, "YX")
    write_image(tmp_path / "st.tif", stack, "ZYXC")
    r1 = run(tmp_path / "big.tif", tmp_path / "st.tif", "-o", tmp_path / "mem", "--model", model)
    r2 = run(
        tmp_path / "big.tif",
        tmp_path / "st.tif",
        "-o",
        tmp_path / "str",
        "--model",
        model,
        "--stream-above",
        "0",
        "--tile",
        "64",
        "-v",
        "--compare",
    )
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert "streamed to disk strip by strip" in r2.output and "strip by strip" not in r1.output
    for name in ("big_x4.tif", "st_x4.tif"):
        m, s = read_image(tmp_path / "mem" / name), read_image(tmp_path / "str" / name)
        assert m.axes == s.axes
        np.testing.assert_array_equal(m.array, s.array)
    np.testing.assert_array_equal(read_image(tmp_path / "str" / "big_x4.tif").array, up.upscale(a))
    # the compare picture of a streamed result is read back from disk: same model panel
    cmp = np.asarray(PILImage.open(tmp_path / "str" / "big_compare.png"))
    assert cmp.shape == (2 * HEADER + 2 * 1024, 3 * 1024 + 2 * GAP)
    with tifffile.TiffFile(tmp_path / "str" / "big_x4.tif") as t:
        assert len(t.pages[0].dataoffsets) > 1  # really written strip by strip
    assert no_temp_files(tmp_path)


def test_streaming_memmapped_input_with_band_budget(tmp_path, model, up, monkeypatch):
    """The big-image path: memory-mapped input (pages released band by band) and a tile shrunk
    to keep each output band under the budget; still the same result."""
    from scopesr.sdk import cli, io

    monkeypatch.setattr(io, "MEMMAP_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(cli, "BAND_BUDGET_BYTES", 1 << 20)  # 600 px wide x4 uint16: tile 64
    a = RNG.integers(0, 30000, (300, 600)).astype(np.uint16)
    write_image(tmp_path / "big.tif", a, "YX")
    assert read_image(tmp_path / "big.tif").is_memmap
    res = run(tmp_path / "big.tif", "-o", tmp_path / "o", "--model", model, "--stream-above", "0", "-v")
    assert res.exit_code == 0, res.output
    assert "tile 64 so that one output band" in res.output
    np.testing.assert_array_equal(read_image(tmp_path / "o" / "big_x4.tif").array, up.upscale(a))


def test_rgb_model_and_fixed_size_tflite(tmp_path, fixtures_dir):
    rgb = RNG.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    write_image(tmp_path / "c.png", rgb, "YXC")
    res = run(tmp_path / "c.png", "-o", tmp_path / "o1", "--model", fixtures_dir / "tiny_x4_rgb.onnx")
    assert res.exit_code == 0, res.output
    assert read_image(tmp_path / "o1" / "c_x4.png").shape == (160, 200, 3)
    pytest.importorskip("ai_edge_litert")
    g = RNG.integers(0, 4000, (70, 90)).astype(np.uint16)
    write_image(tmp_path / "g.tif", g, "YX")
    res = run(
        tmp_path / "g.tif",
        "-o",
        tmp_path / "o2",
        "--model",
        fixtures_dir / "tiny_x4_fixed.tflite",
        "--backend",
        "tflite",
    )
    assert res.exit_code == 0, res.output
    assert read_image(tmp_path / "o2" / "g_x4.tif").shape == (280, 360)


def test_never_overwrites_an_input(tmp_path, model):
    d = tmp_path / "d"
    d.mkdir()
    write_image(d / "a.tif", RNG.integers(0, 255, (20, 20)).astype(np.uint16), "YX")
    # an input that happens to be named like a.tif's output
    write_image(d / "a_x4.tif", RNG.integers(0, 255, (16, 16)).astype(np.uint16), "YX")
    before = {f.name: digest(f) for f in d.iterdir()}
    res = run(d, "-o", d, "--model", model, "--overwrite")
    assert res.exit_code == 1
    assert "1 of 2 files failed" in res.output and "a.tif" in res.output and "overwrite an input" in res.output
    assert {f.name: digest(f) for f in d.iterdir() if f.name in before} == before
    assert (d / "a_x4_x4.tif").exists()  # the other file was still processed


def test_existing_output_needs_overwrite(tmp_path, model):
    write_image(tmp_path / "a.tif", RNG.integers(0, 255, (20, 20)).astype(np.uint16), "YX")
    out = tmp_path / "o"
    assert run(tmp_path / "a.tif", "-o", out, "--model", model).exit_code == 0
    first = digest(out / "a_x4.tif")
    res = run(tmp_path / "a.tif", "-o", out, "--model", model)
    assert res.exit_code == 1 and "exists; pass --overwrite" in res.output
    res = run(tmp_path / "a.tif", "-o", out, "--model", model, "--overwrite")
    assert res.exit_code == 0, res.output
    assert digest(out / "a_x4.tif") == first and no_temp_files(out)


def test_same_stem_in_two_folders(tmp_path, model):
    for sub in ("p", "q"):
        (tmp_path / sub).mkdir()
        write_image(tmp_path / sub / "a.tif", RNG.integers(0, 255, (12, 12)).astype(np.uint16), "YX")
    res = run(tmp_path / "p", tmp_path / "q", "-o", tmp_path / "o", "--model", model)
    assert res.exit_code == 1 and "same name" in res.output


def test_missing_default_model_says_pass_model(tmp_path, monkeypatch):
    monkeypatch.setattr(upscaler_mod, "MODELS_DIR", tmp_path / "nowhere")
    write_image(tmp_path / "a.tif", np.zeros((8, 8), np.uint16), "YX")
    res = run(tmp_path / "a.tif", "-o", tmp_path / "o")
    assert res.exit_code != 0 and "--model" in res.output


def test_no_inputs(tmp_path, model):
    (tmp_path / "empty").mkdir()
    res = run(tmp_path / "empty", "-o", tmp_path / "o", "--model", model)
    assert res.exit_code != 0 and "no input images" in res.output


def test_help_explains():
    res = run("--help")
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for needle in (
        "LR (input) pixels",
        "receptive-field radius",
        "PNG, JPEG and TIFF",
        "BigTIFF",
        "--compare",
        "never overwritten",
    ):
        assert needle in text
    # every runnable bundled artifact is named where the help says how to pick one (it once
    # missed the int8 ONNX file that a later bundle added)
    names = [k for k in upscaler_mod.bundle_files("default") if k != "safetensors"]
    assert "onnx-int8" in names
    assert "SCOPESR_ARTIFACT=" + "|".join(names) in "".join(res.output.split())


def test_halo_option(tmp_path, model, up):
    a = RNG.integers(0, 4000, (50, 70)).astype(np.uint16)
    write_image(tmp_path / "a.tif", a, "YX")
    res = run(tmp_path / "a.tif", "-o", tmp_path / "o", "--model", model, "--halo", "wide")
    assert res.exit_code == 2 and "'auto'" in res.output
    res = run(tmp_path / "a.tif", "-o", tmp_path / "o", "--model", model, "--halo", "0", "--tile", "16")
    assert res.exit_code == 0, res.output
    got = read_image(tmp_path / "o" / "a_x4.tif").array
    np.testing.assert_array_equal(got, up.upscale(a, tile=16, halo=0))
    assert not np.array_equal(got, up.upscale(a))  # no halo: seams, a different result
