"""The SDK's host-side work around the model, timed with the model call replaced by a no-op.

On a GPU the network is fast enough that what ``Upscaler.upscale`` does on the CPU around it
(statistics, normalising, the tiler's reads, de-normalising the float32 output, clipping and
casting to the image's dtype) decides the end-to-end time. Replacing ``backend.run`` with a
function that returns an array of the right shape leaves exactly that work, on any machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .timing import time_call


def _noop_run(scale: int, c_out: int):
    def run(x: np.ndarray) -> np.ndarray:
        n, _, h, w = x.shape
        return np.zeros((n, c_out, h * scale, w * scale), np.float32)

    return run


def host_overhead(
    up: Any, cases: dict[str, tuple[np.ndarray, dict[str, Any]]], repeats: int = 20, budget_s: float = 10.0
) -> list[dict[str, Any]]:
    """For each case (name -> (image, upscale kwargs)): the median time of ``up.upscale`` with the
    backend's ``run`` replaced by a no-op returning zeros of the model's output shape. The
    backend's own ``run`` is restored afterwards, also on error."""
    backend = up.backend
    saved = {k: vars(backend)[k] for k in ("run", "run_many") if k in vars(backend)}
    noop = _noop_run(up.scale, up.card.out_channels)
    backend.run = noop  # the single-tile path calls run, the tiler run_many
    backend.run_many = lambda batches: (noop(x) for x in batches)
    rows = []
    try:
        for name, (img, kw) in cases.items():
            t = time_call(lambda img=img, kw=kw: up.upscale(img, **kw), warmup=2, repeats=repeats, budget_s=budget_s)
            d = t.to_dict()
            out_px = img.shape[0] * img.shape[1] * up.scale**2
            rows.append({"case": name, "shape": list(img.shape), "dtype": str(img.dtype), "out_mpx": out_px / 1e6, **d})
    finally:
        for k in ("run", "run_many"):
            if k in saved:
                setattr(backend, k, saved[k])
            else:
                delattr(backend, k)
    return rows
