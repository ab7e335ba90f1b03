"""Bad input gives a clear error (file + fix) and the right exit status, before slow work."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scopesr.converters import CalibrationError, ConversionError, check_tile_sizes, convert  # noqa: E402
from scopesr.converters.cli import main  # noqa: E402
from scopesr.sdk import CardError, IntegrityError, ModelCard, card_path_for  # noqa: E402


def _copy(src, dst_dir, name="m"):
    dst = dst_dir / f"{name}.safetensors"
    shutil.copy(src, dst)
    card = ModelCard.read(card_path_for(src))
    card.artifact, card.name = dst.name, name  # a card names its artifact: rename it too
    card.save(card_path_for(dst))
    return dst


def test_unknown_target(trained_student, capsys):
    assert main([str(trained_student), "--target", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert "'tensorrt' is not one of 'onnx', 'tflite'" in err and "Usage: sr-convert" in err
    with pytest.raises(ConversionError, match="unknown target 'tensorrt'.*onnx, tflite"):
        convert(trained_student, "tensorrt")


def test_unsupported_precision(trained_student):
    with pytest.raises(ConversionError, match="target torch supports precision fp32"):
        convert(trained_student, "torch", precision="int8")


def test_missing_card(trained_student, tmp_path, capsys):
    m = tmp_path / "lonely.safetensors"
    shutil.copy(trained_student, m)
    with pytest.raises(CardError, match="no model card found.*lonely.card.json"):
        convert(m, "onnx")
    assert main([str(m), "-t", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "lonely.safetensors" in err and "no model card" in err


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ConversionError, match="no such checkpoint"):
        convert(tmp_path / "nope.safetensors", "onnx")
    with pytest.raises(ConversionError, match="not .onnx"):
        (tmp_path / "x.onnx").write_bytes(b"0")
        convert(tmp_path / "x.onnx", "tflite")


def test_corrupt_checkpoint(trained_student, tmp_path, capsys):
    m = _copy(trained_student, tmp_path)
    data = bytearray(m.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the card's sha256 catches it
    m.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        convert(m, "onnx")
    assert main([str(m), "-t", "onnx"]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    # garbage whose card matches (e.g. a truncated download re-carded by hand)
    g = _copy(trained_student, tmp_path, "garbage")
    g.write_bytes(b"this is not a safetensors file")
    from scopesr.sdk import sha256_path

    card = ModelCard.read(card_path_for(g))
    card.sha256 = sha256_path(g)
    card.save(card_path_for(g))
    with pytest.raises(ConversionError, match="not a readable safetensors checkpoint"):
        convert(g, "onnx")


def test_tile_sizes_against_halo(trained_student, tmp_path, capsys):
    with pytest.raises(ConversionError, match=r"smaller than twice the halo \(2 x 39 = 78"):
        check_tile_sizes([64, 128], halo=39, explicit=True)
    sizes, msgs = check_tile_sizes(None, halo=39, explicit=False)  # defaults adapt instead
    assert sizes == [128, 256] and any("mostly halo" in m for m in msgs)
    sizes, msgs = check_tile_sizes([128], halo=39, explicit=True)
    assert sizes == [128] and "only 15% of each tile is kept" in msgs[0]
    assert check_tile_sizes([64], halo=5, explicit=True) == ([64], [])
    # non-square windows: the short side decides; the card form is N or [H, W]
    assert check_tile_sizes([(120, 160), 64, [64, 64]], halo=5, explicit=True) == ([64, [120, 160]], [])
    with pytest.raises(ConversionError, match=r"tile size\(s\) 8x160 smaller than twice the halo"):
        check_tile_sizes([(8, 160)], halo=5, explicit=True)
    with pytest.raises(ConversionError, match=r"positive integers N or \[H, W\]"):
        check_tile_sizes([(120, 0)], halo=5, explicit=True)
    # through the CLI: the student's halo is 5, so 10 is all halo -> exit 2 before converting
    assert main([str(trained_student), "-t", "tflite", "--tile-sizes", "8,10", "-o", str(tmp_path / "t")]) == 2
    assert "smaller than twice the halo" in capsys.readouterr().err
    assert not (tmp_path / "t.tflite").exists()
    assert main([str(trained_student), "-t", "tflite", "--tile-sizes", "32,abc"]) == 2
    assert "Invalid value for '--tile-sizes'" in capsys.readouterr().err
    # "mostly halo" is a warning, and the conversion goes on
    with pytest.warns(UserWarning, match="mostly halo"):
        r = convert(trained_student, "tflite", tmp_path / "w.tflite", tile_sizes=[16], verify=False)
    assert r.card.tile_sizes == [16] and r.parity is None


def test_calibration_folder_errors(trained_student, tmp_path, capsys):
    with pytest.raises(CalibrationError, match="does not exist"):
        convert(trained_student, "tflite", precision="int8", calibration=tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(CalibrationError, match="holds no images"):
        convert(trained_student, "onnx", precision="int8", calibration=empty)
    assert main([str(trained_student), "-t", "onnx", "-p", "int8", "--calibration", str(empty)]) == 2
    assert "holds no images" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    (bad / "b.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(CalibrationError, match="none of the images could be read.*a.png"):
        convert(trained_student, "onnx", precision="int8", calibration=bad)
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(CalibrationError, match="needs a folder"):
        convert(trained_student, "onnx", precision="int8", calibration=f)


def test_calibration_folder_of_real_images_is_used(trained_student, tmp_path, real_grey_image):
    import tifffile

    cal = tmp_path / "cal"
    cal.mkdir()
    tifffile.imwrite(cal / "crop.tif", np.tile(real_grey_image, (2, 2)))
    r = convert(trained_student, "onnx", tmp_path / "q.onnx", precision="int8", calibration=cal)
    assert any(str(cal) in n for n in r.parity.notes) and r.passed, r.parity.table()


def test_output_naming_and_collisions(trained_student, tmp_path):
    m = _copy(trained_student, tmp_path, "model")
    with pytest.raises(ConversionError, match="must end in .onnx"):
        convert(m, "onnx", tmp_path / "out.tflite")
    with pytest.raises(ConversionError, match="would overwrite the source's card"):
        convert(m, "onnx", tmp_path / "model.onnx")  # model.card.json is the checkpoint's card
    r = convert(m, "torch", verify=False)  # default name beside the source
    assert r.artifact == tmp_path / "model-torch-fp32.pt2" and r.card_path.exists()
    with pytest.raises(ConversionError, match="already describes 'model-torch-fp32.pt2'"):
        convert(m, "onnx", tmp_path / "model-torch-fp32.onnx")


def test_noise_aware_model_is_refused_with_the_reason(tmp_path, capsys):
    """A noise-map student (trainer's data.noise_map) has an input the SDK does not feed yet."""
    from scopesr.trainer import create_model, save_generator

    g = create_model("student-tiny", in_channels=1, out_channels=1, cond_channels=1)
    w = tmp_path / "nm.safetensors"
    save_generator(g, w)
    with pytest.raises(ConversionError, match="noise-aware model .*cannot be converted yet"):
        convert(w, "onnx", out=tmp_path / "nm.onnx")
    assert main([str(w), "--target", "onnx", "-o", str(tmp_path / "nm2.onnx")]) == 2
    assert "noise-aware" in capsys.readouterr().err
