"""Hardening from an adversarial pass (data loss, wrong output, hangs, memory, raw errors, finite output, leftovers):
what a hostile or careless user found, each case built here and checked to end in a result
or a clear ScopesrError, never a traceback, a hang, NaN/inf or a lost file. Torch-free: edge."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image as PILImage

import scopesr.sdk as sr
from scopesr.sdk import (
    CardError,
    ImageError,
    InputError,
    ModelCard,
    ModelError,
    OutputError,
    ScopesrError,
    read_image,
    write_image,
)
from scopesr.sdk.atomic import STALE_TEMP_AGE_S, atomic_path
from scopesr.sdk.cli import main

pytestmark = pytest.mark.edge
RNG = np.random.default_rng(15)
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""

    def boom(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def model(fixtures_dir) -> Path:
    return fixtures_dir / "tiny_x4.onnx"


@pytest.fixture(scope="module")
def up(model):
    return sr.load(model)


def _copy_model(fixtures_dir: Path, folder: Path, name: str = "m", **card_changes) -> Path:
    """tiny_x4.onnx as ``folder/name.onnx`` with its card (fields changed as given)."""
    folder.mkdir(parents=True, exist_ok=True)
    art = folder / f"{name}.onnx"
    shutil.copy(fixtures_dir / "tiny_x4.onnx", art)
    card = json.loads((fixtures_dir / "tiny_x4.card.json").read_text())
    card.update(artifact=art.name, **card_changes)
    (folder / f"{name}.card.json").write_text(json.dumps(card))
    return art


def _grey16(h=24, w=30):
    return RNG.integers(0, 4000, (h, w)).astype(np.uint16)


# ================================================================= 1-3: data loss
def test_compare_never_replaces_an_existing_file(tmp_path, model):
    """1: a user's OUT/<stem>_compare.png is kept (refused before any work) without --overwrite."""
    write_image(tmp_path / "a.tif", _grey16(), "YX")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_compare.png").write_bytes(b"the user's own picture")
    res = run(tmp_path / "a.tif", "-o", out, "--model", model, "--compare")
    assert res.exit_code == 1, res.output
    assert "a_compare.png exists; pass --overwrite" in res.output
    assert (out / "a_compare.png").read_bytes() == b"the user's own picture"
    assert not (out / "a_x4.tif").exists()  # refused before computing anything
    res = run(tmp_path / "a.tif", "-o", out, "--model", model, "--compare", "--overwrite")
    assert res.exit_code == 0, res.output
    assert read_image(out / "a_compare.png").format == "png"


def test_compare_of_two_inputs_with_one_stem(tmp_path, model):
    """1: a.png and a.tif (in that order) get one compare picture each: a_compare.png and
    a_tif_compare.png; they shared one before."""
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.tif", _grey16(), "YX")
    write_image(src / "a.png", RNG.integers(0, 255, (20, 26)).astype(np.uint8), "YX")
    out = tmp_path / "out"
    res = run(src, "-o", out, "--model", model, "--compare")
    assert res.exit_code == 0, res.output
    names = sorted(f.name for f in out.iterdir())
    assert names == ["a_compare.png", "a_tif_compare.png", "a_x4.png", "a_x4.tif"], names
    a, b = (read_image(out / n).array for n in ("a_compare.png", "a_tif_compare.png"))
    assert a.shape != b.shape  # one picture per input, not one overwritten by the other


