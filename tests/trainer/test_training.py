"""Real (tiny) training runs on real fluorescence crops: learning, exact resume, DDP, distillation.

Speed: generator presets are shrunk with overrides (1-2 residual blocks, 8-16 channels,
32-48 px crops) so each run takes seconds on 2 CPU cores; the code path is the real one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from scopesr.sdk import ModelCard  # noqa: E402
from scopesr.trainer import create_model, save_generator  # noqa: E402
from scopesr.trainer.cli import main as cli_main  # noqa: E402
from scopesr.trainer.cli import resolve_config  # noqa: E402
from scopesr.trainer.train import TrainError, ensemble_forward, train  # noqa: E402

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
]


def _records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_pretrain_lowers_loss_and_raises_val_psnr(folder_dir, tmp_path):
    run = tmp_path / "pre"
    rc = cli_main(
        [
            "pretrain",
            "--data",
            str(folder_dir),
            *TINY,
            "--model-arg",
            "channels=16",
            "--model-arg",
            "up_channels=16",
            "--hr-size",
            "48",
            "--batch-size",
            "4",
            "--steps",
            "60",
            "--lr",
            "2e-3",
            "--lr-drop-at",
            "0.8",
            "--val-every",
            "30",
            "--log-every",
            "1",
            "--out",
            str(run),
        ]
    )
    assert rc == 0
    train_recs = _records(run, "train")
    first = sum(r["loss_g"] for r in train_recs[:5]) / 5
    last = sum(r["loss_g"] for r in train_recs[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    val = _records(run, "val")
    assert [v["step"] for v in val] == [0, 30, 60]
    assert val[-1]["psnr"] > val[0]["psnr"] + 3.0, val
    card = ModelCard.load(run / "final" / "generator.safetensors")
    assert card.architecture == "paper" and card.in_channels == 1 and card.halo > 0
    assert card.training["steps"] == 60 and card.training["data"]["train_items"] == 6
    assert card.metrics["validation"]["psnr"] == pytest.approx(val[-1]["psnr"])
    assert (
        "border" in card.metrics["validation"]["convention"] or "pixels cut" in card.metrics["validation"]["convention"]
    )
    assert (run / "samples" / "step_00000060.png").exists() and (run / "config.json").exists()


def test_resume_is_exact_gan(hpa_dir, tmp_path):
    """Stop a GAN run mid-way (after a checkpoint), resume it: same weights as uninterrupted."""
    common = [
        "gan",
        "--data",
        str(hpa_dir),
        *TINY,
        "--content-loss",
        "mse",
        "--disc-channels",
        "4",
        "--steps",
        "5",
        "--ckpt-every",
        "2",
        "--val-every",
        "100",
        "--lr",
        "1e-3",
        "--log-every",
        "1",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli_main([*common, "--out", str(full)]) == 0
    assert cli_main([*common, "--out", str(full)]) == 2  # a finished run is not overwritten silently
    assert cli_main([*common, "--out", str(part), "--stop-at", "3"]) == 0
    assert not (part / "final").exists() and (part / "checkpoints" / "step_00000003.pt").exists()
    # resume with only --out: everything else comes from the run's saved config.json
    assert cli_main(["gan", "--out", str(part), "--resume", "--no-progress"]) == 0
    assert _same_weights(full / "final" / "generator.safetensors", part / "final" / "generator.safetensors")
    ck_full = torch.load(full / "checkpoints" / "step_00000005.pt", weights_only=True)
    ck_part = torch.load(part / "checkpoints" / "step_00000005.pt", weights_only=True)
    assert all(torch.equal(ck_full["d"][k], ck_part["d"][k]) for k in ck_full["d"])  # discriminator too
    assert [r["step"] for r in _records(part, "train")] == [1, 2, 3, 4, 5]  # log trimmed and continued
    assert len(list((full / "checkpoints").iterdir())) == 3  # keep last 3 (2, 4, 5)


def test_gan_vgg_dense_head_smoke(hpa_dir, tmp_path):
    """VGG content loss with a RANDOMLY INITIALISED VGG19 (no ImageNet weights offline): code path only."""
    run = tmp_path / "vgg"
    assert (
        cli_main(
            [
                "gan",
                "--data",
                str(hpa_dir),
                *TINY,
                "--vgg-random-init",
                "--disc-head",
                "dense",
                "--disc-channels",
                "4",
                "--steps",
                "2",
                "--real-label-range",
                "0.8",
                "1.0",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["real_label_range"] == [0.8, 1.0] and cfg["data"]["layout"] == "auto"
    rec = _records(run, "train")[-1]
    assert {"loss_content", "loss_adv", "loss_l1", "loss_d"} <= set(rec)
    card = ModelCard.load(run / "final" / "generator.safetensors")
    assert card.training["vgg"].startswith("random-init") and card.training["data"]["layout"] == "hpa"


def test_distill_with_teacher_and_without(folder_dir, tmp_path):
    teacher = create_model("paper", n_blocks=1, channels=8, up_channels=8, in_channels=1, out_channels=1)
    tpath = tmp_path / "teacher.safetensors"
    save_generator(teacher, tpath, training={"note": "random weights, test only"})
    for name, t in (("with", str(tpath)), ("none", "none")):
        run = tmp_path / name
        assert (
            cli_main(
                [
                    "distill",
                    "--data",
                    str(folder_dir),
                    "--preset",
                    "student-tiny",
                    "--teacher",
                    t,
                    "--hr-size",
                    "32",
                    "--batch-size",
                    "2",
                    "--workers",
                    "0",
                    "--no-progress",
                    "--steps",
                    "3",
                    "--teacher-weight",
                    "0.5",
                    "--teacher-ensemble",
                    "4",
                    "--out",
                    str(run),
                ]
            )
            == 0
        )
        rec = _records(run, "train")[-1]
        assert ("loss_teacher" in rec) == (name == "with")
        card = ModelCard.load(run / "final" / "generator.safetensors")
        assert card.architecture == "student-tiny" and card.training["mode"] == "distill"
        assert json.loads((run / "config.json").read_text())["teacher_ensemble"] == 4
    with pytest.raises(TrainError, match="--teacher"):
        train(resolve_config("distill", {"data": [str(folder_dir)], "out": str(tmp_path / "x")}))
    with pytest.raises(TrainError, match="--teacher-ensemble 3"):
        resolve_config("distill", {"data": [str(folder_dir)], "teacher": str(tpath), "teacher_ensemble": 3}).validate()
    rgb = create_model("paper", n_blocks=1, channels=8, up_channels=8)
    save_generator(rgb, tmp_path / "rgb.safetensors")
    assert (
        cli_main(
            [
                "distill",
                "--data",
                str(folder_dir),
                "--preset",
                "student-tiny",
                "--teacher",
                str(tmp_path / "rgb.safetensors"),
                "--hr-size",
                "32",
                "--steps",
                "1",
                "--workers",
                "0",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )  # channel mismatch: a clear error, exit 2


def test_loss_margin_and_per_crop_log_l1_in_real_runs(folder_dir, tmp_path):
    teacher = create_model("paper", n_blocks=1, channels=8, up_channels=8, in_channels=1, out_channels=1)
    tpath = tmp_path / "teacher.safetensors"
    save_generator(teacher, tpath, training={"note": "random weights, test only"})
    common = ["--data", str(folder_dir), "--preset", "student-tiny", "--hr-size", "32", "--batch-size", "2"]
    common += ["--workers", "0", "--no-progress", "--steps", "3", "--loss-margin", "1", "--crop-log-eps", "0.01"]
    for mode, extra in (("pretrain", ["--content-loss", "l1"]), ("distill", ["--teacher", str(tpath)])):
        run = tmp_path / mode
        assert cli_main([mode, *common, *extra, "--out", str(run)]) == 0
        rec = _records(run, "train")[-1]
        # the per-crop log L1 is negative where crops' errors are below 1 - eps; plain L1 never is
        assert rec["loss_g"] < 0 and all(v < 0 for k, v in rec.items() if k.startswith("loss_"))
        training = ModelCard.load(run / "final" / "generator.safetensors").training
        assert training["loss_margin"] == 1 and training["crop_log_eps"] == 0.01
    # 2 x 4 LR pixels x4 = the whole 32-pixel crop: refused with the fix, nothing trained
    with pytest.raises(TrainError, match="--loss-margin 4 leaves nothing"):
        train(
            resolve_config(
                "pretrain",
                {
                    "data": [str(folder_dir)],
                    "preset": "student-tiny",
                    "hr_size": 32,
                    "workers": 0,
                    "loss_margin": 4,
                    "out": str(tmp_path / "big"),
                },
            )
        )
    assert not (tmp_path / "big").exists()  # refused before the run folder is made


def test_loss_region_is_the_crop_less_its_margin():
    from scopesr.trainer.train import _inner  # noqa: PLC0415

    x = torch.arange(2 * 1 * 8 * 10.0).reshape(2, 1, 8, 10)
    assert _inner(x, 0) is x
    inner = _inner(x, 2)
    assert inner.shape == (2, 1, 4, 6) and torch.equal(inner, x[:, :, 2:6, 2:8])


def test_teacher_ensemble_is_the_mean_over_turned_back_copies():
    """ensemble_forward against the definition written with torch.rot90 (a non-symmetric net)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3))
    x = torch.randn(2, 1, 9, 13)
    copies = [(0, False), (0, True), (2, True), (2, False), (1, False), (1, True), (3, False), (3, True)]
    for n in (1, 2, 4, 8):
        want = torch.zeros_like(net(x))
        for k, flip in copies[:n]:
            xt = torch.rot90(x, k, (2, 3))
            xt = xt.flip(3) if flip else xt
            y = net(xt)
            y = y.flip(3) if flip else y
            want += torch.rot90(y, -k, (2, 3))
        torch.testing.assert_close(ensemble_forward(net, x, n), want / n)
    assert not torch.allclose(ensemble_forward(net, x, 8), net(x))  # the copies differ: the test can fail


