"""Small trained generators for the converter tests (built once per session).

* ``trained_student``: the trainer's ``student-tiny`` preset (1 channel, PixelShuffle x4 +
  anchor), trained for a few hundred L1 steps on real LR/HR tiles (PIL bicubic x4) from the
  calibration samples, saved with the trainer's ``save_generator`` (.safetensors + card).
* ``small_paper``: the trainer's ``paper`` preset reduced (1 residual block, 8 channels,
  3-channel RGB, nearest x2 + conv upsampling), seeded init + a few training steps.

Training here is a plain loop (Adam, L1) over the trainer's models: seconds on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# No torch import here: the torch-free edge env collects this folder (its modules skip).


def _train(model, channels: int, steps: int, lr_size: int = 24, seed: int = 0):
    import torch

    from scopesr.converters import data as D
    from scopesr.sdk import Normalisation

    torch.manual_seed(seed)
    imgs = D.sample_images(D.CALIBRATION_SAMPLES, Normalisation(), channels)
    tiles = D.make_tiles(imgs, (lr_size, lr_size), 4, 64)
    assert tiles.hr is not None
    lr, hr = torch.from_numpy(tiles.lr), torch.from_numpy(tiles.hr)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    first = last = None
    for _ in range(steps):
        idx = torch.randint(0, len(lr), (8,), generator=g)
        loss = torch.nn.functional.l1_loss(model(lr[idx]), hr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = float(loss.detach())
        first = first if first is not None else last
    model.eval()
    return {
        "steps": steps,
        "batch": 8,
        "loss": "l1",
        "first_loss": first,
        "last_loss": last,
        "data": "scopesr.sdk.samples " + ",".join(D.CALIBRATION_SAMPLES),
    }


@pytest.fixture(scope="session")
def train_briefly():
    """The fixtures' training loop, for tests that build a student of their own."""
    return _train


@pytest.fixture(scope="session")
def trained_student(tmp_path_factory) -> Path:
    import torch

    from scopesr.trainer import create_model, save_generator

    torch.manual_seed(0)
    model = create_model("student-tiny")
    summary = _train(model, 1, steps=150)
    assert summary["last_loss"] < summary["first_loss"]  # it did learn something
    out = tmp_path_factory.mktemp("student") / "student.safetensors"
    save_generator(model, out, "student-tiny", training=summary)
    return out


@pytest.fixture(scope="session")
def small_paper(tmp_path_factory) -> Path:
    import torch

    from scopesr.trainer import create_model, save_generator

    torch.manual_seed(1)
    model = create_model("paper", n_blocks=1, channels=8, up_channels=8)
    summary = _train(model, 3, steps=20, lr_size=16, seed=1)
    out = tmp_path_factory.mktemp("paper") / "paper_small.safetensors"
    save_generator(model, out, "paper", config=None, training=summary)
    return out


@pytest.fixture(scope="session")
def real_grey_image() -> np.ndarray:
    """A real fluorescence crop (uint16 dtype) for SDK runs: 70x90, odd sizes on purpose."""
    import tifffile

    from scopesr.sdk import sample_path

    try:
        img = tifffile.imread(sample_path("stardist-nuclei-2d"))
    except Exception as exc:  # the sample package is missing
        pytest.skip(str(exc))
    return np.ascontiguousarray(img[200:270, 180:270])
