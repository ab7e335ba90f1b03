"""sr-train's options: what the command line hands to resolve_config (only the options given),
the layers of precedence, and the exit statuses of usage errors. No training runs here."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from scopesr.trainer import cli  # noqa: E402
from scopesr.trainer.cli import main as cli_main  # noqa: E402
from scopesr.trainer.cli import resolve_config  # noqa: E402
from scopesr.trainer.data import DataError  # noqa: E402


@pytest.fixture()
def captured(monkeypatch):
    """Replace the training by a recorder of (mode, options given)."""
    seen: list[tuple[str, dict]] = []

    def record(mode, given):
        seen.append((mode, given))
        return 0

    monkeypatch.setattr(cli, "_run_training", record)
    return seen


def test_only_given_options_reach_the_config(captured):
    assert (
        cli_main(
            [
                "pretrain",
                "--data",
                "a",
                "sample:napari-nuclei[0:5]#invert",
                "--data",
                "synthetic:mixed?n=4",
                "--eval-sources",
                "s1",
                "s2",
                "--eval-degradations",
                "psf",
                "binning",
                "--steps",
                "5",
                "--threads",
                "1",
                "--lr-schedule",
                "cosine",
                "--lr-min",
                "1e-5",
                "--balance",
                "sources",
                "--eval-every",
                "7",
                "--eval-max-planes",
                "2",
                "--no-augment",
                "--compile",
                "--model-arg",
                "n_blocks=2",
                "--degradation",
                "microscopy",
                "--out",
                "runs/x",
            ]
        )
        == 0
    )
    mode, given = captured[-1]
    assert mode == "pretrain"
    assert given == {
        "data": ["a", "sample:napari-nuclei[0:5]#invert", "synthetic:mixed?n=4"],
        "eval_sources": ["s1", "s2"],
        "eval_degradations": ["psf", "binning"],
        "steps": 5,
        "threads": 1,
        "lr_schedule": "cosine",
        "lr_min": 1e-5,
        "balance": "sources",
        "eval_every": 7,
        "eval_max_planes": 2,
        "augment": False,
        "compile": True,
        "model_args": [("n_blocks", 2)],
        "degradation": "microscopy",
        "out": "runs/x",
    }
    cfg = resolve_config(mode, given)
    assert cfg.data.data == given["data"] and cfg.data.balance == "sources" and cfg.data.augment is False
    assert cfg.data.degradation == "microscopy" and cfg.eval_sources == ["s1", "s2"] and cfg.threads == 1
    assert (cfg.lr_schedule, cfg.lr_min, cfg.eval_every, cfg.eval_max_planes) == ("cosine", 1e-5, 7, 2)
    assert cfg.compile is True and cfg.model_args == {"n_blocks": 2}

    assert cli_main(["gan", "--compile", "aot_eager", "--real-label-range", "0.8", "1.0"]) == 0
    assert captured[-1] == ("gan", {"compile": "aot_eager", "real_label_range": (0.8, 1.0)})
    assert cli_main(["distill"]) == 0
    assert captured[-1] == ("distill", {})


def test_precedence_defaults_config_saved_run_command_line(tmp_path):
    conf = tmp_path / "run.toml"
    conf.write_text('steps = 7\nlr = 0.5\nthreads = 3\n[data]\nbalance = "sources"\nhr_size = 64\n')
    out = tmp_path / "run"
    out.mkdir()
    saved = resolve_config("pretrain", {"config": str(conf), "out": str(out)}).to_dict()
    saved.update(steps=9, stop_at=3, eval_every=11)
    (out / "config.json").write_text(json.dumps(saved))

    cfg = resolve_config("pretrain", {"config": str(conf), "out": str(out), "resume": True, "lr": 0.25})
    assert cfg.steps == 9 and cfg.eval_every == 11  # the saved run over --config
    assert cfg.stop_at == 0  # a one-off option of the earlier invocation
    assert cfg.lr == 0.25 and cfg.resume  # the command line over everything
    assert cfg.threads == 3 and cfg.data.balance == "sources" and cfg.data.hr_size == 64
    assert cfg.batch_size == 16 and cfg.lr_schedule == "step"  # built-in defaults
    fresh = resolve_config("pretrain", {"config": str(conf), "out": str(out)})
    assert fresh.steps == 7 and fresh.eval_every == 0  # no --resume: the saved run is not read


@pytest.mark.parametrize(
    "argv",
    [
        ["pretrain", "--no-such-option"],
        ["pretrain", "--data"],  # needs one or more values
        ["pretrain", "--data", "--steps", "3"],
        ["pretrain", "--lr-schedule", "linear"],
        ["pretrain", "--balance", "planes"],
        ["pretrain", "--eval-degradations", "blur"],
        ["pretrain", "--steps", "many"],
        ["gan", "--teacher", "x"],  # a distill option
        ["no-such-command"],
        [],
    ],
)
def test_usage_errors_exit_2(argv, captured):
    assert cli_main(argv) == 2
    assert not captured


def test_bad_config_file_and_unknown_preset_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("stpes = 3\n")
    assert cli_main(["pretrain", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "stpes" in capsys.readouterr().err
    assert cli_main(["pretrain", "--config", str(tmp_path / "missing.toml")]) == 2
    assert cli_main(["pretrain", "--data", str(tmp_path), "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "sr-train presets" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert cli_main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "Option precedence" in text and "Exit status" in text and "sr-train presets --json" in text
    assert cli_main(["pretrain", "--help"]) == 0
    text = capsys.readouterr().out
    for opt in (
        "--threads",
        "--lr-schedule",
        "--lr-min",
        "--eval-sources",
        "--eval-degradations",
        "--eval-every",
        "--eval-max-planes",
        "--balance",
        "microscopy",
        "sample:KEY[a:b][#invert]",
        "synthetic:KIND?n=N",
    ):
        assert opt in text, opt


def test_zoom_p_on_the_command_line_overrides_the_recipe_and_keeps_its_range(tmp_path, captured):
    conf = tmp_path / "run.toml"
    conf.write_text('[data]\ndegradation = "microscopy"\nzoom_p = 0.6\nzoom_range = [0.7, 10.0]\n')
    assert cli_main(["pretrain", "--config", str(conf), "--zoom-p", "0.8", "--out", str(tmp_path / "r")]) == 0
    mode, given = captured[-1]
    assert given["zoom_p"] == 0.8
    cfg = resolve_config(mode, given)
    assert cfg.data.zoom_p == 0.8 and tuple(cfg.data.zoom_range) == (0.7, 10.0)
    assert resolve_config(mode, {"config": str(conf)}).data.zoom_p == 0.6  # the recipe's, when not given
    bad = resolve_config(mode, {**given, "zoom_p": 1.5, "data": ["synthetic:mixed?n=2"]})
    with pytest.raises(DataError, match="zoom_p=1.5"):  # the recipe's checks apply to the override
        bad.data.validate()
