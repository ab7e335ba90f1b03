"""The training loop behind ``sr-train pretrain | gan | distill``.

One loop, three modes:

* ``pretrain``: pixel loss (``--content-loss mse|l1``; vgg allowed) warm-up of a generator.
* ``gan``: the paper's schedule: generator loss = content (VGG19 relu5_4 / 12.75 by default)
  + 1e-3 adversarial + 1e-2 L1 (the paper's code); discriminator with one-sided label
  smoothing (real U[0.8, 1.2] as in the text, fake U[0, 0.2]); Adam(0.9, 0.99), lr 1e-4
  dropping to 1e-5 at half the steps. All of it configurable.
* ``distill``: loss = w_t * L1(student, frozen teacher) + w_gt * L1(student, ground truth);
  ``teacher="none"`` trains on ground truth alone. The teacher runs in bf16 on CUDA.

GPU path: ``precision`` bf16 autocast (CUDA by default; ``--precision bf16`` on a CPU too;
weights and optimiser state stay fp32, so no loss scaling is needed), ``channels_last``
(NHWC; CUDA by default), ``--compile`` (torch.compile, inductor or a named backend), pinned
loader memory. Training throughput (images/s and HR Mpx/s, data loading included, validation
and checkpoints excluded, the first steps of a session skipped as warm-up) is logged in each
train record and written to ``throughput.json`` and the card's ``training.throughput``.

Run folder: ``config.json`` (the resolved config), ``metrics.jsonl`` (one JSON object per
logged step and per validation), ``throughput.json``, ``samples/step_XXXXXXXX.png`` (LR-nearest | bicubic | SR |
HR), ``checkpoints/step_XXXXXXXX.pt`` (atomic, last K kept), TensorBoard events when
``tensorboard`` is installed, and ``final/generator.safetensors`` + ``generator.card.json``.

Exactness of ``--resume``: models, optimisers, schedulers, every RNG and the step are
restored, and the batch of step k is a function of (seed, k) only (see data.py), so a
resumed run ends with the same weights as an uninterrupted one (CPU, same world size).
DDP: started by ``torchrun`` (WORLD_SIZE/RANK set), NCCL on CUDA, gloo on CPU; each rank
reads its own DistributedSampler shard.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from scopesr.sdk import ModelCard, atomic_write_text
from scopesr.sdk.card import stage_zoom_p

from . import data as data_mod
from .checkpoint import (
    latest_checkpoint,
    load_generator,
    load_latest_training_state,
    remove_stale_temporaries,
    rng_state,
    save_generator,
    save_training_state,
    set_rng_state,
)
from .errors import PresetError, TrainError
from .losses import bce_clipped, content_loss, generator_adversarial_loss, pixel_loss, smoothed_labels
from .metrics import CONVENTION, psnr, sample_grid, save_png, ssim, upscale_pil
from .models import Discriminator, DiscriminatorConfig, create_model, model_config, presets
from .quant_aware import QuantAware
from .student import Student, conditioned_state, deepened_state, reparam_state, widened_state

log = logging.getLogger(__name__)

MODES = ("pretrain", "gan", "distill")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything a run needs; saved resolved as RUN/config.json (also readable by --config)."""

    mode: str = "gan"
    preset: str = "paper"
    model_args: dict[str, Any] = field(default_factory=dict)  # preset overrides (n_blocks=..., ...)
    out: str = "runs/run"
    data: data_mod.DataConfig = field(default_factory=data_mod.DataConfig)
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    lr_schedule: str = "step"  # step (the paper's one drop) | cosine (decay to lr_min)
    lr_drop_at: float = 0.5  # <= 1: fraction of the steps; > 1: a step number
    lr_drop_factor: float = 0.1
    lr_min: float = 0.0  # cosine: the last learning rate
    beta1: float = 0.9
    beta2: float = 0.99  # the paper's text (its code: 0.999)
    content_loss: str = ""  # "" = mode default: vgg for gan, mse for pretrain; vgg | mse | l1
    mse_weight: float = 0.0  # content loss l1: plus this times the MSE (0: L1 alone)
    # > 0: every L1 of the run (pretrain's content loss, distill's two terms) becomes the mean over
    # crops of log(eps + the crop's L1), so each crop counts by its relative error (losses.LogL1PerCrop)
    crop_log_eps: float = 0.0
    # LR pixels at each side of a training crop left out of the pixel losses (pretrain, distill):
    # there the network reads its own zero padding, where in use it reads real neighbours
    loss_margin: int = 0
    adv_weight: float = 1e-3
    l1_weight: float = 1e-2  # the paper's code adds 1e-2 L1 to the generator loss
    real_label_range: tuple[float, float] = (0.8, 1.2)
    fake_label_range: tuple[float, float] = (0.0, 0.2)
    disc_head: str = "gap"  # gap (paper) | dense (SRGAN, needs fixed size)
    disc_channels: int = 64
    vgg_weights: str | None = None
    vgg_random_init: bool = False  # tests only: an untrained VGG19 (not a perceptual loss)
    init_from: str | None = None  # generator .safetensors to start from (e.g. pretrain -> gan)
    recipe: str | None = None  # the --config file the run was given (recorded in the card; set by sr-train)
    quant_aware: bool = False  # students: train through the int8 file's rounding (trainer/quant_aware.py)
    teacher: str | None = None  # distill: teacher .safetensors, or "none"
    teacher_weight: float = 1.0
    gt_weight: float = 1.0
    # distill: the teacher's output averaged over this many flipped/transposed copies of the LR
    # batch (1, 2, 4, 8; the SDK's self-ensemble), a better target than one pass of the same net
    teacher_ensemble: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # with precision "auto": bf16 autocast on CUDA (--no-amp: fp32)
    precision: str = "auto"  # auto | fp32 | bf16 (bf16: autocast on any device, CPU included)
    channels_last: bool | None = None  # NHWC; None: on CUDA only
    compile: bool | str = False  # torch.compile; a string names its backend (default inductor)
    throughput_warmup: int = 5  # steps of each session not timed for throughput (compile, cuDNN autotune)
    workers: int = 2
    threads: int = 0  # torch intra-op threads; 0 = torch's default. Resume with the same number:
    #                   float sums in another order give other (equally good) weights
    seed: int = 0
    ckpt_every: int = 500
    keep: int = 3
    val_every: int = 500
    val_size: int = 0  # HR size of the validation centre crops; 0 = hr_size
    log_every: int = 10
    progress: bool = True
    time_limit_min: float = 0.0  # stop (and save) after this many minutes; 0 = no limit
    stop_at: int = 0  # stop after this step without finishing (simulates an interruption; tests)
    resume: bool = False  # continue from the latest checkpoint in OUT/checkpoints
    # held-out evaluation per source and per degradation (scopesr.sdk.quality), whole images
    # through the SDK's normalisation; sources must not be training data
    eval_sources: list[str] = field(default_factory=list)
    eval_degradations: list[str] = field(default_factory=list)  # default: every EVAL_DEGRADATIONS row
    eval_every: int = 0  # steps; 0 = only at the end (when eval_sources are given)
    eval_max_planes: int = 6

    def resolved_content_loss(self) -> str:
        return self.content_loss or ("vgg" if self.mode == "gan" else "l1" if self.mode == "distill" else "mse")

    def drop_step(self) -> int:
        return int(round(self.lr_drop_at * self.steps)) if self.lr_drop_at <= 1 else int(self.lr_drop_at)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise TrainError(f"mode {self.mode!r}: one of {MODES}")
        if self.preset not in presets():
            raise TrainError(f"--preset {self.preset!r}: unknown; see `sr-train presets`")
        if self.steps < 1 or self.batch_size < 1:
            raise TrainError("--steps and --batch-size must be >= 1")
        if self.resolved_content_loss() not in ("vgg", "mse", "l1"):
            raise TrainError(f"--content-loss {self.content_loss!r}: vgg, mse or l1")
        if self.mse_weight and (self.resolved_content_loss() != "l1" or self.mode == "distill"):
            raise TrainError(
                f"--mse-weight {self.mse_weight!r} adds MSE to an L1 content loss: use it with "
                "--content-loss l1 in pretrain or gan mode (distill's losses are L1 by design)"
            )
        if not isinstance(self.loss_margin, int) or self.loss_margin < 0:
            raise TrainError(f"--loss-margin {self.loss_margin!r}: must be an integer >= 0 (LR pixels)")
        if self.loss_margin and self.mode == "gan":
            raise TrainError("--loss-margin applies to pretrain and distill; gan mode scores whole crops")
        if self.crop_log_eps and (self.resolved_content_loss() != "l1" or self.mse_weight):
            raise TrainError(
                f"--crop-log-eps {self.crop_log_eps!r} turns an L1 loss into a per-crop log L1: use it "
                "with --content-loss l1 (or distill) and without --mse-weight"
            )
        if self.precision not in PRECISIONS:
            hint = " (fp16 would need loss scaling; bf16 does not)" if self.precision == "fp16" else ""
            raise TrainError(f"--precision {self.precision!r}: one of {PRECISIONS}{hint}")
        if self.lr_schedule not in ("step", "cosine"):
            raise TrainError(f"lr_schedule {self.lr_schedule!r}: step or cosine")
        self._validate_numbers()
        self._validate_device()
        self._validate_out()
        overlap = sorted(set(self.eval_sources) & set(self.data.data))
        if overlap:
            raise TrainError(
                f"eval_sources {overlap} are also training data: a held-out score needs sources the model never saw"
            )
        from scopesr.sdk.quality import EVAL_DEGRADATIONS  # noqa: PLC0415

        bad = sorted(set(self.eval_degradations) - set(EVAL_DEGRADATIONS))
        if bad:
            raise TrainError(f"eval_degradations {bad}: known {sorted(EVAL_DEGRADATIONS)}")
        if self.mode == "distill" and not self.teacher:
            raise TrainError(
                "sr-train distill needs --teacher CKPT.safetensors (or --teacher none to train on ground truth alone)"
            )
        if isinstance(self.teacher_ensemble, bool) or self.teacher_ensemble not in (1, 2, 4, 8):
            raise TrainError(f"--teacher-ensemble {self.teacher_ensemble!r}: one of 1, 2, 4, 8 (copies averaged)")
        self.data.validate()

    def _validate_numbers(self) -> None:
        """Learning rates, betas, weights and the validation share: finite and in range."""

        def number(opt: str, value: Any) -> float:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise TrainError(f"{opt} {value!r}: not a number") from None
            if not math.isfinite(v):
                raise TrainError(f"{opt} {value!r}: must be a finite number")
            return v

        if number("--lr", self.lr) <= 0:
            raise TrainError(f"--lr {self.lr!r}: must be > 0 (e.g. 1e-4)")
        if number("--lr-min", self.lr_min) < 0:
            raise TrainError(f"--lr-min {self.lr_min!r}: must be >= 0")
        if number("--lr-drop-factor", self.lr_drop_factor) <= 0:
            raise TrainError(f"--lr-drop-factor {self.lr_drop_factor!r}: must be > 0 (e.g. 0.1)")
        if number("--lr-drop-at", self.lr_drop_at) < 0:
            raise TrainError(f"--lr-drop-at {self.lr_drop_at!r}: must be >= 0")
        for opt, v in (("--beta1", self.beta1), ("--beta2", self.beta2)):
            if not 0 <= number(opt, v) < 1:
                raise TrainError(f"{opt} {v!r}: must be in [0, 1) (Adam's betas)")
        for opt, v in (
            ("--adv-weight", self.adv_weight),
            ("--l1-weight", self.l1_weight),
            ("--mse-weight", self.mse_weight),
            ("--crop-log-eps", self.crop_log_eps),
            ("--teacher-weight", self.teacher_weight),
            ("--gt-weight", self.gt_weight),
            ("--time-limit-min", self.time_limit_min),
        ):
            if number(opt, v) < 0:
                raise TrainError(f"{opt} {v!r}: must be >= 0")
        for opt, n in (
            ("--ckpt-every", self.ckpt_every),
            ("--val-every", self.val_every),
            ("--log-every", self.log_every),
            ("--eval-every", self.eval_every),
        ):
            if not isinstance(n, int) or n < 0:
                raise TrainError(f"{opt} {n!r}: a whole number of steps >= 0 (0: only at the end)")
        vf = self.data.val_fraction
        if not 0 <= number("--val-fraction", vf) < 1:
            raise TrainError(f"--val-fraction {vf!r}: the share of items held out, in [0, 1) (default 0.1)")

    def _validate_device(self) -> None:
        spec = str(self.device)
        if spec == "auto" or re.fullmatch(r"cpu|cuda(:\d+)?", spec):
            return
        try:
            torch.device(spec)
        except (RuntimeError, ValueError):
            raise TrainError(f"--device {spec!r}: not a device; use auto, cpu, cuda or cuda:N") from None

    def _validate_out(self) -> None:
        """OUT must be a folder, or a name that can be made one, in a writable place."""
        run = Path(self.out)
        if run.exists() and not run.is_dir():
            raise TrainError(f"--out {run}: is a file, not a folder; choose a run folder (e.g. runs/NAME)")
        if run.is_dir():
            if not os.access(run, os.W_OK | os.X_OK):
                raise TrainError(f"--out {run}: folder not writable; choose a folder you can write to")
            return
        parent = run.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise TrainError(f"--out {run}: {parent} is a file, not a folder; choose another run folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise TrainError(f"--out {run}: cannot create it ({parent} is not writable); choose a writable place")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["real_label_range"] = list(self.real_label_range)
        d["fake_label_range"] = list(self.fake_label_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise TrainError(f"{source}: unknown option(s) {bad}; known: {sorted(known)}")
        data = d.pop("data", {}) or {}
        dknown = {f.name for f in dataclasses.fields(data_mod.DataConfig)}
        dbad = sorted(set(data) - dknown)
        if dbad:
            raise TrainError(f"{source}: unknown [data] option(s) {dbad}; known: {sorted(dknown)}")
        if isinstance(data.get("data"), str):
            data["data"] = [data["data"]]
        for k in ("real_label_range", "fake_label_range"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(data=data_mod.DataConfig(**data), **d)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML (or JSON) config file -> dict (top-level options, [data] and [model_args] tables)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise TrainError(f"--config {p}: cannot read ({exc.strerror})") from None
    try:
        if p.suffix.lower() == ".json":
            return json.loads(raw)
        try:
            import tomllib  # noqa: PLC0415
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]  # noqa: PLC0415
        return tomllib.loads(raw.decode("utf-8"))
    except Exception as exc:
        raise TrainError(f"--config {p}: not valid TOML/JSON ({exc})") from None


# ---------------------------------------------------------------------------- helpers
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(rank, world, local)


def pick_device(spec: str, dinfo: DistInfo) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
        if spec == "cuda":
            return torch.device("cuda", dinfo.local_rank)
    return torch.device(spec)


def _unwrap(m: nn.Module) -> nn.Module:
    m = getattr(m, "module", m)
    return getattr(m, "_orig_mod", m)


def resolve_fast_path(cfg: TrainConfig, on_cuda: bool) -> tuple[str, bool]:
    """(autocast dtype name "bf16" | "fp32", channels_last) for this run on this device."""
    if cfg.precision == "auto":
        precision = "bf16" if (on_cuda and cfg.amp) else "fp32"
    else:
        precision = cfg.precision
    channels_last = on_cuda if cfg.channels_last is None else bool(cfg.channels_last)
    return precision, channels_last


class Throughput:
    """Training throughput: time spent in training steps (data loading included; validation
    and checkpoints excluded), after ``warmup`` steps of this session."""

    def __init__(self, images_per_step: int, hr_pixels: int, warmup: int) -> None:
        self.images_per_step = images_per_step
        self.hr_pixels = hr_pixels
        self.warmup = warmup
        self.seen = 0
        self.steps = 0
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        self.seen += 1
        if self.seen > self.warmup:
            self.steps += 1
            self.seconds += seconds

    def rates(self, steps: int, seconds: float) -> dict[str, float]:
        img_s = steps * self.images_per_step / max(seconds, 1e-9)
        return {"img_s": round(img_s, 3), "hr_mpx_s": round(img_s * self.hr_pixels / 1e6, 4)}

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "steps_timed": self.steps,
            "warmup_steps": min(self.seen, self.warmup),
            "seconds": round(self.seconds, 6),
            "images_per_step": self.images_per_step,
            "hr_pixels_per_image": self.hr_pixels,
        }
        if self.steps:
            r = self.rates(self.steps, self.seconds)
            d.update(
                images_per_s=r["img_s"],
                hr_mpx_per_s=r["hr_mpx_s"],
                steps_per_s=round(self.steps / max(self.seconds, 1e-9), 3),
            )
        return d


class MetricsLog:
    """JSON lines (+ TensorBoard when installed), rank 0 only."""

    def __init__(self, run: Path, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if self.path.exists() and start_step == 0:
            self.path.unlink()
        if self.path.exists():  # a resumed run: forget what the interrupted run logged after its checkpoint
            keep = [
                ln
                for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= start_step
            ]
            atomic_write_text(self.path, "".join(k + "\n" for k in keep))
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

            self.tb = SummaryWriter(str(run / "tb"), purge_step=start_step + 1 if start_step else None)
        except Exception:  # tensorboard not installed: JSON lines only
            self.tb = None

    def write(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{rec.get('kind', 'train')}/{k}", v, rec["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def validate(
    g: nn.Module,
    val: list[tuple[torch.Tensor, torch.Tensor]],
    scale: int,
    device: torch.device,
    autocast: Any,
    batch: int = 4,
    border: int | None = None,
) -> tuple[dict[str, float], tuple]:
    """PSNR/SSIM of the model and of bicubic/nearest on the fixed validation crops."""
    border = scale if border is None else border
    was = g.training
    g.eval()
    p_sr, s_sr, p_bi, s_bi, p_nn = [], [], [], [], []
    first = None
    for i in range(0, len(val), batch):
        lr = torch.stack([v[0] for v in val[i : i + batch]])
        hr = torch.stack([v[1] for v in val[i : i + batch]])
        with autocast():
            sr = g(lr.to(device)).float().clamp(0, 1).cpu()
        lr = lr[:, : hr.shape[1]]  # the image channels (a noise-aware model's LR also holds its noise map)
        bic = upscale_pil(lr, scale, "bicubic").clamp(0, 1)
        near = upscale_pil(lr, scale, "nearest")
        p_sr += psnr(sr, hr, border).tolist()
        s_sr += ssim(sr, hr, border).tolist()
        p_bi += psnr(bic, hr, border).tolist()
        s_bi += ssim(bic, hr, border).tolist()
        p_nn += psnr(near, hr, border).tolist()
        if first is None:
            first = (lr, sr, hr)
    g.train(was)
    mean = lambda v: float(sum(v) / len(v))  # noqa: E731
    return (
        {
            "psnr": mean(p_sr),
            "ssim": mean(s_sr),
            "bicubic_psnr": mean(p_bi),
            "bicubic_ssim": mean(s_bi),
            "nearest_psnr": mean(p_nn),
            "psnr_gain_vs_bicubic": mean(p_sr) - mean(p_bi),
        },
        first,
    )


def ensemble_forward(model: torch.nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """``model`` averaged over the first ``n`` of the 8 flips/transposes of the NCHW batch ``x``
    (left-right, top-bottom, 180 degrees, then the four transposed), each result turned back: the
    order and the maths of ``scopesr.sdk.ensemble``, in torch."""
    total: torch.Tensor | None = None
    for t in range(n):
        xt = x.transpose(2, 3) if t & 4 else x
        xt = xt.flip(3) if t & 1 else xt
        xt = xt.flip(2) if t & 2 else xt
        y = model(xt)
        y = y.flip(2) if t & 2 else y
        y = y.flip(3) if t & 1 else y
        y = y.transpose(2, 3) if t & 4 else y
        total = y if total is None else total + y
    assert total is not None
    return total / n


def lr_factor(cfg: TrainConfig):
    """step -> learning-rate multiplier: the paper's single drop, or cosine decay to lr_min."""
    if cfg.lr_schedule == "cosine":
        floor = cfg.lr_min / cfg.lr if cfg.lr > 0 else 0.0

        def cosine(step: int) -> float:
            t = min(step / max(cfg.steps, 1), 1.0)
            return floor + 0.5 * (1.0 - floor) * (1.0 + math.cos(math.pi * t))

        return cosine
    drop = cfg.drop_step()
    return lambda step: 1.0 if step < drop else cfg.lr_drop_factor


def _inner(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``x`` less ``margin`` pixels at each side (all of it for 0)."""
    if margin <= 0:
        return x
    return x[..., margin : x.shape[-2] - margin, margin : x.shape[-1] - margin]


def torch_upscaler(g: nn.Module, device: torch.device, norm: Any) -> Any:
    """Whole-image inference with the SDK's normalisation: raw LR (its dtype) -> raw HR (same dtype)."""
    from scopesr.sdk.noise import noise_map_values  # noqa: PLC0415
    from scopesr.sdk.normalize import compute_stats  # noqa: PLC0415

    arch = getattr(g, "config", None)
    cond = int(getattr(arch, "cond_channels", 0) or 0)
    # a space-to-depth student takes sides that are multiples of its factor: mirror-pad, then crop
    mult = int(getattr(arch, "unshuffle", 1) or 1)

    def upscale(lr: Any) -> Any:
        import numpy as np  # noqa: PLC0415

        plane = lr[..., None]
        stats = compute_stats(plane, norm)
        xn = np.ascontiguousarray(stats.normalise(plane)[..., 0], dtype=np.float32)
        chans = [xn]
        if cond:  # a noise-aware model: the plane's noise features as constant extra channels
            chans += [np.full_like(xn, v) for v in noise_map_values(xn, cond)]
        h, w = xn.shape
        ph, pw = -h % mult, -w % mult
        if ph or pw:
            chans = [np.pad(c, ((0, ph), (0, pw)), mode="symmetric") for c in chans]
        x = torch.from_numpy(np.stack(chans))[None].to(device)
        with torch.inference_mode():
            y = g(x).float().cpu().numpy()[0, 0]
        y = y[: y.shape[0] * h // (h + ph), : y.shape[1] * w // (w + pw)]
        return stats.denormalise(y[..., None], lr.dtype)[..., 0]

    return upscale


@torch.no_grad()
def heldout_eval(
    g: nn.Module, images: list[Any], cfg: TrainConfig, device: torch.device, scale: int, with_ssim: bool = False
) -> dict[str, Any]:
    """Per-degradation, per-source scores of the model vs bicubic and nearest on held-out images."""
    from scopesr.sdk import quality  # noqa: PLC0415

    was = g.training
    g.eval()
    try:
        res = quality.evaluate(
            torch_upscaler(g, device, cfg.data.normalisation()),
            images,
            cfg.eval_degradations or None,
            scale=scale,
            seed=cfg.seed,
            with_ssim=with_ssim,
        )
    finally:
        g.train(was)
    return res


def heldout_record(res: dict[str, Any]) -> dict[str, Any]:
    """The compact log line of a held-out evaluation: gain over bicubic per degradation."""
    return {f"gain_{k}": round(v["gain_db_vs_bicubic"], 4) for k, v in res["summary"].items()} | {
        f"worst_{k}": round(v["worst_gain_db"], 4) for k, v in res["summary"].items()
    }


# ---------------------------------------------------------------------------- the run


def _due(step: int, every: int) -> bool:
    """Whether a periodic action (log, validation, checkpoint) falls on ``step``; every=0: never
    (the end of the run still does it)."""
    return every > 0 and step % every == 0


def _lineage_record(path: str, card: ModelCard) -> dict[str, Any]:
    """What a run continues, stage by stage: the init file's own training (steps, learning rate,
    depth, quantisation-aware or not) and, nested, whatever that run itself started from, so a
    card names every stage that made its weights (e.g. long run -> deepened -> int8-safe fine-tune)."""
    t = card.training
    zoom_p = stage_zoom_p(t)
    return {
        "file": Path(path).name,
        "sha256": card.sha256,  # checked against the file by load_generator
        "mode": t.get("mode"),
        "steps": t.get("steps"),
        "lr": t.get("lr"),
        "lr_min": t.get("lr_min"),
        "depth": card.arch_args.get("depth"),
        "channels": card.arch_args.get("channels"),  # a later stage may have grown it wider
        "quant_aware": bool(t.get("quant_aware")),
        **{k: t[k] for k in ("teacher", "teacher_sha256", "teacher_ensemble", "recipe") if t.get(k) is not None},
        **({"zoom_p": zoom_p} if zoom_p is not None else {}),  # a later stage may change it
        "init_from": t.get("init_from"),
    }


def _init_state(init: nn.Module, g: nn.Module) -> dict[str, torch.Tensor]:
    """The --init-from weights for ``g``: as saved, or, for a student that is larger than the
    file's, grown so that it starts as the file's function: wider (new features nobody reads
    yet), deeper (new layers as the identity), a head that reads more inputs (zero weight on
    them), or RepConv branches around the plain kernels."""
    if isinstance(init, Student) and isinstance(g, Student) and init.cfg.channels < g.cfg.channels:
        # wider (and maybe deeper): widen at the file's depth, then deepen that with identity layers
        mid = Student(dataclasses.replace(g.cfg, depth=init.cfg.depth)) if init.cfg.depth < g.cfg.depth else g
        try:
            mid.load_state_dict(widened_state(init, mid))
            state = deepened_state(mid, g) if mid is not g else mid.state_dict()
        except PresetError as exc:
            raise TrainError(f"--init-from: {exc}") from None
        log.info(
            "--init-from: %d -> %d channels, %d -> %d hidden layers; the model starts as the file's function",
            init.cfg.channels,
            g.cfg.channels,
            init.cfg.depth,
            g.cfg.depth,
        )
        return state
    if isinstance(init, Student) and isinstance(g, Student) and init.cfg.depth < g.cfg.depth:
        try:
            state = deepened_state(init, g)
        except PresetError as exc:
            raise TrainError(f"--init-from: {exc}") from None
        log.info("--init-from: %d -> %d hidden layers, the new ones start as the identity", init.cfg.depth, g.cfg.depth)
        return state
    grows_head = isinstance(init, Student) and isinstance(g, Student) and init.cfg.head_inputs < g.cfg.head_inputs
    if grows_head:
        try:
            state = conditioned_state(init, g)
        except PresetError as exc:
            raise TrainError(f"--init-from: {exc}") from None
        log.info(
            "--init-from: the head reads %d -> %d input channels (noise map %d -> %d, square root %s -> %s); "
            "the new ones start with zero weight",
            init.cfg.head_inputs,
            g.cfg.head_inputs,
            init.cfg.cond_channels,
            g.cfg.cond_channels,
            init.cfg.sqrt_input,
            g.cfg.sqrt_input,
        )
        return state
    if isinstance(init, Student) and isinstance(g, Student) and g.cfg.reparam and not init.cfg.reparam:
        try:
            state = reparam_state(init, g)
        except PresetError as exc:
            raise TrainError(f"--init-from: {exc}") from None
        log.info("--init-from: each plain kernel goes into its RepConv k x k branch, the other branches start at zero")
        return state
    return init.state_dict()


def train(cfg: TrainConfig) -> Path | None:
    """Run (or resume) a training; returns RUN/final/generator.safetensors (rank 0) or None."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.out)
    if cfg.resume and latest_checkpoint(run / "checkpoints") is None:  # checked before any data or model work
        log.warning("--resume: no checkpoint in %s", run / "checkpoints")
        again = f" (its options are in {run / 'config.json'}: --config it)" if (run / "config.json").is_file() else ""
        raise TrainError(
            f"--resume: no checkpoint in {run / 'checkpoints'} to continue from; drop --resume to start a new "
            f"run in {run}{again}, or give the --out of the run to continue"
        )
    want = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
    dinfo = setup_distributed(want)
    device = pick_device(cfg.device, dinfo)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    on_cuda = device.type == "cuda"
    precision, channels_last = resolve_fast_path(cfg, on_cuda)

    # --- model and data channels
    pcfg = presets()[cfg.preset].config
    model_in = int(cfg.model_args.get("in_channels", getattr(pcfg, "in_channels", 3)))
    if cfg.data.channels == 0:  # auto: what the model was asked to take, else what the data is
        cfg.data.scale = int(cfg.model_args.get("scale", getattr(pcfg, "scale", 4)))
        cfg.data.channels = model_in if "in_channels" in cfg.model_args else data_mod.detect_channels(cfg.data)
    margs = dict(cfg.model_args)
    margs.setdefault("in_channels", cfg.data.channels)
    if cfg.data.noise_map:
        margs.setdefault("cond_channels", cfg.data.noise_map_channels)
    if hasattr(pcfg, "out_channels"):
        margs.setdefault("out_channels", cfg.data.channels)
    cfg.data.scale = int(margs.get("scale", getattr(pcfg, "scale", 4)))
    cfg.data.validate()

    torch.manual_seed(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's)
    g = create_model(cfg.preset, **margs)
    init_record = None
    if cfg.init_from:
        init, icard = load_generator(cfg.init_from)
        # what this run continues: a fine-tune's card must name the run it started from
        init_record = _lineage_record(cfg.init_from, icard)
        try:
            g.load_state_dict(_init_state(init, g))
        except RuntimeError as exc:
            raise TrainError(
                f"--init-from {cfg.init_from}: does not fit preset {cfg.preset!r} ({str(exc).splitlines()[0]})"
            ) from None
    qa = QuantAware(g) if cfg.quant_aware else None  # before DDP / compile wrap the module
    scale = int(getattr(model_config(g), "scale", 4))
    margin_hr = cfg.loss_margin * scale  # checked here, before the run folder or the data are touched
    if 2 * margin_hr >= cfg.data.hr_size:
        raise TrainError(
            f"--loss-margin {cfg.loss_margin} leaves nothing of a {cfg.data.hr_size}-pixel crop at x{scale}: "
            f"use a margin below {cfg.data.hr_size // (2 * scale)} or a larger --hr-size"
        )
    d = None
    if cfg.mode == "gan":
        d = Discriminator(
            DiscriminatorConfig(
                in_channels=cfg.data.channels,
                channels=cfg.disc_channels,
                head=cfg.disc_head,
                input_size=cfg.data.hr_size if cfg.disc_head == "dense" else None,
            )
        )
    teacher = None
    teacher_sha = None
    if cfg.mode == "distill" and str(cfg.teacher).lower() != "none":
        teacher, tcard = load_generator(cfg.teacher, device=device)
        teacher_sha = tcard.sha256
        if tcard.in_channels != cfg.data.channels or tcard.scale != scale:
            raise TrainError(
                f"--teacher {cfg.teacher}: {tcard.in_channels} channel(s) x{tcard.scale}, the student "
                f"is {cfg.data.channels} channel(s) x{scale}; train the teacher on the same kind of data"
            )
        teacher.requires_grad_(False)
        if on_cuda:
            teacher = teacher.to(torch.bfloat16)  # frozen: bf16 halves its cost
        if channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)

    # --- data
    items = data_mod.discover(cfg.data)
    train_items, val_items = data_mod.split(items, cfg.data)
    dataset = data_mod.TrainDataset(train_items, cfg.data)
    val = data_mod.validation_set(val_items, cfg.data, cfg.val_size or None) if dinfo.main else []
    dsum = data_mod.summary(cfg.data, train_items, val_items)

    # --- losses, optimisers, schedulers
    closs = content_loss(
        cfg.resolved_content_loss(), cfg.vgg_weights, cfg.vgg_random_init, cfg.mse_weight, cfg.crop_log_eps
    )
    closs = closs.to(device)
    # distill's two pixel terms; in gan mode the paper's small L1 term stays plain
    l1 = pixel_loss("l1", crop_log_eps=cfg.crop_log_eps if cfg.mode == "distill" else 0.0)
    g.to(device)
    if d is not None:
        d.to(device)
    if channels_last:
        g.to(memory_format=torch.channels_last)
        if d is not None:
            d.to(memory_format=torch.channels_last)
    betas = (cfg.beta1, cfg.beta2)
    drop = cfg.drop_step()
    lr_lambda = lr_factor(cfg)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=betas)
    sch_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_lambda)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=betas) if d is not None else None
    sch_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lr_lambda) if opt_d is not None else None
    label_gen = torch.Generator().manual_seed(cfg.seed * 1000 + dinfo.rank)

    # --- resume
    start_step = 0
    ckpt_dir = run / "checkpoints"
    if not cfg.resume and latest_checkpoint(ckpt_dir) is not None:
        raise TrainError(
            f"{run} already holds checkpoints of a run: add --resume to continue it, or choose a new --out"
        )
    if dinfo.main and remove_stale_temporaries(ckpt_dir):
        log.info("%s: removed half-written checkpoint(s) of an interrupted run", ckpt_dir)
    resume_from = None
    if cfg.resume:
        # the newest readable checkpoint: a truncated or corrupt latest one falls back to the one before
        resume_from, st = load_latest_training_state(ckpt_dir, set_aside=dinfo.main)
    if resume_from is not None:
        g.load_state_dict(st["g"])
        opt_g.load_state_dict(st["opt_g"])
        sch_g.load_state_dict(st["sch_g"])
        if d is not None:
            if "d" not in st:
                raise TrainError(f"{resume_from}: holds no discriminator; resume with the mode it was made in")
            d.load_state_dict(st["d"])
            opt_d.load_state_dict(st["opt_d"])  # type: ignore[union-attr]
            sch_d.load_state_dict(st["sch_d"])  # type: ignore[union-attr]
        if (qa is not None) != ("quant_aware" in st):  # the rounding on or off must not change mid-run
            made = "with" if "quant_aware" in st else "without"
            raise TrainError(f"{resume_from}: saved {made} --quant-aware; resume with the options it was made with")
        if qa is not None:
            qa.load_state_dict(st["quant_aware"])
        set_rng_state(st["rng"][min(dinfo.rank, len(st["rng"]) - 1)])
        label_gen.set_state(st["label_gen"][min(dinfo.rank, len(st["label_gen"]) - 1)])
        start_step = int(st["step"])
        log.info("resumed from %s (step %d)", resume_from, start_step)

    if dinfo.main:
        try:
            run.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise TrainError(f"--out {run}: cannot write the run folder ({exc}); choose a writable folder") from None

    # --- DDP / compile
    g_train: nn.Module = g
    d_train: nn.Module | None = d
    if dinfo.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

        ids = [device.index] if on_cuda else None
        g_train = DDP(g, device_ids=ids)
        if d is not None:
            d_train = DDP(d, device_ids=ids)
    if cfg.compile:
        g_train = torch.compile(g_train, backend=cfg.compile if isinstance(cfg.compile, str) else "inductor")

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else _null()

    log.info(
        "device %s%s: precision %s, channels_last %s, compile %s",
        device,
        f" ({torch.cuda.get_device_name(device)})" if on_cuda else "",
        precision,
        channels_last,
        cfg.compile or False,
    )
    tput = Throughput(cfg.batch_size * dinfo.world, cfg.data.hr_size**2, cfg.throughput_warmup)
    t_timed, s_timed = tput.seconds, tput.steps

    loader = data_mod.make_loader(
        dataset, cfg.batch_size, cfg.seed, start_step, dinfo.rank, dinfo.world, cfg.workers, pin_memory=on_cuda
    )
    batches = iter(loader)
    mlog = MetricsLog(run, start_step, dinfo.main)
    bar = None
    if dinfo.main and cfg.progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(
            total=cfg.steps,
            initial=start_step,
            desc=f"{cfg.mode} {cfg.preset}",
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )
    t0 = time.time()
    t_last, s_last = t0, start_step
    last_val: dict[str, float] = {}
    last_val_step = -1
    step = start_step
    losses: dict[str, float] = {}
    g_train.train()
    if d_train is not None:
        d_train.train()

    def checkpoint(step: int) -> None:
        states = {"rng": rng_state(), "label_gen": label_gen.get_state(), "digest": _digest(_unwrap(g))}
        if dinfo.world > 1:  # every rank's RNGs, gathered on rank 0
            gathered: list[Any] = [None] * dinfo.world
            dist.all_gather_object(gathered, states)
        else:
            gathered = [states]
        if dinfo.main:
            st: dict[str, Any] = {
                "g": _unwrap(g).state_dict(),
                "opt_g": opt_g.state_dict(),
                "sch_g": sch_g.state_dict(),
                "rng": [s["rng"] for s in gathered],
                "label_gen": [s["label_gen"] for s in gathered],
                "config": json.dumps(cfg.to_dict()),
                # sha256 of each rank's generator weights: DDP must keep them identical
                "rank_digests": [s["digest"] for s in gathered],
            }
            if len(set(st["rank_digests"])) > 1:
                log.error("step %d: generator weights differ between ranks %s", step, st["rank_digests"])
            if d is not None:
                st.update(d=d.state_dict(), opt_d=opt_d.state_dict(), sch_d=sch_d.state_dict())  # type: ignore[union-attr]
            if qa is not None:
                st["quant_aware"] = qa.state_dict()
            save_training_state(ckpt_dir, step, st, keep=cfg.keep)

    held_imgs = (
        data_mod.heldout_images(cfg.eval_sources, scale, cfg.eval_max_planes)
        if (dinfo.main and cfg.eval_sources)
        else []
    )
    last_held: dict[str, Any] = {}
    if dinfo.main and val and start_step == 0:  # the curve starts at the untrained model
        v0, first = validate(g, val, scale, device, autocast)
        mlog.write({"kind": "val", "step": 0, **v0})
        save_png(run / "samples" / f"step_{0:08d}.png", sample_grid(*first, scale=scale))

    stopped_early = False
    while step < cfg.steps:
        t_step = time.perf_counter()
        lr_t, hr_t = next(batches)
        lr_t = lr_t.to(device, non_blocking=True)
        hr_t = hr_t.to(device, non_blocking=True)
        if channels_last:
            lr_t = lr_t.contiguous(memory_format=torch.channels_last)
            hr_t = hr_t.contiguous(memory_format=torch.channels_last)
        with autocast():
            sr = g_train(lr_t)
        if cfg.mode == "gan":
            assert d_train is not None and opt_d is not None
            # discriminator: real and fake in separate passes (BN statistics per kind, as the
            # paper's Keras code trains them); gradients accumulate, one optimiser step
            opt_d.zero_grad(set_to_none=True)
            ctx = d_train.no_sync() if dinfo.world > 1 else _null()
            with ctx:
                with autocast():
                    d_real = d_train(hr_t)
                loss_dr = _half_d_loss(d_real, True, label_gen, cfg)
                loss_dr.backward()
            with autocast():
                d_fake = d_train(sr.detach())
            loss_df = _half_d_loss(d_fake, False, label_gen, cfg)
            loss_df.backward()
            opt_d.step()
            sch_d.step()  # type: ignore[union-attr]
            # generator: through the plain discriminator module (no DDP hooks needed there),
            # frozen so no gradient is computed for its weights
            d.requires_grad_(False)  # type: ignore[union-attr]
            with autocast():
                d_out = _unwrap(d_train)(sr)
            loss_c = closs(sr.float(), hr_t)
            loss_adv = generator_adversarial_loss(d_out)
            loss_l1 = l1(sr.float(), hr_t)
            loss_g = loss_c + cfg.adv_weight * loss_adv + cfg.l1_weight * loss_l1
            losses = {
                "loss_g": loss_g.item(),
                "loss_content": loss_c.item(),
                "loss_adv": loss_adv.item(),
                "loss_l1": loss_l1.item(),
                "loss_d": loss_dr.item() + loss_df.item(),
            }
        elif cfg.mode == "distill":
            sr, hr_t = _inner(sr, margin_hr), _inner(hr_t, margin_hr)
            loss_gt = l1(sr.float(), hr_t)
            loss_g = cfg.gt_weight * loss_gt
            losses = {"loss_gt": loss_gt.item()}
            if teacher is not None:
                with torch.no_grad():
                    t_in = lr_t.to(torch.bfloat16) if on_cuda else lr_t
                    t_out = _inner(ensemble_forward(teacher, t_in, cfg.teacher_ensemble).float(), margin_hr)
                loss_t = l1(sr.float(), t_out)
                loss_g = loss_g + cfg.teacher_weight * loss_t
                losses["loss_teacher"] = loss_t.item()
            losses["loss_g"] = loss_g.item()
        else:
            loss_g = closs(_inner(sr, margin_hr).float(), _inner(hr_t, margin_hr))
            losses = {"loss_g": loss_g.item()}
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        sch_g.step()
        if d is not None:
            d.requires_grad_(True)
        step += 1
        tput.add(time.perf_counter() - t_step)  # the .item() calls above waited for the GPU
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrainError(f"step {step}: loss is not finite ({losses}); lower --lr or check the data")

        if bar is not None:
            bar.update(1)
            bar.set_postfix({k.replace("loss_", ""): f"{v:.4g}" for k, v in losses.items()}, refresh=False)
        if _due(step, cfg.log_every) or step == cfg.steps:
            now = time.time()
            rec = {
                "kind": "train",
                "step": step,
                "time": round(now - t0, 3),
                "it_s": round((step - s_last) / max(now - t_last, 1e-9), 3),
                "lr": sch_g.get_last_lr()[0],
                **losses,
            }
            if tput.steps > s_timed:  # images/s and HR Mpx/s over the timed steps since the last record
                rec.update(tput.rates(tput.steps - s_timed, tput.seconds - t_timed))
            t_timed, s_timed = tput.seconds, tput.steps
            t_last, s_last = now, step
            mlog.write(rec)
        if dinfo.main and val and (_due(step, cfg.val_every) or step == cfg.steps):
            last_val, first = validate(g, val, scale, device, autocast)
            last_val_step = step
            mlog.write({"kind": "val", "step": step, **last_val})
            save_png(run / "samples" / f"step_{step:08d}.png", sample_grid(*first, scale=scale))
            log.info(
                "step %d: val PSNR %.3f dB (bicubic %.3f), SSIM %.4f",
                step,
                last_val["psnr"],
                last_val["bicubic_psnr"],
                last_val["ssim"],
            )
        if held_imgs and _due(step, cfg.eval_every) and step != cfg.steps:
            rec = heldout_record(heldout_eval(g, held_imgs, cfg, device, scale))
            mlog.write({"kind": "heldout", "step": step, **rec})
            log.info(
                "step %d: held-out gain over bicubic %s",
                step,
                ", ".join(f"{k[5:]} {v:+.2f}" for k, v in rec.items() if k.startswith("gain_")),
            )
        if _due(step, cfg.ckpt_every) or step == cfg.steps:
            checkpoint(step)
        over_time = cfg.time_limit_min > 0 and (time.time() - t0) > cfg.time_limit_min * 60
        if dinfo.world > 1 and cfg.time_limit_min > 0:  # every rank must stop at the same step
            flag = torch.tensor([int(over_time)], device=device if on_cuda else "cpu")
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over_time = bool(flag.item())
        if (cfg.stop_at and step >= cfg.stop_at) or over_time:
            if not _due(step, cfg.ckpt_every):
                checkpoint(step)
            stopped_early = True
            log.info(
                "stopping at step %d (%s); continue with --resume", step, "time limit" if over_time else "--stop-at"
            )
            break

    if bar is not None:
        bar.close()
    elapsed = time.time() - t0
    throughput = {
        **tput.summary(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if on_cuda else None,
        "world_size": dinfo.world,
        "preset": cfg.preset,
        "batch_size": cfg.batch_size,
        "hr_size": cfg.data.hr_size,
        "channels": cfg.data.channels,
        "precision": precision,
        "channels_last": channels_last,
        "compile": cfg.compile or False,
        "mode": cfg.mode,
        "torch": torch.__version__,
    }
    if dinfo.main:
        atomic_write_text(run / "throughput.json", json.dumps(throughput, indent=2) + "\n")
        if "images_per_s" in throughput:
            log.info(
                "training throughput: %.2f images/s, %.3f HR Mpx/s (%d timed steps of %d images, %s, %s)",
                throughput["images_per_s"],
                throughput["hr_mpx_per_s"],
                throughput["steps_timed"],
                throughput["images_per_step"],
                precision,
                device,
            )
    out = None
    if dinfo.main and not (stopped_early and cfg.stop_at):
        if val and last_val_step != step:  # the card's numbers are those of the saved weights
            last_val, _ = validate(g, val, scale, device, autocast)
            mlog.write({"kind": "val", "step": step, **last_val})
        if held_imgs:
            last_held = heldout_eval(g, held_imgs, cfg, device, scale, with_ssim=True)
            mlog.write({"kind": "heldout", "step": step, **heldout_record(last_held)})
            atomic_write_text(run / "heldout.json", json.dumps(last_held, indent=1) + "\n")
        out = run / "final" / "generator.safetensors"
        training = {
            "mode": cfg.mode,
            "preset": cfg.preset,
            "steps": step,
            "target_steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "world_size": dinfo.world,
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if on_cuda else None,
            "content_loss": cfg.resolved_content_loss(),
            "mse_weight": cfg.mse_weight,
            "crop_log_eps": cfg.crop_log_eps,
            "loss_margin": cfg.loss_margin,
            # trained as RepConv branches, saved as the plain kernels they sum to (arch_args.reparam false)
            "reparam": bool(getattr(model_config(_unwrap(g)), "reparam", False)),
            "lr": cfg.lr,
            "betas": list(betas),
            "lr_schedule": cfg.lr_schedule,
            "lr_min": cfg.lr_min if cfg.lr_schedule == "cosine" else None,
            "lr_drop_step": drop if cfg.lr_schedule == "step" else None,
            "seconds_this_session": round(elapsed, 1),
            "it_s_this_session": round((step - start_step) / max(elapsed, 1e-9), 3),
            "throughput": throughput,
            "teacher": cfg.teacher if cfg.mode == "distill" else None,
            **(
                {
                    "teacher_sha256": teacher_sha,
                    "teacher_ensemble": cfg.teacher_ensemble,
                    "teacher_weight": cfg.teacher_weight,
                    "gt_weight": cfg.gt_weight,
                }
                if cfg.mode == "distill"
                else {}
            ),
            "init_from": init_record,
            "recipe": cfg.recipe,
            "quant_aware": qa.describe() if qa is not None else None,
            "data": dsum,
            "vgg": ("random-init (test only)" if cfg.vgg_random_init else "torchvision IMAGENET1K_V1")
            if cfg.resolved_content_loss() == "vgg"
            else None,
        }
        metrics = (
            {
                "validation": {
                    **last_val,
                    "n_images": len(val),
                    "convention": CONVENTION.format(border=scale, degradation=cfg.data.degradation, scale=scale),
                }
            }
            if last_val
            else {}
        )
        if last_held:
            metrics["heldout"] = {
                "sources": list(cfg.eval_sources),
                "convention": last_held["convention"],
                "degradations": last_held["degradations"],
                "summary": last_held["summary"],
            }
        save_generator(
            _unwrap(g),
            out,
            cfg.preset,
            model_config(_unwrap(g)),
            training=training,
            metrics=metrics,
            normalisation=cfg.data.normalisation(),
            degradation=cfg.data.degradation,
        )
        log.info("wrote %s", out)
    mlog.close()
    if dinfo.world > 1:
        dist.barrier()
    return out


def _half_d_loss(logits: torch.Tensor, real: bool, gen: torch.Generator, cfg: TrainConfig) -> torch.Tensor:
    t = smoothed_labels(logits.shape[0], real, logits.device, gen, cfg.real_label_range, cfg.fake_label_range)
    return bce_clipped(logits, t)


def _digest(m: nn.Module) -> str:
    import hashlib  # noqa: PLC0415

    h = hashlib.sha256()
    # parameters only: DDP keeps them identical; BN running statistics are rank-local between
    # forwards (DDP re-broadcasts rank 0's buffers at each forward, and rank 0 saves them)
    for k, v in sorted(m.named_parameters()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
