"""Small training folders built from REAL fluorescence images that pip packages ship.

No noise images: the HPA-layout folder takes its four "stains" from different frames,
slices and crops of the napari time-lapse, the napari nuclei z-stack and the stardist
nuclei image; the plain folder holds crops of them as 8-bit PNG, 16-bit TIFF and a stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _load(real_image, key: str) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(real_image(key)))


@pytest.fixture(scope="session")
def real_arrays(real_image) -> dict[str, np.ndarray]:
    return {k: _load(real_image, k) for k in ("napari-timelapse", "napari-nuclei", "stardist-nuclei-2d")}


@pytest.fixture(scope="session")
def hpa_dir(real_arrays, tmp_path_factory) -> Path:
    """6 HPA ids, 128x128, red/green/blue/yellow from different real acquisitions."""
    import tifffile
    from PIL import Image

    d = tmp_path_factory.mktemp("hpa")
    tl, nu, sd = real_arrays["napari-timelapse"], real_arrays["napari-nuclei"], real_arrays["stardist-nuclei-2d"]
    s = 128
    for i in range(6):
        y, x = 40 * i, 60 + 30 * i
        red = tl[2 * i, y : y + s, x : x + s]  # uint8 -> 8-bit PNG
        yellow = tl[2 * i + 1, x : x + s, y : y + s]
        green = nu[10 + 6 * i, 64 : 64 + s, 32 * (i % 4) : 32 * (i % 4) + s].astype(np.uint16)  # 16-bit TIFF
        blue = sd[50 * i : 50 * i + s, 300 - 40 * i : 300 - 40 * i + s].astype(np.uint8)  # values 0-235
        Image.fromarray(red).save(d / f"id{i:02d}_red.png")
        Image.fromarray(yellow).save(d / f"id{i:02d}_yellow.png")
        Image.fromarray(blue).save(d / f"id{i:02d}_blue.png")
        tifffile.imwrite(d / f"id{i:02d}_green.tif", green)
    return d


@pytest.fixture(scope="session")
def folder_dir(real_arrays, tmp_path_factory) -> Path:
    """Grey real fluorescence: 8-bit PNGs, a 16-bit TIFF and a 3-plane TIFF stack."""
    import tifffile
    from PIL import Image

    d = tmp_path_factory.mktemp("folder")
    tl, nu, sd = real_arrays["napari-timelapse"], real_arrays["napari-nuclei"], real_arrays["stardist-nuclei-2d"]
    for i in range(3):
        Image.fromarray(tl[5 * i, 100:260, 100:260]).save(d / f"tl_{i}.png")
    tifffile.imwrite(d / "stardist.tif", sd[100:260, 150:310].astype(np.uint16))
    tifffile.imwrite(
        d / "nuclei_stack.tif",
        nu[20:23, 40:200, 40:200].astype(np.uint16),
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    return d