def test_concurrent_writer_of_the_same_output_is_refused(tmp_path, model, monkeypatch):
    """2: another run writes OUT/r_x4.tif while this one computes: this one must not replace it
    (check-then-rename let both exit 0, the last writer winning)."""
    write_image(tmp_path / "r.tif", _grey16(), "YX")
    out = tmp_path / "out"
    theirs = b"written by the other run"
    real = tifffile.imwrite

    def racing_write(tmp, *args, **kwargs):  # while this run writes its temporary file ...
        (out / "r_x4.tif").write_bytes(theirs)  # ... the other run puts its result in place
        return real(tmp, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", racing_write)
    res = run(tmp_path / "r.tif", "-o", out, "--model", model)
    assert res.exit_code == 1, res.output
    assert "already exists" in res.output and "not replaced" in res.output
    assert (out / "r_x4.tif").read_bytes() == theirs
    assert sorted(f.name for f in out.iterdir()) == ["r_x4.tif"]  # no temporary file left


def test_exclusive_write_one_of_two_processes_wins(tmp_path):
    """2: two processes placing one name without overwrite: exactly one succeeds."""
    code = (
        "import sys, time; from scopesr.sdk.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1], overwrite=False) as t:\n"
        "    t.write_bytes(sys.argv[2].encode()); time.sleep(1.0)\n"
    )
    target = tmp_path / "same.bin"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(target), w], stderr=subprocess.PIPE) for w in ("one", "two")
    ]
    results = [(p.wait(timeout=60), p.stderr.read().decode()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    loser = next(err for rc, err in results if rc)
    assert "OutputError" in loser and "already exists" in loser
    assert target.read_bytes() in (b"one", b"two")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["same.bin"]
    write_image(tmp_path / "r.tif", _grey16(), "YX")
    with pytest.raises(OutputError, match="exists"):  # the API's spelling, also an OSError
        write_image(tmp_path / "r.tif", _grey16(), "YX", overwrite=False)


# ================================================================= 4-7: wrong output
def test_streamed_8bit_png_stays_a_png(tmp_path, model, up):
    """4: a PNG result above the streaming threshold was TIFF data under *_x4.png."""
    a = RNG.integers(0, 255, (40, 52)).astype(np.uint8)
    write_image(tmp_path / "g.png", a, "YX")
    rgb = RNG.integers(0, 255, (20, 18, 3)).astype(np.uint8)
    write_image(tmp_path / "c.png", rgb, "YXC")
    res = run(
        tmp_path / "g.png", tmp_path / "c.png", "-o", tmp_path / "o", "--model", model, "--stream-above", "0.0001"
    )
    assert res.exit_code == 0, res.output
    for name, src, axes in (("g_x4.png", a, "YX"), ("c_x4.png", rgb, "YXC")):
        p = tmp_path / "o" / name
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with PILImage.open(p) as im:
            im.load()
            got = np.asarray(im)
        if axes == "YX":
            np.testing.assert_array_equal(got, up.upscale(src))
        else:  # the grey model runs channel by channel
            np.testing.assert_array_equal(got, up.upscale(src, axes="YXC"))


def test_streamed_result_keeps_imagej_metadata(tmp_path, model):
    """5: frame interval, unit and z spacing survived only the in-memory path."""
    a = RNG.integers(0, 4000, (2, 3, 16, 20)).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "h.tif",
        a,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TZYX", "spacing": 0.7, "unit": "um", "finterval": 5.0},
    )
    res = run(tmp_path / "h.tif", "-o", tmp_path / "o", "--model", model, "--stream-above", "0")
    assert res.exit_code == 0, res.output
    with tifffile.TiffFile(tmp_path / "o" / "h_x4.tif") as t:
        assert t.is_imagej and t.series[0].axes == "TZYX" and t.series[0].shape == (2, 3, 64, 80)
        ij = t.imagej_metadata
        assert (ij["spacing"], ij["unit"], ij["finterval"]) == (0.7, "um", 5.0)
        assert t.pages[0].resolution == (8.0, 8.0)


def _png_with_height(p: Path, real_h: int, claimed_h: int) -> None:
    PILImage.fromarray(RNG.integers(1, 255, (real_h, 40)).astype(np.uint8)).save(p)
    b = bytearray(p.read_bytes())
    b[20:24] = struct.pack(">I", claimed_h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    p.write_bytes(bytes(b))


def _ome_with_more_frames(p: Path) -> None:
    tifffile.imwrite(p, RNG.integers(1, 4000, (2, 32, 40)).astype(np.uint16), ome=True, metadata={"axes": "TYX"})
    p.write_bytes(p.read_bytes().replace(b'SizeT="2"', b'SizeT="8"'))


def _planar_with_65535_samples(p: Path) -> None:
    tifffile.imwrite(
        p, RNG.integers(1, 4000, (3, 32, 40)).astype(np.uint16), planarconfig="separate", photometric="minisblack"
    )
    with tifffile.TiffFile(p, mode="r+b") as tif:
        tif.pages[0].tags["SamplesPerPixel"].overwrite(65535)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: _png_with_height(p.with_suffix(".png"), 48, 40_000), "truncated PNG"),
        (_ome_with_more_frames, "truncated TIFF series"),
        (_planar_with_65535_samples, "corrupt TIFF"),
    ],
    ids=["png-height-raised", "ome-sizet-raised", "planar-65535-samples"],
)
def test_zero_filled_data_is_refused(tmp_path, make, problem):
    """6 and 9: data that is not in the file was read as black (and the planar one took minutes)."""
    p = tmp_path / "x.tif"
    make(p)
    p = p if p.exists() else p.with_suffix(".png")
    t0 = time.perf_counter()
    with deadline(20), pytest.raises(ImageError, match=problem):
        read_image(p)
    assert time.perf_counter() - t0 < 5


