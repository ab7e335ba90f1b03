"""sr-train refuses bad options with a clear message and exit 2 (no traceback, nothing trained),
refuses --resume where there is nothing to resume, and resumes past a truncated checkpoint.

The option cases stop in the config checks; the resume cases are tiny real runs (student-tiny,
32 px crops of rendered scenes, no worker processes, a few steps)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from scopesr.trainer.checkpoint import load_latest_training_state, save_training_state  # noqa: E402
from scopesr.trainer.cli import main as cli_main  # noqa: E402
from scopesr.trainer.errors import CheckpointError  # noqa: E402


def _base(out: Path, steps: int = 6) -> list[str]:
    return [
        "pretrain",
        "--data",
        "synthetic:puncta?n=4",
        "--preset",
        "student-tiny",
        "--hr-size",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--steps",
        str(steps),
        "--content-loss",
        "l1",
        "--lr",
        "1e-3",
        "--val-every",
        "1000",
        "--out",
        str(out),
    ]


def _refused(argv: list[str], capsys, *needles: str) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sr-train: error: ") or "Error:" in err, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--model-arg", "channels=abc"], ("channels", "integer")),
        (["--model-arg", "channels=0"], ("channels", ">= 1")),
        (["--lr", "nan"], ("--lr", "finite")),
        (["--lr", "-1"], ("--lr", "> 0")),
        (["--lr", "inf"], ("--lr", "finite")),
        (["--beta1", "1.5"], ("--beta1",)),
        (["--device", "banana"], ("--device", "banana", "cpu")),
        (["--val-fraction", "2"], ("--val-fraction", "[0, 1)")),
        (["--val-fraction", "-0.1"], ("--val-fraction",)),
        (["--mse-weight", "-1"], ("--mse-weight", ">= 0")),
        (["--content-loss", "mse", "--mse-weight", "2"], ("--mse-weight", "--content-loss l1")),
        (["--crop-log-eps", "-0.01"], ("--crop-log-eps", ">= 0")),
        (["--loss-margin", "-1"], ("--loss-margin", ">= 0")),
        (["--content-loss", "mse", "--crop-log-eps", "0.01"], ("--crop-log-eps", "--content-loss l1")),
        (["--content-loss", "l1", "--mse-weight", "2", "--crop-log-eps", "0.01"], ("--crop-log-eps", "--mse-weight")),
    ],
)
def test_bad_values_exit_2_with_a_clear_message(extra, needles, tmp_path, capsys):
    out = tmp_path / "run"
    _refused([*_base(out), *extra], capsys, *needles)
    assert not (out / "checkpoints").exists() and not (out / "final").exists()


def test_out_that_is_a_file_exits_2_and_keeps_the_file(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("a user's file")
    _refused(_base(f), capsys, "--out", "is a file")
    _refused(_base(f / "sub"), capsys, "--out", "is a file")
    assert f.read_text() == "a user's file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_exits_2(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(_base(ro / "run"), capsys, "--out", "writable")
        _refused(_base(ro), capsys, "--out", "writable")
    finally:
        ro.chmod(0o755)


def test_resume_without_a_checkpoint_is_refused_naming_the_folder(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="scopesr.trainer"):
        err = _refused([*_base(out), "--resume"], capsys, "--resume", str(out / "checkpoints"), "drop --resume")
    assert "no checkpoint" in err
    assert any(str(out / "checkpoints") in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert not out.exists()  # nothing was started


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    """Checkpoints at steps 2 and 4, step 4 truncated: resume from step 2, same final weights."""
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    assert cli_main(_base(straight)) == 0
    assert cli_main([*_base(parts), "--stop-at", "4", "--ckpt-every", "2"]) == 0
    ckpts = parts / "checkpoints"
    latest = ckpts / "step_00000004.pt"
    assert (ckpts / "step_00000002.pt").is_file() and latest.is_file()
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="scopesr.trainer"):
        assert cli_main([*_base(parts), "--resume", "--ckpt-every", "2"]) == 0
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "step_00000004.pt" in warned and "step_00000002.pt" in warned
    assert (ckpts / "step_00000004.pt.bad").is_file()  # set aside, not deleted
    a = load_file(str(straight / "final" / "generator.safetensors"))
    b = load_file(str(parts / "final" / "generator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_readable_checkpoint_is_a_checkpoint_error(tmp_path):
    save_training_state(tmp_path, 1, {"g": {}}, keep=3)
    (tmp_path / "step_00000002.pt").write_bytes(b"PK\x03\x04 truncated")
    path, state = load_latest_training_state(tmp_path, set_aside=False)
    assert path.name == "step_00000001.pt" and state["step"] == 1
    (tmp_path / "step_00000001.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="none of its 2 checkpoint"):
        load_latest_training_state(tmp_path, set_aside=False)
