"""load("default") picks the fastest bundled artifact on this CPU (scopesr.sdk.picker).

A models folder shaped like sdk/models is made from the committed fixtures (default.onnx from
tiny_x4.onnx; default-fp32.tflite and default-int8.tflite from tiny_x4_fixed.tflite, the
second card saying int8), the probe really runs through Upscaler.upscale, and the cache lives
in tmp_path (SCOPESR_CACHE_DIR), never in the user's home.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk import ModelCard, card_path_for, picker
from scopesr.sdk import upscaler as U

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = {"onnx", "tflite", "tflite-int8"}


def _put(models: Path, src: str, name: str, **fields) -> Path:
    """Copy fixture ``src`` into ``models`` as ``name`` with its card (fields changed)."""
    shutil.copy(FIX / src, models / name)
    card = ModelCard.read(card_path_for(FIX / src))
    card.artifact, card.name = name, Path(name).stem
    for k, v in fields.items():
        setattr(card, k, v)
    card.save(card_path_for(models / name))
    return models / name


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    d = tmp_path / "models"
    d.mkdir()
    _put(d, "tiny_x4.onnx", "default.onnx")
    _put(d, "tiny_x4_fixed.tflite", "default-fp32.tflite")
    _put(d, "tiny_x4_fixed.tflite", "default-int8.tflite", precision="int8")
    monkeypatch.setattr(U, "MODELS_DIR", d)
    monkeypatch.setenv("SCOPESR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCOPESR_PROBE", raising=False)  # tests/conftest.py turns it off for the rest
    return d


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache" / "picker.json"


def _no_probe(monkeypatch):
    monkeypatch.setattr(picker, "probe", lambda *a, **k: pytest.fail("probed although the choice was cached"))


def test_first_load_probes_and_caches(models, cache):
    up = sr.load("default")
    sel = up.describe()["selection"]
    assert sel["how"] == "probe" and sel["name"] in NAMES and sel["artifact"] == Path(up.backend.artifact).name
    assert set(sel["timings_ms"]) == NAMES
    for t in sel["timings_ms"].values():
        assert t["64x64"] > 0 and t["120x160"] > 0 and t["score"] > 0 and 1 <= t["rounds"] <= picker.MAX_ROUNDS
    assert sel["cpu_key"] == sr.cpu_key() and "usable core" in sel["cpu"]
    assert "timed probe" in sel["reason"] and sel["cache"] == str(cache)
    data = json.loads(cache.read_text())
    ((key, entry),) = data["entries"].items()
    assert key.startswith(sr.cpu_key() + "|") and entry["chosen"] == sel["name"]
    assert entry["candidates"] == {
        n: ModelCard.read(p).sha256
        for n, p in (
            ("onnx", models / "default.card.json"),
            ("tflite", models / "default-fp32.card.json"),
            ("tflite-int8", models / "default-int8.card.json"),
        )
    }
    # the probe's winner is returned already open, and it works
    assert up.upscale(np.zeros((10, 12), np.uint8)).shape == (40, 48)


def test_second_load_reads_the_cache_without_probing(models, cache, monkeypatch):
    first = sr.load("default").selection
    opened = []
    real = U.load
    monkeypatch.setattr(U, "load", lambda p, *a, **k: opened.append(Path(p).name) or real(p, *a, **k))
    _no_probe(monkeypatch)
    up = sr.load("default")
    assert up.selection["how"] == "cache" and up.selection["name"] == first["name"]
    assert up.selection["timings_ms"] == first["timings_ms"] and "cached" in up.selection["reason"]
    assert opened == [first["artifact"]]  # only the winner is opened


def test_sha256_change_invalidates_the_cache(models, cache, monkeypatch):
    sr.load("default")
    # a new build of the fp32 TFLite artifact: another file, another sha256
    _put(models, "tiny_x4_rect.tflite", "default-fp32.tflite")
    calls = []
    real = picker.probe
    monkeypatch.setattr(picker, "probe", lambda ups, *a, **k: calls.append(sorted(ups)) or real(ups, *a, **k))
    up = sr.load("default")
    assert up.selection["how"] == "probe" and calls == [sorted(NAMES)]
    (entry,) = json.loads(cache.read_text())["entries"].values()
    assert entry["candidates"]["tflite"] == ModelCard.read(models / "default-fp32.card.json").sha256
    _no_probe(monkeypatch)
    assert sr.load("default").selection["how"] == "cache"


def test_probe_rounds_stop_at_the_budget_or_the_deadline(monkeypatch):
    class Slow:
        def __init__(self, dt):
            self.dt, self.calls = dt, 0

        def upscale(self, img):
            self.calls += 1
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < self.dt:  # busy, like a runtime
                pass

    fast = {"a": Slow(0.0), "b": Slow(0.0)}
    res = picker.probe(fast)
    assert all(r["rounds"] == picker.MAX_ROUNDS for r in res.values())  # no budget spent: every round
    monkeypatch.setattr(picker, "PROBE_DEADLINE_S", 0.05)
    slow = {"a": Slow(0.02), "b": Slow(0.02)}  # the warm-up alone passes the deadline
    res = picker.probe(slow)
    assert all(r["rounds"] == 1 for r in res.values()) and res["a"]["score"] > 0


def test_runtime_version_change_invalidates_the_cache(models, monkeypatch):
    sr.load("default")
    monkeypatch.setattr(picker, "_runtime_version", lambda backend: f"{backend} 99.0")
    assert sr.load("default").selection["how"] == "probe"


@pytest.mark.parametrize(
    "garbage", ["{not json", "[1, 2]", '{"format": 99, "entries": {}}', '{"format": 1, "entries": {"x": 1}}']
)
def test_corrupt_cache_is_logged_and_reprobed(models, cache, caplog, garbage):
    cache.parent.mkdir(parents=True)
    cache.write_text(garbage)
    with caplog.at_level(logging.WARNING, logger="scopesr.sdk.picker"):
        up = sr.load("default")
    assert up.selection["how"] == "probe"
    if garbage != '{"format": 1, "entries": {"x": 1}}':  # a foreign entry is kept, not a corruption
        assert "corrupt" in caplog.text
    data = json.loads(cache.read_text())  # rewritten, valid
    assert data["format"] == picker.CACHE_FORMAT and any(
        e.get("chosen") == up.selection["name"] for e in data["entries"].values() if isinstance(e, dict)
    )


def test_a_cache_entry_that_does_not_match_is_reprobed(models, cache):
    sr.load("default")
    data = json.loads(cache.read_text())
    for e in data["entries"].values():
        e["chosen"] = "no-such-artifact"
    cache.write_text(json.dumps(data))
    assert sr.load("default").selection["how"] == "probe"


def test_unwritable_cache_never_fails_a_load(models, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SCOPESR_CACHE_DIR", str(blocker / "sub"))  # cannot be created, even by root
    with caplog.at_level(logging.WARNING, logger="scopesr.sdk.picker"):
        up = sr.load("default")
        again = sr.load("default")
    assert up.selection["how"] == again.selection["how"] == "probe"
    assert up.selection["cache"] is None and "not cached" in up.selection["reason"]
    assert "cannot write" in caplog.text


def test_probe_off_takes_the_static_preference(models, monkeypatch, cache):
    _no_probe(monkeypatch)
    up = sr.load("default", probe=False)
    assert up.selection["how"] == "static" and up.selection["name"] == "onnx"
    monkeypatch.setenv("SCOPESR_PROBE", "0")
    assert sr.load("default").selection["name"] == "onnx"
    # with the TFLite runtime only (a Pi): the int8 file, as before the picker
    assert sr.load("default", backend="tflite", probe=False).selection["name"] == "tflite-int8"
    assert not cache.exists()


def test_force_probes_again(models, monkeypatch):
    sr.load("default")
    monkeypatch.setenv("SCOPESR_PROBE", "force")
    assert sr.load("default").selection["how"] == "probe"


@pytest.mark.parametrize(
    "value,artifact",
    [("tflite-int8", "default-int8.tflite"), ("onnx", "default.onnx"), ("default-fp32.tflite", "default-fp32.tflite")],
)
def test_environment_override(models, monkeypatch, cache, value, artifact):
    monkeypatch.setenv("SCOPESR_ARTIFACT", value)
    _no_probe(monkeypatch)
    up = sr.load("default")
    assert up.selection["how"] == "override" and up.selection["artifact"] == artifact
    assert Path(up.backend.artifact).name == artifact and "SCOPESR_ARTIFACT" in up.selection["reason"]
    assert not cache.exists()


def test_environment_override_errors_and_conflicts(models, monkeypatch, caplog):
    monkeypatch.setenv("SCOPESR_ARTIFACT", "gguf")
    with pytest.raises(sr.InputError, match="SCOPESR_ARTIFACT='gguf'.*tflite-int8"):
        sr.load("default")
    # an explicit backend= wins over the environment (said in the log)
    monkeypatch.setenv("SCOPESR_ARTIFACT", "tflite-int8")
    with caplog.at_level(logging.WARNING, logger="scopesr.sdk.picker"):
        up = sr.load("default", backend="onnx")
    assert up.selection["artifact"] == "default.onnx" and "ignored" in caplog.text


def test_backend_restricts_the_candidates(models):
    up = sr.load("default", backend="onnx")
    assert up.selection["how"] == "only" and up.backend.name == "onnx"
    up = sr.load("default", backend="tflite")
    assert up.selection["how"] == "probe" and set(up.selection["timings_ms"]) == {"tflite", "tflite-int8"}
    with pytest.raises(sr.InputError, match="no coreml artifact"):
        sr.load("default", backend="coreml")


def test_missing_runtime_is_not_a_candidate(models, monkeypatch):
    real = U.has_module
    monkeypatch.setattr(U, "has_module", lambda m: m != "onnxruntime" and real(m))
    up = sr.load("default")
    assert set(up.selection["timings_ms"]) == {"tflite", "tflite-int8"}
    assert "not installed" in up.selection["skipped"]["onnx"]


def test_quality_floor_skips_an_int8_card_below_it(models, monkeypatch):
    card = ModelCard.read(models / "default-int8.card.json")
    card.metrics = {
        "int8_vs_fp32": {"worst": {"degradation": "noisy", "image": "nuclei[3]", "delta_db": -0.5}, "mean_db": -0.1}
    }
    card.save(models / "default-int8.card.json")
    up = sr.load("default")
    sel = up.selection
    assert "tflite-int8" not in sel["timings_ms"] and sel["name"] != "tflite-int8"
    assert "-0.50 dB" in sel["skipped"]["tflite-int8"] and "floor" in sel["skipped"]["tflite-int8"]
    # the static preference holds the floor too: TFLite without int8 is the fp32 file
    assert sr.load("default", backend="tflite", probe=False).selection["name"] == "tflite"
    # the user's explicit choice is not refused
    monkeypatch.setenv("SCOPESR_ARTIFACT", "tflite-int8")
    assert sr.load("default").selection["name"] == "tflite-int8"


def test_a_model_wide_shortfall_does_not_disqualify_every_file(models):
    """The floor judges files against the model's best file: when every file shares one held-out
    shortfall (the model's, stated in its card), the probe still chooses among them."""
    for name in ("default", "default-fp32", "default-int8"):
        card = ModelCard.read(models / f"{name}.card.json")
        card.metrics = {"heldout": {"summary": {"clean": {"worst_gain_db": -1.0, "worst_image": "x"}}}}
        card.save(models / f"{name}.card.json")
    assert sr.load("default").selection["how"] == "probe"


def test_everything_below_the_floor_still_loads(models, caplog):
    for name, gain in (("default", -1.0), ("default-fp32", -1.0), ("default-int8", -1.0)):
        card = ModelCard.read(models / f"{name}.card.json")
        card.metrics = {
            "heldout": {"summary": {"clean": {"worst_gain_db": gain, "worst_image": "x"}}},
            "int8_vs_fp32": {"worst": {"delta_db": -0.5}},
        }
        card.save(models / f"{name}.card.json")
    with caplog.at_level(logging.INFO, logger="scopesr.sdk.picker"):
        up = sr.load("default")
    assert up.selection["how"] == "fallback" and up.selection["name"] == "onnx" and "floor" in caplog.text


@pytest.mark.parametrize(
    "metrics,why",
    [
        ({}, None),
        ({"heldout": {"per_source": {}, "mean": {}}}, None),  # today's cards: no summary, no skip
        ({"int8_vs_fp32": {"worst": {"delta_db": -0.19}}}, None),
        ({"int8_vs_fp32": {"worst": {"delta_db": -0.21}}}, "int8 vs fp32 worst -0.21 dB"),
        ({"heldout": {"summary": {"clean": {"worst_gain_db": 0.3}, "noisy": {"worst_gain_db": -0.1}}}}, None),
        (
            {
                "heldout": {
                    "summary": {
                        "clean": {"worst_gain_db": 0.3},
                        "blur": {"worst_gain_db": -0.4, "worst_image": "img2d"},
                    }
                }
            },
            "-0.40 dB on 'blur' (img2d)",
        ),
        ({"heldout": {"summary": "garbage"}, "int8_vs_fp32": {"worst": {"delta_db": "x"}}}, None),
        ({"heldout": {"summary": {"clean": {"worst_gain_db": float("nan")}}}}, None),
    ],
)
def test_quality_floor_reason(metrics, why):
    card = ModelCard.read(card_path_for(FIX / "tiny_x4.onnx"))
    card.metrics = metrics
    got = picker.quality_floor_reason(card)
    assert (got is None) if why is None else (why in got)


def test_quality_floor_is_relative_to_the_best_file():
    card = ModelCard.read(card_path_for(FIX / "tiny_x4.onnx"))
    card.metrics = {"heldout": {"summary": {"clean": {"worst_gain_db": -0.30}}}}
    assert picker.quality_floor_reason(card, reference={"clean": -0.29}) is None  # the model's own shortfall
    why = picker.quality_floor_reason(card, reference={"clean": 0.10})
    assert why is not None and "-0.30 dB" in why  # another file of the model does better


def test_threads_are_part_of_the_key(models, monkeypatch):
    assert sr.load("default", num_threads=1).selection["how"] == "probe"
    assert sr.load("default").selection["how"] == "probe"  # runtime default threads: another entry
    _no_probe(monkeypatch)
    assert sr.load("default", num_threads=1).selection["how"] == "cache"


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("SCOPESR_CACHE_DIR", str(tmp_path / "c"))
    assert picker.cache_path() == tmp_path / "c" / "picker.json"
    monkeypatch.delenv("SCOPESR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert picker.cache_path() == tmp_path / "xdg" / "scopesr" / "picker.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if picker.sys.platform.startswith("linux"):
        assert picker.cache_path() == tmp_path / "home" / ".cache" / "scopesr" / "picker.json"


def test_describe_names_the_cpu_and_a_path_load_has_no_selection(models):
    d = sr.load(FIX / "tiny_x4.onnx").describe()
    assert d["selection"] is None and d["cpu"]["key"] == sr.cpu_key() and d["cpu"]["cores"] >= 1


def test_bundled_default_probe_is_short(monkeypatch, tmp_path):
    """The real bundled artifacts: the probe opens the installed ones and times them in a few
    seconds at most (about one on an idle 2-core x86; this machine may be shared)."""
    if not (U.MODELS_DIR / "default.onnx").exists():
        pytest.skip("no bundled default model")
    monkeypatch.setenv("SCOPESR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCOPESR_PROBE", raising=False)
    up = sr.load("default", num_threads=2)
    sel = up.selection
    assert sel["how"] in ("probe", "only")
    if sel["how"] == "probe":
        assert sel["probe_s"] < 10 and set(sel["timings_ms"]) <= NAMES | {"onnx-int8"}
    assert sr.load("default", num_threads=2).selection["how"] in ("cache", "only")


# ---------------------------------------------------------------------------- sr-upscale --describe
def _cli(*args):
    from click.testing import CliRunner

    from scopesr.sdk.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_sr_upscale_describe_default(models):
    res = _cli("--describe")
    assert res.exit_code == 0, res.output
    out = res.output
    for label in ("model ", "artifact ", "tiles ", "backend ", "threads:", "CPU ", "chosen ", "cache "):
        assert label in out, (label, out)
    assert sr.cpu_key() in out and "int8 dot product" in out and "timed probe" in out
    # the second run reads the cache; --backend restricts the candidates
    assert "(cache)" in _cli("--describe").output
    res = _cli("--describe", "--backend", "onnx")
    assert res.exit_code == 0 and "default.onnx (only)" in res.output


def test_sr_upscale_describe_a_model_and_usage_errors(tmp_path):
    res = _cli("--describe", "--model", FIX / "tiny_x4_fixed.tflite")
    assert res.exit_code == 0, res.output
    assert "fixed sizes 32, 48 LR px" in res.output and "CPU " in res.output and "chosen" not in res.output
    res = _cli("--describe", "--model", tmp_path / "nope.onnx")
    assert res.exit_code == 1 and "not found" in res.output
    # without --describe, INPUTS and -o stay required (usage errors, exit 2)
    res = _cli("-o", tmp_path / "o")
    assert res.exit_code == 2 and "Missing argument 'INPUTS...'" in res.output
    res = _cli(tmp_path / "a.tif")
    assert res.exit_code == 2 and "Missing option '-o'" in res.output


def test_a_near_tie_goes_to_the_higher_precision():
    card = ModelCard.read(card_path_for(FIX / "tiny_x4.onnx"))
    i8 = ModelCard.from_dict({**card.to_dict(), "precision": "int8"})
    fp = picker.Candidate("tflite", FIX / "a", card, "tflite")
    q = picker.Candidate("tflite-int8", FIX / "b", i8, "tflite")
    assert picker._winner([fp, q], {"tflite": {"score": 10.3}, "tflite-int8": {"score": 10.0}}).name == "tflite"
    assert picker._winner([fp, q], {"tflite": {"score": 12.0}, "tflite-int8": {"score": 10.0}}).name == "tflite-int8"


def test_each_bundled_model_has_its_own_folder_and_cache_entry(models, cache, monkeypatch):
    """load("low-noise") picks among the files in its own folder (never the default's, and the
    default never among its), and each bundle keeps its own cache entry."""
    sub = models / "low-noise"
    sub.mkdir()
    _put(sub, "tiny_x4.onnx", "low-noise.onnx")
    _put(sub, "tiny_x4_fixed.tflite", "low-noise-int8.tflite", precision="int8")
    low = sr.load("low-noise")
    assert low.selection["how"] == "probe" and Path(low.backend.artifact).parent == sub
    assert set(low.selection["timings_ms"]) == {"onnx", "tflite-int8"}
    default = sr.load("default")
    assert default.selection["how"] == "probe" and Path(default.backend.artifact).parent == models
    assert set(default.selection["timings_ms"]) == NAMES  # the subfolder's files are not candidates
    assert len(json.loads(cache.read_text())["entries"]) == 2
    _no_probe(monkeypatch)
    assert sr.load("low-noise").selection["how"] == "cache"
    assert sr.load("default").selection["how"] == "cache"
    assert sr.default_model_path("tflite-int8", bundle="low-noise") == sub / "low-noise-int8.tflite"
    with pytest.raises(sr.ModelError, match="low-noise model"):
        sr.default_model_path("tflite", bundle="low-noise")  # not in this folder
    with pytest.raises(sr.InputError, match="no bundled model 'x'"):
        sr.default_model_path("onnx", bundle="x")


def test_the_probe_neither_warns_nor_uses_up_the_noisy_input_warning(models, caplog, logged_warnings):
    """The probe's frames are noisy on purpose: a model that warns on noisy input (the low-noise
    bundle's cards) must stay quiet through the probe and still warn on the user's frame."""
    sub = models / "low-noise"
    sub.mkdir()
    extra = {sr.NOISE_WARNING_KEY: 0.03}
    _put(sub, "tiny_x4.onnx", "low-noise.onnx", extra=extra)
    _put(sub, "tiny_x4_fixed.tflite", "low-noise-int8.tflite", precision="int8", extra=extra)
    with caplog.at_level("WARNING", logger="scopesr.sdk.upscaler"):
        up = sr.load("low-noise")
        assert up.selection["how"] == "probe" and not logged_warnings()
        noisy = np.random.default_rng(0).normal(100, 20, (40, 48)).clip(0, 255).astype(np.uint8)
        up.upscale(noisy)
    assert len(logged_warnings()) == 1 and "looks noisy" in logged_warnings()[0].getMessage()


def test_an_int8_onnx_file_is_a_candidate_of_its_own(models, monkeypatch):
    """default-onnx-int8.onnx (bundled since ONNX Runtime's int8 kernels beat its fp32 ones even
    without int8 dot products): probed beside the others under its own name, chosen by
    SCOPESR_ARTIFACT=onnx-int8, and with backend="onnx" probed against the fp32 file; without a
    probe the fp32 ONNX file stays the choice."""
    _put(models, "tiny_x4.onnx", "default-onnx-int8.onnx", precision="int8")
    up = sr.load("default")
    assert set(up.selection["timings_ms"]) == NAMES | {"onnx-int8"}
    up = sr.load("default", backend="onnx", probe=True)
    assert set(up.selection["timings_ms"]) == {"onnx", "onnx-int8"}
    assert sr.load("default", probe=False).selection["name"] == "onnx"
    monkeypatch.setenv("SCOPESR_ARTIFACT", "onnx-int8")
    up = sr.load("default")
    assert up.selection["artifact"] == "default-onnx-int8.onnx" and up.card.precision == "int8"
