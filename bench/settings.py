"""What one sr-bench run measures and how hard (filled by the CLI, read by every measuring module)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Budget:
    """How hard each cell is timed (see :func:`scopesr.bench.timing.time_call`)."""

    warmup: int
    repeats: int
    min_repeats: int
    budget_s: float


QUICK = Budget(warmup=1, repeats=5, min_repeats=2, budget_s=1.5)
FULL = Budget(warmup=2, repeats=20, min_repeats=3, budget_s=10.0)


@dataclass
class Settings:
    out: Path
    quick: bool = False
    presets: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    device: str = "auto"
    threads: int = 2
    torch_dtype: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    cuda_graphs: bool | None = None
    peers: Path | None = None
    models: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    degradations: list[str] | None = None  # quality rows (None: every row, or the quick subset)
    speed: bool = True
    quality: bool = True
    tile: int | None = None
    seed: int = 0
    cache: Path | None = None
    progress: bool = True
    command: str = ""
    budget: Budget = field(default_factory=lambda: QUICK)
