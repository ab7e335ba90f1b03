"""The GPU path, measured: datasheet peaks, sr-bench's GPU targets, and the full GPU benchmark.

Targets for the ``paper`` preset (random weights: speed does not depend on their values):
a 512x512 output (128x128 LR) in <= 5 ms (the paper: 140 ms on a K80) and a 1920x1080 output
(480x270 LR) at >= 60 FPS.

* :func:`gpu_targets` is sr-bench's short check: the bare ``TorchRunner`` under the run's
  options; "not measured" rows without CUDA.
* :func:`run_gpu_benchmark` (``benchmarks/bench_gpu.py``) goes through a real ``.pt2`` and the
  SDK, for each set of torch options (fp32 eager ... bf16 + channels_last + CUDA graphs +
  torch.compile): the 512x512 output end to end (normalise, upload, model, download,
  de-normalise) and the backend call alone; the 1080p output as one window and as 256-px tiles
  (a band's tiles batched, uploads overlapped with compute); each option set's largest
  difference from the first (a fast path must stay right); and the trainer's throughput
  (images/s, HR Mpx/s) for a pretrain and a GAN step, bf16 + channels_last. Times are medians
  over runs after warm-up (CUDA graph capture and compilation happen in the warm-up).
"""

from __future__ import annotations

import gc
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .machine import describe_machine
from .settings import Budget, Settings
from .timing import time_call

log = logging.getLogger(__name__)

TARGET_512_MS = 5.0
TARGET_1080_FPS = 60.0

