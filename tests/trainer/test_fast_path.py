"""The trainer's GPU path, run for real on the CPU: bf16 autocast, channels_last,
torch.compile, and the recorded training throughput (images/s, HR Mpx/s)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from scopesr.sdk import ModelCard  # noqa: E402
from scopesr.trainer.cli import main as cli_main  # noqa: E402
from scopesr.trainer.cli import resolve_config  # noqa: E402
from scopesr.trainer.train import TrainError, resolve_fast_path, train  # noqa: E402

TINY = [
    "--preset",
    "paper",
    "--model-arg",
    "n_blocks=1",
    "--model-arg",
    "channels=8",
    "--model-arg",
    "up_channels=8",
    "--hr-size",
    "32",
    "--batch-size",
    "2",
    "--workers",
    "0",
    "--no-progress",
    "--content-loss",
    "mse",
    "--steps",
    "6",
    "--val-every",
    "100",
    "--log-every",
    "2",
    "--throughput-warmup",
    "2",
    "--lr",
    "1e-3",
]


def _run(folder_dir: Path, out: Path, *extra: str) -> Path:
    assert cli_main(["pretrain", "--data", str(folder_dir), *TINY, *extra, "--out", str(out)]) == 0
    return out


def test_bf16_channels_last_compile_on_cpu_record_throughput(folder_dir, tmp_path):
    fast = _run(folder_dir, tmp_path / "fast", "--precision", "bf16", "--channels-last", "--compile", "aot_eager")
    plain = _run(folder_dir, tmp_path / "plain", "--precision", "fp32")
    t = json.loads((fast / "throughput.json").read_text())
    assert t["precision"] == "bf16" and t["channels_last"] is True and t["compile"] == "aot_eager"
    assert t["device"] == "cpu" and t["gpu"] is None and t["preset"] == "paper"
    assert t["warmup_steps"] == 2 and t["steps_timed"] == 4 and t["images_per_step"] == 2
    assert t["images_per_s"] > 0 and t["seconds"] > 0
    assert t["hr_pixels_per_image"] == 32 * 32
    assert t["hr_mpx_per_s"] == pytest.approx(t["images_per_s"] * 32 * 32 / 1e6, rel=1e-2)
    assert t["images_per_s"] == pytest.approx(4 * 2 / t["seconds"], rel=1e-2)
    # each train record after the warm-up carries the rates of its window
    recs = [json.loads(ln) for ln in (fast / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in train_recs] == [2, 4, 6]
    assert "img_s" not in train_recs[0] and all(r["img_s"] > 0 and r["hr_mpx_s"] > 0 for r in train_recs[1:])
    card = ModelCard.load(fast / "final" / "generator.safetensors")
    assert card.training["throughput"]["images_per_s"] == t["images_per_s"]
    assert json.loads((fast / "config.json").read_text())["precision"] == "bf16"
    # bf16 autocast really ran: same seed and data, different weights from the fp32 run,
    # and the weights themselves stayed fp32
    wf = load_file(str(fast / "final" / "generator.safetensors"))
    wp = load_file(str(plain / "final" / "generator.safetensors"))
    assert all(v.dtype == torch.float32 for v in wf.values() if v.is_floating_point())
    diff = max((wf[k].float() - wp[k].float()).abs().max().item() for k in wf)
    # bf16 rounding (~1e-3 after 6 steps), far above fp32 reordering noise (NHWC, compile: ~1e-7),
    # yet close: the same run at lower precision
    assert 3e-4 < diff < 0.05, diff
    assert json.loads((plain / "throughput.json").read_text())["channels_last"] is False  # CPU default


def test_fast_path_defaults_and_errors():
    cfg = resolve_config("pretrain", {})
    assert resolve_fast_path(cfg, on_cuda=True) == ("bf16", True)  # the GPU path by default
    assert resolve_fast_path(cfg, on_cuda=False) == ("fp32", False)
    cfg.amp = False
    assert resolve_fast_path(cfg, on_cuda=True) == ("fp32", True)
    cfg.precision, cfg.channels_last = "bf16", False
    assert resolve_fast_path(cfg, on_cuda=False) == ("bf16", False)
    bad = resolve_config("pretrain", {"precision": "fp16"})
    with pytest.raises(TrainError, match="fp16 would need loss scaling"):
        train(bad)


@pytest.fixture
def bundled_dir(tmp_path) -> Path:
    """Crops of the SDK's bundled real sample: present wherever the package is (the GPU machine too)."""
    import tifffile
    from PIL import Image

    import scopesr.sdk

    a = np.asarray(tifffile.imread(Path(scopesr.sdk.__file__).parent / "data" / "sample_nuclei.tif"), np.float64)
    a = (a * (255.0 / a.max())).astype(np.uint8)
    d = tmp_path / "bundled"
    d.mkdir()
    for i, (y, x) in enumerate([(0, 0), (0, 64), (64, 0), (64, 64)]):
        Image.fromarray(a[y : y + 64, x : x + 64]).save(d / f"crop{i}.png")
    return d


@pytest.mark.gpu
def test_cuda_defaults_are_the_fast_path_and_throughput_names_the_gpu(bundled_dir, tmp_path):
    run = _run(bundled_dir, tmp_path / "cuda", "--device", "cuda")
    t = json.loads((run / "throughput.json").read_text())
    assert t["precision"] == "bf16" and t["channels_last"] is True and t["compile"] is False
    assert t["device"].startswith("cuda") and t["gpu"] and t["images_per_s"] > 0
