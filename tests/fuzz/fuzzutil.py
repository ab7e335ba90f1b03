"""Helpers of the fuzz tests: example counts, the seeds and mutators of tools/fuzz.py, and the
time and memory bound of each example."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz_corpus"
#: per example: wall-clock seconds (generous: a loaded 2-core machine) and Python-heap bytes
EXAMPLE_SECONDS = 20
EXAMPLE_BYTES = 256 << 20
_LONG = int(os.environ.get("SCOPESR_FUZZ_EXAMPLES", "0") or 0)


def examples(n: int) -> int:
    """``n`` examples in make test; SCOPESR_FUZZ_EXAMPLES in a long run."""
    return _LONG or n


def load_fuzz_tool() -> Any:
    """tools/fuzz.py as a module: the seeds and mutators shared with the long run."""
    if "scopesr_fuzz_tool" in sys.modules:
        return sys.modules["scopesr_fuzz_tool"]
    spec = importlib.util.spec_from_file_location("scopesr_fuzz_tool", ROOT / "tools" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["scopesr_fuzz_tool"] = mod
    spec.loader.exec_module(mod)
    return mod


class Overrun(Exception):
    """An example ran past its time bound (not a ScopesrError: the test fails)."""


@contextmanager
def bounded(seconds: int = EXAMPLE_SECONDS, max_bytes: int = EXAMPLE_BYTES) -> Iterator[None]:
    """Fail the example when it takes longer than ``seconds`` (SIGALRM interrupts a hang in
    Python code) or its Python-heap peak (numpy arrays included) exceeds ``max_bytes``."""

    def boom(signum, frame):
        raise Overrun(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
        assert peak <= max_bytes, f"peak {peak / 2**20:.0f} MiB of Python heap, bound {max_bytes / 2**20:.0f} MiB"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if started:
            tracemalloc.stop()
