"""Generator artifacts (safetensors + model card) and exact-resume training checkpoints.

* :func:`save_generator` / :func:`load_generator`: the trained generator as
  ``NAME.safetensors`` + ``NAME.card.json`` (the project's artifact contract). Loading
  rebuilds the preset named in the card with the card's ``arch_args``; weights only, no
  pickle.
* :func:`save_training_state` / :func:`load_training_state`: everything needed to resume a
  run bit-for-bit (models, optimisers, schedulers, RNG states, step), written atomically;
  :func:`prune_checkpoints` keeps the last K.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scopesr.sdk import CardError, ModelCard, Normalisation, atomic_path, card_path_for, package_versions, sha256_path

from .errors import CheckpointError
from .models import count_params, create_model, model_config
from .receptive_field import macs_per_lr_pixel, receptive_field_radius

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^step_(\d{8})\.pt$")


def software_versions() -> dict[str, str]:
    """What made a checkpoint, for its card."""
    return package_versions(("scopesr", "torch", "safetensors", "torchvision"))


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }


def _same_weights(path: Path, state: dict[str, torch.Tensor], meta: dict[str, str]) -> bool:
    """True when ``path`` already holds exactly these tensors and metadata."""
    from safetensors import safe_open  # noqa: PLC0415

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}) != meta or set(f.keys()) != set(state):
                return False
            return all(torch.equal(f.get_tensor(k), v) for k, v in state.items())
    except Exception:  # unreadable or not safetensors: overwrite it
        return False


def save_generator(
    model: nn.Module,
    out_path: str | os.PathLike,
    preset: str | None = None,
    config: Any = None,
    *,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    normalisation: Normalisation | None = None,
    degradation: str = "pil-bicubic",
    name: str | None = None,
) -> ModelCard:
    """Write ``out_path`` (.safetensors) and its card atomically; return the card.

    The card records the preset, its arguments, scale, channels, the halo (exact
    receptive-field radius), normalisation, degradation, training summary, metrics,
    software versions and the sha256 of the final file.
    """
    from safetensors.torch import save_file  # noqa: PLC0415

    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise CheckpointError(
            f"{out_path}: generator weights are written as .safetensors; give a path ending in .safetensors"
        )
    inner = getattr(getattr(model, "module", model), "_orig_mod", getattr(model, "module", model))
    preset = preset or getattr(inner, "preset_name", None)
    if not preset:
        raise CheckpointError("save_generator needs the preset name (the card must say how to rebuild the model)")
    if callable(getattr(inner, "folded", None)):  # a student trained with RepConv branches: save the plain sum
        inner = inner.folded()
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.replace(config, reparam=False) if hasattr(config, "reparam") else config
        elif isinstance(config, dict) and config.get("reparam"):
            config = {**config, "reparam": False}
    config = config if config is not None else model_config(inner)
    arch_args = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    arch_args.pop("description", None)  # descriptive only, not an argument worth round-tripping
    scale = int(arch_args.get("scale", 4))
    state = _plain_state_dict(inner)
    meta = {"preset": preset, "format": "scopesr-generator"}
    if _same_weights(out_path, state, meta):
        # safetensors writes its metadata map in a random order, so re-saving equal weights
        # would change the file's sha256 (and every card that names it) for nothing
        log.debug("%s: weights unchanged, file kept", out_path)
    else:
        with atomic_path(out_path) as tmp:
            save_file(state, str(tmp), metadata=meta)
    card = ModelCard(
        name=name or out_path.stem,
        architecture=preset,
        scale=scale,
        in_channels=int(arch_args.get("in_channels", 3)),
        out_channels=int(arch_args.get("out_channels", arch_args.get("in_channels", 3))),
        halo=receptive_field_radius(inner, scale=scale),
        format="safetensors",
        artifact=out_path.name,
        sha256=sha256_path(out_path),
        arch_args=arch_args,
        layout="NCHW",
        precision="fp32",
        tile_sizes=None,
        normalisation=normalisation or Normalisation(),
        degradation=degradation,
        training=dict(training or {}),
        metrics=dict(metrics or {}),
        versions=software_versions(),
        # the cost beside the metrics (as torchvision's weights carry their ops): what a frame's
        # time scales with, whatever runtime later runs the network
        extra={"params": count_params(inner), "macs_per_lr_pixel": round(macs_per_lr_pixel(inner))},
    )
    card.save(card_path_for(out_path))
    return card


def load_generator(
    path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True
) -> tuple[nn.Module, ModelCard]:
    """Rebuild the generator described by the card beside ``path`` and load its weights.

    Only ``.safetensors`` (no pickle). The model is returned in eval mode.
    """
    from safetensors.torch import load_file  # noqa: PLC0415

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: load_generator reads .safetensors weights with their card; "
            "for .onnx/.tflite use scopesr.sdk.load()"
        )
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    card = ModelCard.load(path, verify=verify)
    if card.format != "safetensors":
        raise CardError(f"{card_path_for(path)}: format is {card.format!r}, expected 'safetensors'")
    model = create_model(card.architecture, **card.arch_args)
    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit preset {card.architecture!r} with the card's "
            f"arch_args ({str(exc).splitlines()[0]}); the card and weights disagree"
        ) from None
    return model.to(device).eval(), card


# ---------------------------------------------------------------------------- training state
def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from (python, numpy, torch CPU, CUDA) in weights_only-safe types."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:08d}.pt"


def save_training_state(ckpt_dir: str | os.PathLike, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Atomically write ``ckpt_dir/step_XXXXXXXX.pt`` and keep only the last ``keep``."""
    path = checkpoint_path(Path(ckpt_dir), step)
    with atomic_path(path) as tmp:
        torch.save({"step": step, **state}, tmp)
    prune_checkpoints(ckpt_dir, keep)
    return path


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[Path]:
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if CKPT_RE.match(p.name))


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int) -> None:
    ckpts = list_checkpoints(ckpt_dir)
    for p in ckpts[: max(0, len(ckpts) - max(1, keep))]:
        p.unlink(missing_ok=True)