def test_config_file_and_cli_precedence(folder_dir, tmp_path):
    conf = tmp_path / "run.toml"
    conf.write_text(
        f'preset = "srgan"\nsteps = 7\nlr = 0.5\n[data]\ndata = ["{folder_dir}"]\nhr_size = 32\n'
        "[model_args]\nn_blocks = 2\n"
    )
    cfg = resolve_config("pretrain", {"config": str(conf), "lr": 0.25, "model_args": [("channels", 8)]})
    assert cfg.preset == "srgan" and cfg.steps == 7 and cfg.lr == 0.25
    assert cfg.model_args == {"n_blocks": 2, "channels": 8} and cfg.data.hr_size == 32
    bad = tmp_path / "bad.toml"
    bad.write_text("stpes = 3\n")
    with pytest.raises(Exception, match="stpes"):
        resolve_config("gan", {"config": str(bad)})


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_identical_weights(hpa_dir, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "scopesr.trainer.cli",
        "gan",
        "--data",
        str(hpa_dir),
        *TINY,
        "--content-loss",
        "l1",
        "--disc-channels",
        "4",
        "--steps",
        "4",
        "--ckpt-every",
        "2",
        "--device",
        "cpu",
        "--out",
        str(run),
    ]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ck = torch.load(run / "checkpoints" / "step_00000004.pt", weights_only=True)
    assert len(ck["rank_digests"]) == 2 and ck["rank_digests"][0] == ck["rank_digests"][1]
    assert len(ck["rng"]) == 2  # each rank's RNG state is kept for resume
    card = ModelCard.load(run / "final" / "generator.safetensors")
    assert card.training["world_size"] == 2
    init = create_model("paper", n_blocks=1, channels=8, up_channels=8)
    w = load_file(str(run / "final" / "generator.safetensors"))
    assert not torch.equal(w["head.0.weight"], init.state_dict()["head.0.weight"])  # it trained


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(folder_dir, tmp_path):
    """SIGKILL a real sr-train process after its second checkpoint, resume, compare."""
    args = [
        "pretrain",
        "--data",
        str(folder_dir),
        *TINY,
        "--steps",
        "24",
        "--ckpt-every",
        "2",
        "--val-every",
        "100",
        "--workers",
        "1",
    ]
    base = [sys.executable, "-m", "scopesr.trainer.cli"]
    ref = tmp_path / "ref"
    subprocess.run([*base, *args, "--out", str(ref)], env=_env(), check=True, capture_output=True, timeout=300)
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [*base, *args, "--out", str(run)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def past_second_checkpoint() -> bool:
        # any step >= 4: older checkpoints are pruned (keep 3), so a slow poll may never see step 4 itself
        return any(int(p.stem.split("_")[1]) >= 4 for p in (run / "checkpoints").glob("step_*.pt"))

    deadline = time.time() + 240
    while not past_second_checkpoint() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed_mid_way = proc.poll() is None
    proc.send_signal(signal.SIGKILL)  # Popen's own send: a no-op when the run already finished and was reaped
    proc.wait()
    if killed_mid_way:
        assert not (run / "final").exists()
    for ck in (run / "checkpoints").glob("step_*.pt"):  # atomic: every visible checkpoint is complete
        torch.load(ck, weights_only=True)
    p = subprocess.run(
        [*base, "pretrain", "--out", str(run), "--resume", "--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert _same_weights(ref / "final" / "generator.safetensors", run / "final" / "generator.safetensors")
    assert not list((run / "checkpoints").glob(".*.tmp"))  # a killed save's temporary is cleaned up


@pytest.mark.gpu
def test_cuda_bf16_channels_last_compile(hpa_dir, tmp_path):
    """On a CUDA GPU: bf16 autocast + channels_last + torch.compile, then distillation with a bf16 teacher."""
    run = tmp_path / "cuda"
    assert (
        cli_main(
            [
                "pretrain",
                "--data",
                str(hpa_dir),
                *TINY,
                "--device",
                "cuda",
                "--compile",
                "--steps",
                "3",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    card = ModelCard.load(run / "final" / "generator.safetensors")
    assert card.training["device"].startswith("cuda") and card.training["gpu"]
    assert (
        cli_main(
            [
                "distill",
                "--data",
                str(hpa_dir),
                "--preset",
                "student-tiny",
                "--teacher",
                str(run / "final" / "generator.safetensors"),
                "--hr-size",
                "32",
                "--batch-size",
                "2",
                "--workers",
                "0",
                "--no-progress",
                "--device",
                "cuda",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "st"),
            ]
        )
        == 0
    )
