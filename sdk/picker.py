"""Which bundled artifact ``load("default")`` opens: the fastest one on this CPU, quality held.

The bundled default model comes as several artifacts (``sdk/models``: ONNX fp32, TFLite fp32,
TFLite int8, ONNX int8, and whatever else is bundled with a card). Which is fastest depends on
the CPU and the runtime: TFLite's int8 wins only where the CPU has int8 dot-product instructions
(AVX-512 VNNI, Arm dotprod), and on an AVX2-only x86 or a Raspberry Pi 4 its fp32 file can be
twice as fast; ONNX Runtime's int8 kernels beat its fp32 ones on an AVX2-only x86 as well. So the first
time on a machine, ``load("default")`` runs a short timed probe (a 64x64 ROI and a 120x160
camera frame through the real ``Upscaler.upscale``, a few rounds over every candidate, about
a second in all) and remembers the winner in the user's cache, keyed by the CPU
(:func:`scopesr.sdk.cpu.cpu_key`), the options (threads, device, backend) and each candidate's
sha256 and runtime version; later loads read the cache and open only the winner.

Candidates: the bundled artifacts whose runtime is installed, that the ``backend`` argument
allows, and that pass the quality floor (:data:`QUALITY_FLOOR_DB`): an artifact whose card
says int8 costs more than 0.2 dB against fp32 (``metrics.int8_vs_fp32.worst.delta_db``), or
whose held-out worst gain over bicubic on a degradation row
(``metrics.heldout.summary[row].worst_gain_db``) is more than 0.2 dB below both bicubic and
the best bundled file's, is never picked. Cards without these numbers skip nothing.

Overrides, strongest first:

* ``load(path)`` with a path: no picking at all;
* ``load("default", backend="onnx" | "tflite")`` / ``sr-upscale --backend``: only that
  runtime's artifacts are candidates (TFLite fp32 and int8 are then still probed);
* ``SCOPESR_ARTIFACT=onnx | tflite | tflite-int8 | onnx-int8`` (or another bundled artifact's name or
  file name): that artifact, no probe, no floor (it is the user's explicit choice);
* ``load("default", probe=False)`` or ``SCOPESR_PROBE=0``: no probe, the static preference
  (ONNX where onnxruntime is installed, else the int8 TFLite file), floor still held;
  ``SCOPESR_PROBE=force`` probes again even when the cache holds a choice (a probe taken
  while the machine was busy can be redone that way, or by deleting the cache file).

The cache is ``$SCOPESR_CACHE_DIR/picker.json``, else ``$XDG_CACHE_HOME/scopesr/picker.json``,
else ``~/.cache/scopesr/picker.json`` (``~/Library/Caches/scopesr`` on macOS,
``%LOCALAPPDATA%\\scopesr\\cache`` on Windows). It is written atomically; a corrupt or
unwritable cache never fails a load (it is logged, and the probe runs again).
``Upscaler.describe()["selection"]`` says which artifact was chosen and why.

This module imports no runtime and nothing of ``upscaler.py``: ``load`` hands it the models
folder, the bundled names and a function that opens an artifact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from .atomic import atomic_write_text
from .card import CARD_SUFFIX, ModelCard
from .cpu import describe_cpu
from .errors import InputError, ScopesrError
from .tiling import BORDER_RULE

log = logging.getLogger(__name__)

ENV_ARTIFACT = "SCOPESR_ARTIFACT"
ENV_PROBE = "SCOPESR_PROBE"
ENV_CACHE_DIR = "SCOPESR_CACHE_DIR"
CACHE_FILE = "picker.json"
CACHE_FORMAT = 1

#: the probe's inputs, (H, W) in LR pixels: a ROI and a Pi camera frame (160x120)
PROBE_SIZES = ((64, 64), (120, 160))
#: seconds of timed calls, all candidates together; rounds stop once it is spent
PROBE_BUDGET_S = 0.5
MIN_ROUNDS, MAX_ROUNDS = 2, 5
#: a hard stop (warm-up included) after the first timed round: on a very busy machine a
#: round can take a second; the probe then keeps one round rather than block a load for long
PROBE_DEADLINE_S = 1.5
#: a faster artifact of lower precision must beat a higher-precision one by more than this
NEAR_TIE = 0.05
#: the robustness issue's floor: int8 vs fp32 and the held-out gain over bicubic, in dB
QUALITY_FLOOR_DB = -0.2
#: without a probe: ONNX where onnxruntime is, else int8 TFLite (fast on a Pi 5), else fp32 TFLite
STATIC_ORDER = ("onnx", "tflite-int8", "tflite")
#: backend -> the modules whose presence means its runtime is installed (any of them)
RUNTIME_MODULES = {
    "onnx": ("onnxruntime",),
    "torch": ("torch",),
    "coreml": ("coremltools",),
    "tflite": ("ai_edge_litert", "tflite_runtime", "tensorflow"),
}
#: backend -> distributions whose version keys the cache (the first installed one)
RUNTIME_DISTS = {
    "onnx": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"),
    "tflite": ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu"),
    "torch": ("torch",),
    "coreml": ("coremltools",),
}
_PRECISION_RANK = {"fp32": 0, "bf16": 1, "fp16": 1, "int8": 2}


@dataclass
class Candidate:
    """One bundled artifact: its short name, file, card and the backend that runs it."""

    name: str
    path: Path
    card: ModelCard
    backend: str

    @property
    def sha256(self) -> str:
        return self.card.sha256 or ""


@dataclass
class Choice:
    """The artifact ``load("default")`` opens, and why (``how``: probe, cache, override,
    backend, only, static, fallback)."""

    name: str
    path: Path
    how: str
    reason: str
    timings_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    cache: str | None = None
    cpu: str = ""
    cpu_key: str = ""
    probe_s: float | None = None
    upscaler: Any = None  # the winner, already opened by the probe (not described)

    def describe(self) -> dict[str, Any]:
        return {
            "artifact": self.path.name,
            "name": self.name,
            "how": self.how,
            "reason": self.reason,
            "timings_ms": self.timings_ms,
            "skipped": self.skipped,
            "cache": self.cache,
            "cpu": self.cpu,
            "cpu_key": self.cpu_key,
            "probe_s": self.probe_s,
        }


# ---------------------------------------------------------------------------- cache file
def cache_dir() -> Path:
    """``$SCOPESR_CACHE_DIR``, else the platform's user cache folder + ``scopesr``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "scopesr"
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "scopesr"
    if sys.platform.startswith("win") and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "scopesr" / "cache"
    return home / ".cache" / "scopesr"


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; an absent file is empty, a corrupt one is logged and ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read the artifact picker's cache %s (%s); probing again", path, exc)
        return {}
    try:
        data = json.loads(text)
        if (
            not isinstance(data, dict)
            or data.get("format") != CACHE_FORMAT
            or not isinstance(data.get("entries"), dict)
        ):
            raise ValueError(f"not a scopesr picker cache of format {CACHE_FORMAT}")
        return data["entries"]
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        log.warning(
            "ignoring the artifact picker's cache %s: it is corrupt (%s); probing again and rewriting it", path, exc
        )
        return {}


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> bool:
    """Add ``entry`` under ``key`` (re-reading the file first) and write it atomically; False
    (logged) when the folder is not writable."""
    entries = _read_cache(path)
    entries[key] = entry
    text = json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1, sort_keys=True) + "\n"
    try:
        atomic_write_text(path, text)
        return True
    except OSError as exc:
        log.warning(
            "cannot write the artifact picker's cache %s (%s): the choice holds for this process "
            "only and the probe runs again next time (set %s to a writable folder)",
            path,
            exc,
            ENV_CACHE_DIR,
        )
        return False