def test_big_endian_tiff_reads_on_the_memmap_path(tmp_path, monkeypatch):
    """7: an uncompressed big-endian uint16 TIFF over the memmap threshold was refused as >u2."""
    from scopesr.sdk import io

    a = RNG.integers(0, 65535, (70, 90)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "be.tif", a, byteorder=">")
    monkeypatch.setattr(io, "MEMMAP_THRESHOLD_BYTES", 0)  # as if it were over 16 MB
    img = read_image(tmp_path / "be.tif")
    assert img.dtype == np.uint16 and img.dtype.isnative
    np.testing.assert_array_equal(img.array, a)


# ================================================================= 8-11: hangs and memory
def _tiff_ifd_loop(p: Path) -> None:
    tifffile.imwrite(p, RNG.integers(0, 4000, (64, 80)).astype(np.uint16))
    b = bytearray(p.read_bytes())
    off = struct.unpack("<I", b[4:8])[0]
    n = struct.unpack("<H", b[off : off + 2])[0]
    b[off + 2 + 12 * n : off + 6 + 12 * n] = struct.pack("<I", off)  # next IFD = this IFD
    p.write_bytes(bytes(b))


def test_tiff_whose_ifd_chain_loops_does_not_hang(tmp_path):
    """8: the page scan followed a next-IFD pointer to itself forever."""
    _tiff_ifd_loop(tmp_path / "loop.tif")
    with deadline(20):
        img = read_image(tmp_path / "loop.tif")
    assert img.shape == (64, 80)


def test_jpeg_bomb_is_refused_before_decoding(tmp_path):
    """9: a 2 KB JPEG declaring 20000x20000 decoded to 1.6 GB (17.9 GiB as RGB) and was accepted."""
    for mode in ("L", "RGB"):
        p = tmp_path / f"bomb_{mode}.jpg"
        PILImage.new(mode, (16, 16), 100 if mode == "L" else (100, 50, 20)).save(p, quality=90)
        b = bytearray(p.read_bytes())
        i = b.find(b"\xff\xc0")
        b[i + 5 : i + 9] = struct.pack(">HH", 20000, 20000)
        p.write_bytes(bytes(b))
        t0 = time.perf_counter()
        with pytest.raises(ImageError, match="decompression bomb"):
            read_image(p)
        assert time.perf_counter() - t0 < 1
    # a genuine flat JPEG of the same kind still reads
    PILImage.new("L", (640, 480), 100).save(tmp_path / "flat.jpg", quality=90)
    assert read_image(tmp_path / "flat.jpg").shape == (480, 640)


def test_channels_run_in_bounded_groups(up, monkeypatch):
    """10: a 60-channel CYX image through a 1-channel model sent all 60 channels of a tile in one
    runtime call, whatever --batch said (2 GB RSS for a 7.9 MB input)."""
    a = RNG.integers(0, 4000, (60, 40, 36)).astype(np.uint16)
    sizes = []
    real = up.backend.run

    def counting(x):
        sizes.append(x.shape[0])
        return real(x)

    monkeypatch.setattr(up.backend, "run", counting)
    got = up.upscale(a, axes="CYX", batch=1)
    assert max(sizes) == 1, sizes
    sizes.clear()
    got4 = up.upscale(a, axes="CYX", batch=4)
    assert max(sizes) <= 4, sizes
    monkeypatch.undo()
    want = np.stack([up.upscale(a[c]) for c in range(60)])  # each channel on its own
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got4, want)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"tile_sizes": [20000]}, "tile_sizes"),
        ({"tile_sizes": [[64, 100000]]}, "tile_sizes"),
        ({"scale": 1000}, "scale"),
        ({"in_channels": 10**9}, "in_channels"),
        ({"halo": 10**7}, "halo"),
    ],
)
def test_card_numbers_are_bounded(tmp_path, fixtures_dir, change, field):
    """11: tile_sizes [20000] on a dynamic model asked for 3 GB, scale 1000 for 30 GiB."""
    art = _copy_model(fixtures_dir, tmp_path, **change)
    with pytest.raises(CardError, match=field):
        sr.load(art)


