"""Hardening of sr-convert (an existing output, unbounded tile sizes, missing sample wheels, leftovers): an existing
artifact is never replaced without --overwrite, tile sizes are bounded before anything is
allocated, and --calibration images stand in for missing sample-image packages."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from scopesr.converters.api import _replace, check_tile_sizes, convert  # noqa: E402
from scopesr.converters.cli import main  # noqa: E402
from scopesr.converters.errors import CalibrationError, ConversionError  # noqa: E402
from scopesr.sdk import ModelCard  # noqa: E402
from scopesr.sdk.atomic import STALE_TEMP_AGE_S  # noqa: E402


def test_existing_output_needs_overwrite(trained_student, tmp_path, capsys):
    """3: sr-convert -o replaced an existing file without asking."""
    out = tmp_path / "deploy" / "model.onnx"
    out.parent.mkdir()
    out.write_bytes(b"the user's own file")
    assert main([str(trained_student), "-t", "onnx", "-o", str(out), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err, err
    assert out.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # nothing else written
    assert main([str(trained_student), "-t", "onnx", "-o", str(out), "--no-verify", "--overwrite"]) == 0
    assert ModelCard.load(out).format == "onnx"


def test_artifact_placed_exclusively(tmp_path):
    """3 (and 2 for sr-convert): a file another run put at the name meanwhile is not replaced."""
    tmp = tmp_path / "t" / "m.onnx"
    tmp.parent.mkdir()
    tmp.write_bytes(b"new")
    final = tmp_path / "m.onnx"
    final.write_bytes(b"theirs")
    with pytest.raises(ConversionError, match="already exists|exists"):
        _replace(tmp, final, overwrite=False)
    assert final.read_bytes() == b"theirs"
    _replace(tmp, final, overwrite=True)
    assert final.read_bytes() == b"new"


def test_tile_sizes_are_bounded(trained_student, tmp_path, capsys):
    """11: --tile-sizes 100000 went on to a 40 GB allocation error."""
    assert main([str(trained_student), "-t", "tflite", "--tile-sizes", "64,100000", "-o", str(tmp_path / "t")]) == 2
    assert "at most 4096" in capsys.readouterr().err
    with pytest.raises(ConversionError, match="<= 4096"):
        check_tile_sizes([(64, 100000)], halo=5, explicit=True)
    assert not list(tmp_path.iterdir())


def _calibration_folder(folder: Path) -> Path:
    """Real images copied out of the sample packages, before those are made to look missing."""
    from scopesr.sdk import SAMPLES

    folder.mkdir()
    for key in ("stardist-nuclei-2d", "napari-nuclei"):
        p = SAMPLES[key].path()
        if p is None:
            pytest.skip(f"needs the sample image {key}")
        shutil.copy(p, folder / p.name)
    return folder


@pytest.fixture
def no_samples(monkeypatch):
    from scopesr.sdk import samples

    monkeypatch.setattr(samples.Sample, "path", lambda self: None)


def test_calibration_folder_stands_in_for_missing_samples(trained_student, tmp_path, capsys, request):
    """19: without the sample-image wheels sr-convert suggested --calibration DIR, then ignored it
    for fp32 (parity) and failed with the same error."""
    cal = _calibration_folder(tmp_path / "cal")
    request.getfixturevalue("no_samples")
    with pytest.raises(CalibrationError, match=r"pass --calibration DIR .*\(then used for all three\)"):
        convert(trained_student, "onnx", tmp_path / "a.onnx")
    assert main([str(trained_student), "-t", "onnx", "-o", str(tmp_path / "b"), "--calibration", str(cal)]) == 0
    out = capsys.readouterr().out
    assert f"parity on real tiles from {cal} (--calibration; the real sample images are not installed" in out, out
    assert "parity: PASSED" in out


def test_bioimageio_without_samples_uses_calibration(small_paper, tmp_path, request):
    """19: --target bioimageio --no-verify failed the same way (its sample tensors)."""
    pytest.importorskip("bioimageio.spec")
    cal = _calibration_folder(tmp_path / "cal")
    request.getfixturevalue("no_samples")
    out = tmp_path / "pkg.zip"
    assert main([str(small_paper), "-t", "bioimageio", "--no-verify", "-o", str(out), "--calibration", str(cal)]) == 0
    assert out.exists()


def test_stale_temporary_folder_is_removed(trained_student, tmp_path):
    """Leftovers: a killed sr-convert left its temporary folder beside the output."""
    out = tmp_path / "m.onnx"
    stale = tmp_path / ".m.onnx.k3j_9x2q"
    stale.mkdir()
    (stale / "m.onnx").write_bytes(b"x" * 1000)
    fresh = tmp_path / ".m.onnx.aaaa1111"
    fresh.mkdir()
    old = time.time() - STALE_TEMP_AGE_S - 60
    os.utime(stale, (old, old))
    convert(trained_student, "onnx", out, verify=False)
    assert not stale.exists() and fresh.exists()
    assert ModelCard.load(out).artifact == "m.onnx"