# --------------------------------------------------------------------------- datasheet peaks
#: Dense (no sparsity) peak throughput in TFLOP/s from the vendors' datasheets (NVIDIA
#: product briefs / datasheets, boost clocks). Keys are matched as substrings of
#: ``torch.cuda.get_device_name()`` in order, so the more specific names come first.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0, "fp16": 835.0}),
    ("H100", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM5
    ("H200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM
    ("GH200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    ("RTX 4090", {"fp32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    ("T4", {"fp32": 8.1, "fp16": 65.0}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),
    ("K80", {"fp32": 4.37}),  # one of the board's two GK210 dies (what one CUDA device is)
]
PEAK_SOURCE = "vendor datasheets (NVIDIA), dense tensor-core / FP32 peaks at boost clock, no sparsity"


def device_peak_tflops(device_name: str | None, precision: str) -> float | None:
    """The datasheet peak for ``precision`` (fp32/tf32/bf16/fp16) of a GPU name, or None."""
    if not device_name:
        return None
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peaks.get(precision)
    return None


# --------------------------------------------------------------------------- sr-bench's targets
def gpu_targets(st: Settings) -> list[dict[str, Any]]:
    """The GPU-path targets for the ``paper`` preset under ``st``; 'not measured' without CUDA."""
    targets = [
        {
            "target": "paper preset, 128x128 LR -> 512x512 output",
            "goal": f"<= {TARGET_512_MS:g} ms (paper: 140 ms on a K80)",
        },
        {"target": "paper preset, 480x270 LR -> 1920x1080 output", "goal": f">= {TARGET_1080_FPS:g} FPS"},
        {"target": "paper preset, batches of 16 tiles of 64x64 LR (pinned, overlapped)", "goal": "throughput"},
        {"target": "training throughput (sr-train)", "goal": "recorded"},
    ]
    try:
        import torch

        cuda = st.device != "cpu" and torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        why = "not measured (no CUDA device in this run)" if st.device != "cpu" else "not measured (--device cpu)"
        for t in targets:
            t["measured"] = why
        targets[-1]["measured"] = "not measured (sr-train records it on a GPU)"
        return targets
    from scopesr.sdk.backends.torch_runner import TorchRunner
    from scopesr.trainer import create_model

    from .backends import torch_opts
    from .subjects import randomise

    o = torch_opts(st)
    runner = TorchRunner(
        randomise(create_model("paper"), st.seed),
        device="cuda",
        dtype=o["dtype"],
        channels_last=o["channels_last"],
        compile=o["compile"],
        cuda_graphs=o["cuda_graphs"],
    )
    settings = ", ".join(
        f"{k}={v}"
        for k, v in runner.describe().items()
        if k in ("gpu", "dtype", "channels_last", "compile", "cuda_graphs", "pinned")
    )
    b = Budget(warmup=5, repeats=50, min_repeats=10, budget_s=5.0)

    def timed(fn: Callable[[], Any]) -> dict[str, Any]:
        return time_call(
            fn, warmup=b.warmup, repeats=b.repeats, min_repeats=b.min_repeats, budget_s=b.budget_s, sync=runner.sync
        ).to_dict()

    x512 = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    t = timed(lambda: runner(x512))
    targets[0].update(
        measured=f"{t['median_s'] * 1e3:.2f} ms [{t['min_s'] * 1e3:.2f}–{t['max_s'] * 1e3:.2f}]",
        timing=t,
        settings=settings,
    )
    x1080 = np.random.default_rng(1).random((1, 3, 270, 480), dtype=np.float32)
    t = timed(lambda: runner(x1080))
    targets[1].update(
        measured=f"{1.0 / t['median_s']:.1f} FPS ({t['median_s'] * 1e3:.2f} ms)", timing=t, settings=settings
    )
    batches = [np.random.default_rng(i).random((16, 3, 64, 64), dtype=np.float32) for i in range(8)]
    t = timed(lambda: list(runner.run_many(batches)))
    targets[2].update(measured=f"{16 * 8 / t['median_s']:.0f} tiles/s", timing=t, settings=settings)
    targets[3]["measured"] = "not measured by sr-bench (sr-train records steps/s)"
    return targets


# --------------------------------------------------------------------------- the GPU benchmark
#: SDK torch option sets, slowest first; the compile ones only with compile enabled
OPTION_SETS: list[tuple[str, dict[str, Any]]] = [
    ("fp32 eager", {"dtype": "fp32", "pinned": True}),
    ("bf16 + NHWC", {"dtype": "bf16", "channels_last": True}),
    ("bf16 + NHWC + graphs", {"dtype": "bf16", "channels_last": True, "cuda_graphs": True}),
    ("fp16 + NHWC + graphs", {"dtype": "fp16", "channels_last": True, "cuda_graphs": True}),
    ("bf16 + NHWC + compile + graphs", {"dtype": "bf16", "channels_last": True, "cuda_graphs": True, "compile": True}),
]


def _timing(fn: Callable[[], Any], warmup: int, repeats: int, budget_s: float) -> dict[str, Any]:
    """At least 5 timed calls, more until ``repeats`` or the budget (``fn`` returns host arrays,
    so it is synchronous)."""
    return time_call(fn, warmup=warmup, repeats=repeats, min_repeats=5, budget_s=budget_s).to_dict()


def sample_rgb(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint16 from the SDK's bundled real sample (channels: as is, transposed,
    flipped), mirrored to size."""
    import tifffile

    import scopesr.sdk

    a = np.asarray(tifffile.imread(Path(scopesr.sdk.__file__).parent / "data" / "sample_nuclei.tif"))
    rgb = np.stack([a, a.T, a[::-1]], axis=-1)
    reps = (-(-h // rgb.shape[0]), -(-w // rgb.shape[1]), 1)
    tiled = np.concatenate(
        [
            np.concatenate([rgb if (i + j) % 2 == 0 else rgb[::-1, ::-1] for j in range(reps[1])], axis=1)
            for i in range(reps[0])
        ],
        axis=0,
    )
    return np.ascontiguousarray(tiled[:h, :w])


def export_pt2(preset: str, folder: Path, seed: int) -> Path:
    """The preset (random weights) exported by sr-convert's own code to a dynamic-shape .pt2."""
    from scopesr.converters.api import convert

    from .subjects import preset_subjects

    (subj,) = preset_subjects([preset], seed)
    out = folder / f"{preset}.pt2"
    convert(subj.module, "torch", out=out, card=subj.card, verify=False)
    return out


def bench_inference(
    pt2: Path,
    device: str,
    sets: list[tuple[str, dict[str, Any]]],
    lr512: int,
    frame: tuple[int, int],
    reps: tuple[int, int, float],
    on_row: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
    rows: list[dict[str, Any]] | None = None,
    refs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Time each option set; ``rows``/``refs`` carry on an earlier call (the first option set
    measured is the reference of ``max_diff_vs_first``)."""
    import scopesr.sdk as sr

    warm, n, budget = reps
    small = sample_rgb(lr512, lr512)
    big = sample_rgb(*frame)
    x_small = np.ascontiguousarray(small.transpose(2, 0, 1)[None], dtype=np.float32) / 65535.0
    rows = [] if rows is None else rows
    refs = {} if refs is None else refs
    for label, opts in sets:
        row: dict[str, Any] = {"options": label, "opts": opts}
        try:
            up = sr.load(pt2, device=device, **opts)
            row["describe"] = up.backend.describe()
            x = np.ascontiguousarray(x_small[:, : up.card.in_channels])  # a grey model takes one plane
            row["out512_e2e"] = _timing(lambda up=up: up.upscale(small), warm, n, budget)
            row["out512_backend"] = _timing(lambda up=up, x=x: up.backend.run(x), warm, n, budget)
            # without the border rule's halo (one tile: a live frame's choice): the model computes
            # 128x128, not 128 + 2 x halo squared
            row["out512_fast"] = _timing(lambda up=up: up.upscale(small, halo="fast"), warm, n, budget)
            row["out1080_whole"] = _timing(lambda up=up: up.upscale(big, tile=max(frame)), warm, n, budget)
            row["out1080_tiled"] = _timing(lambda up=up: up.upscale(big, tile=256, batch=8), warm, n, budget)
            o_small, o_big = up.upscale(small).astype(np.float64), up.upscale(big, tile=max(frame)).astype(np.float64)
            refs.setdefault("small", o_small)
            refs.setdefault("big", o_big)
            ref_small, ref_big = refs["small"], refs["big"]
            # relative to the reference output's range (the output keeps the input's uint16)
            row["max_diff_vs_first"] = float(
                max(
                    np.abs(o_small - ref_small).max() / max(1.0, np.ptp(ref_small)),
                    np.abs(o_big - ref_big).max() / max(1.0, np.ptp(ref_big)),
                )
            )
        except Exception as exc:  # one failing option set must not hide the others
            log.exception("%s failed", label)
            row["error"] = f"{type(exc).__name__}: {exc}"
        up = None  # give this option set's GPU memory (and its CUDA-graph pool) back before the next
        gc.collect()
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()
        rows.append(row)
        on_row(rows)  # saved as it goes: a run cut short by a time limit keeps what it measured
        log.info(
            "%s: %s",
            label,
            {k: round(v["median_s"] * 1e3, 3) for k, v in row.items() if isinstance(v, dict) and "median_s" in v},
        )
    return rows


def bench_training(
    preset: str,
    device: str,
    folder: Path,
    hr: int,
    batch: int,
    steps: int,
    warmup: int,
    compile_: bool | str,
    modes: tuple[str, ...] = ("pretrain", "gan"),
) -> list[dict[str, Any]]:
    """Trainer throughput (pretrain and GAN steps) on RGB crops of the bundled real sample."""
    from PIL import Image

    from scopesr.trainer import data as data_mod
    from scopesr.trainer.train import TrainConfig, train

    data = folder / "train-data"
    data.mkdir(exist_ok=True)
    for i in range(4):  # distinct real crops; 8-bit RGB PNGs
        img = sample_rgb(hr * 2, hr * 2)[i % 2 * hr // 2 :, i // 2 * hr // 2 :][: hr + hr // 2, : hr + hr // 2]
        img = img.astype(np.float64) * (255.0 / max(1, int(img.max())))
        Image.fromarray(img.astype(np.uint8)).save(data / f"crop{i}.png")
    out = []
    for mode in modes:
        cfg = TrainConfig(
            mode=mode,
            preset=preset,
            out=str(folder / f"run-{mode}"),
            steps=steps + warmup,
            batch_size=batch,
            device=device,
            precision="bf16",
            channels_last=True,
            compile=compile_,
            workers=4 if device == "cuda" else 0,
            val_every=10**9,
            ckpt_every=10**9,
            log_every=max(1, steps),
            progress=False,
            content_loss="vgg" if mode == "gan" else "mse",
            vgg_random_init=mode == "gan",
            throughput_warmup=warmup,
            data=data_mod.DataConfig(data=[str(data)], hr_size=hr, val_fraction=0.25),
        )
        row: dict[str, Any] = {"mode": mode}
        try:
            train(cfg)
            row.update(json.loads((folder / f"run-{mode}" / "throughput.json").read_text()))
            if mode == "gan":
                row["note"] = "VGG19 content loss with random weights (same cost; offline machine)"
        except Exception as exc:  # one failing mode must not hide the other
            log.exception("training %s failed", mode)
            row["error"] = f"{type(exc).__name__}: {exc}"
        out.append(row)
    return out


def _ms(t: dict[str, Any] | None) -> str:
    return "—" if not t else f"{t['median_s'] * 1e3:.2f} [{t['min_s'] * 1e3:.2f}–{t['max_s'] * 1e3:.2f}]"


def _fps(t: dict[str, Any] | None) -> str:
    return "—" if not t else f"{1.0 / t['median_s']:.1f}"


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """The best option set for each target, and whether it meets the target."""
    ok = [r for r in res["inference"] if "error" not in r]
    if not ok:
        return {}
    b512 = min(ok, key=lambda r: r["out512_e2e"]["median_s"])
    b1080 = min(ok, key=lambda r: min(r["out1080_whole"]["median_s"], r["out1080_tiled"]["median_s"]))
    s1080 = min(b1080["out1080_whole"]["median_s"], b1080["out1080_tiled"]["median_s"])
    ms512 = b512["out512_e2e"]["median_s"] * 1e3
    return {
        "out512_ms": round(ms512, 3),
        "out512_options": b512["options"],
        "out512_backend_ms": round(b512["out512_backend"]["median_s"] * 1e3, 3),
        "out512_fast_ms": round(b512["out512_fast"]["median_s"] * 1e3, 3) if "out512_fast" in b512 else None,
        "out512_meets_target": ms512 <= TARGET_512_MS,
        "out1080_fps": round(1.0 / s1080, 2),
        "out1080_options": b1080["options"],
        "out1080_meets_target": 1.0 / s1080 >= TARGET_1080_FPS,
    }


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    dev = m.get("gpu") or f"CPU ({m['cpu']}, {m['logical_cores']} cores)"
    lines = [f"# GPU path: {res['preset']} preset through the SDK torch backend (.pt2)", ""]
    if res.get("smoke"):
        lines += ["**CPU smoke run (tiny preset, tiny sizes): these are NOT the GPU targets.**", ""]
    if res.get("partial"):
        lines += ["**Partial: the run had not finished when this was written.**", ""]
    lines += [
        f"Device: **{dev}**; torch {m['versions'].get('torch')} (CUDA {m.get('cuda')}), {m['date']}.",
        f"Machine: {res.get('machine_line', '')}",
        f"Command: `{res['command']}`",
        "",
        f"Inputs: {res['sizes']['lr512']}x{res['sizes']['lr512']} LR -> 512x512-class output and "
        f"{res['sizes']['frame'][1]}x{res['sizes']['frame'][0]} LR -> 1080p-class output, RGB from the bundled "
        "real sample; random weights. Times: median [min–max] ms over the timed runs after warm-up.",
        "",
        '| options | 512 out, SDK end to end (ms) | 512 out, halo="fast" (ms) | 512 out, backend only (ms) '
        "| 1080p whole frame (FPS) | 1080p, 256-px tiles (FPS) | max diff vs first row |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["inference"]:
        if "error" in r:
            lines.append(f"| {r['options']} | error: {r['error'][:120]} | | | | | |")
            continue
        fast = _ms(r["out512_fast"]) if "out512_fast" in r else "not measured"
        lines.append(
            f"| {r['options']} | {_ms(r['out512_e2e'])} | {fast} | {_ms(r['out512_backend'])} | "
            f"{_fps(r['out1080_whole'])} | {_fps(r['out1080_tiled'])} | {r['max_diff_vs_first']:.2e} |"
        )
    s = res.get("summary") or {}
    if s:
        lines += [
            "",
            "## Targets",
            "",
            "| target | goal | measured | options | met |",
            "|---|---|---|---|---|",
            f"| 512x512 output | <= {TARGET_512_MS:g} ms | {s['out512_ms']:.2f} ms (backend only "
            f"{s['out512_backend_ms']:.2f} ms) | {s['out512_options']} | "
            f"{'yes' if s['out512_meets_target'] else 'NO'} |",
            f"| 1920x1080 output | >= {TARGET_1080_FPS:g} FPS | {s['out1080_fps']:.1f} FPS | {s['out1080_options']} "
            f"| {'yes' if s['out1080_meets_target'] else 'NO'} |",
        ]
    if res.get("training"):
        lines += [
            "",
            "## Training throughput (sr-train, bf16 autocast + channels_last)",
            "",
            "| mode | images/s | HR Mpx/s | steps timed | batch | HR crop | compile |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in res["training"]:
            if "error" in t or "images_per_s" not in t:
                lines.append(f"| {t['mode']} | error: {t.get('error', 'no steps timed')[:120]} | | | | | |")
                continue
            lines.append(
                f"| {t['mode']} | {t['images_per_s']:.1f} | {t['hr_mpx_per_s']:.2f} | {t['steps_timed']} | "
                f"{t['batch_size']} | {t['hr_size']} | {t['compile']} |"
            )
        if any("note" in t for t in res["training"]):
            lines += ["", "GAN: " + next(t["note"] for t in res["training"] if "note" in t) + "."]
    return "\n".join(lines) + "\n"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def cuda_missing() -> str | None:
    """None when torch sees a CUDA device, else the 'not measured' line to print."""
    try:
        import torch
    except ImportError:
        return "not measured: no CUDA device (torch is not installed)"
    if not torch.cuda.is_available():
        return f"not measured: no CUDA device (torch {torch.__version__} sees none); run this on a GPU machine"
    return None


def run_gpu_benchmark(
    out: Path,
    command: str,
    preset: str = "paper",
    quick: bool = False,
    no_compile: bool = False,
    compile_train: bool = False,
    no_train: bool = False,
    seed: int = 0,
    cpu_smoke: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Measure the GPU path and write ``out/gpu_<device>.json`` and ``.md`` (also while it runs,
    so a run stopped by a time limit keeps what it measured). ``cpu_smoke`` runs the same code
    on the CPU with a tiny preset and tiny sizes: it proves the code runs, its figures mean
    nothing. Returns the result and the markdown path."""
    from scopesr.sdk.atomic import atomic_write_text

    device = "cpu" if cpu_smoke else "cuda"
    if cpu_smoke:
        preset, lr512, frame, reps = "student-tiny", 32, (34, 60), (1, 3, 0.5)
        sets = [s for s in OPTION_SETS if "fp16" not in s[0] and "compile" not in s[0]]
        sets.append(("bf16 + compile(aot_eager)", {"dtype": "bf16", "compile": "aot_eager"}))
        train_args = (32, 2, 3, 1)
    else:
        lr512, frame = 128, (270, 480)
        reps = (5, 30, 3.0) if quick else (10, 100, 8.0)
        sets = [s for s in OPTION_SETS if not (no_compile and s[1].get("compile"))]
        train_args = (128, 16, 20 if quick else 50, 10)
    mach = describe_machine(gpu=device == "cuda")
    m = {**mach.to_dict(), "device": device, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    res: dict[str, Any] = {
        "schema": "scopesr-bench-gpu/1",
        "preset": preset,
        "smoke": cpu_smoke,
        "machine": m,
        "machine_line": mach.line(),
        "sizes": {"lr512": lr512, "frame": list(frame)},
        "targets": {"out512_ms": TARGET_512_MS, "out1080_fps": TARGET_1080_FPS},
        "command": command,
    }
    name = "gpu_cpu-smoke" if cpu_smoke else f"gpu_{slug(m['gpu'])}"

    def save(r: dict[str, Any]) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{name}.json", json.dumps(r, indent=2, default=str) + "\n")
        return atomic_write_text(out / f"{name}.md", markdown(r))

    def partial(rows: list[dict[str, Any]]) -> None:
        save(
            {**res, "inference": rows, "summary": {} if cpu_smoke else summarise({"inference": rows}), "partial": True}
        )

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        pt2 = export_pt2(preset, Path(tmp), seed)
        refs: dict[str, Any] = {}
        # the quick option sets first, then training, then torch.compile (minutes of compiling):
        # a run stopped by a time limit has saved the most
        fast = [o for o in sets if not o[1].get("compile")]
        rows = bench_inference(pt2, device, fast, lr512, frame, reps, partial, refs=refs)
        if not no_train:
            hr, batch, steps, warm = train_args
            res["training"] = bench_training(
                preset,
                device,
                Path(tmp),
                hr,
                batch,
                steps,
                warm,
                "aot_eager" if cpu_smoke else compile_train,
                ("pretrain",) if cpu_smoke else ("pretrain", "gan"),
            )
            partial(rows)
        rows = bench_inference(
            pt2, device, [o for o in sets if o[1].get("compile")], lr512, frame, reps, partial, rows=rows, refs=refs
        )
        res["inference"] = rows
        res["summary"] = {} if cpu_smoke else summarise(res)  # smoke figures are no targets
    res["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return res, save(res)