# ---------------------------------------------------------------------------- quality floor
def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _worst_gains(card: ModelCard) -> dict[str, tuple[float, Any]]:
    """Row -> (held-out worst gain over bicubic in dB, worst image) from the card, if it has them."""
    m = card.metrics if isinstance(card.metrics, Mapping) else {}
    held = m.get("heldout")
    summary = held.get("summary") if isinstance(held, Mapping) else None
    out: dict[str, tuple[float, Any]] = {}
    if isinstance(summary, Mapping):
        for row, entry in summary.items():
            g = _num(entry.get("worst_gain_db")) if isinstance(entry, Mapping) else None
            if g is not None:
                out[str(row)] = (g, entry.get("worst_image"))
    return out


def best_worst_gains(cards: Iterable[ModelCard]) -> dict[str, float]:
    """Per held-out row, the best worst-image gain over bicubic among ``cards``: the reference
    that :func:`quality_floor_reason` holds each of them against."""
    reference: dict[str, float] = {}
    for card in cards:
        for row, (g, _) in _worst_gains(card).items():
            reference[row] = max(g, reference.get(row, -math.inf))
    return reference


def quality_floor_reason(
    card: ModelCard, floor_db: float = QUALITY_FLOOR_DB, reference: Mapping[str, float] | None = None
) -> str | None:
    """Why the card's own measurements put the artifact below the floor, or None (also when
    the card does not carry them).

    The floor is about what a *file* loses, not about the model: int8 more than ``floor_db``
    below fp32, or a held-out worst gain over bicubic more than ``floor_db`` below the best
    candidate's on the same row (``reference``). Without a reference the held-out gains are
    held against 0 dB (bicubic) itself.
    """
    m = card.metrics if isinstance(card.metrics, Mapping) else {}
    i8 = m.get("int8_vs_fp32")
    worst = i8.get("worst") if isinstance(i8, Mapping) else None
    d = _num(worst.get("delta_db")) if isinstance(worst, Mapping) else None
    if isinstance(worst, Mapping) and d is not None and d < floor_db:  # (d is None unless worst is a Mapping)
        where = ", ".join(str(worst[k]) for k in ("image", "degradation") if worst.get(k))
        return f"int8 vs fp32 worst {d:+.2f} dB{f' ({where})' if where else ''} is below the {floor_db:+.1f} dB floor"
    for row, (g, img) in _worst_gains(card).items():
        base = 0.0 if reference is None else min(0.0, reference.get(row, 0.0))
        if g < base + floor_db:
            against = "" if reference is None or base == 0.0 else f" ({base:+.2f} dB for the best bundled file)"
            return (
                f"held-out worst gain over bicubic {g:+.2f} dB on '{row}'{f' ({img})' if img else ''} "
                f"is below the {floor_db:+.1f} dB floor{against}"
            )
    return None


