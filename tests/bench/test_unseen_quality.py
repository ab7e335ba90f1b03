"""scopesr.bench.unseen_quality (benchmarks/bench_unseen.py): models side by side on sources they
never trained on; a source in a model's training data is refused; real ONNX sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.bench import unseen_quality
from scopesr.sdk import InputError, quality

FIX = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def _card(sources: list[str], init_sources: list[str] | None = None) -> SimpleNamespace:
    init = {"mode": "pretrain", "steps": 10, "data": {"sources": init_sources}} if init_sources else None
    return SimpleNamespace(training={"mode": "distill", "data": {"sources": sources}, "init_from": init})


def test_training_keys_cover_every_stage_that_recorded_its_data():
    card = _card(
        ["sample:napari-nuclei[0:3]", "sample:napari-skin#invert", "synthetic:mixed?n=4"], ["sample:ndev-neuron"]
    )
    assert unseen_quality.training_keys(card) == {"napari-nuclei", "napari-skin", "ndev-neuron"}


def test_a_source_a_model_trained_on_is_refused_by_name():
    cards = {"new": _card(["sample:spotmax-cells"]), "old": _card([])}
    with pytest.raises(InputError, match=r"sample:spotmax-cells: new was trained on it"):
        unseen_quality.check_unseen(cards, ["sample:sdeconv-celegans", "sample:spotmax-cells"])
    with pytest.raises(InputError, match="not a sample spec"):
        unseen_quality.check_unseen(cards, ["my_cells.tif"])
    unseen_quality.check_unseen(cards, ["sample:sdeconv-celegans"])  # unseen by both: accepted


def test_measure_puts_models_side_by_side_and_the_first_scores_as_evaluate_does():
    pytest.importorskip("onnxruntime")
    a = sr.load(FIX / "tiny_x4.onnx", num_threads=1)
    yy, xx = np.mgrid[:64, :64]
    waves = (100 + 80 * np.sin(xx / 4.0) * np.cos(yy / 5.0)).astype(np.uint8)
    images = [
        quality.EvalImage("waves", "synthetic:waves", waves),
        quality.EvalImage("waves-T", "synthetic:waves-T", np.ascontiguousarray(waves.T)),
    ]
    bicubic = SimpleNamespace(upscale=lambda lr: quality.bicubic_baseline(lr, 4))
    data = unseen_quality.measure({"tiny": a, "bicubic-as-model": bicubic}, images, ["bicubic", "noise-snr8"])
    plain = quality.evaluate(a.upscale, images, ["bicubic", "noise-snr8"])["summary"]
    for dname in ("bicubic", "noise-snr8"):
        row = data["table"][dname]["models"]
        assert row["tiny"]["gain_db"] == pytest.approx(plain[dname]["gain_db_vs_bicubic"])
        assert row["bicubic-as-model"]["gain_db"] == pytest.approx(0.0, abs=1e-9)  # bicubic against itself
        assert set(row["tiny"]["per_source_db"]) == {"synthetic:waves", "synthetic:waves-T"}
    md = unseen_quality.markdown(
        {
            "models": {
                "tiny": {"path": "t.onnx", "sha256": "0" * 64},
                "bicubic-as-model": {"path": "-", "sha256": "1" * 64},
            },
            "sources": ["synthetic:waves"],
            **data,
        },
        "python benchmarks/bench_unseen.py",
    )
    assert "| bicubic | " in md and "synthetic:waves-T" in md and "bicubic-as-model" in md


def test_script_refuses_a_missing_model_file(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_unseen.py"),
            "--model",
            f"x={tmp_path / 'nope.onnx'}",
            "--no-record",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no such file" in r.stderr and "nope.onnx" in r.stderr


def test_model_cost_counts_the_network_a_card_describes_and_the_table_names_it():
    pytest.importorskip("torch")
    from scopesr.trainer.student import StudentConfig

    card = sr.ModelCard.load(sr.default_model_path("onnx"))
    cost = unseen_quality.model_cost(card)
    cfg_args = {k: v for k, v in card.arch_args.items() if k in StudentConfig.__dataclass_fields__}
    assert cost is not None
    assert cost["macs_per_lr_pixel"] == StudentConfig(**cfg_args).macs_per_lr_pixel()
    assert cost["params"] == sr.ModelCard.load(sr.default_model_path("safetensors")).extra["params"]
    # a model the trainer cannot build (a test fixture's made-up architecture) has no cost, no error
    assert unseen_quality.model_cost(sr.ModelCard.load(FIX / "tiny_x4.onnx")) is None
    text = unseen_quality._cost_text({"cost": cost})
    assert f"{cost['params']:,} parameters" in text
    assert f"{cost['macs_per_lr_pixel'] / 1000:.1f} k MAC per LR pixel" in text
    assert unseen_quality._cost_text({"cost": None}) == ""


def test_the_fresh_set_is_real_samples_that_no_bundled_model_trained_or_was_scored_on():
    """FRESH_SOURCES (bench_unseen.py --fresh) must stay out of every bundled card's training data,
    its held-out table and every recipe, and apart from the release and unseen sources."""
    import tomllib

    from scopesr.bench.evaluation import sample_key
    from scopesr.sdk.samples import SAMPLES

    fresh = {sample_key(s) for s in unseen_quality.FRESH_SOURCES}
    assert None not in fresh and fresh <= set(SAMPLES), fresh - set(SAMPLES)
    assert len(fresh) == len(unseen_quality.FRESH_SOURCES) == 8
    assert not fresh & {sample_key(s) for s in unseen_quality.UNSEEN_SOURCES}
    cards = sorted((ROOT / "sdk" / "models").rglob("*.card.json"))
    assert len(cards) >= 3
    for path in cards:
        raw = json.loads(path.read_text())
        assert not fresh & unseen_quality.training_keys(SimpleNamespace(training=raw.get("training"))), path
        scored = (raw.get("metrics") or {}).get("heldout", {}).get("sources", [])
        assert not fresh & {sample_key(str(s)) for s in scored}, path
    for recipe in sorted((ROOT / "trainer" / "recipes").glob("*.toml")):
        conf = tomllib.loads(recipe.read_text())
        specs = [*conf.get("data", {}).get("data", []), *conf.get("eval_sources", [])]
        assert specs, recipe
        assert not fresh & {sample_key(str(s)) for s in specs}, recipe


def test_source_sets_are_the_cards_held_out_and_the_unseen_pair_or_the_fresh_set_alone():
    card = SimpleNamespace(metrics={"heldout": {"sources": ["sample:a", "sample:b"]}})
    assert unseen_quality.source_sets(card) == {
        "release held-out sources": ["sample:a", "sample:b"],
        "unseen sources": list(unseen_quality.UNSEEN_SOURCES),
    }
    assert unseen_quality.source_sets(card, fresh=True) == {"fresh set": list(unseen_quality.FRESH_SOURCES)}
