"""Every bad input through sr-upscale: the run goes on with the other files, exits
non-zero, names the bad file and its problem, and leaves every input untouched (edge)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image as PILImage

from scopesr.sdk import write_image
from scopesr.sdk.cli import main

pytestmark = pytest.mark.edge


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _truncated_tiff(p: Path) -> None:
    tifffile.imwrite(p.with_suffix(".full"), np.arange(64 * 80, dtype=np.uint16).reshape(64, 80))
    b = p.with_suffix(".full").read_bytes()
    p.with_suffix(".full").unlink()
    p.write_bytes(b[: len(b) // 2])


def _truncated_png(p: Path) -> None:
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80)).astype(np.uint8)).save(p)
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])


def _corrupt_jpeg(p: Path) -> None:
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3)).astype(np.uint8)).save(p)
    b = bytearray(p.read_bytes())
    p.write_bytes(bytes(b[:300]))


def _non_image(p: Path) -> None:
    p.write_text("x,y\n1,2\n")


def _unsupported_dtype(p: Path) -> None:
    tifffile.imwrite(p, np.ones((16, 16), np.int32))


def _empty_image(p: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(p, np.zeros((0, 0), np.uint16))


def _empty_file(p: Path) -> None:
    p.write_bytes(b"")


def _nan_float(p: Path) -> None:
    a = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    a[3, 3] = np.nan
    tifffile.imwrite(p, a)


def _inf_float(p: Path) -> None:
    a = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    a[0, 9] = np.inf
    tifffile.imwrite(p, a)


def _png_bomb(p: Path) -> None:
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(p)
    b = bytearray(p.read_bytes())
    ihdr = bytearray(b[12:29])
    ihdr[4:12] = struct.pack(">II", 200_000, 200_000)
    b[12:29] = ihdr
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    p.write_bytes(bytes(b))


def _tiff_bomb(p: Path) -> None:
    tifffile.imwrite(p, np.zeros((8, 8), np.uint8), compression="zlib", metadata=None)
    with tifffile.TiffFile(p, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(100_000)
        tif.pages[0].tags["ImageLength"].overwrite(100_000)


BAD = {
    "cut.tif": (_truncated_tiff, r"truncated"),
    "cut.png": (_truncated_png, r"truncated"),
    "broken.jpg": (_corrupt_jpeg, r"truncated or corrupt JPEG"),
    "table.tif": (_non_image, r"not a valid TIF"),
    "int32.tif": (_unsupported_dtype, r"unsupported pixel type int32"),
    "void.tif": (_empty_image, r"empty image"),
    "zero.png": (_empty_file, r"empty file"),
    "nan.tif": (_nan_float, r"NaN or infinite"),
    "inf.tif": (_inf_float, r"NaN or infinite"),
    "bomb.png": (_png_bomb, r"decompression bomb"),
    "bomb.tif": (_tiff_bomb, r"decompression bomb"),
}


def _good(folder: Path) -> Path:
    p = folder / "good.tif"
    write_image(p, np.random.default_rng(1).integers(0, 4000, (24, 30)).astype(np.uint16), "YX")
    return p


def _digests(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir()}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_is_reported_and_others_processed(tmp_path, fixtures_dir, name):
    import re

    src = tmp_path / "in"
    src.mkdir()
    make, problem = BAD[name]
    make(src / name)
    _good(src)
    before = _digests(src)
    out = tmp_path / "out"
    res = run(src, "-o", out, "--model", fixtures_dir / "tiny_x4.onnx")
    assert res.exit_code == 1, res.output
    assert "1 of 2 files failed" in res.output
    summary = res.output.split("files failed:")[1]
    assert re.search(rf"{re.escape(name)}: .*{problem}", summary), res.output
    assert (out / "good_x4.tif").exists()  # the batch went on
    assert _digests(src) == before  # inputs untouched
    assert sorted(f.name for f in out.iterdir()) == ["good_x4.tif"]  # nothing half-written


def test_all_bad_inputs_in_one_run(tmp_path, fixtures_dir):
    src = tmp_path / "in"
    src.mkdir()
    for name, (make, _) in BAD.items():
        make(src / name)
    _good(src)
    res = run(src, "-o", tmp_path / "out", "--model", fixtures_dir / "tiny_x4.onnx")
    assert res.exit_code == 1
    assert f"{len(BAD)} of {len(BAD) + 1} files failed" in res.output
    assert (tmp_path / "out" / "good_x4.tif").exists()


def test_pixel_limit_option(tmp_path, fixtures_dir):
    good = _good(tmp_path)
    res = run(good, "-o", tmp_path / "o", "--model", fixtures_dir / "tiny_x4.onnx", "--max-pixels", "100")
    assert res.exit_code == 1 and "decompression bomb" in res.output and "--max-pixels" in res.output
    res = run(good, "-o", tmp_path / "o", "--model", fixtures_dir / "tiny_x4.onnx", "--max-pixels", "720")
    assert res.exit_code == 0, res.output


def test_wrong_channel_count_for_model(tmp_path, fixtures_dir):
    """A grey image and a 2-channel image into an RGB model: ModelIOError, per file, named."""
    grey = _good(tmp_path)
    two = tmp_path / "two.tif"
    write_image(two, np.zeros((10, 12, 2), np.uint8), "YXC")
    rgb = tmp_path / "rgb.png"
    write_image(rgb, np.random.default_rng(2).integers(0, 255, (10, 12, 3)).astype(np.uint8), "YXC")
    res = run(grey, two, rgb, "-o", tmp_path / "o", "--model", fixtures_dir / "tiny_x4_rgb.onnx")
    assert res.exit_code == 1
    summary = res.output.split("files failed:")[1]
    assert "good.tif: image has 1 channel, model 'tiny_x4_rgb' takes 3" in summary
    assert "two.tif: image has 2 channels" in summary
    assert (tmp_path / "o" / "rgb_x4.png").exists()
    assert "Traceback" not in res.output


def _copy_model(fixtures_dir: Path, dst: Path) -> Path:
    for f in ("tiny_x4.onnx", "tiny_x4.card.json"):
        shutil.copy(fixtures_dir / f, dst / f)
    return dst / "tiny_x4.onnx"


def test_missing_card(tmp_path, fixtures_dir):
    m = _copy_model(fixtures_dir, tmp_path)
    (tmp_path / "tiny_x4.card.json").unlink()
    res = run(_good(tmp_path), "-o", tmp_path / "o", "--model", m)
    assert res.exit_code != 0 and "tiny_x4.onnx: no model card found" in res.output
    assert not (tmp_path / "o" / "good_x4.tif").exists()


def test_tampered_artifact(tmp_path, fixtures_dir):
    m = _copy_model(fixtures_dir, tmp_path)
    b = bytearray(m.read_bytes())
    b[-10] ^= 0xFF
    m.write_bytes(bytes(b))
    res = run(_good(tmp_path), "-o", tmp_path / "o", "--model", m)
    assert res.exit_code != 0 and "sha256 mismatch" in res.output and "tiny_x4.onnx" in res.output


def test_tampered_card(tmp_path, fixtures_dir):
    m = _copy_model(fixtures_dir, tmp_path)
    card = json.loads((tmp_path / "tiny_x4.card.json").read_text())
    card["scale"] = 0
    (tmp_path / "tiny_x4.card.json").write_text(json.dumps(card))
    res = run(_good(tmp_path), "-o", tmp_path / "o", "--model", m)
    assert res.exit_code != 0 and "'scale'" in res.output and "tiny_x4.card.json" in res.output


def test_missing_runtime_names_package(tmp_path, fixtures_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if onnxruntime were not installed
    res = run(_good(tmp_path), "-o", tmp_path / "o", "--model", fixtures_dir / "tiny_x4.onnx")
    assert res.exit_code != 0 and "pip install" in res.output and "onnxruntime" in res.output
    assert "Traceback" not in res.output


def test_missing_input_file(tmp_path, fixtures_dir):
    res = run(tmp_path / "nope.tif", _good(tmp_path), "-o", tmp_path / "o", "--model", fixtures_dir / "tiny_x4.onnx")
    assert res.exit_code == 1 and "nope.tif: no such file" in res.output


def test_wrong_channel_count_while_streaming(tmp_path, fixtures_dir):
    """The model error surfaces from inside the BigTIFF writer: still a clean per-file error,
    and neither a partial output nor a temp file is left."""
    grey = _good(tmp_path)
    out = tmp_path / "o"
    res = run(grey, "-o", out, "--model", fixtures_dir / "tiny_x4_rgb.onnx", "--stream-above", "0")
    assert res.exit_code == 1 and "good.tif: image has 1 channel" in res.output
    assert "Traceback" not in res.output
    assert list(out.iterdir()) == []
