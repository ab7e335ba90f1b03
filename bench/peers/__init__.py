"""The OpenCV dnn_superres peers (ESPCN, FSRCNN x4) that sr-bench compares scopesr against.

The model files ship in this folder (Apache-2.0, see LICENSE-NOTE and SOURCES.md), so sr-bench
needs nothing outside the installed package; running them needs ``cv2.dnn_superres``
(``pip install opencv-contrib-python-headless``, part of the ``scopesr[bench]`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCALE = 4
#: The folder of the bundled .pb files (this package's own folder).
DEFAULT_PEERS = Path(__file__).resolve().parent
#: OpenCV peer file stem -> (dnn_superres algorithm, parameters, MACs per LR pixel). Counted
#: from the published architectures (ESPCN: 5x5x64, 3x3x32, 3x3x16 + depth-to-space;
#: FSRCNN(d, s, m): 5x5xd, 1x1xs, m x 3x3xs, 1x1xd, 9x9 stride-4 deconvolution, PReLUs).
PEERS = {
    "ESPCN_x4": ("espcn", 24_752, 24_640),
    "FSRCNN_x4": ("fsrcnn", 12_809, 12_464),
    "FSRCNN-small_x4": ("fsrcnn", 4_086, 3_937),
}


def find_peers(peers: Path | None = None) -> tuple[dict[str, Path], str]:
    """OpenCV peer model files found (in ``peers``, default: the bundled ones), and a note
    saying where they came from or why they are skipped."""
    try:
        import cv2
    except ImportError:
        return {}, "OpenCV peers skipped: pip install opencv-contrib-python-headless (or scopesr[bench])"
    if not hasattr(cv2, "dnn_superres"):
        return {}, "OpenCV peers skipped: cv2 has no dnn_superres; install opencv-contrib-python-headless"
    d = DEFAULT_PEERS if peers is None else Path(peers)
    if d.is_dir():
        found = {stem: d / f"{stem}.pb" for stem in PEERS if (d / f"{stem}.pb").exists()}
        if found:
            return found, f"OpenCV peers from {d}"
    return {}, f"OpenCV peers skipped: no {'/'.join(PEERS)} .pb files in {d} (--peers DIR)"


class Peer:
    """An OpenCV dnn_superres model as a function uint8 (H, W) -> uint8 (4H, 4W)."""

    def __init__(self, path: Path, threads: int) -> None:
        import cv2

        cv2.setNumThreads(threads)
        algo = PEERS[path.stem][0]
        self.sr = cv2.dnn_superres.DnnSuperResImpl_create()
        self.sr.readModel(str(path))
        self.sr.setModel(algo, SCALE)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.sr.upsample(np.ascontiguousarray(img))


def to_u8(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    """8-bit copy of any image (peers take 8-bit only) and the affine map to undo it."""
    if img.dtype == np.uint8:
        return img, 0.0, 1.0
    lo, hi = float(img.min()), float(img.max())
    sc = (hi - lo) / 255.0 if hi > lo else 1.0
    return np.clip(np.rint((img.astype(np.float32) - lo) / sc), 0, 255).astype(np.uint8), lo, sc


def peer_upscale(peer: Peer, lr: np.ndarray) -> np.ndarray:
    """Float result in the LR's value scale; RGB goes through as BGR (OpenCV's order)."""
    u8, lo, sc = to_u8(lr)
    if u8.ndim == 3:
        y = peer(np.ascontiguousarray(u8[..., ::-1]))[..., ::-1]
    else:
        y = peer(u8)
    return y.astype(np.float32) * sc + lo


def peer_label(stem: str) -> str:
    """``ESPCN_x4`` -> ``OpenCV ESPCN`` (the row name in the tables)."""
    return f"OpenCV {stem.replace('_x4', '')}"