# ---------------------------------------------------------------------------- candidates
def bundled(models_dir: Path, names: Mapping[str, str]) -> list[Candidate]:
    """Every artifact in ``models_dir`` with a card whose format a registered backend runs;
    the bundled names (``names``: key -> file name) keep their keys, others their stem."""
    from .backends.registry import backend_for_suffix

    by_file = {v: k for k, v in names.items()}
    out: list[Candidate] = []
    for card_file in sorted(Path(models_dir).glob("*" + CARD_SUFFIX)):
        try:
            card = ModelCard.read(card_file)
        except ScopesrError as exc:
            log.warning("%s: skipped by the artifact picker (%s)", card_file, exc)
            continue
        artifact = card_file.with_name(card.artifact or card_file.name[: -len(CARD_SUFFIX)])
        if not artifact.exists():
            continue
        try:
            backend = backend_for_suffix(artifact)
        except ScopesrError:  # .safetensors training weights, bioimage.io zips: not run
            continue
        out.append(Candidate(by_file.get(artifact.name, artifact.name.split(".")[0]), artifact, card, backend))
    return out


def runtime_installed(backend: str, has_module: Callable[[str], bool]) -> bool:
    if backend == "coreml" and sys.platform != "darwin":
        return False
    return any(has_module(m) for m in RUNTIME_MODULES.get(backend, ()))


def _runtime_version(backend: str) -> str:
    from importlib import metadata

    for dist in RUNTIME_DISTS.get(backend, ()):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _static(cands: list[Candidate]) -> Candidate:
    order = {n: i for i, n in enumerate(STATIC_ORDER)}
    return min(cands, key=lambda c: (order.get(c.name, len(order)), c.name))