# ================================================================= 12: reader and writer errors
def _imagej_with_bad_ifd(p: Path) -> None:
    """An ImageJ stack whose third IFD's tag list runs past the end of the file."""
    tifffile.imwrite(p, RNG.integers(0, 4000, (3, 32, 40)).astype(np.uint16), imagej=True, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(p) as tif:
        off = tif.pages[2].offset
    b = bytearray(p.read_bytes())
    b[off : off + 2] = struct.pack("<H", 4000)
    p.write_bytes(bytes(b))


def test_corrupt_ifd_in_the_page_scan_is_an_image_error(tmp_path):
    """12: the page scan raised tifffile's raw TiffFileError (corrupted IFD structure)."""
    _imagej_with_bad_ifd(tmp_path / "bad.tif")
    with pytest.raises(ImageError, match="corrupt"):
        read_image(tmp_path / "bad.tif")


def test_odd_tiff_metadata_does_not_fail_the_write(tmp_path, model):
    """12: RESUNIT 7 and a Latin-1 ImageJ unit failed at write time, after the whole image
    was computed (ValueError / UnicodeEncodeError)."""
    tifffile.imwrite(tmp_path / "ru.tif", _grey16(), resolution=(2.0, 2.0), resolutionunit=2)
    with tifffile.TiffFile(tmp_path / "ru.tif", mode="r+b") as tif:
        tif.pages[0].tags["ResolutionUnit"].overwrite(7)
    tifffile.imwrite(tmp_path / "ij.tif", _grey16(), imagej=True, metadata={"unit": "um", "spacing": 2.0})
    (tmp_path / "ij.tif").write_bytes((tmp_path / "ij.tif").read_bytes().replace(b"unit=um", b"unit=\xb5m"))
    res = run(tmp_path / "ru.tif", tmp_path / "ij.tif", "-o", tmp_path / "o", "--model", model)
    assert res.exit_code == 0, res.output
    with tifffile.TiffFile(tmp_path / "o" / "ru_x4.tif") as t:
        assert t.pages[0].resolution == (8.0, 8.0)
    with tifffile.TiffFile(tmp_path / "o" / "ij_x4.tif") as t:
        assert t.imagej_metadata["unit"] == "micron" and t.imagej_metadata["spacing"] == 2.0
    # the API writer refuses metadata it cannot write before writing anything (an ImageError
    # naming the file and the fields), and takes a micrometre sign as ImageJ's "micron"
    with pytest.raises(ImageError, match=r"w.tif: .*resolution unit 7.*ImageJ spacing inf"):
        write_image(
            tmp_path / "w.tif",
            _grey16(),
            "YX",
            {
                "resolution": (1.0, 2.0),
                "resolutionunit": 7,
                "imagej": {"unit": "m\n", "spacing": float("inf"), "finterval": -1},
            },
        )
    assert not (tmp_path / "w.tif").exists()
    write_image(tmp_path / "w.tif", _grey16(), "YX", {"imagej": {"unit": "\u00b5m"}})
    with tifffile.TiffFile(tmp_path / "w.tif") as t:
        assert t.imagej_metadata["unit"] == "micron"


# ================================================================= 13: hostile cards
def _card(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "tiny_x4.card.json").read_text())


@pytest.mark.parametrize(
    "norm",
    [{"p_low": "a"}, {"p_low": None}, {"p_high": [1]}, {"p_low": True}, {"mode": ["range"]}, {"p_low": float("nan")}],
)
def test_card_normalisation_types(fixtures_dir, norm):
    """13: normalisation.p_low = "a" or null raised TypeError."""
    data = _card(fixtures_dir)
    data["normalisation"].update(norm)
    with pytest.raises(CardError, match="normalisation"):
        ModelCard.from_dict(data)


