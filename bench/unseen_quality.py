"""Several models side by side on real images that none of them trained on, per degradation.

The release table scores one model on the held-out sources named in its card; those six sources
have also steered every choice between candidate models, so a gain there may be partly tuned.
This check takes other sources (``sample:KEY`` specs), refuses any that a model's card lists
among its training sources, degrades each image as ``sr-bench release`` does (``quality.evaluate``:
same rows, same seeds) and reports each model's gain over bicubic, per source and on average, with
nearest and bicubic beside it. ``benchmarks/bench_unseen.py`` records it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from scopesr.sdk import quality, training_stages
from scopesr.sdk.card import COST_KEYS
from scopesr.sdk.errors import InputError

from .evaluation import sample_key

log = logging.getLogger(__name__)

#: real fluorescence kept out of every training run (scopesr.sdk.samples): an Airyscan confocal
#: image and a widefield one of cells with spots. They were found, and first scored, after the six
#: release sources had chosen the sixth default; since then they also helped choose (the zoom range
#: of the seventh), so they are a second check, no longer an untouched one.
UNSEEN_SOURCES = ("sample:sdeconv-celegans", "sample:spotmax-cells")

#: the fresh set: eight real fluorescence sources from four more packages, found on 2026-12-05 after
#: every bundled model (default, low-noise, large) was fixed, and first scored then. No training run
#: and no choice between candidates has used them; keep it so (score a candidate on them only after
#: choosing it), or say which choice they steered. Widefield and confocal; nuclei and cells
#: with puncta; 8 and 16 bit. ``benchmarks/bench_unseen.py --fresh``.
FRESH_SOURCES = (
    "sample:mnfinder-u2os",
    "sample:mnfinder-mcc13",
    "sample:mnfinder-hff",
    "sample:mnfinder-hela-confocal",
    "sample:bootstrapper-huh7",
    "sample:bbbc007-dna",
    "sample:serialcellpose-embryo",
    "sample:serialcellpose-embryo-cells",
)


def source_sets(card: Any, fresh: bool = False) -> dict[str, list[str]]:
    """The sets an experiment's benchmark scores, by name: the model card's release held-out sources
    and the two unseen ones, or (``fresh``) the fresh set alone, to check a choice made on those."""
    if fresh:
        return {"fresh set": list(FRESH_SOURCES)}
    held_out = list(card.metrics["heldout"]["sources"])
    return {"release held-out sources": held_out, "unseen sources": list(UNSEEN_SOURCES)}


def training_keys(card: Any) -> set[str]:
    """The sample keys a card's weights were trained on: its own run's sources and those that
    earlier stages recorded (cards written before stages recorded their data list only the last)."""
    keys: set[str] = set()
    training = card.training if isinstance(card.training, dict) else {}
    for stage in training_stages(training):
        data = stage.get("data") if isinstance(stage.get("data"), dict) else {}
        for spec in data.get("sources") or []:
            if (k := sample_key(str(spec))) is not None:
                keys.add(k)
    return keys


def check_unseen(cards: dict[str, Any], sources: Sequence[str]) -> None:
    """InputError naming the model and source if any source is among a model's training sources."""
    for name, card in cards.items():
        seen = training_keys(card)
        for spec in sources:
            key = sample_key(spec)
            if key is None:
                raise InputError(f"{spec}: not a sample spec (sample:KEY, a real image a pip package ships)")
            if key in seen:
                raise InputError(f"{spec}: {name} was trained on it, so it is not unseen; pick another source")


def model_cost(card: Any) -> dict[str, float] | None:
    """Parameters and multiply-accumulates per LR pixel of the network a card describes (what the
    work per frame scales with), or None where the card's architecture is not one the trainer
    builds (the torch-free install, or a foreign model). Cards that record the cost are read as they are."""
    recorded = card.cost
    if recorded is not None and set(recorded) == set(COST_KEYS):
        return recorded
    try:
        from scopesr.trainer import macs_per_lr_pixel
        from scopesr.trainer.models import count_params, create_model

        model = create_model(card.architecture, **dict(card.arch_args or {}))
    except (ImportError, KeyError, TypeError, ValueError) as exc:
        log.info("no cost for %s: %s", card.architecture, exc)
        return None
    return {"params": count_params(model), "macs_per_lr_pixel": macs_per_lr_pixel(model, in_channels=card.in_channels)}