def _env_probe() -> bool:
    v = os.environ.get(ENV_PROBE, "").strip().lower()
    return v not in ("0", "false", "no", "off")


def _env_force() -> bool:
    return os.environ.get(ENV_PROBE, "").strip().lower() == "force"


# ---------------------------------------------------------------------------- the probe
def _frames() -> list[np.ndarray]:
    """Deterministic uint8 frames with image-like statistics (smooth + noise)."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in PROBE_SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        base = 100 + 60 * np.sin(yy / 7.0) * np.cos(xx / 9.0)
        out.append(np.clip(base + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8))
    return out


def _label(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def probe(ups: Mapping[str, Any], budget_s: float = PROBE_BUDGET_S) -> dict[str, dict[str, float]]:
    """Median ms per probe size (and ``score``, their geometric mean) for each opened Upscaler.

    Candidates are timed in turn, round after round (a shared machine's load then hits each
    alike), after one warm-up call per size; at least MIN_ROUNDS rounds, at most MAX_ROUNDS,
    and no new round once ``budget_s`` of timed calls is spent (nor, after the first, once
    PROBE_DEADLINE_S has passed since the warm-up began).
    """
    with contextlib.ExitStack() as stack:
        for up in ups.values():
            paused = getattr(up, "noise_check_paused", None)  # the probe's frames are noisy on purpose
            if paused is not None:
                stack.enter_context(paused())
        return _timed(ups, budget_s)


def _timed(ups: Mapping[str, Any], budget_s: float) -> dict[str, dict[str, float]]:
    start = time.perf_counter()
    frames = _frames()
    times: dict[str, list[list[float]]] = {n: [[] for _ in frames] for n in ups}
    for up in ups.values():
        for f in frames:
            up.upscale(f)
    spent = 0.0
    for r in range(MAX_ROUNDS):
        if (r >= MIN_ROUNDS and spent >= budget_s) or (r >= 1 and time.perf_counter() - start > PROBE_DEADLINE_S):
            break
        for name, up in ups.items():
            for i, f in enumerate(frames):
                t0 = time.perf_counter()
                up.upscale(f)
                dt = time.perf_counter() - t0
                times[name][i].append(dt)
                spent += dt
    res: dict[str, dict[str, float]] = {}
    for name, per in times.items():
        med = [statistics.median(t) * 1e3 for t in per]
        res[name] = {_label(s): round(m, 3) for s, m in zip(PROBE_SIZES, med)}
        res[name]["score"] = round(math.exp(sum(math.log(max(m, 1e-6)) for m in med) / len(med)), 3)
        res[name]["rounds"] = len(per[0])
    return res


def _winner(cands: list[Candidate], timings: Mapping[str, Mapping[str, float]]) -> Candidate:
    """The fastest by score; a higher-precision artifact within NEAR_TIE of it wins instead."""
    timed = [c for c in cands if c.name in timings]
    best = min(timed, key=lambda c: timings[c.name]["score"])
    close = [c for c in timed if timings[c.name]["score"] <= timings[best.name]["score"] * (1 + NEAR_TIE)]
    return min(close, key=lambda c: (_PRECISION_RANK.get(c.card.precision, 1), timings[c.name]["score"]))


def _timing_text(timings: Mapping[str, Mapping[str, float]]) -> str:
    sizes = " / ".join(_label(s) for s in PROBE_SIZES)
    return (
        "; ".join(
            f"{n} {' / '.join(f'{t[_label(s)]:.1f}' for s in PROBE_SIZES)} ms"
            for n, t in sorted(timings.items(), key=lambda kv: kv[1]["score"])
        )
        + f" ({sizes})"
    )


# ---------------------------------------------------------------------------- pick
def _cache_entry_ok(entry: Any, cands: Mapping[str, str], versions: Mapping[str, str]) -> TypeGuard[dict[str, Any]]:
    return (
        isinstance(entry, dict)
        and entry.get("candidates") == dict(cands)
        and entry.get("versions") == dict(versions)
        and entry.get("chosen") in cands
        and isinstance(entry.get("timings_ms"), dict)
    )


def pick(
    models_dir: Path,
    names: Mapping[str, str],
    open_artifact: Callable[[Path], Any],
    *,
    backend: str = "auto",
    device: str = "auto",
    probe_enabled: bool | None = None,
    opts: Mapping[str, Any] | None = None,
    has_module: Callable[[str], bool],
    bundle: str = "default",
) -> Choice:
    """Choose the bundled artifact for ``load("default")`` (see the module docstring), or for
    another bundled model (``bundle`` names it in messages).

    ``open_artifact(path)`` opens one artifact as an Upscaler (load's own code, with the
    caller's backend, device, verify and options); ``has_module`` says whether a runtime
    module is installed. ``probe_enabled`` None: on unless ``SCOPESR_PROBE=0``. Raises
    InputError when the bundled model has no artifact for ``backend`` or
    ``SCOPESR_ARTIFACT`` names none; a missing runtime is left to the open (its error names
    the package to install).
    """
    from .errors import ModelError

    cpu = describe_cpu()
    base: dict[str, Any] = {"cpu": cpu.line(), "cpu_key": cpu.key()}
    everything = bundled(models_dir, names)
    if not everything:
        raise ModelError(
            f"the bundled {bundle} model is not in this install ({models_dir} holds no artifact "
            "with its card; it has not been built/bundled yet). Pass a model path instead, e.g. "
            "load('my_model.onnx') or sr-upscale --model my_model.onnx."
        )

    # the user's explicit choice: no probe, no floor
    want = os.environ.get(ENV_ARTIFACT, "").strip()
    if want:
        match = [c for c in everything if want in (c.name, c.path.name)]
        if not match:
            raise InputError(
                f"{ENV_ARTIFACT}={want!r} names no bundled artifact; use one of "
                f"{sorted(c.name for c in everything)}, or unset it to let load({bundle!r}) choose"
            )
        c = match[0]
        if backend in ("auto", c.backend):
            return Choice(c.name, c.path, "override", f"{ENV_ARTIFACT}={want} (no probe, no quality floor)", **base)
        log.warning(
            "%s=%s ignored: backend=%r was asked for and %s is a %s artifact",
            ENV_ARTIFACT,
            want,
            backend,
            c.path.name,
            c.backend,
        )

    cands = everything if backend == "auto" else [c for c in everything if c.backend == backend]
    if not cands:
        raise InputError(
            f"the bundled {bundle} model has no {backend} artifact (it has "
            f"{', '.join(c.path.name for c in everything)}); use backend='auto', 'onnx' or 'tflite', "
            "or pass a model path"
        )
    only = "" if backend == "auto" else f" for backend={backend!r}"
    skipped: dict[str, str] = {}
    runnable = []
    for c in cands:
        if runtime_installed(c.backend, has_module):
            runnable.append(c)
        else:
            skipped[c.name] = f"its runtime ({c.backend}) is not installed"
    if not runnable:  # opening it raises the error that names the package to install
        c = _static(cands)
        return Choice(
            c.name, c.path, "static", f"no runtime installed for any bundled artifact{only}", skipped=skipped, **base
        )
    eligible = []
    # a file is held against what the model can do (its fp32 twin), so a model-wide shortfall
    # does not disqualify every file
    reference = best_worst_gains([c.card for c in runnable])
    for c in runnable:
        why = quality_floor_reason(c.card, reference=reference)
        if why:
            skipped[c.name] = why
        else:
            eligible.append(c)
    if not eligible:
        c = _static(runnable)
        # the model itself (not one of its files) is below the floor on some row: the card and
        # the README say so; every load repeating it as a warning would only be noise
        log.info(
            "every bundled artifact this install can run%s is below the quality floor (%s); opening %s",
            only,
            "; ".join(f"{k}: {v}" for k, v in skipped.items()),
            c.path.name,
        )
        return Choice(
            c.name,
            c.path,
            "fallback",
            "every runnable artifact is below the quality floor: the static preference",
            skipped=skipped,
            **base,
        )
    if len(eligible) == 1:
        c = eligible[0]
        return Choice(
            c.name,
            c.path,
            "only",
            f"the only bundled artifact{only} this install runs within the quality floor",
            skipped=skipped,
            **base,
        )
    if device == "cuda":  # the probe times CPUs; a GPU runs the ONNX (or torch) artifact
        c = _static([c for c in eligible if c.backend in ("onnx", "torch")] or eligible)
        return Choice(
            c.name, c.path, "static", "device='cuda': the artifact that runs on the GPU", skipped=skipped, **base
        )
    if not (_env_probe() if probe_enabled is None else probe_enabled):
        c = _static(eligible)
        return Choice(
            c.name,
            c.path,
            "static",
            f"no probe (probe=False or {ENV_PROBE}=0): the static preference {' > '.join(STATIC_ORDER)}",
            skipped=skipped,
            **base,
        )

    # the cache: per CPU, options, candidate sha256 and runtime version
    path = cache_path()
    key = "|".join(
        [
            cpu.key(),
            f"device={device}",
            f"backend={backend}",
            "opts=" + json.dumps(dict(opts or {}), sort_keys=True, default=str),
            f"borders={BORDER_RULE}",  # the padding sets what a frame costs: a new rule times afresh
        ]
        # each bundled model its own entry (the default's key as before, so its caches stay valid)
        + ([] if bundle == "default" else [f"bundle={bundle}"])
    )
    shas = {c.name: c.sha256 for c in eligible}
    versions = {b: _runtime_version(b) for b in sorted({c.backend for c in eligible})}
    entry = None if _env_force() else _read_cache(path).get(key)
    if _cache_entry_ok(entry, shas, versions):
        c = next(c for c in eligible if c.name == entry["chosen"])
        return Choice(
            c.name,
            c.path,
            "cache",
            f"fastest on this CPU in the probe of {entry.get('probed_at', '?')} "
            f"(cached): {_timing_text(entry['timings_ms'])}",
            timings_ms=entry["timings_ms"],
            skipped=skipped,
            cache=str(path),
            probe_s=entry.get("probe_s"),
            **base,
        )
    if entry is not None:
        log.info(
            "artifact picker: the cached choice for this CPU no longer matches the bundled artifacts or "
            "runtimes; probing again"
        )

    t0 = time.perf_counter()
    ups: dict[str, Any] = {}
    for c in eligible:
        try:
            ups[c.name] = open_artifact(c.path)
        except Exception as exc:  # a runtime that cannot open it (any exception type): probe the others
            skipped[c.name] = f"could not be opened ({exc})"
            log.debug("artifact picker: %s", skipped[c.name], exc_info=True)
    if not ups:  # opening it again raises the error for the caller
        c = _static(eligible)
        return Choice(c.name, c.path, "static", "no candidate could be opened for the probe", skipped=skipped, **base)
    opened = [c for c in eligible if c.name in ups]
    if len(opened) == 1:
        c = opened[0]
        return Choice(
            c.name, c.path, "only", "the only candidate that opened", skipped=skipped, upscaler=ups[c.name], **base
        )
    timings = probe(ups)
    winner = _winner(opened, timings)
    probe_s = round(time.perf_counter() - t0, 3)
    entry = {
        "cpu": cpu.line(),
        "candidates": shas,
        "versions": versions,
        "timings_ms": timings,
        "chosen": winner.name,
        "probed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "probe_s": probe_s,
    }
    wrote = _write_cache(path, key, entry)
    reason = f"fastest on this CPU in a {probe_s:.1f} s timed probe: {_timing_text(timings)}"
    if not wrote:
        reason += " (not cached: the cache folder is not writable)"
    return Choice(
        winner.name,
        winner.path,
        "probe",
        reason,
        timings_ms=timings,
        skipped=skipped,
        cache=str(path) if wrote else None,
        probe_s=probe_s,
        upscaler=ups[winner.name],
        **base,
    )