def test_card_not_utf8_or_nested_too_deep(tmp_path, fixtures_dir):
    """13 hardening: invalid UTF-8 raised UnicodeDecodeError, 100k-deep JSON RecursionError."""
    bad = tmp_path / "latin.card.json"
    bad.write_bytes(json.dumps(_card(fixtures_dir)).replace("tiny_x4", "tiny_\u00e9").encode("latin-1"))
    with pytest.raises(CardError, match="UTF-8"):
        ModelCard.read(bad)
    deep = tmp_path / "deep.card.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CardError, match="nested too deeply"):
        ModelCard.read(deep)
    huge_int = tmp_path / "int.card.json"
    huge_int.write_text('{"scale": ' + "9" * 5000 + "}")
    with pytest.raises(CardError):
        ModelCard.read(huge_int)


@pytest.mark.parametrize("artifact", ["../../x", "/etc/passwd", "sub/m.onnx", ".", "..", "a\\b.onnx", "m\x00.onnx"])
def test_card_artifact_must_be_a_plain_name(tmp_path, fixtures_dir, artifact):
    """13 hardening: an `artifact` holding a path raised ValueError: Invalid name when loading
    by the card (and must never point outside the card's folder)."""
    _copy_model(fixtures_dir, tmp_path)
    card = tmp_path / "m.card.json"
    data = json.loads(card.read_text())
    data["artifact"] = artifact
    card.write_text(json.dumps(data))
    with pytest.raises(CardError, match="artifact"):
        sr.load(card)


@pytest.mark.parametrize(
    "change, what", [({"in_channels": 3, "out_channels": 3}, "channel"), ({"layout": "NHWC"}, "layout NHWC")]
)
def test_card_model_mismatch_found_at_load(tmp_path, fixtures_dir, change, what):
    """13: a channel or layout mismatch between card and model surfaced as onnxruntime's raw
    INVALID_ARGUMENT on the first tile; it is a ModelError when the model is opened."""
    art = _copy_model(fixtures_dir, tmp_path, **change)
    with pytest.raises(ModelError, match=what):
        sr.load(art)


def test_runtime_failure_is_a_model_error(up, monkeypatch):
    """13: whatever the runtime raises on a tile comes out as a ModelError naming the file."""

    def broken(*a, **k):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions")

    monkeypatch.setattr(up.backend.session, "run", broken)
    with pytest.raises(ModelError, match="INVALID_ARGUMENT"):
        up.upscale(_grey16())


# ================================================================= 14: API arguments
@pytest.mark.parametrize(
    "kwargs", [{"axes": ["Y", "X"]}, {"axes": 2}, {"batch": "a"}, {"batch": 0}, {"batch": 1.5}, {"batch": True}]
)
def test_upscale_arguments(up, kwargs):
    """14: axes as a list or an int (AttributeError), batch='a' (ValueError)."""
    with pytest.raises(InputError):
        up.upscale(_grey16(), **kwargs)
    with pytest.raises(InputError):
        list(up.upscale_bands(_grey16(), **kwargs))


@pytest.mark.parametrize(
    "path, opts",
    [
        (None, {}),
        (3, {}),
        ("MODEL", {"num_threads": "x"}),
        ("MODEL", {"num_threads": -2}),
        ("MODEL", {"num_threads": 1.5}),
    ],
)
def test_load_arguments(model, path, opts):
    """14: load(None) (TypeError) and num_threads='x' (ValueError deep in the backend)."""
    with pytest.raises(InputError):
        sr.load(model if path == "MODEL" else path, **opts)


# ================================================================= 15: output places
def test_outdir_under_a_file(tmp_path, model):
    """15: -o whose parent is a file raised NotADirectoryError; -o a file is a usage error."""
    write_image(tmp_path / "a.tif", _grey16(), "YX")
    (tmp_path / "file").write_text("x")
    res = run(tmp_path / "a.tif", "-o", tmp_path / "file" / "out", "--model", model)
    assert res.exit_code == 1 and "is a file, not a folder" in res.output, res.output
    res = run(tmp_path / "a.tif", "-o", tmp_path / "file", "--model", model)
    assert res.exit_code == 2 and "file" in res.output, res.output


@pytest.mark.skipif(
    AS_ROOT,
    reason="root writes into a read-only (0555) folder anyway; "
    "test_unwritable_output_folder_message covers the message",
)
def test_read_only_outdir(tmp_path, model):
    """15: a read-only output folder."""
    write_image(tmp_path / "a.tif", _grey16(), "YX")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        res = run(tmp_path / "a.tif", "-o", out, "--model", model)
        assert res.exit_code == 1 and "permission denied" in res.output, res.output
        res = run(tmp_path / "a.tif", "-o", out / "sub", "--model", model)
        assert res.exit_code == 1 and "permission denied" in res.output, res.output
    finally:
        out.chmod(0o755)


