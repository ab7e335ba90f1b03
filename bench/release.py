"""The release step: bundle a trained generator as the SDK's default model, measured.

``sr-bench release RUN/final/generator.safetensors --models-dir sdk/models`` (after
``sr-train pretrain --config trainer/recipes/default.toml --out RUN``):

1. copies the weights as ``default-weights.safetensors`` (+ card; unchanged weights keep
   their bytes, so a re-run changes nothing);
2. converts them with ``scopesr.converters.convert`` to ONNX fp32, TFLite fp32, TFLite
   int8 (one signature per tile size, camera frames included) and ONNX int8, each
   parity-checked against PyTorch; int8 is calibrated on the run's *training* sources only;
3. runs every artifact through ``scopesr.sdk.load`` on the run's held-out sources under
   every row of ``scopesr.sdk.quality.EVAL_DEGRADATIONS`` and writes the scores into that
   artifact's own card, with nearest and bicubic beside them and int8 vs fp32 per image;
4. writes ``models-dir/README.md``, the demo's sample images (the clean and a noisy LR of a
   held-out image) and ``results-dir/quality_default.{json,md}``.

``--add onnx-int8`` adds one artifact to a bundle released before, leaving its other files
as they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import quality
from scopesr.sdk.atomic import atomic_path, atomic_write_text
from scopesr.sdk.card import stage_zoom_p, training_stages

from .errors import BenchError

log = logging.getLogger(__name__)

#: LR sizes the TFLite files serve in one call: the demo's 64x64 ROI and the Pi camera frames
#: 160x120 and 320x240 (as H x W), each as it is (the live path's halo 0, demo_pi's "fast") and
#: plus 2 x halo (the border rule: every backend sees the image mirrored out by the halo)
LIVE_SIZES: list[Any] = [64, (120, 160), (240, 320)]
#: plain square tiles (halo included) for large images
TFLITE_SQUARES: list[Any] = [128, 256]
ARTIFACTS = {  # key -> (target, precision, fixed sizes?); file names: scopesr.sdk.bundle_files
    "onnx": ("onnx", "fp32", False),
    "tflite": ("tflite", "fp32", True),
    "tflite-int8": ("tflite", "int8", True),
    "onnx-int8": ("onnx", "int8", False),
}
#: the keys results.record() puts around a summary (its date and machine)
RECORD_KEYS = ("benchmark", "date", "machine", "machine_line")
#: each int8 artifact's fp32 file of the same runtime (target), which its quality is measured against
FP32_OF = {
    key: next(k for k, (t, p, _) in ARTIFACTS.items() if t == target and p == "fp32")
    for key, (target, precision, _) in ARTIFACTS.items()
    if precision == "int8"
}
#: bundled model -> the estimated noise (fraction of the normalised range) above which the SDK
#: warns that its input is too noisy for it. The low-noise model's 3 %: on the held-out and unseen
#: sources the anti-aliased, binned and blurred rows estimate at most 2.5 %, every SNR 8 row at
#: least 3.8 % (benchmarks/bench_noise_levels.py; docs/degradation.md, "The price of blindness").
NOISE_WARNINGS = {"low-noise": 0.03}
#: what each bundled model is, for its README (scopesr.sdk.BUNDLES names them)
BUNDLE_BLURBS = {
    "default": "a blind x{scale} student",
    "low-noise": "the default's network trained without noise, for images that carry little (averaged "
    "confocal, long exposures): a x{scale} student",
    "large": "the default grown to 32 channels and 8 hidden layers, for stills where time per frame matters "
    "less: a x{scale} student with 4.7x the default's work per pixel",
}


def tflite_tiles(halo: int, size_multiple: int = 1) -> list[Any]:
    """The TFLite signatures for a model of this halo: the live sizes as they are and plus the
    halo, then the squares. A space-to-depth model's windows start on its cells (make_plan), so
    they grow by the halo rounded up to whole cells (17 -> 18 for cells of 2)."""
    pad = -(-halo // size_multiple) * size_multiple  # the halo, rounded up to whole cells
    grow = lambda t: (t + 2 * pad) if isinstance(t, int) else (t[0] + 2 * pad, t[1] + 2 * pad)  # noqa: E731
    return list(LIVE_SIZES) + [grow(t) for t in LIVE_SIZES] + TFLITE_SQUARES


SAMPLES = {  # demo sample file -> (held-out source, degradation): a clean and a noisy camera image
    "sample_nuclei.tif": ("sample:stardist-nuclei-2d", "bicubic"),
    "sample_nuclei_noisy.tif": ("sample:stardist-nuclei-2d", "noise-snr8"),
}


def _heldout_sources(card: Any) -> list[str]:
    held = (card.metrics or {}).get("heldout") or {}
    srcs = held.get("sources") or []
    if not srcs:
        raise BenchError(
            f"{card.name}: the card names no held-out sources (train with eval_sources, as "
            "trainer/recipes/default.toml does) - a release is scored on images the model never saw"
        )
    return list(srcs)


def _write_calibration(
    folder: Path, sources: Sequence[str], ranges: dict[str, Any] | None, per_source: int = 6, seed: int = 0
) -> Path:
    """int8 calibration images from the TRAINING sources (never the held-out ones), each passed
    through a random draw of the training degradations: int8 ranges must cover the LR images
    the model meets (noisy, binned, 8-bit...), not only clean HR planes."""
    import tifffile

    from scopesr.trainer.data import _read_planes, is_spec

    folder.mkdir(parents=True, exist_ok=True)
    draws = quality.DegradationRanges.from_dict(ranges or {})
    for i, spec in enumerate(s for s in sources if is_spec(s)):
        planes = _read_planes(spec)
        idx = np.unique(np.linspace(0, planes.shape[0] - 1, min(per_source, planes.shape[0])).round().astype(int))
        for j in idx:
            rng = np.random.default_rng([seed, i, int(j)])
            # the draw's optics, noise and camera at the plane's own size (scale 1): calibration
            # tiles must be as large as the largest TFLite signature, and LR of a 256 px plane is not
            draw = dataclasses.replace(draws.sample(rng), scale=1)
            lr, _ = draw.apply(planes[j][..., 0].astype(np.float64), rng, dtype="uint16")
            tifffile.imwrite(folder / f"src{i}_plane{j}.tif", lr)
    return folder


def _release_cmd(run: str, name: str) -> str:
    where = "sdk/models" if name == "default" else f"sdk/models/{name}"
    return f"sr-bench release {run}/final/generator.safetensors" + (
        f" --models-dir {where}" if name == "default" else f" --name {name} --models-dir {where}"
    )


def _recipe_line(
    training: dict[str, Any], depth: int | None = None, name: str = "default", channels: int | None = None
) -> str:
    """How the bundled weights were made: every stage's command, from the long run to the last
    fine-tune (grown wider or deeper, quantisation-aware, distilled), then the release of bundle
    ``name`` (its own ``make release-NAME`` target)."""
    stages = training_stages(training, depth, channels)
    if len(stages) == 1:
        return (
            "Recipe: `sr-train pretrain --config trainer/recipes/default.toml --out RUN` then "
            f"`{_release_cmd('RUN', name)}`. "
            f"Steps: {training.get('steps')}."
        )
    default_recipe = "trainer/recipes/default.toml"  # stages recorded before cards named their recipe

    def base(stage: dict[str, Any]) -> str:
        return f"sr-train pretrain --config {stage.get('recipe') or default_recipe}"

    first = stages[0]
    cmds = [
        f"`{base(first)} --out RUN1` ({first.get('steps')} steps"
        + (f", depth {first['depth']})" if first.get("depth") else ")")
    ]
    for k, st in enumerate(stages[1:], start=2):
        prev = stages[k - 2]
        deepened = bool(st.get("depth") and prev.get("depth") and st["depth"] != prev["depth"])
        # stages recorded before cards named their width carry no "channels": no claim either way
        widened = bool(st.get("channels") and prev.get("channels") and st["channels"] != prev["channels"])
        distill = st.get("mode") == "distill"
        parts = [base(st).replace("pretrain", "distill") if distill else base(st)]
        what = []
        if distill:
            init = st.get("init_from") if isinstance(st.get("init_from"), dict) else {}
            same = st.get("teacher_sha256") and st.get("teacher_sha256") == init.get("sha256")
            parts.append(f"--teacher {f'RUN{k - 1}/final/generator.safetensors' if same else st.get('teacher')}")
            if (st.get("teacher_ensemble") or 1) > 1:
                parts.append(f"--teacher-ensemble {st['teacher_ensemble']}")
                what.append(
                    "distilled from "
                    + ("its own " if same else "the teacher's ")
                    + f"{st['teacher_ensemble']}-copy self-ensemble and the ground truth"
                )
            else:
                what.append("distilled from the teacher and the ground truth")
        parts.append(f"--init-from RUN{k - 1}/final/generator.safetensors")
        if widened:
            parts.append(f"--model-arg channels={st['channels']}")
        if deepened:
            parts.append(f"--model-arg depth={st['depth']}")
        if widened:
            what.append(
                f"grown {prev['channels']} -> {st['channels']} channels"
                + (f" and {prev['depth']} -> {st['depth']} hidden layers" if deepened else "")
                + ", starting as the smaller network's function"
            )
        elif deepened:
            what.append(
                f"deepened {prev['depth']} -> {st['depth']} hidden layers, the new ones starting as the identity"
            )
        zoom, prev_zoom = stage_zoom_p(st), stage_zoom_p(prev)
        if zoom is not None and prev_zoom is not None and zoom != prev_zoom:  # unknown: no claim
            parts.append(f"--zoom-p {zoom:g}")
            what.append(f"{zoom:.0%} of the sharp crops zoomed into oversampled references, not {prev_zoom:.0%}")
        if st.get("quant_aware"):
            parts.append("--quant-aware")
            what.append("quantisation-aware, so the int8 file keeps the float quality")
        parts.append(f"--steps {st.get('steps')} --lr {st.get('lr')}")
        if st.get("lr_min") is not None:
            parts.append(f"--lr-min {st.get('lr_min')}")
        parts.append(f"--out RUN{k}")
        cmds.append(f"`{' '.join(parts)}`" + (f" ({'; '.join(what)})" if what else ""))
    n = len(stages)
    runs = (
        f"`make release-{name}` runs all {n + 1} stages"
        if name == "default"
        else f"{n + 1} stages, the default's first; `make release-{name}` runs the last ones"
    )
    return f"Recipe ({runs}): " + ", then ".join(cmds) + f", then `{_release_cmd(f'RUN{n}', name)}`."


def _per_source_markdown(summary: dict[str, Any]) -> list[str]:
    """Per source and degradation: bicubic, the fp32 model and the reference's noise ceiling
    (the PSNR a perfect prediction would score): how much of the possible gain the model takes."""
    sources = list(next(iter(summary.values()))["per_source"])
    lines = [
        "Per source, fp32 PSNR (dB): bicubic / model / ceiling (what a noise-free prediction would "
        "score against the reference's own noise; no upscaler can beat it).",
        "",
        "| degradation | " + " | ".join(sources) + " |",
        "|---|" + "---|" * len(sources),
    ]
    for deg, entry in summary.items():
        cells = []
        for src in sources:
            v = entry["per_source"][src]
            ceiling = v.get("psnr_ceiling")
            cells.append(
                f"{v['psnr_bicubic']:.2f} / {v['psnr_model']:.2f} / "
                + (f"{ceiling:.2f}" if ceiling is not None else "-")
            )
        lines.append(f"| {deg} | " + " | ".join(cells) + " |")
    return lines


def _int8_markdown(deltas: Sequence[dict[str, Any]]) -> list[str]:
    """Per source and degradation: int8 TFLite minus fp32 TFLite PSNR, mean over the source's
    planes / its worst plane: where quantisation costs, image by image."""
    sources = list(dict.fromkeys(d["source"] for d in deltas))
    lines = [
        "int8 minus fp32 TFLite PSNR (dB) per source: mean over its planes / worst plane.",
        "",
        "| degradation | " + " | ".join(sources) + " |",
        "|---|" + "---|" * len(sources),
    ]
    for deg in dict.fromkeys(d["degradation"] for d in deltas):
        cells = []
        for src in sources:
            v = [d["delta_db"] for d in deltas if d["degradation"] == deg and d["source"] == src]
            cells.append(f"{np.mean(v):+.3f} / {min(v):+.3f}" if v else "-")
        lines.append(f"| {deg} | " + " | ".join(cells) + " |")
    return lines


def _markdown(summary: dict[str, Any], artifacts: dict[str, dict[str, Any]], sources: list[str]) -> str:
    lines = [
        "| degradation | nearest | bicubic | "
        + " | ".join(artifacts)
        + " | gain fp32 | gain int8 | worst image fp32 / int8 |",
        "|---|---|---|" + "---|" * len(artifacts) + "---|---|---|",
    ]
    first = next(iter(artifacts.values()))["summary"]
    for deg in first:
        m0 = first[deg]["mean"]
        cells = [
            f"{m0['psnr_nearest']:.2f} / {m0['ssim_nearest']:.3f}",
            f"{m0['psnr_bicubic']:.2f} / {m0['ssim_bicubic']:.3f}",
        ]
        for a in artifacts.values():
            m = a["summary"][deg]["mean"]
            cells.append(f"{m['psnr_model']:.2f} / {m['ssim_model']:.3f}")
        fp = artifacts.get("onnx", next(iter(artifacts.values())))["summary"][deg]
        i8 = artifacts.get("tflite-int8", next(iter(artifacts.values())))["summary"][deg]
        cells += [
            f"{fp['gain_db_vs_bicubic']:+.2f} dB",
            f"{i8['gain_db_vs_bicubic']:+.2f} dB",
            f"{fp['worst_gain_db']:+.2f} / {i8['worst_gain_db']:+.2f} dB",
        ]
        lines.append(f"| {deg} | " + " | ".join(cells) + " |")
    lines += ["", *_per_source_markdown(artifacts.get("onnx", next(iter(artifacts.values())))["summary"])]
    if summary.get("int8_vs_fp32", {}).get("per_image"):
        lines += ["", *_int8_markdown(summary["int8_vs_fp32"]["per_image"])]
    if summary.get("added"):
        lines += [
            "",
            "Released "
            + str(summary.get("first_released") or "earlier")[:10]
            + "; added later from the same weights (`sr-bench release --add`, scored on the same images): "
            + ", ".join(f"{k} ({d})" for k, d in summary["added"].items())
            + ". Scores do not depend on the machine.",
        ]
    lines += [
        "",
        "PSNR (dB) / SSIM, mean over held-out sources (" + ", ".join(sources) + "). "
        "Gains are over bicubic; 'worst image' is the lowest per-image gain.",
        "",
        "Degradations: " + "; ".join(f"**{k}**: {v}" for k, v in summary["degradations"].items()) + ".",
        "",
        "Convention: " + summary["convention"],
    ]
    return "\n".join(lines)


def int8_vs_fp32(fp: dict[str, Any], i8: dict[str, Any]) -> dict[str, Any]:
    """Per image and degradation: int8 PSNR minus fp32 PSNR (dB); the worst, and the mean."""
    deltas = [
        {
            "degradation": a["degradation"],
            "source": a["source"],
            "image": a["image"],
            "delta_db": b["psnr_model"] - a["psnr_model"],
        }
        for a, b in zip(fp["rows"], i8["rows"])
    ]
    worst = min(deltas, key=lambda d: d["delta_db"])
    return {"worst": worst, "mean_db": float(np.mean([d["delta_db"] for d in deltas])), "per_image": deltas}


def release(
    weights: Path,
    models_dir: Path,
    data_dir: Path | None = None,
    results_dir: Path | None = None,
    threads: int = 2,
    max_planes: int = 6,
    work_dir: Path | None = None,
    name: str = "default",
    add: Sequence[str] = (),
) -> dict[str, Any]:
    """Bundle ``weights`` as bundled model ``name`` (default, low-noise) in ``models_dir``;
    returns the measured summary. Only the default writes the demo's sample images.

    ``add``: artifact keys (of ``ARTIFACTS``) to add to a bundle released before from the same
    weights. Only those are converted; they, and the fp32 files the int8 ones are measured
    against, are scored; every other file keeps its bytes (a re-export would change the fp32
    ONNX file's bytes and so the sha256 that earlier measurements name). The README and the
    results are rewritten from the previous results (``results_dir/quality_NAME.json``) with the
    new artifacts added."""
    import scopesr.sdk as sdk
    from scopesr.converters.api import convert
    from scopesr.trainer.checkpoint import load_generator, save_generator
    from scopesr.trainer.data import heldout_images
    from scopesr.trainer.models import model_config

    if name not in sdk.BUNDLES:
        raise BenchError(f"no bundled model {name!r}; bundled: {', '.join(sdk.BUNDLES)}")
    files = sdk.bundle_files(name)
    previous = _previous_summary(add, models_dir, results_dir, name, weights, files["safetensors"])
    model, card = load_generator(weights)
    scale = card.scale
    held_specs = _heldout_sources(card)
    images = heldout_images(held_specs, scale, max_planes)
    if previous and [im.name for im in images] != previous.get("images"):
        raise BenchError(
            f"--add: the held-out images differ from those of the previous release ({results_dir}); "
            "use the same --max-planes, or release the whole bundle again"
        )
    train_specs = [p["source"] for p in card.training.get("data", {}).get("provenance", [])]
    # with ``add`` the weights are the bundle's own: nothing of the work belongs beside them, so it
    # goes to a scratch folder, removed once the conversions are done (or when the object is freed)
    scratch = tempfile.TemporaryDirectory(prefix="scopesr-release-") if add and not work_dir else None
    if work_dir:
        work = Path(work_dir)
    elif scratch is not None:
        work = Path(scratch.name)
    else:
        work = Path(weights).resolve().parent.parent / "release"
    work.mkdir(parents=True, exist_ok=True)
    models_dir.mkdir(parents=True, exist_ok=True)

    out_w = models_dir / files["safetensors"]
    if not add:
        save_generator(
            model,
            out_w,
            card.architecture,
            model_config(model),
            training=card.training,
            metrics=card.metrics,
            normalisation=card.normalisation,
            degradation=card.degradation,
            name=name,
        )
    calib = _write_calibration(
        work / "calibration", train_specs, card.training.get("data", {}).get("degradation_ranges")
    )
    # what to convert, and what to score: with ``add``, the new files and the fp32 files they are
    # measured against (scored again from the bundled bytes, so the comparison is on the same images)
    convert_keys = list(add) if add else list(ARTIFACTS)
    score_keys = [k for k in ARTIFACTS if k in convert_keys or any(FP32_OF.get(a) == k for a in convert_keys)]
    results: dict[str, dict[str, Any]] = {}
    for key in score_keys:
        target, precision, fixed = ARTIFACTS[key]
        fname = files[key]
        path = models_dir / fname
        if key in convert_keys:
            tiles = tflite_tiles(card.halo, card.size_multiple) if fixed else None
            log.info("converting %s", path)
            convert(
                out_w,
                target,
                out=path,
                precision=precision,
                tile_sizes=tiles,
                calibration=calib if precision == "int8" else None,
                raise_on_failure=True,
            )
        up = sdk.load(path, num_threads=threads)
        log.info(
            "scoring %s on %d held-out images x %d degradations", fname, len(images), len(quality.EVAL_DEGRADATIONS)
        )
        res = quality.evaluate(lambda lr, up=up: up.upscale(lr), images, scale=scale)
        results[key] = res
        if key not in convert_keys:
            continue  # a bundled fp32 file scored only as the reference of a new int8 one
        art = sdk.ModelCard.load(path)
        art.name = Path(fname).stem  # default, default-fp32, default-int8, default-onnx-int8
        if name in NOISE_WARNINGS:
            art.extra[sdk.NOISE_WARNING_KEY] = NOISE_WARNINGS[name]
        art.training = card.training
        art.metrics = {
            **art.metrics,
            "heldout": {
                "sources": held_specs,
                "convention": res["convention"],
                "degradations": res["degradations"],
                "summary": res["summary"],
            },
        }
        if precision == "int8":
            art.metrics["int8_vs_fp32"] = {
                k: v for k, v in int8_vs_fp32(results[FP32_OF[key]], res).items() if k != "per_image"
            }
            art.extra["calibration"] = (
                "training sources only, each plane through a random draw of the "
                "training degradations: " + ", ".join(train_specs)
            )
        art.save(sdk.card_path_for(path))
    if scratch is not None:
        scratch.cleanup()
    summary = previous or {
        "weights": str(out_w),
        "heldout_sources": held_specs,
        "images": [im.name for im in images],
        "degradations": results["onnx"]["degradations"],
        "convention": results["onnx"]["convention"],
        "bundle": name,
        "artifacts": {},
    }
    summary["artifacts"].update({k: {"file": files[k], "summary": results[k]["summary"]} for k in convert_keys})
    if add:
        summary["added"] = {**summary.get("added", {}), **dict.fromkeys(add, _today())}
    if "tflite-int8" in convert_keys:
        summary["int8_vs_fp32"] = int8_vs_fp32(results["tflite"], results["tflite-int8"])
    if "onnx-int8" in convert_keys:
        summary["int8_vs_fp32_onnx"] = int8_vs_fp32(results["onnx"], results["onnx-int8"])
    if name == "default" and not add:
        _write_samples(data_dir or Path(sdk.__file__).resolve().parent / "data", scale)
    md = _markdown(summary, {k: v for k, v in summary["artifacts"].items()}, held_specs)
    atomic_write_text(models_dir / "README.md", _models_readme(card, md, summary, name))
    if results_dir is not None:
        from .results import record

        record(
            results_dir,
            "quality_" + name.replace("-", "_"),
            summary,
            f"# Held-out quality of the bundled {name} model, per degradation\n\n" + md + "\n",
            "release (sr-bench release)",
            threads=threads,
        )
    return summary


def _write_samples(data_dir: Path, scale: int) -> None:
    """The demo's inputs: LR images of a held-out source, one clean and one noisy."""
    import tifffile

    from scopesr.trainer.data import heldout_images

    data_dir.mkdir(parents=True, exist_ok=True)
    for fname, (spec, deg_name) in SAMPLES.items():
        im = heldout_images([spec], scale, 1)[0]
        deg = quality.degradation_from_name(deg_name, scale)
        lr, _ = deg.apply(im.data, np.random.default_rng([0, 0]))
        with atomic_path(data_dir / fname, suffix=".tmp.tif") as tmp:
            tifffile.imwrite(
                tmp,
                lr,
                description=f"scopesr demo sample: {deg.describe()} of {spec} (held out of training; BSD-3-Clause)",
            )


def _models_readme(card: Any, table: str, summary: dict[str, Any], name: str = "default") -> str:
    t = card.training
    data = t.get("data", {})
    srcs = "\n".join(
        f"- `{p['source']}`: "
        + (
            f"{p.get('package')} {p.get('version') or ''} `{p.get('file')}`, planes "
            f"{p.get('planes')}, {p.get('licence')}" + (f", {p['transform']}" if p.get("transform") else "")
            if p.get("kind") == "sample"
            else f"{p.get('kind')}, {p.get('images', '')} images"
        )
        for p in data.get("provenance", [])
    )
    return "\n".join(
        [
            f"# The bundled {name} model",
            "",
            f"`{card.architecture}`: {BUNDLE_BLURBS[name].format(scale=card.scale)} (convolutions at LR resolution, "
            "an anchor added "
            "before "
            f"depth-to-space, {card.extra.get('params', '?')} parameters, halo {card.halo} LR px) trained on random "
            "draws of the "
            "microscope degradation model (`scopesr.sdk.quality`): PSF blur, anti-aliased / binned / aliased sampling, "
            "Poisson-Gaussian noise, 8-16-bit cameras. Written by `sr-bench release`; every number below is also "
            "in the "
            "artifact's card.",
            "",
            _recipe_line(t, card.arch_args.get("depth"), name, card.arch_args.get("channels")),
            "",
            "Training sources:",
            srcs,
            "",
            "Held out (never trained on, whole sources): "
            + ", ".join(f"`{s}`" for s in summary["heldout_sources"])
            + ".",
            "",
            table,
            "",
            _int8_line("TFLite", summary["int8_vs_fp32"]),
            *(["", _int8_line("ONNX", summary["int8_vs_fp32_onnx"])] if summary.get("int8_vs_fp32_onnx") else []),
            "",
        ]
    )


def _int8_line(runtime: str, d: dict[str, Any]) -> str:
    """One runtime's int8 file against its fp32 one (``int8_vs_fp32``'s summary) in a sentence."""
    w = d["worst"]
    return (
        f"int8 vs fp32 ({runtime}): mean {d['mean_db']:+.3f} dB, worst {w['delta_db']:+.3f} dB "
        f"({w['image']}, {w['degradation']})."
    )


def _previous_summary(
    add: Sequence[str], models_dir: Path, results_dir: Path | None, name: str, weights: Path, weights_name: str
) -> dict[str, Any] | None:
    """For ``release(add=...)``: the previous release's summary, after checking that the bundle is
    there and ``weights`` are its weights; None for a whole release."""
    if not add:
        return None
    from scopesr.sdk import sha256_path

    unknown = [k for k in add if k not in ARTIFACTS]
    if unknown:
        raise BenchError(f"--add {', '.join(unknown)}: not an artifact; choose from {', '.join(ARTIFACTS)}")
    if results_dir is None:
        raise BenchError("--add needs --results-dir: the previous release's results are extended, not rewritten")
    prev = Path(results_dir) / f"quality_{name.replace('-', '_')}.json"
    bundled = Path(models_dir) / weights_name
    if not prev.is_file() or not bundled.is_file():
        raise BenchError(
            f"--add extends a released bundle, and {prev if not prev.is_file() else bundled} is missing: "
            "release the whole bundle first (sr-bench release without --add)"
        )
    if sha256_path(Path(weights)) != sha256_path(bundled):
        raise BenchError(
            f"--add: {weights} are not the bundled weights {bundled}; new artifacts must come from the "
            "same weights as the bundle (pass that file), or release the whole bundle again"
        )
    # what record() adds around a summary is written afresh by the next record()
    recorded = load_summary(prev)
    summary = {k: v for k, v in recorded.items() if k not in RECORD_KEYS}
    summary.setdefault("first_released", recorded.get("date"))
    missing = [k for k in ARTIFACTS if k not in add and k not in summary.get("artifacts", {})]
    if missing:
        raise BenchError(f"--add: the previous release has no {', '.join(missing)}; release the whole bundle again")
    return summary


def _today() -> str:
    from datetime import date

    return date.today().isoformat()


def load_summary(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
