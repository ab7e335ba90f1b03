"""The old standalone ``tflite-runtime`` + ``numpy<2``: what most Raspberry Pi guides install.

`make pi-venv` builds .venv-pi with only tflite-runtime, numpy<2, onnxruntime, the SDK's
base dependencies and scopesr (--no-deps): no ai-edge-litert, no torch. This test drives
that interpreter as a subprocess (so it runs from the main suite, whatever env pytest is
in): the SDK's TFLite backend must fall back to tflite_runtime there, give the same
results as ai-edge-litert here, and the demo must run on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edge_models import ROOT, edge_models, tiny_models

pytestmark = pytest.mark.integration

PI = ROOT / ".venv-pi"
PY = PI / "bin" / "python"
PROBE = Path(__file__).with_name("sdk_probe.py")


@pytest.fixture(scope="module")
def pi_python() -> Path:
    if (PI / "UNAVAILABLE").exists():
        pytest.skip(f".venv-pi: {(PI / 'UNAVAILABLE').read_text().strip()}")
    if not PY.exists():
        pytest.skip(".venv-pi not built: run `make pi-venv` (tflite-runtime + numpy<2; `make test` does it)")
    return PY


def in_pi(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([str(PY), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_env_is_the_pi_guides_one(pi_python: Path) -> None:
    r = in_pi(
        "-c",
        "import json, importlib.util as u, numpy, tflite_runtime; print(json.dumps({"
        "'numpy': numpy.__version__, 'tflite_runtime': tflite_runtime.__version__, "
        "'litert': u.find_spec('ai_edge_litert') is not None, 'torch': u.find_spec('torch') is not None}))",
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert int(info["numpy"].split(".")[0]) < 2
    assert not info["litert"] and not info["torch"]


def _real_crop(real_image) -> np.ndarray:
    import tifffile

    f = tifffile.imread(real_image("napari-timelapse"))[3]
    return np.ascontiguousarray(f[200:264, 220:284])


def test_sdk_runs_on_tflite_runtime_like_on_litert(pi_python: Path, real_image, tmp_path: Path) -> None:
    models = [(p, b) for p, b in dict.fromkeys(edge_models() + tiny_models())]
    x = _real_crop(real_image)
    np.save(tmp_path / "x.npy", x)
    specs = [f"{p}:{b}" for p, b in models]
    r = in_pi(str(PROBE), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "pi"), *specs)
    assert r.returncode == 0, r.stderr[-4000:]
    pi = json.loads((tmp_path / "pi" / "env.json").read_text())
    assert pi["tflite_runtime"] and pi["ai_edge_litert"] is None
    h = subprocess.run(
        [sys.executable, str(PROBE), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "host"), *specs],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert h.returncode == 0, h.stderr[-4000:]
    for p, backend in models:
        run = pi["runs"][p.name]
        if backend == "tflite":
            assert run["describe"]["backend"].get("runtime") == "tflite-runtime", run["describe"]["backend"]
        a = np.load(tmp_path / "pi" / f"{p.name}.npy").astype(np.int32)
        b = np.load(tmp_path / "host" / f"{p.name}.npy").astype(np.int32)
        assert a.shape == b.shape == (256, 256)
        d = np.abs(a - b)
        # measured: float outputs identical; int8 "a few steps off" (older integer kernels)
        max_ok, mean_ok = (6, 0.5) if "int8" in p.name else (1, 0.01)
        assert d.max() <= max_ok and d.mean() <= mean_ok, f"{p.name}: max {d.max()} mean {d.mean():.3f}"


def test_demo_runs_on_tflite_runtime(pi_python: Path, real_image, tmp_path: Path) -> None:
    tfl = [p for p, b in edge_models() + tiny_models() if b == "tflite"]
    assert tfl
    r = in_pi(
        str(ROOT / "demo_pi" / "run.py"),
        "--source",
        str(real_image("napari-timelapse")),
        "--model",
        str(tfl[0]),
        "--headless",
        "--out",
        str(tmp_path),
        "--frames",
        "4",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].startswith("fps: ")
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == 4
    assert summary["upscaler"]["backend"]["runtime"] == "tflite-runtime"