def measure(
    ups: dict[str, Any], images: Sequence[quality.EvalImage], degradations: Sequence[str] | None = None
) -> dict[str, Any]:
    """``ups``: name -> an object with ``upscale(lr)``; ``degradations``: row names (default: all
    of ``quality.EVAL_DEGRADATIONS``, as the release). Returns the rows of ``quality.evaluate`` and,
    per degradation, per model: the mean gain over bicubic (per source first), the worst source, the
    per-source gains, and the SSIM gain; nearest and bicubic PSNR per source."""
    names = list(ups)
    first, rest = names[0], names[1:]
    res = quality.evaluate(
        ups[first].upscale, images, degradations, methods={n: ups[n].upscale for n in rest}, with_ssim=True, scale=4
    )
    col = {first: "model", **{n: n for n in rest}}
    table: dict[str, Any] = {}
    for dname in res["degradations"]:
        by_source: dict[str, list[dict[str, Any]]] = {}
        for r in res["rows"]:
            if r["degradation"] == dname:
                by_source.setdefault(r["source"], []).append(r)

        def mean(rs: list[dict[str, Any]], key: str) -> float:
            return float(np.mean([r[key] for r in rs]))

        entry: dict[str, Any] = {
            "bicubic": {s: mean(rs, "psnr_bicubic") for s, rs in by_source.items()},
            "nearest": {s: mean(rs, "psnr_nearest") for s, rs in by_source.items()},
            "models": {},
        }
        for n in names:
            c = col[n]
            gains = {s: mean(rs, f"psnr_{c}") - mean(rs, "psnr_bicubic") for s, rs in by_source.items()}
            ssim = {s: mean(rs, f"ssim_{c}") - mean(rs, "ssim_bicubic") for s, rs in by_source.items()}
            worst = min(gains, key=lambda k: gains[k])
            entry["models"][n] = {
                "gain_db": float(np.mean(list(gains.values()))),
                "worst_db": gains[worst],
                "worst_source": worst,
                "per_source_db": gains,
                "ssim_gain": float(np.mean(list(ssim.values()))),
                "worst_ssim_gain": min(ssim.values()),
            }
        table[dname] = entry
    return {"degradations": res["degradations"], "table": table, "convention": res["convention"]}


def _cost_text(m: dict[str, Any]) -> str:
    cost = m.get("cost")
    if not cost:
        return ""
    return f"; {cost['params']:,} parameters, {cost['macs_per_lr_pixel'] / 1000:.1f} k MAC per LR pixel"


def markdown(data: dict[str, Any], command: str) -> str:
    """``data``: ``{"models": {name: {"path", "sha256"}}, "sources": [...], **measure(...)}``."""
    names = list(data["models"])
    sources = list(data["sources"])
    lines = [
        "# Unseen sources: gain over bicubic per degradation, models side by side",
        "",
        f"Command: `{command}`.",
        "",
        "Sources (in no model's training data): " + ", ".join(f"`{s}`" for s in sources) + ".",
        "",
        "Models: "
        + "; ".join(
            f"**{n}** `{m['path']}` (sha256 {m['sha256'][:12]}{_cost_text(m)})" for n, m in data["models"].items()
        ),
        "",
        "Mean gain over bicubic in dB (per source first, then over sources); in brackets the worst source.",
        "",
        "| degradation | bicubic PSNR | " + " | ".join(names) + " |",
        "|---" * (2 + len(names)) + "|",
    ]
    for dname, e in data["table"].items():
        bic = np.mean(list(e["bicubic"].values()))
        cells = [f"{e['models'][n]['gain_db']:+.2f} ({e['models'][n]['worst_db']:+.2f})" for n in names]
        lines.append(f"| {dname} | {bic:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per source, PSNR (dB): nearest / bicubic, then each model's gain over bicubic (SSIM gain in brackets "
        "for the first model).",
        "",
        "| degradation | source | nearest / bicubic | " + " | ".join(names) + " |",
        "|---" * (3 + len(names)) + "|",
    ]
    for dname, e in data["table"].items():
        for s in e["bicubic"]:
            cells = [f"{e['models'][n]['per_source_db'][s]:+.2f}" for n in names]
            lines.append(
                f"| {dname} | {s} | {e['nearest'][s]:.2f} / {e['bicubic'][s]:.2f} | " + " | ".join(cells) + " |"
            )
    lines += [
        "",
        "Worst SSIM gain over bicubic (any source and row): "
        + ", ".join(f"{n} {min(e['models'][n]['worst_ssim_gain'] for e in data['table'].values()):+.4f}" for n in names)
        + ".",
        "",
        "Rows: " + "; ".join(f"**{k}**: {v}" for k, v in data["degradations"].items()) + ".",
        "",
        f"Convention: {data['convention']}",
    ]
    return "\n".join(lines) + "\n"
