"""scopesr.sdk.io: reading, writing and streaming images (torch-free: marked edge)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from scopesr.sdk import ImageError
from scopesr.sdk.io import (
    Image,
    find_inputs,
    output_suffix,
    read_image,
    release_pages,
    write_image,
    write_tiff_streaming,
)

pytestmark = pytest.mark.edge
RNG = np.random.default_rng(7)


def _rand(shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.random(shape, dtype=np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize(
    "shape,axes,dtype,suffix",
    [
        ((37, 53), "YX", np.uint8, ".png"),
        ((37, 53), "YX", np.uint8, ".tif"),
        ((37, 53), "YX", np.uint16, ".tif"),
        ((37, 53), "YX", np.float32, ".tif"),
        ((37, 53, 3), "YXC", np.uint8, ".png"),
        ((37, 53, 3), "YXC", np.uint16, ".tif"),
        ((37, 53, 5), "YXC", np.uint16, ".tif"),  # N-channel
        ((4, 37, 53), "ZYX", np.uint16, ".tif"),  # z-stack
        ((3, 37, 53), "TYX", np.uint8, ".tif"),  # time-lapse
        ((2, 3, 37, 53), "TZYX", np.float32, ".tif"),
        ((2, 37, 53, 3), "TYXC", np.uint8, ".tif"),
        ((2, 37, 53), "CYX", np.uint16, ".tif"),
    ],
)
def test_round_trip(tmp_path, shape, axes, dtype, suffix):
    a = _rand(shape, dtype)
    p = write_image(tmp_path / f"img{suffix}", a, axes)
    img = read_image(p)
    assert img.axes == axes
    assert img.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(img.array), a)
    assert [f.name for f in tmp_path.iterdir()] == [p.name]  # no temp file left behind


def test_imagej_hyperstack_axes(tmp_path):
    a = _rand((2, 3, 2, 20, 30), np.uint16)  # TZCYX
    p = tmp_path / "hyper.tif"
    tifffile.imwrite(p, a, imagej=True, metadata={"axes": "TZCYX", "spacing": 0.5, "unit": "um"})
    img = read_image(p)
    assert img.axes == "TZCYX" and img.shape == a.shape and img.is_stack and img.channels == 2
    np.testing.assert_array_equal(img.array, a)
    assert img.metadata["imagej"]["spacing"] == 0.5


def test_plain_multipage_tiff_is_a_stack(tmp_path):
    p = tmp_path / "pages.tif"
    a = _rand((5, 16, 24), np.uint16)
    with tifffile.TiffWriter(p) as tw:  # pages written one by one, no shape metadata
        for plane in a:
            tw.write(plane, metadata=None)
    img = read_image(p)
    assert img.axes in ("ZYX", "TYX") and img.shape == a.shape and img.is_stack


def test_resolution_scaled_on_write(tmp_path):
    p = tmp_path / "res.tif"
    tifffile.imwrite(p, _rand((10, 12), np.uint16), resolution=(4.0, 4.0), resolutionunit="CENTIMETER")
    img = read_image(p)
    out = write_image(tmp_path / "out.tif", np.zeros((40, 48), np.uint16), "YX", img.metadata, scale=4)
    with tifffile.TiffFile(out) as t:
        rx, ry = t.pages[0].resolution
    assert rx == pytest.approx(16.0) and ry == pytest.approx(16.0)


def test_large_uncompressed_tiff_is_memory_mapped_read_only(tmp_path):
    p = tmp_path / "big.tif"
    a = _rand((300, 400), np.uint16)
    tifffile.imwrite(p, a)
    img = read_image(p, memmap=True)
    assert img.is_memmap
    np.testing.assert_array_equal(img.array, a)
    with pytest.raises(ValueError):
        img.array[0, 0] = 1  # read-only: an input can never be modified
    assert not read_image(p).is_memmap  # small files are read into memory by default
    release_pages(img.array)  # drops resident pages; the data is still there
    np.testing.assert_array_equal(img.array, a)


def test_real_images(real_image):
    img = read_image(real_image("stardist-nuclei-2d"))
    assert (img.axes, img.dtype, img.shape) == ("YX", np.uint16, (512, 512))
    tl = read_image(real_image("napari-timelapse"))
    assert tl.axes == "ZYX" and tl.shape == (30, 511, 511) and tl.dtype == np.uint8
    skin = read_image(real_image("napari-skin"))
    assert skin.axes == "YXC" and skin.shape[-1] == 3
    histo = read_image(real_image("stardist-histo"))
    assert histo.format == "jpeg" and histo.axes == "YXC" and histo.dtype == np.uint8


def test_16bit_png_reads_as_uint16(tmp_path):
    a = _rand((20, 30), np.uint16)
    p = tmp_path / "a16.png"
    PILImage.fromarray(a).save(p)
    img = read_image(p)
    assert img.dtype == np.uint16 and img.axes == "YX"
    np.testing.assert_array_equal(img.array, a)


def test_output_suffix():
    assert output_suffix(np.uint8, "YX", "png") == ".png"
    assert output_suffix(np.uint8, "YXC", "jpeg") == ".png"
    assert output_suffix(np.uint16, "YX", "png") == ".tif"
    assert output_suffix(np.uint8, "ZYX", "tiff") == ".tif"
    assert output_suffix(np.float32, "YX", "tiff") == ".tif"


def test_png_refuses_16bit(tmp_path):
    with pytest.raises(ImageError, match="PNG cannot hold"):
        write_image(tmp_path / "x.png", np.zeros((4, 4), np.uint16), "YX")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ streaming writer
@pytest.mark.parametrize(
    "shape,axes,band_h",
    [
        ((123, 77), "YX", 16),
        ((123, 77), "YX", 200),
        ((3, 50, 41), "ZYX", 7),
        ((61, 40, 3), "YXC", 13),
        ((2, 33, 20, 2), "TYXC", 5),
    ],
)
def test_streaming_writer_equals_array(tmp_path, shape, axes, band_h):
    a = _rand(shape, np.uint16)
    yi = axes.index("Y")
    planes = a.reshape((-1,) + a.shape[yi:])

    def bands():
        for plane in planes:
            for y in range(0, plane.shape[0], band_h):
                yield plane[y : y + band_h].copy()

    p = write_tiff_streaming(tmp_path / "s.tif", a.shape, a.dtype, axes, bands(), rows_per_strip=8)
    img = read_image(p)
    assert img.axes == axes
    np.testing.assert_array_equal(img.array, a)
    assert [f.name for f in tmp_path.iterdir()] == ["s.tif"]


def test_streaming_writer_failure_leaves_nothing(tmp_path):
    def bands():
        yield np.zeros((10, 20), np.uint16)
        raise RuntimeError("model crashed mid-way")

    with pytest.raises(RuntimeError):
        write_tiff_streaming(tmp_path / "s.tif", (40, 20), np.uint16, "YX", bands())
    assert list(tmp_path.iterdir()) == []  # neither a partial output nor a temp file


def test_streaming_writer_checks_coverage(tmp_path):
    with pytest.raises(ValueError, match="covered"):
        write_tiff_streaming(tmp_path / "s.tif", (40, 20), np.uint16, "YX", iter([np.zeros((30, 20), np.uint16)]))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ bad input
def _truncate(src: Path, dst: Path, frac: float) -> Path:
    b = src.read_bytes()
    dst.write_bytes(b[: int(len(b) * frac)])
    return dst


@pytest.mark.parametrize("kind", ["tif", "tif-zlib", "stack", "png", "jpg"])
@pytest.mark.parametrize("memmap", [None, True])
def test_truncated(tmp_path, kind, memmap):
    a = _rand((120, 90), np.uint8)
    src = tmp_path / f"src.{kind.split('-')[0]}"
    if kind == "tif":
        tifffile.imwrite(src, a)
    elif kind == "tif-zlib":
        tifffile.imwrite(src, a, compression="zlib")
    elif kind == "stack":
        src = tmp_path / "src.tif"
        tifffile.imwrite(src, np.stack([a] * 4), photometric="minisblack")
    else:
        PILImage.fromarray(a).save(src)
    bad = _truncate(src, tmp_path / f"cut{src.suffix}", 0.5)
    with pytest.raises(ImageError, match=r"cut\.(tif|png|jpg).*(truncated|corrupt)"):
        read_image(bad, memmap=memmap)


@pytest.mark.parametrize("imagej", [False, True])
def test_stack_cut_at_a_plane_is_not_read_as_a_shorter_stack(tmp_path, imagej):
    src = tmp_path / "full.tif"
    tifffile.imwrite(src, _rand((6, 50, 60), np.uint8), photometric="minisblack", imagej=imagej)
    bad = _truncate(src, tmp_path / "cut.tif", 0.75)
    with pytest.raises(ImageError, match=r"cut\.tif: truncated"):
        read_image(bad)


def test_header_only_tiff(tmp_path):
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, _rand((50, 50), np.uint16))
    bad = _truncate(src, tmp_path / "hdr.tif", 0.002)
    with pytest.raises(ImageError, match="hdr.tif"):
        read_image(bad)


@pytest.mark.parametrize(
    "name,content", [("notes.tif", b"hello, not an image\n"), ("data.csv", b"1,2,3\n"), ("x.png", b"\x00" * 100)]
)
def test_non_image(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageError, match=name.replace(".", r"\.") + ".*not (an image|a valid)"):
        read_image(p)


def test_empty_file_and_empty_image(tmp_path):
    (tmp_path / "zero.tif").write_bytes(b"")
    with pytest.raises(ImageError, match="zero.tif: empty file"):
        read_image(tmp_path / "zero.tif")
    with pytest.warns(UserWarning):
        tifffile.imwrite(tmp_path / "void.tif", np.zeros((0, 0), np.uint8))
    with pytest.raises(ImageError, match="void.tif: empty image"):
        read_image(tmp_path / "void.tif")


@pytest.mark.parametrize("dtype", [np.int64, np.complex64, np.uint32, np.float64])
def test_unsupported_dtype(tmp_path, dtype):
    p = tmp_path / "odd.tif"
    tifffile.imwrite(p, np.ones((8, 8), dtype))
    with pytest.raises(ImageError, match=f"odd.tif: unsupported pixel type {np.dtype(dtype)}"):
        read_image(p)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("memmap", [None, True])
def test_nonfinite_float(tmp_path, value, memmap):
    a = _rand((3, 40, 30), np.float32)
    a[2, 5, 7] = value
    p = tmp_path / "nan.tif"
    tifffile.imwrite(p, a, photometric="minisblack")
    with pytest.raises(ImageError, match="nan.tif: 1 pixel.*NaN or infinite"):
        read_image(p, memmap=memmap)


def _png_bomb(path: Path, width: int, height: int) -> Path:
    """A real PNG whose header is rewritten to claim a huge size (few bytes on disk)."""
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    b = bytearray(path.read_bytes())
    ihdr = bytearray(b[12:29])  # 'IHDR' + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    b[12:29] = ihdr
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(b))
    return path


def _tiff_bomb(path: Path, width: int, height: int) -> Path:
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), compression="zlib", metadata=None)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width)
        tif.pages[0].tags["ImageLength"].overwrite(height)
    return path


@pytest.mark.parametrize("maker,name", [(_png_bomb, "bomb.png"), (_tiff_bomb, "bomb.tif")])
def test_decompression_bomb(tmp_path, maker, name):
    p = maker(tmp_path / name, 100_000, 100_000)
    assert p.stat().st_size < 10_000
    with pytest.raises(ImageError, match=f"{name}: image claims .*decompression bomb.*max-pixels"):
        read_image(p)


def test_pixel_limit_can_be_raised(tmp_path):
    p = tmp_path / "ok.png"
    PILImage.fromarray(_rand((100, 100), np.uint8)).save(p)
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(p, max_pixels=5000)
    assert read_image(p, max_pixels=10_000).shape == (100, 100)
    t = tmp_path / "ok.tif"
    tifffile.imwrite(t, _rand((100, 100), np.uint16))
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(t, max_pixels=5000)
    assert read_image(t, max_pixels=10_000).shape == (100, 100)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="nope.tif: no such file"):
        read_image(tmp_path / "nope.tif")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


# ------------------------------------------------------------------ find_inputs
def test_find_inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for n in ["b.tif", "a.PNG", "c.jpeg", "notes.txt", ".hidden.tif", "d.tiff"]:
        (d / n).write_bytes(b"x")
    (d / "sub").mkdir()
    extra = tmp_path / "e.tif"
    extra.write_bytes(b"x")
    got = find_inputs([d, extra, d / "b.tif", tmp_path / "missing.tif"])
    assert [p.name for p in got] == ["a.PNG", "b.tif", "c.jpeg", "d.tiff", "e.tif", "missing.tif"]


def test_image_properties():
    img = Image(np.zeros((2, 5, 6, 3), np.uint8), "ZYXC")
    assert (img.height, img.width, img.channels, img.is_stack) == (5, 6, 3, True)
