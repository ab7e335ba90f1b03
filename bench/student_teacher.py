"""Student vs teacher, side by side in one run, on every backend installed here.

For each model: parameters, multiply-accumulates per LR pixel, receptive-field radius, and
the median time for one 64x64 LR patch (-> 256x256) and one 512x512 output (128x128 LR) in
torch (CPU), ONNX Runtime and TFLite (ai-edge-litert, fixed-size signatures lr64/lr128).
The student is the bundled default model (trained); the teacher is the ``paper`` preset
(1 channel, random init: timing does not depend on the weights). Then the student's TFLite
int8 vs fp32: speed, and PSNR/SSIM through ``scopesr.sdk`` on the held-out real images that the
default model's card names (``metrics.heldout.sources``, read by
``scopesr.trainer.data.heldout_images``), per degradation, scored by
``scopesr.sdk.quality.evaluate``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .timing import time_call

log = logging.getLogger(__name__)
SIZES = {"patch 64x64 -> 256x256": 64, "512x512 output (128x128 LR)": 128}


def median_ms(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time in ms after one warm-up; stops early after 60 s (slow teacher runs)."""
    return time_call(fn, warmup=1, repeats=reps, min_repeats=2, budget_s=60.0).median_ms


def torch_times(model: Any, reps: int, threads: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(threads)
    out = {}
    for label, n in SIZES.items():
        x = torch.rand(1, 1, n, n)

        def run(x=x):
            with torch.inference_mode():
                model(x)

        out[label] = median_ms(run, reps)
    return out


def onnx_times(path: Path, reps: int, threads: int) -> dict[str, float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = {}
    for label, n in SIZES.items():
        x = np.random.rand(1, 1, n, n).astype(np.float32)
        out[label] = median_ms(lambda x=x: sess.run(None, {name: x}), reps)
    return out


def tflite_times(path: Path, reps: int, threads: int) -> dict[str, float]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    sigs = it.get_signature_list()
    out = {}
    squares = sorted(int(k[2:]) for k in sigs if k.startswith("lr") and k[2:].isdigit())
    for label, n in SIZES.items():
        # what an n x n LR patch costs on this file: its own window, else the smallest square one
        # that holds it (a bundled file's windows include the halo, e.g. lr82 for 64 + 2 x 9)
        m = n if n in squares else next((k for k in squares if k >= n), None)
        if m is None:
            continue
        sig = f"lr{m}"
        if m != n:
            log.info("%s: timing the %dx%d patch in the %s window", path.name, n, n, sig)
        runner = it.get_signature_runner(sig)
        in_name = sigs[sig]["inputs"][0]
        x = np.random.rand(1, m, m, 1).astype(np.float32)  # NHWC, as the converters write it
        out[label] = median_ms(lambda x=x, r=runner, k=in_name: r(**{k: x}), reps)
    return out


def tflite_direct(module: Any, path: Path, sizes: list[int]) -> Path:
    """Fixed-size TFLite with signatures lr{N}, NHWC like the converters write.

    sr-convert refuses tiles smaller than twice the teacher's halo (2 x 39 LR px, they would
    keep no pixels when tiling); for a timing of the paper's 64x64 patch we convert directly.
    """
    import litert_torch
    import torch

    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0]).eval()
    conv = None
    for n in sizes:
        x = (torch.rand(1, n, n, 1),)
        conv = litert_torch.signature(f"lr{n}", wrapped, x) if conv is None else conv.signature(f"lr{n}", wrapped, x)
    conv.convert().export(str(path))
    return path