def test_unwritable_output_folder_message(tmp_path, model, monkeypatch):
    """15: a folder the temporary file cannot be made in (what a read-only folder gives)."""
    import tempfile

    write_image(tmp_path / "a.tif", _grey16(), "YX")

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    res = run(tmp_path / "a.tif", "-o", tmp_path / "o", "--model", model)
    assert res.exit_code == 1, res.output
    assert "permission denied for the folder" in res.output and "unexpected" not in res.output


def test_output_name_is_a_folder(tmp_path, model):
    """15: an output name that is a folder (IsADirectoryError: 'unexpected error')."""
    write_image(tmp_path / "a.tif", _grey16(), "YX")
    (tmp_path / "o" / "a_x4.tif").mkdir(parents=True)
    res = run(tmp_path / "a.tif", "-o", tmp_path / "o", "--model", model, "--overwrite")
    assert res.exit_code == 1, res.output
    assert "is a folder" in res.output and "unexpected" not in res.output
    assert (tmp_path / "o" / "a_x4.tif").is_dir()


def test_long_input_names(tmp_path, model):
    """15: input names of 239-252 characters: the temporary name is 14 characters longer than
    the output's and went past the 255 limit; a name the output cannot have is said so."""
    src = tmp_path / "in"
    src.mkdir()
    names = ["a" * n + ".tif" for n in (236, 242, 248)]
    for n in names:
        write_image(src / n, _grey16(8, 10), "YX")
    res = run(src, "-o", tmp_path / "o", "--model", model)
    assert res.exit_code == 0, res.output
    assert sorted(f.name for f in (tmp_path / "o").iterdir()) == sorted(n[:-4] + "_x4.tif" for n in names)
    write_image(src / ("b" * 250 + ".tif"), _grey16(8, 10), "YX")  # its output needs 257 bytes
    res = run(src / ("b" * 250 + ".tif"), "-o", tmp_path / "o2", "--model", model)
    assert res.exit_code == 1 and "file name too long" in res.output, res.output


def test_disk_full_is_said_so(tmp_path, model, monkeypatch):
    """15 hardening: a full disk was 'unexpected error (OSError ...)'."""
    write_image(tmp_path / "a.tif", _grey16(), "YX")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full)
    res = run(tmp_path / "a.tif", "-o", tmp_path / "o", "--model", model)
    assert res.exit_code == 1, res.output
    assert "disk full" in res.output and "unexpected" not in res.output
    assert list((tmp_path / "o").iterdir()) == []


def test_file_size_limit_is_said_so(tmp_path, model):
    """15 hardening: a file-size limit (ulimit -f: EFBIG, for root too) on a real write."""
    import resource

    write_image(tmp_path / "a.tif", _grey16(200, 200), "YX")  # 640 KB out, limit 64 KB

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    code = "import sys; from scopesr.sdk.cli import main; sys.argv[0] = 'sr-upscale'; main()"
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.tif"), "-o", str(tmp_path / "o"), "--model", str(model)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
        check=False,
    )
    assert p.returncode == 1, p.stderr
    assert "file too large" in p.stderr and "unexpected" not in p.stderr, p.stderr
    assert list((tmp_path / "o").iterdir()) == []


# ================================================================= 18, 20
def test_rewritten_temporary_file_gets_the_usual_mode(tmp_path):
    """18: a writer that replaces the file it is given (safetensors: a new 0600 file) left the
    result unreadable to others; the atomic writer sets 0666 minus the umask again."""
    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_path(tmp_path / "w.safetensors") as tmp:
        tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"weights")
        os.close(fd)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o666 & ~umask


