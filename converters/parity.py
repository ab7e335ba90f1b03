"""Parity: does the artifact compute what the PyTorch model computes, on real tiles?

Per case (tile size or signature): max abs error and PSNR against the PyTorch fp32
model; where ground truth exists, PSNR of both against it and the drop (what int8 costs).
PSNRs use a peak of 1.0 (the normalised range) and unclipped outputs, so they measure the
artifact, not the clipping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scopesr.sdk import quality

from .data import TileSet

#: default tolerances (the issue's): fp32 max abs err, fp16 / bf16 PSNR vs torch, int8 drop
DEFAULT_TOLERANCES: dict[str, float] = {
    "fp32_max_abs": 1e-4,
    "fp16_min_psnr": 45.0,
    "int8_max_drop_db": 0.5,
    "int8_min_psnr_no_gt": 30.0,
}


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR of two normalised tensors (any shape) with a fixed peak: ``scopesr.sdk.quality.psnr``."""
    return quality.psnr(np.asarray(b).reshape(-1, 1), np.asarray(a).reshape(-1, 1), data_range=peak)


@dataclass
class ParityCase:
    case: str  # e.g. "lr64" (TFLite signature) or "64x64" (dynamic shape)
    n_tiles: int
    max_abs_err: float
    psnr_vs_torch: float
    psnr_gt_torch: float | None = None
    psnr_gt_artifact: float | None = None
    drop_db: float | None = None
    psnr_gt_bicubic: float | None = None  # context: what plain bicubic upsampling scores on the same tiles
    passed: bool = True
    criterion: str = ""


@dataclass
class ParityReport:
    artifact: str
    target: str
    precision: str
    tiles_from: str  # where the tiles came from (folder or scopesr.sdk.samples)
    cases: list[ParityCase] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    notes: list[str] = field(default_factory=list)
    skipped: str = ""  # why no numeric check ran (Core ML off macOS); then nothing failed

    @property
    def passed(self) -> bool:
        if self.skipped and not self.cases:
            return True
        return bool(self.cases) and all(c.passed for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        # JSON has no inf: an exact match is recorded as null PSNR with max_abs_err 0
        for c in d["cases"]:
            for k, v in c.items():
                if isinstance(v, float) and not math.isfinite(v):
                    c[k] = None
        return d

    def table(self) -> str:
        """A short plain-text / Markdown table."""
        head = (
            "| case | tiles | max abs err | PSNR vs torch (dB) | PSNR GT torch | PSNR GT artifact | drop (dB) "
            "| GT bicubic | ok |"
        )
        lines = [head, "|" + "---|" * 9]
        for c in self.cases:
            lines.append(
                f"| {c.case} | {c.n_tiles} | {c.max_abs_err:.2e} | {_f(c.psnr_vs_torch)} | "
                f"{_f(c.psnr_gt_torch)} | {_f(c.psnr_gt_artifact)} | {_f(c.drop_db, 3)} | {_f(c.psnr_gt_bicubic)} | "
                f"{'yes' if c.passed else 'NO: ' + c.criterion} |"
            )
        return "\n".join(lines)


def _f(v: float | None, nd: int = 2) -> str:
    if v is None:
        return "n/a"
    if not math.isfinite(v):
        return "exact"
    return f"{v:.{nd}f}"


def evaluate_case(
    case: str, tiles: TileSet, torch_out: np.ndarray, art_out: np.ndarray, precision: str, tolerances: dict[str, float]
) -> ParityCase:
    """Compare one case and decide pass/fail by the precision's criterion."""
    if art_out.shape != torch_out.shape:
        # the silent TFLite failure: a frozen output size; never let it pass
        return ParityCase(
            case,
            len(tiles.lr),
            math.inf,
            -math.inf,
            passed=False,
            criterion=f"output shape {art_out.shape} != expected {torch_out.shape}",
        )
    err = float(np.max(np.abs(art_out.astype(np.float64) - torch_out)))
    if not math.isfinite(err):
        return ParityCase(
            case, len(tiles.lr), math.inf, -math.inf, passed=False, criterion="artifact output has NaN/inf"
        )
    pc = ParityCase(case, len(tiles.lr), err, psnr(art_out, torch_out))
    if tiles.hr is not None:
        pc.psnr_gt_torch = psnr(torch_out, tiles.hr)
        pc.psnr_gt_artifact = psnr(art_out, tiles.hr)
        pc.drop_db = pc.psnr_gt_torch - pc.psnr_gt_artifact
        pc.psnr_gt_bicubic = psnr(_bicubic_up(tiles.lr, tiles.hr.shape[-2:]), tiles.hr)
    if precision == "fp32":
        tol = tolerances["fp32_max_abs"]
        pc.passed = err <= tol
        pc.criterion = f"max abs err <= {tol:g}"
    elif precision in ("fp16", "bf16"):
        tol = tolerances["fp16_min_psnr"]
        pc.passed = pc.psnr_vs_torch >= tol
        pc.criterion = f"PSNR vs torch >= {tol:g} dB"
    else:  # int8: what matters is the quality lost against ground truth
        tol = tolerances["int8_max_drop_db"]
        if pc.drop_db is None:
            # no image large enough for an HR crop at this size: judge against torch instead
            tol2 = tolerances.get("int8_min_psnr_no_gt", 30.0)
            pc.passed = pc.psnr_vs_torch >= tol2
            pc.criterion = f"no ground truth at this size: PSNR vs torch >= {tol2:g} dB"
        else:
            pc.passed = pc.drop_db <= tol
            pc.criterion = f"PSNR drop vs fp32 <= {tol:g} dB"
    return pc


def _bicubic_up(lr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic baseline of (n, C, h, w) tiles at the HR size ``hw`` (``scopesr.sdk.quality``)."""
    scale = int(hw[0]) // lr.shape[-2]
    return np.stack([np.stack([quality.upscale_bicubic(ch, scale) for ch in t]) for t in lr]).astype(np.float32)


def run_batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Run a single-tile function over a (n, C, h, w) batch."""
    return np.concatenate([np.asarray(fn(x[i : i + 1]), dtype=np.float32) for i in range(len(x))])
