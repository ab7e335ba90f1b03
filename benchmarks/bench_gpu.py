"""Issue 7's GPU targets, measured through the SDK's torch backend (a real ``.pt2``).

For the ``paper`` preset (random weights: speed does not depend on their values), each set
of SDK torch options (fp32 eager ... bf16 + channels_last + CUDA graphs + torch.compile):

* a 512x512 output (128x128 LR, the bundled real sample as RGB) through ``Upscaler.upscale``
  end to end (normalise, upload, model, download, de-normalise), and the backend call
  alone; target <= 5 ms (the paper: 140 ms on a K80);
* a 1920x1080 output (480x270 LR) as one window and as 256-px tiles through the tiler
  (a band's tiles batched, uploads overlapped with compute); target >= 60 FPS;
* each option set's largest difference from fp32 eager (a fast path must stay right);

and the trainer's throughput (images/s, HR Mpx/s) for a pretrain and a GAN step of the paper
preset, bf16 + channels_last. Median over runs after warm-up (CUDA graph capture and
compilation happen in the warm-up).

Results: ``OUT/gpu_<device>.json`` and ``.md`` (default OUT: benchmarks/results), naming the
GPU. Without a CUDA device it prints one "not measured" line, writes nothing and exits 0.
``--cpu-smoke`` runs the same code on the CPU with a tiny preset and tiny sizes (tests);
its figures are not the targets and say so.

    python benchmarks/bench_gpu.py                  # on a GPU machine (about 4-6 minutes)
    python benchmarks/bench_gpu.py --quick --no-compile
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("scopesr.bench_gpu")

ROOT = Path(__file__).resolve().parents[1]
TARGET_512_MS = 5.0
TARGET_1080_FPS = 60.0

#: SDK torch option sets, slowest first; the compile ones only with compile enabled
OPTION_SETS: list[tuple[str, dict[str, Any]]] = [
    ("fp32 eager", {"dtype": "fp32", "pinned": True}),
    ("bf16 + NHWC", {"dtype": "bf16", "channels_last": True}),
    ("bf16 + NHWC + graphs", {"dtype": "bf16", "channels_last": True, "cuda_graphs": True}),
    ("fp16 + NHWC + graphs", {"dtype": "fp16", "channels_last": True, "cuda_graphs": True}),
    ("bf16 + NHWC + compile + graphs", {"dtype": "bf16", "channels_last": True, "cuda_graphs": True,
                                        "compile": True}),
]


def timing(fn: Callable[[], Any], warmup: int, repeats: int, budget_s: float) -> dict[str, Any]:
    """Median/min/max/p90 seconds of ``fn`` (synchronous: it returns host arrays)."""
    for _ in range(warmup):
        fn()
    ts: list[float] = []
    t_end = time.perf_counter() + budget_s
    while len(ts) < repeats and (len(ts) < 5 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return {"n": len(ts), "median_s": statistics.median(ts), "min_s": ts[0], "max_s": ts[-1],
            "p90_s": ts[min(len(ts) - 1, int(0.9 * len(ts)))]}


def sample_rgb(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint16 from the bundled real sample (channels: as is, transposed, flipped),
    mirrored to size."""
    import tifffile

    a = np.asarray(tifffile.imread(ROOT / "sdk" / "data" / "sample_nuclei.tif"))
    rgb = np.stack([a, a.T, a[::-1]], axis=-1)
    reps = (-(-h // rgb.shape[0]), -(-w // rgb.shape[1]), 1)
    tiled = np.concatenate([np.concatenate([rgb if (i + j) % 2 == 0 else rgb[::-1, ::-1] for j in range(reps[1])],
                                           axis=1) for i in range(reps[0])], axis=0)
    return np.ascontiguousarray(tiled[:h, :w])


def machine(device: str) -> dict[str, Any]:
    """The benchmarks' common machine description (CPU, memory, load, versions) plus the GPU."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine as host

    m: dict[str, Any] = {**host(), "device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
                         "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        m.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                 sm_count=p.multi_processor_count, cudnn=torch.backends.cudnn.version())
    return m


def export_pt2(preset: str, folder: Path, seed: int) -> Path:
    """The preset (random weights) exported by sr-convert's own code to a dynamic-shape .pt2."""
    from scopesr.converters.api import convert
    from scopesr.bench.cli import preset_subjects

    (subj,) = preset_subjects([preset], seed)
    out = folder / f"{preset}.pt2"
    convert(subj.module, "torch", out=out, card=subj.card, verify=False)
    return out


def bench_inference(pt2: Path, device: str, sets: list[tuple[str, dict[str, Any]]], lr512: int,
                    frame: tuple[int, int], reps: tuple[int, int, float],
                    on_row: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
                    rows: list[dict[str, Any]] | None = None, refs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
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
            x = np.ascontiguousarray(x_small[:, :up.card.in_channels])  # a grey model takes one plane
            t = timing(lambda: up.upscale(small), warm, n, budget)
            row["out512_e2e"] = t
            row["out512_backend"] = timing(lambda: up.backend.run(x), warm, n, budget)
            row["out1080_whole"] = timing(lambda: up.upscale(big, tile=max(frame)), warm, n, budget)
            row["out1080_tiled"] = timing(lambda: up.upscale(big, tile=256, batch=8), warm, n, budget)
            o_small, o_big = up.upscale(small).astype(np.float64), up.upscale(big, tile=max(frame)).astype(np.float64)
            refs.setdefault("small", o_small)
            refs.setdefault("big", o_big)
            ref_small, ref_big = refs["small"], refs["big"]
            # relative to the reference output's range (the output keeps the input's uint16)
            row["max_diff_vs_first"] = float(max(np.abs(o_small - ref_small).max() / max(1.0, np.ptp(ref_small)),
                                                 np.abs(o_big - ref_big).max() / max(1.0, np.ptp(ref_big))))
        except Exception as exc:  # noqa: BLE001 - one failing option set must not hide the others
            log.exception("%s failed", label)
            row["error"] = f"{type(exc).__name__}: {exc}"
        up = None  # give this option set's GPU memory (and its CUDA-graph pool) back before the next
        gc.collect()
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()
        rows.append(row)
        on_row(rows)  # saved as it goes: a run cut short by a time limit keeps what it measured
        log.info("%s: %s", label, {k: round(v["median_s"] * 1e3, 3) for k, v in row.items()
                                   if isinstance(v, dict) and "median_s" in v})
    return rows


def bench_training(preset: str, device: str, folder: Path, hr: int, batch: int, steps: int, warmup: int,
                   compile_: bool | str, modes: tuple[str, ...] = ("pretrain", "gan")) -> list[dict[str, Any]]:
    """Trainer throughput (pretrain and GAN steps) on RGB crops of the bundled real sample."""
    from PIL import Image

    from scopesr.trainer.train import TrainConfig, train
    from scopesr.trainer import data as data_mod

    data = folder / "train-data"
    data.mkdir(exist_ok=True)
    for i in range(4):  # distinct real crops; 8-bit RGB PNGs
        img = sample_rgb(hr * 2, hr * 2)[i % 2 * hr // 2:, i // 2 * hr // 2:][:hr + hr // 2, :hr + hr // 2]
        img = img.astype(np.float64) * (255.0 / max(1, int(img.max())))
        Image.fromarray(img.astype(np.uint8)).save(data / f"crop{i}.png")
    out = []
    for mode in modes:
        cfg = TrainConfig(mode=mode, preset=preset, out=str(folder / f"run-{mode}"), steps=steps + warmup,
                          batch_size=batch, device=device, precision="bf16", channels_last=True,
                          compile=compile_, workers=4 if device == "cuda" else 0, val_every=10**9,
                          ckpt_every=10**9, log_every=max(1, steps), progress=False, content_loss="vgg" if mode == "gan" else "mse",
                          vgg_random_init=mode == "gan", throughput_warmup=warmup,
                          data=data_mod.DataConfig(data=[str(data)], hr_size=hr, val_fraction=0.25))
        row: dict[str, Any] = {"mode": mode}
        try:
            train(cfg)
            row.update(json.loads((folder / f"run-{mode}" / "throughput.json").read_text()))
            if mode == "gan":
                row["note"] = "VGG19 content loss with random weights (same cost; offline machine)"
        except Exception as exc:  # noqa: BLE001
            log.exception("training %s failed", mode)
            row["error"] = f"{type(exc).__name__}: {exc}"
        out.append(row)
    return out


def _ms(t: dict[str, Any] | None) -> str:
    return "—" if not t else f"{t['median_s'] * 1e3:.2f} [{t['min_s'] * 1e3:.2f}–{t['max_s'] * 1e3:.2f}]"


def _fps(t: dict[str, Any] | None) -> str:
    return "—" if not t else f"{1.0 / t['median_s']:.1f}"


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    ok = [r for r in res["inference"] if "error" not in r]
    if not ok:
        return {}
    b512 = min(ok, key=lambda r: r["out512_e2e"]["median_s"])
    b1080 = min(ok, key=lambda r: min(r["out1080_whole"]["median_s"], r["out1080_tiled"]["median_s"]))
    s1080 = min(b1080["out1080_whole"]["median_s"], b1080["out1080_tiled"]["median_s"])
    ms512 = b512["out512_e2e"]["median_s"] * 1e3
    return {"out512_ms": round(ms512, 3), "out512_options": b512["options"],
            "out512_backend_ms": round(b512["out512_backend"]["median_s"] * 1e3, 3),
            "out512_meets_target": ms512 <= TARGET_512_MS,
            "out1080_fps": round(1.0 / s1080, 2), "out1080_options": b1080["options"],
            "out1080_meets_target": 1.0 / s1080 >= TARGET_1080_FPS}


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    dev = m.get("gpu") or f"CPU ({m['cpu']}, {m['cores']} cores)"
    lines = [f"# GPU path: {res['preset']} preset through the SDK torch backend (.pt2)", ""]
    if res.get("smoke"):
        lines += ["**CPU smoke run (tiny preset, tiny sizes): these are NOT the issue's GPU targets.**", ""]
    if res.get("partial"):
        lines += ["**Partial: the run had not finished when this was written.**", ""]
    lines += [f"Device: **{dev}**; torch {m['torch']} (CUDA {m['cuda']}), {m['date']}.",
              f"Command: `{res['command']}`", "",
              f"Inputs: {res['sizes']['lr512']}x{res['sizes']['lr512']} LR -> 512x512-class output and "
              f"{res['sizes']['frame'][1]}x{res['sizes']['frame'][0]} LR -> 1080p-class output, RGB from the bundled "
              "real sample; random weights. Times: median [min–max] ms over the timed runs after warm-up.", "",
              "| options | 512 out, SDK end to end (ms) | 512 out, backend only (ms) | 1080p whole frame (FPS) "
              "| 1080p, 256-px tiles (FPS) | max diff vs first row |",
              "|---|---|---|---|---|---|"]
    for r in res["inference"]:
        if "error" in r:
            lines.append(f"| {r['options']} | error: {r['error'][:120]} | | | | |")
            continue
        lines.append(f"| {r['options']} | {_ms(r['out512_e2e'])} | {_ms(r['out512_backend'])} | "
                     f"{_fps(r['out1080_whole'])} | {_fps(r['out1080_tiled'])} | {r['max_diff_vs_first']:.2e} |")
    s = res.get("summary") or {}
    if s:
        lines += ["", "## Targets", "",
                  "| target | goal | measured | options | met |", "|---|---|---|---|---|",
                  f"| 512x512 output | <= {TARGET_512_MS:g} ms | {s['out512_ms']:.2f} ms (backend only "
                  f"{s['out512_backend_ms']:.2f} ms) | {s['out512_options']} | {'yes' if s['out512_meets_target'] else 'NO'} |",
                  f"| 1920x1080 output | >= {TARGET_1080_FPS:g} FPS | {s['out1080_fps']:.1f} FPS | {s['out1080_options']} "
                  f"| {'yes' if s['out1080_meets_target'] else 'NO'} |"]
    if res.get("training"):
        lines += ["", "## Training throughput (sr-train, bf16 autocast + channels_last)", "",
                  "| mode | images/s | HR Mpx/s | steps timed | batch | HR crop | compile |", "|---|---|---|---|---|---|---|"]
        for t in res["training"]:
            if "error" in t or "images_per_s" not in t:
                lines.append(f"| {t['mode']} | error: {t.get('error', 'no steps timed')[:120]} | | | | | |")
                continue
            lines.append(f"| {t['mode']} | {t['images_per_s']:.1f} | {t['hr_mpx_per_s']:.2f} | {t['steps_timed']} | "
                         f"{t['batch_size']} | {t['hr_size']} | {t['compile']} |")
        if any("note" in t for t in res["training"]):
            lines += ["", "GAN: " + next(t["note"] for t in res["training"] if "note" in t) + "."]
    return "\n".join(lines) + "\n"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--quick", action="store_true", help="fewer runs and training steps")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile option set (slow to start)")
    ap.add_argument("--compile-train", action="store_true", help="torch.compile the generator for the training "
                    "throughput too (a minute or two of compilation per mode)")
    ap.add_argument("--no-train", action="store_true", help="skip the training throughput")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("torch._dynamo", "torch._inductor", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        import torch
    except ImportError:
        print("not measured: no CUDA device (torch is not installed)")
        return 0
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"not measured: no CUDA device (torch {torch.__version__} sees none); run this on a GPU machine")
        return 0
    device = "cpu" if args.cpu_smoke else "cuda"
    if args.cpu_smoke:  # the same code, tiny: proves it runs; the figures mean nothing
        preset, lr512, frame, reps = "student-tiny", 32, (34, 60), (1, 3, 0.5)
        sets = [s for s in OPTION_SETS if "fp16" not in s[0] and "compile" not in s[0]]
        sets.append(("bf16 + compile(aot_eager)", {"dtype": "bf16", "compile": "aot_eager"}))
        train_args = (32, 2, 3, 1)
    else:
        preset, lr512, frame = args.preset, 128, (270, 480)
        reps = (5, 30, 3.0) if args.quick else (10, 100, 8.0)
        sets = [s for s in OPTION_SETS if not (args.no_compile and s[1].get("compile"))]
        train_args = (128, 16, 20 if args.quick else 50, 10)
    res: dict[str, Any] = {"schema": "scopesr-bench-gpu/1", "preset": preset, "smoke": bool(args.cpu_smoke),
                           "machine": machine(device), "sizes": {"lr512": lr512, "frame": list(frame)},
                           "targets": {"out512_ms": TARGET_512_MS, "out1080_fps": TARGET_1080_FPS},
                           "command": "python benchmarks/bench_gpu.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))}
    name = "gpu_cpu-smoke" if args.cpu_smoke else f"gpu_{slug(res['machine']['gpu'])}"

    def save(r: dict[str, Any]) -> str:
        from scopesr.sdk.card import atomic_write_text

        args.out.mkdir(parents=True, exist_ok=True)
        md = markdown(r)
        atomic_write_text(args.out / f"{name}.json", json.dumps(r, indent=2, default=str) + "\n")
        atomic_write_text(args.out / f"{name}.md", md)
        return md

    def partial(rows: list[dict[str, Any]]) -> None:
        save({**res, "inference": rows, "summary": {} if args.cpu_smoke else summarise({"inference": rows}),
              "partial": True})

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        pt2 = export_pt2(preset, Path(tmp), args.seed)
        refs: dict[str, Any] = {}
        # the quick option sets first, then training, then torch.compile (minutes of compiling):
        # a run stopped by a time limit has saved the most
        quick = [o for o in sets if not o[1].get("compile")]
        rows = bench_inference(pt2, device, quick, lr512, frame, reps, partial, refs=refs)
        if not args.no_train:
            hr, batch, steps, warm = train_args
            res["training"] = bench_training(preset, device, Path(tmp), hr, batch, steps, warm,
                                             "aot_eager" if args.cpu_smoke else args.compile_train,
                                             ("pretrain",) if args.cpu_smoke else ("pretrain", "gan"))
            partial(rows)
        rows = bench_inference(pt2, device, [o for o in sets if o[1].get("compile")], lr512, frame, reps, partial,
                               rows=rows, refs=refs)
        res["inference"] = rows
        res["summary"] = {} if args.cpu_smoke else summarise(res)  # smoke figures are no targets
    res["elapsed_s"] = round(time.perf_counter() - t0, 1)
    md = save(res)
    print(md)
    print(f"wrote {args.out / (name + '.json')} and .md ({res['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