def test_safetensors_written_through_atomic_path_is_shared(tmp_path):
    """18: the real writer (skipped where safetensors/torch are not installed)."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_path(tmp_path / "generator.safetensors") as tmp:
        st.save_file({"w": torch.zeros(2)}, str(tmp))
    assert stat.S_IMODE((tmp_path / "generator.safetensors").stat().st_mode) == 0o666 & ~umask


def test_stream_above_nan_is_refused(tmp_path, model):
    """20: --stream-above nan was accepted (and never streamed)."""
    write_image(tmp_path / "a.tif", _grey16(), "YX")
    res = run(tmp_path / "a.tif", "-o", tmp_path / "o", "--model", model, "--stream-above", "nan")
    assert res.exit_code == 2 and "nan" in res.output, res.output


# ================================================================= hangs on FIFOs
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_model_card_and_image_do_not_hang(tmp_path, fixtures_dir):
    """--model pointing at a FIFO (with a card beside it) blocked forever: only regular files
    are opened."""
    _copy_model(fixtures_dir, tmp_path)
    (tmp_path / "m.onnx").unlink()
    os.mkfifo(tmp_path / "m.onnx")
    with deadline(20), pytest.raises(ScopesrError, match="pipe"):
        sr.load(tmp_path / "m.onnx")
    os.mkfifo(tmp_path / "f.card.json")
    with deadline(20), pytest.raises(CardError, match="regular file"):
        ModelCard.read(tmp_path / "f.card.json")
    os.mkfifo(tmp_path / "img.tif")
    with deadline(20), pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path / "img.tif")


# ================================================================= finite in, finite out
def _extremes():
    base = np.random.default_rng(12).random((40, 36))
    return {
        "f32-denormal-range": (base * 1e-40).astype(np.float32),
        "f32-tiny-range": (base * 1e-30).astype(np.float32),
        "f32-huge-range": ((base * 2 - 1) * 3e38).astype(np.float32),
        "f32-max-constant": np.full((40, 36), 3.4e38, np.float32),
        "f32-one-outlier": np.where(base > 0.99, 3e38, base).astype(np.float32),
        "f16-near-max": (base * 65000).astype(np.float16),
        "f16-both-signs": ((base * 2 - 1) * 65504).astype(np.float16),
        "f64-1e300": base * 1e300,
        "f64-full-range": (base * 2 - 1) * 1.7e308,
        "f64-1e-320": base * 1e-320,
    }


@pytest.mark.parametrize("name", sorted(_extremes()))
@pytest.mark.parametrize("mode", ["percentile", "range"])
def test_finite_input_gives_finite_output(tmp_path, fixtures_dir, name, mode):
    """Float images with a tiny (1e-40) or huge (+-3e38) range, float16 near its maximum,
    float64 at 1e300: the output held NaN or inf."""
    import warnings

    a = _extremes()[name]
    art = _copy_model(fixtures_dir, tmp_path, normalisation={"mode": mode, "p_low": 0.1, "p_high": 99.9})
    upm = sr.load(art)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        out = upm.upscale(a)
    assert out.dtype == a.dtype and out.shape == (160, 144)
    assert np.isfinite(out).all(), name
    if name == "f32-tiny-range" and mode == "percentile":  # a float image keeps its range
        assert np.abs(out).max() < 1e-29 and out.max() > 1e-31


def test_finite_output_through_the_streamed_cli(tmp_path, model):
    a = _extremes()["f32-huge-range"]
    tifffile.imwrite(tmp_path / "f.tif", a)
    res = run(tmp_path / "f.tif", "-o", tmp_path / "o", "--model", model, "--stream-above", "0")
    assert res.exit_code == 0, res.output
    assert np.isfinite(read_image(tmp_path / "o" / "f_x4.tif").array).all()


# ================================================================= leftovers
def test_stale_temporary_files_are_removed(tmp_path, model):
    """A kill -9 during a write left .NAME.XXXXXXXX.tmp beside the output forever; the next
    write of that name removes the ones older than STALE_TEMP_AGE_S (a running writer's
    fresh one is left alone), and unrelated files are untouched."""
    write_image(tmp_path / "a.tif", _grey16(), "YX")
    out = tmp_path / "o"
    out.mkdir()
    old = time.time() - STALE_TEMP_AGE_S - 60
    stale = [out / ".a_x4.tif.k3j_9x2q.tmp", out / ".a_x4.tif.0aa1bb2c.tmp"]
    fresh = out / ".a_x4.tif.zz99yy88.tmp"
    keep = [out / ".a_x4.tif.notmine.tmp", out / "b_x4.tif", out / ".other.tif.k3j_9x2q.tmp"]
    for p in stale + [fresh] + keep:
        p.write_bytes(b"x" * 100)
    for p in stale + keep:
        os.utime(p, (old, old))
    res = run(tmp_path / "a.tif", "-o", out, "--model", model)
    assert res.exit_code == 0, res.output
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and all(p.exists() for p in keep)
    assert (out / "a_x4.tif").exists()
