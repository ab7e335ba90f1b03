"""scopesr.bench.model_gate: two models per frame, chosen by the LR image's fine-to-coarse ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scopesr.bench import model_gate
from scopesr.sdk import quality
from scopesr.sdk.noise import estimate_noise_sigma

ROOT = Path(__file__).resolve().parents[2]


class _Up:
    def __init__(self, fn):  # type: ignore[no-untyped-def]
        self.upscale = fn


UPS = {
    "nearest": _Up(lambda lr: quality.upscale_nearest(lr, 4)),
    "bicubic": _Up(lambda lr: quality.bicubic_baseline(lr, 4)),
}


def test_gate_sends_smooth_frames_to_the_expert_and_noisy_ones_to_the_fallback(blobs_image):
    images = [blobs_image(0), blobs_image(1)]
    groups = {im.source: ("a" if im is images[0] else "b") for im in images}
    data = model_gate.measure(
        UPS,
        images,
        groups,
        fallback="nearest",
        expert="bicubic",
        thresholds=[-1.0, 1.0, 9.0],
        degradations=["bicubic", "noise-snr8"],
    )
    ratios = {r["degradation"]: [] for r in data["rows"]}
    for r in data["rows"]:
        ratios[r["degradation"]].append(r["ratio"])
        assert r["gain"]["bicubic"] == pytest.approx(0.0, abs=1e-9)  # bicubic against itself
        assert r["gain"]["nearest"] < 0.0
    assert max(ratios["bicubic"]) < 1.0 < min(ratios["noise-snr8"])  # smooth ~1/4, shot noise ~2
    for group in ("a", "b"):
        t = data["table"][group]
        alone_fb, alone_ex = t["nearest"], t["bicubic"]
        never, split, always = (t[model_gate.gate_policy_name("bicubic", x)] for x in (-1.0, 1.0, 9.0))
        for d in ("bicubic", "noise-snr8"):
            assert never[d]["gain_db"] == alone_fb[d]["gain_db"] and never[d]["expert_share"] == 0.0
            assert always[d]["gain_db"] == alone_ex[d]["gain_db"] and always[d]["expert_share"] == 1.0
        assert split["bicubic"]["gain_db"] == alone_ex["bicubic"]["gain_db"] and split["bicubic"]["expert_share"] == 1.0
        assert split["noise-snr8"]["gain_db"] == alone_fb["noise-snr8"]["gain_db"]
        assert split["noise-snr8"]["expert_share"] == 0.0
    md = model_gate.markdown(data, "python benchmarks/bench_model_gate.py")
    assert "## a" in md and "| bicubic if ratio < 1 | +0.00 (+0.00) / 100 % |" in md


def test_unknown_model_or_ungrouped_source_is_refused(blobs_image):
    images = [blobs_image(0)]
    with pytest.raises(ValueError, match="no model named 'sharp'"):
        model_gate.measure(UPS, images, {images[0].source: "a"}, "nearest", "sharp", [0.5])
    with pytest.raises(ValueError, match="no group for source"):
        model_gate.measure(UPS, images, {}, "nearest", "bicubic", [0.5])


def test_script_refuses_a_missing_file_and_an_unknown_expert(tmp_path):
    script = str(ROOT / "benchmarks" / "bench_model_gate.py")
    onnx = str(ROOT / "sdk" / "models" / "default.onnx")
    r = subprocess.run(
        [sys.executable, script, "--model", f"a={onnx}", "--model", f"b={tmp_path / 'nope.onnx'}", "--no-record"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no such file" in r.stderr and "nope.onnx" in r.stderr
    r = subprocess.run(
        [sys.executable, script, "--model", f"a={onnx}", "--model", f"b={onnx}", "--expert", "c", "--no-record"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--expert c: not among the models ['a', 'b']" in r.stderr


def test_script_scores_the_bundled_pair_on_a_real_plane():
    script = str(ROOT / "benchmarks" / "bench_model_gate.py")
    r = subprocess.run(
        [
            sys.executable,
            script,
            "--source",
            "sample:stardist-nuclei-2d",
            "--max-planes",
            "1",
            "--threshold",
            "0.7",
            "--no-record",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "## release held-out sources" in r.stdout and "| low-noise if ratio < 0.7 |" in r.stdout
    # the one stardist plane: the release table's default gain on the clean row (+0.24 dB in fp32)
    row = next(line for line in r.stdout.splitlines() if line.startswith("| default |"))
    assert float(row.split("|")[2].split()[0]) > 0.0


def test_fold_is_lower_for_anti_aliased_sampling_than_for_aliased_sampling():
    """An anti-aliasing filter takes energy out of the finest scale only; sampling without one
    folds it in. Same multi-scale texture, three samplings; a flat plane reads 0."""
    from scipy.ndimage import gaussian_filter

    for seed in range(3):
        rng = np.random.default_rng(seed)
        img = sum(gaussian_filter(rng.normal(size=(512, 512)), s) * s for s in (1, 2, 4, 8))
        img = (img - img.min()) * 1000 + 100
        aa = model_gate.fold(quality.downsample(img, 4, "bicubic-aa"))
        assert aa < model_gate.fold(quality.downsample(img, 4, "decimate"))
        assert aa < model_gate.fold(quality.downsample(img, 4, "cubic"))
    assert model_gate.fold(np.full((64, 64), 7.0)) == 0.0


def test_fold_condition_only_ever_keeps_frames_from_the_expert(blobs_image):
    images = [blobs_image(0)]
    groups = {images[0].source: "a"}
    kw = {"fallback": "nearest", "expert": "bicubic", "thresholds": [9.0], "degradations": ["bicubic"]}
    plain = model_gate.measure(UPS, images, groups, **kw)["table"]["a"]
    none = model_gate.measure(UPS, images, groups, fold_max=0.0, **kw)["table"]["a"]
    every = model_gate.measure(UPS, images, groups, fold_max=99.0, **kw)["table"]["a"]
    assert plain[model_gate.gate_policy_name("bicubic", 9.0)]["bicubic"]["expert_share"] == 1.0
    assert none[model_gate.gate_policy_name("bicubic", 9.0, 0.0)]["bicubic"]["expert_share"] == 0.0
    assert (
        every[model_gate.gate_policy_name("bicubic", 9.0, 99.0)]["bicubic"]
        == plain[model_gate.gate_policy_name("bicubic", 9.0)]["bicubic"]
    )


def test_renders_are_new_deterministic_scenes_and_magnified_ones_are_smoother():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_model_gate", ROOT / "benchmarks" / "bench_model_gate.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    a, b = script.oversampled_renders(), script.oversampled_renders()
    assert len(a) == 24 and len({im.source for im in a}) == 24
    assert all(im.data.dtype == np.uint16 and im.data.shape == (256, 256) for im in a)
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b, strict=True))

    def fine(img: np.ndarray) -> float:  # neighbour-difference energy relative to the variance
        x = img.astype(np.float64)
        return float(np.mean(np.diff(x, axis=1) ** 2) / x.var())

    by = {im.source: im.data for im in a}
    for kind in ("mixed", "filaments", "membranes"):
        assert fine(by[f"synthetic:{kind}-zoom3-rendered"]) < fine(by[f"synthetic:{kind}-zoom1-rendered"])
        noisy, clean = by[f"synthetic:{kind}-zoom3-snr40"], by[f"synthetic:{kind}-zoom3-rendered"]
        assert estimate_noise_sigma(noisy) / np.ptp(noisy) > 2 * estimate_noise_sigma(clean) / np.ptp(clean)