def remove_stale_temporaries(ckpt_dir: str | os.PathLike) -> int:
    """Delete ``.step_*.tmp`` files a killed run left behind (never a finished checkpoint)."""
    d = Path(ckpt_dir)
    n = 0
    if d.is_dir():
        for p in d.glob(".step_*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(ckpt_dir)
    return ckpts[-1] if ckpts else None


def load_training_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint (``weights_only=True``: tensors and plain types only)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # corrupt / foreign file
        raise CheckpointError(
            f"{path}: not a readable scopesr checkpoint ({type(exc).__name__}: {exc}); "
            "delete it to resume from the previous one"
        ) from None


def load_latest_training_state(
    ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu", set_aside: bool = True
) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint in ``ckpt_dir`` that reads as a training state, and that state.

    A newer one that cannot be read (truncated by a full disk, copied in part) is skipped
    with a warning naming it; with ``set_aside`` it is renamed ``*.pt.bad`` so that pruning
    never keeps it in place of a good one. Raises CheckpointError when none can be read.
    """
    ckpts = list_checkpoints(ckpt_dir)
    if not ckpts:
        raise CheckpointError(f"{ckpt_dir}: no checkpoint (step_XXXXXXXX.pt) to resume from")
    failures: list[str] = []
    for path in reversed(ckpts):
        try:
            state = load_training_state(path, map_location=map_location)
            if not isinstance(state, dict) or not {"step", "g"} <= set(state):
                raise CheckpointError(f"{path}: not a scopesr training checkpoint (no step or generator state)")
        except CheckpointError as exc:
            failures.append(str(exc))
            bad = path.with_name(path.name + ".bad")
            if set_aside:
                try:
                    path.replace(bad)
                except OSError:  # another rank set it aside first, or a read-only folder: it stays skipped
                    bad = path
            log.warning(
                "%s: unreadable checkpoint skipped%s; trying the one before (%s)",
                path,
                f" (kept as {bad.name})" if bad != path else "",
                exc,
            )
            continue
        if failures:
            log.warning("resuming from %s, the newest readable checkpoint in %s", path, ckpt_dir)
        return path, state
    raise CheckpointError(
        f"{ckpt_dir}: none of its {len(ckpts)} checkpoint(s) can be read ({'; '.join(failures)}); "
        "start a new run with another --out"
    )
