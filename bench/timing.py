"""The one timing helper of every benchmark: repeated wall-clock calls after a warm-up.

``time_call`` times one function; ``time_interleaved`` times several in turn (a, b, a, b, ...)
so that load from other processes on a shared machine falls on all of them alike. Both give
:class:`Timing` objects (median, min, max, quartiles, p90 of the timed calls).

Plain Python + numpy (no torch): GPU work is timed by passing ``sync`` (for example
``torch.cuda.synchronize``), which runs after each call inside the timed region, so the clock
measures the work and not only its launch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Timing", "time_call", "time_interleaved"]

Clock = Callable[[], float]


@dataclass
class Timing:
    """Wall-clock times of repeated calls (after ``warmup`` untimed calls), in seconds."""

    times: list[float]
    warmup: int = 0
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.times)

    @property
    def median(self) -> float:
        return float(statistics.median(self.times))

    @property
    def min(self) -> float:
        return float(min(self.times))

    @property
    def max(self) -> float:
        return float(max(self.times))

    @property
    def median_ms(self) -> float:
        return 1e3 * self.median

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) by linear interpolation (numpy's default)."""
        return float(np.percentile(np.asarray(self.times, dtype=np.float64), q))

    def quartiles(self) -> tuple[float, float]:
        """(Q1, Q3) by linear interpolation; equal to the value for n == 1."""
        return self.percentile(25), self.percentile(75)

    @property
    def iqr(self) -> float:
        q1, q3 = self.quartiles()
        return q3 - q1

    def to_dict(self) -> dict[str, Any]:
        q1, q3 = self.quartiles()
        return {
            "median_s": self.median,
            "min_s": self.min,
            "max_s": self.max,
            "q1_s": q1,
            "q3_s": q3,
            "p90_s": self.percentile(90),
            "n": self.n,
            "warmup": self.warmup,
            "times_s": list(self.times),
            "note": self.note,
        }


def _check(warmup: int, repeats: int, min_repeats: int = 1) -> None:
    if repeats < 1 or min_repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, min_repeats >= 1, warmup >= 0; got {repeats}, {min_repeats}, {warmup}")


def _once(fn: Callable[[], Any], clock: Clock, sync: Callable[[], None] | None) -> float:
    t0 = clock()
    fn()
    if sync is not None:
        sync()
    return clock() - t0


def time_call(
    fn: Callable[[], Any],
    warmup: int = 1,
    repeats: int = 5,
    min_repeats: int = 2,
    budget_s: float | None = None,
    clock: Clock = time.perf_counter,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed calls.

    ``budget_s`` bounds the time spent on timed calls: after ``min_repeats`` calls no new one
    starts once the budget is used (a slow teacher on a 2-core CPU gets 2 runs, a fast student
    all of them). ``sync`` runs after each call, inside the timed region.
    """
    _check(warmup, repeats, min_repeats)
    min_repeats = min(min_repeats, repeats)
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats:
        if budget_s is not None and len(times) >= min_repeats and spent >= budget_s:
            break
        dt = _once(fn, clock, sync)
        times.append(dt)
        spent += dt
    return Timing(times, warmup)


def time_interleaved(
    fns: Sequence[Callable[[], Any]],
    warmup: int = 1,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
    sync: Callable[[], None] | None = None,
) -> list[Timing]:
    """Time several functions in turn (``warmup`` untimed rounds, then ``repeats`` timed rounds
    of a, b, ...), so drifting load from other processes affects each alike. One Timing each."""
    _check(warmup, repeats)
    for _ in range(warmup):
        for fn in fns:
            fn()
            if sync is not None:
                sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            acc.append(_once(fn, clock, sync))
    return [Timing(t, warmup) for t in times]
