"""One sr-bench run: measure what the settings ask for, then write bench.json, bench.md, bench.png."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scopesr.sdk.atomic import atomic_write_text

from . import report as R
from .evaluation import degradation_names, eval_images, measure_quality
from .gpu import gpu_targets
from .machine import describe_machine
from .peers import find_peers
from .progress import bar
from .settings import Settings
from .speed import measure_speed

log = logging.getLogger(__name__)


def run_bench(st: Settings) -> dict[str, Any]:
    """Measure everything ``st`` asks for; write JSON, markdown and PNG into ``st.out``."""
    t_start = time.perf_counter()
    st.out.mkdir(parents=True, exist_ok=True)
    try:
        import torch

        torch.set_num_threads(st.threads)
    except ImportError:
        pass
    machine = describe_machine(st.threads)
    peers, peer_note = find_peers(st.peers)
    log.info("%s", peer_note)
    res: dict[str, Any] = {
        "schema": "scopesr-bench/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": st.command,
        "quick": st.quick,
        "machine": machine.to_dict(),
        "machine_line": machine.line(),
        "weights_note": (
            "random-init weights (seeded; speed does not depend on the values); quality rows "
            "use only the trained models given with --model"
        ),
        "timing_note": (
            f"per cell {st.budget.warmup} untimed warm-up call(s), then up to {st.budget.repeats} "
            f"timed calls (at least {st.budget.min_repeats}, fewer once {st.budget.budget_s:g} s "
            "are spent); median [min–max]; wall clock (time.perf_counter), GPU work synchronised"
        ),
        "peers": peer_note,
    }
    own_cache = st.cache is None
    cache = Path(tempfile.mkdtemp(prefix="sr-bench-")) if own_cache else st.cache
    cache.mkdir(parents=True, exist_ok=True)
    try:
        if st.speed:
            res["speed"] = measure_speed(st, peers, cache)
            res["gpu_targets"] = gpu_targets(st)
        if st.quality:
            images = eval_images(st)
            with bar(len(degradation_names(st)) * len(images[0]), st.progress, "quality") as progress:
                res["quality"] = measure_quality(st, peers, progress, images)
    finally:
        if own_cache:
            shutil.rmtree(cache, ignore_errors=True)
    res["elapsed_s"] = time.perf_counter() - t_start
    machine.finish()  # other work on the machine skews timings: say how busy it was at the end too
    res["machine"], res["machine_line"] = machine.to_dict(), machine.line()
    res["failures"] = failures(res)
    res["plot"] = "bench.png"
    res["plot_library"] = R.write_plot(st.out / "bench.png", res)
    R.write_json(st.out / "bench.json", res)
    atomic_write_text(st.out / "bench.md", R.render_markdown(res))
    return res


def failures(res: dict[str, Any]) -> list[str]:
    """Every cell that was asked for and failed (skipped backends are not failures)."""
    out = []
    sp = res.get("speed") or {}
    for table in sp.get("backends", []):
        out += [f"{r['model']} on {table['backend']}: {r['error']}" for r in table["rows"] if r.get("error")]
    out += [f"{r['model']}: {r['error']}" for r in sp.get("reference", []) if r.get("error")]
    q = res.get("quality") or {}
    out += [f"--model {f['model']}: {f['error']}" for f in q.get("failed_models", [])]
    out += [f"{m['name']} on {e}" for m in q.get("methods", []) for e in m.get("errors", [])]
    return out
