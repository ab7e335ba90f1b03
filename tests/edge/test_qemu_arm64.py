"""The Pi's architecture for real: the torch-free SDK on arm64 Debian bookworm / Python 3.11.

Builds (once, cached in .cache/arm64-rootfs, gitignored) a minimal arm64 bookworm root
file system with python3.11 and the aarch64 wheels of numpy, pillow, tifffile, click, tqdm,
onnxruntime and ai-edge-litert (tools/build_arm64_rootfs.sh), then runs the repository's
sdk/ as ``scopesr.sdk`` under ``qemu-aarch64-static`` on the TFLite and ONNX models and
compares the outputs with the same SDK on this x86 host. Nothing from the host's
site-packages is visible to the emulated Python, and there is no torch in the rootfs.

Emulation says nothing about a real Pi's speed (about 1 s per 64x64 tile here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edge_models import ROOT, edge_models, tiny_models

pytestmark = [pytest.mark.slow, pytest.mark.integration]

QEMU = shutil.which("qemu-aarch64-static")
ROOTFS_DIR = ROOT / ".cache" / "arm64-rootfs"
PROBE = Path(__file__).with_name("sdk_probe.py")
EXIT_DOWNLOAD = 4  # tools/build_arm64_rootfs.sh: a registry could not be reached


@pytest.fixture(scope="module")
def rootfs() -> Path:
    if QEMU is None:
        pytest.skip(
            "qemu-aarch64-static not installed (Debian/Ubuntu: apt-get install qemu-user-static; "
            "`make test` runs tools/apt-deps.sh which does it when root)"
        )
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("building the arm64 rootfs needs apt-get and dpkg (a Debian/Ubuntu host)")
    env = dict(os.environ, PIP=f"{sys.executable} -m pip")
    r = subprocess.run(
        ["bash", str(ROOT / "tools" / "build_arm64_rootfs.sh"), str(ROOTFS_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if r.returncode == EXIT_DOWNLOAD:
        pytest.skip(f"arm64 rootfs: a package registry could not be reached:\n{r.stderr[-1500:]}")
    assert r.returncode == 0, f"tools/build_arm64_rootfs.sh failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return ROOTFS_DIR


def shim(tmp: Path) -> Path:
    """A PYTHONPATH entry where ``scopesr.sdk`` is the repository's sdk/ (scopesr: a namespace)."""
    pkg = tmp / "shim" / "scopesr"
    pkg.mkdir(parents=True)
    (pkg / "sdk").symlink_to(ROOT / "sdk", target_is_directory=True)
    return pkg.parent


def run_probe(
    python: list[str], env: dict[str, str], x: np.ndarray, out: Path, models: list[tuple[Path, str]], timeout: int = 300
) -> dict:
    inp = out.parent / f"{out.name}_input.npy"
    np.save(inp, x)
    r = subprocess.run(
        [*python, str(PROBE), "--input", str(inp), "--out", str(out), *[f"{p}:{b}" for p, b in models]],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert r.returncode == 0, f"probe failed ({' '.join(python)}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return json.loads((out / "env.json").read_text())


def real_crop(real_image, size: int = 64) -> np.ndarray:
    import tifffile

    stack = tifffile.imread(real_image("napari-timelapse"))  # 30x511x511 uint8, real fluorescence
    f = stack[7]
    y, x = (f.shape[0] - size) // 2, (f.shape[1] - size) // 2
    return np.ascontiguousarray(f[y : y + size, x : x + size])


def test_sdk_on_arm64_matches_x86(rootfs: Path, tmp_path: Path, real_image) -> None:
    # The default student when bundled (else the tiny fixtures), plus the tiny fixtures,
    # which exercise the fixed-tile (tiled TFLite) and dynamic (ONNX) paths whatever happens.
    models = list(dict.fromkeys(edge_models() + tiny_models()))
    assert models, "no edge models found (tests/fixtures/tiny_x4* missing?)"
    x = real_crop(real_image)

    arm_env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{shim(tmp_path)}:{rootfs / 'site'}",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # do not litter sdk/ with aarch64-run caches
        "QEMU_CPU": "cortex-a72",  # measured: ~15x faster than qemu's default 'max' CPU model
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    py = [QEMU, "-L", str(rootfs / "root"), str(rootfs / "root" / "usr" / "bin" / "python3.11")]
    arm = run_probe(py, arm_env, x, tmp_path / "arm64", models)
    assert arm["machine"] == "aarch64"
    assert arm["python"].startswith("3.11.")
    assert arm["torch_importable"] is False
    assert arm["onnxruntime"] and arm["ai_edge_litert"]

    host_env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    host = run_probe([sys.executable], host_env, x, tmp_path / "x86", models)
    assert host["machine"] in ("x86_64", "AMD64")

    for path, backend in models:
        a = np.load(tmp_path / "arm64" / f"{path.name}.npy")
        h = np.load(tmp_path / "x86" / f"{path.name}.npy")
        assert a.shape == h.shape == (x.shape[0] * 4, x.shape[1] * 4), (path.name, a.shape, h.shape)
        assert a.dtype == h.dtype == x.dtype
        d = np.abs(a.astype(np.int32) - h.astype(np.int32))
        # fp32: the same float maths up to rounding order, so at most one grey level off where
        # a value sits on a rounding edge. int8: integer kernels differ per ISA (NEON vs AVX).
        int8 = "int8" in path.name
        max_ok, mean_ok = (3, 0.1) if int8 else (1, 0.01)
        assert d.max() <= max_ok and d.mean() <= mean_ok, (
            f"{path.name} [{backend}]: arm64 vs x86 max diff {d.max()}, mean {d.mean():.4f}"
        )
        # and the output is a real SR result, not zeros or the input blown up
        assert h.std() > 1.0