def measure(reps: int, threads: int, degradations: Sequence[str] | None = None, max_planes: int = 6) -> dict[str, Any]:
    """Timings of the student and the teacher on every backend, and the student's int8/fp32 quality
    on its card's held-out images under each of ``degradations`` (default: every
    ``scopesr.sdk.quality.EVAL_DEGRADATIONS`` row; ``max_planes`` planes per held-out stack)."""
    import scopesr.sdk as sdk
    from scopesr.converters.api import convert
    from scopesr.sdk import quality as Q
    from scopesr.trainer.checkpoint import load_generator
    from scopesr.trainer.models import count_params, create_model
    from scopesr.trainer.receptive_field import macs_per_lr_pixel, receptive_field_radius

    from .evaluation import card_images
    from .release import int8_vs_fp32

    student, scard = load_generator(sdk.default_model_path("safetensors"))
    images, images_note = card_images(scard, max_planes)  # first: a card without them fails before the timing
    teacher = create_model("paper", in_channels=1, out_channels=1).eval()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log.info("exporting the teacher to ONNX and TFLite (lr64, lr128) for timing")
        t_onnx = convert(teacher, "onnx", out=Path(tmp) / "teacher.onnx", verify=False).artifact
        t_tfl = tflite_direct(teacher, Path(tmp) / "teacher-fp32.tflite", list(SIZES.values()))
        models = {
            f"student ({scard.architecture}, trained)": (
                student,
                sdk.default_model_path("onnx"),
                sdk.default_model_path("tflite"),
            ),
            "teacher (paper, random init)": (teacher, t_onnx, t_tfl),
        }
        for name, (module, onnx_path, tfl_path) in models.items():
            log.info("timing %s", name)
            n = reps if "student" in name else max(2, reps // 3)
            rows[name] = {
                "params": count_params(module),
                "macs_per_lr_pixel": int(macs_per_lr_pixel(module, in_channels=1)),
                "halo_lr_px": receptive_field_radius(module),
                "ms": {
                    "torch-cpu": torch_times(module, n, threads),
                    "onnxruntime": onnx_times(onnx_path, n, threads),
                    "tflite-fp32": tflite_times(tfl_path, n, threads),
                },
            }
        rows[f"student ({scard.architecture}, trained)"]["ms"]["tflite-int8"] = tflite_times(
            sdk.default_model_path("tflite-int8"), reps, threads
        )

    degs = list(degradations) if degradations else list(Q.EVAL_DEGRADATIONS)
    log.info("int8 vs fp32 quality: %s; %d images x %d degradations", images_note, len(images), len(degs))
    quality: dict[str, dict[str, Any]] = {}
    evals = {}
    for fmt in ("tflite", "tflite-int8"):
        up = sdk.load(sdk.default_model_path(fmt), num_threads=threads)
        ev = Q.evaluate(lambda lr, up=up: up.upscale(lr), images, degs, scale=scard.scale)
        evals[fmt] = ev
        quality[fmt] = {
            d: {
                "psnr": e["mean"]["psnr_model"],
                "ssim": e["mean"]["ssim_model"],
                "psnr_bicubic": e["mean"]["psnr_bicubic"],
                "ssim_bicubic": e["mean"]["ssim_bicubic"],
                "gain_db_vs_bicubic": e["gain_db_vs_bicubic"],
                "worst_gain_db": e["worst_gain_db"],
                "worst_image": e["worst_image"],
                "per_source_psnr": {k: v["psnr_model"] for k, v in e["per_source"].items()},
            }
            for d, e in ev["summary"].items()
        }
    i8 = int8_vs_fp32(evals["tflite"], evals["tflite-int8"])
    s_name, t_name = list(rows)
    ratio = rows[s_name]["macs_per_lr_pixel"] / rows[t_name]["macs_per_lr_pixel"]
    return {
        "threads": threads,
        "reps": reps,
        "models": rows,
        "student_macs_ratio": ratio,
        "tflite_quality": quality,
        "images": images_note,
        "degradations_arg": bool(degradations),
        "degradations": evals["tflite"]["degradations"],
        "convention": evals["tflite"]["convention"],
        "int8_vs_fp32": {"mean_db": i8["mean_db"], "worst": i8["worst"]},
    }


def markdown(res: dict[str, Any]) -> str:
    rows, quality, ratio = res["models"], res["tflite_quality"], res["student_macs_ratio"]
    s_name = list(rows)[0]
    md = [
        f"# Student vs teacher ({res['threads']} threads, median ms)",
        "",
        "The machine's cores were shared with other jobs during this run: compare rows, not absolutes.",
        f"Command: `python benchmarks/bench_student.py --reps {res['reps']} --threads {res['threads']}"
        + (f" --degradations {','.join(res['degradations'])}`" if res.get("degradations_arg") else "`"),
        "",
        "| model | params | MAC / LR px | halo | backend | 64x64 patch | 512x512 output |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        for be, t in r["ms"].items():
            cells = [f"{t[k]:.2f}" if k in t else "n/a" for k in SIZES]
            md.append(
                f"| {name} | {r['params']:,} | {r['macs_per_lr_pixel']:,} | {r['halo_lr_px']} | {be} | "
                + " | ".join(cells)
                + " |"
            )
    md += [
        "",
        f"Student MACs = {100 * ratio:.2f} % of the teacher's. torch and ONNX Runtime run each size as "
        "it is; a TFLite file runs it in the smallest of its fixed windows that holds it (the bundled "
        "student's windows include its halo: a 64x64 patch runs in lr82, as the SDK runs it).",
        "",
        "## Student TFLite: int8 vs fp32 on the held-out real images, per degradation (scopesr.sdk, seam-free tiles)",
        "",
        f"Images: {res['images']}.",
        "",
        "| LR made by | artifact | PSNR | SSIM | bicubic PSNR | bicubic SSIM | gain vs bicubic (dB) "
        "| worst image (dB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for deg in res["degradations"]:
        for fmt, per_deg in quality.items():
            q = per_deg[deg]
            md.append(
                f"| {deg} | {fmt} | {q['psnr']:.3f} | {q['ssim']:.4f} | {q['psnr_bicubic']:.3f} | "
                f"{q['ssim_bicubic']:.4f} | {q['gain_db_vs_bicubic']:+.3f} | {q['worst_gain_db']:+.3f} |"
            )
    s_ms = rows[s_name]["ms"]
    first, second = list(SIZES)
    w = res["int8_vs_fp32"]["worst"]
    md += [
        "",
        f"int8 speed-up over fp32 (TFLite): 64x64 "
        f"{s_ms['tflite-fp32'][first] / s_ms['tflite-int8'][first]:.2f}x, 512x512 "
        f"{s_ms['tflite-fp32'][second] / s_ms['tflite-int8'][second]:.2f}x; "
        f"PSNR change int8 - fp32: mean {res['int8_vs_fp32']['mean_db']:+.3f} dB, worst "
        f"{w['delta_db']:+.3f} dB ({w['image']}, {w['degradation']}).",
        "",
        "Degradations: " + "; ".join(f"`{k}`: {v}" for k, v in res["degradations"].items()) + ".",
        "",
        f"Convention: {res['convention']}",
    ]
    return "\n".join(md) + "\n"
