"""sr-serve test helpers: the bundled ONNX model, small TIFF stacks, a real sr-serve process on a
free 127.0.0.1 port and headless Chromium (Debian's chromium through playwright; skipped, with the
reason, where either is missing). Torch-free: these run in the edge env too."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import CHROMIUM, MODEL, Server


@pytest.fixture(scope="session")
def upscaler():
    import scopesr.sdk as sr

    return sr.load(MODEL)


@pytest.fixture(scope="session")
def stack_tif(tmp_path_factory) -> Path:
    """A 12-frame 96x128 uint16 time-lapse: blobs that move, so frames differ."""
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :128]
    frames = []
    for t in range(12):
        f = np.zeros((96, 128), np.float32)
        for k in range(6):
            cy, cx = 20 + 10 * k + t, 15 + 17 * k + 2 * t
            f += 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30)
        frames.append(f + rng.normal(200, 20, f.shape))
    path = tmp_path_factory.mktemp("stack") / "timelapse.tif"
    tifffile.imwrite(path, np.clip(np.stack(frames), 0, 65535).astype(np.uint16), imagej=True, metadata={"axes": "TYX"})
    return path


@pytest.fixture(scope="session")
def server(stack_tif, tmp_path_factory):
    """sr-serve with the TIFF stack as its live source (30 FPS) and a queue of 2."""
    tmp = tmp_path_factory.mktemp("serve")
    s = Server(["--source", str(stack_tif), "--source-fps", "30", "--queue", "2"], tmp)
    yield s
    s.stop()
    leftovers = list(tmp.glob("scopesr-serve-*"))
    assert not leftovers, f"sr-serve left its temporary folder behind: {leftovers}"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (the system's; playwright never downloads one here)."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(f"no Chromium at {CHROMIUM} (make apt-deps installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()
