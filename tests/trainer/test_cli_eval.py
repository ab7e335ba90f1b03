"""sr-train presets / eval: output layout and numbers checked independently."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scopesr.trainer import create_model, save_generator  # noqa: E402
from scopesr.trainer.cli import main  # noqa: E402


def test_presets_json(capsys):
    assert main(["presets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"srgan", "srgan-deconv", "srgan-interp", "srgan-nobn", "paper"} <= set(rows)
    assert rows["paper"]["halo"] == 39 and rows["paper"]["kind"] == "teacher"
    assert rows["paper"]["macs_per_lr_pixel"] > rows["srgan"]["macs_per_lr_pixel"]  # 256-wide HR convs
    assert rows["paper"]["config"]["up_channels"] == 256
    assert main(["presets"]) == 0
    assert "MAC/LR px" in capsys.readouterr().out


def test_eval_table2_against_independent_numbers(folder_dir, tmp_path, capsys):
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio

    m = create_model("paper", n_blocks=1, channels=8, up_channels=8, in_channels=1, out_channels=1)
    model = tmp_path / "tiny.safetensors"
    save_generator(m, model)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(model),
                "--data",
                str(folder_dir / "stardist.tif"),
                str(folder_dir / "tl_0.png"),
                "--out",
                str(out),
                "--crop",
                "96",
            ]
        )
        == 0
    )
    md = (out / "eval.md").read_text()
    assert md.splitlines()[0] == "| Generated Image | PSNR | SSIM |"
    assert "| Bicubic |" in md and "| Nearest Neighbor |" in md and "pixels cut" in md
    res = json.loads((out / "eval.json").read_text())
    assert res["n_images"] == 2 and len(list((out / "compare").glob("*.png"))) == 2
    # recompute the bicubic row for the stardist image independently (PIL + numpy + skimage)
    import tifffile

    from scopesr.sdk import Normalisation, compute_stats

    raw = tifffile.imread(folder_dir / "stardist.tif")[..., None]
    hr = np.clip(compute_stats(raw, Normalisation()).normalise(raw), 0, 1)[..., 0]
    hr = hr[32:128, 32:128]
    lr = np.asarray(Image.fromarray(hr, mode="F").resize((24, 24), Image.Resampling.BICUBIC))
    up = np.clip(np.asarray(Image.fromarray(lr, mode="F").resize((96, 96), Image.Resampling.BICUBIC)), 0, 1)
    ref = peak_signal_noise_ratio(hr[4:-4, 4:-4].astype(np.float64), up[4:-4, 4:-4].astype(np.float64), data_range=1)
    got = next(r for r in res["per_image"] if r["image"].startswith("stardist"))["Bicubic"]["psnr"]
    assert got == pytest.approx(ref, abs=1e-3)
    mean = res["mean"]
    assert mean["Bicubic"]["psnr"] > mean["Nearest Neighbor"]["psnr"]  # real data: bicubic beats nearest


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["pretrain", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["gan", "--data", str(tmp_path), "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "sr-train presets" in capsys.readouterr().err
