"""``sr-bench``: the paper's Table 3 (speed) and Table 2 (quality), side by side, on every backend;
``sr-bench release``: bundle trained weights as the SDK's default model.

Speed (Table 3 analogue): rows are the five generator presets (the paper's ablations), the
student presets, nearest, bicubic and the OpenCV peers (ESPCN, FSRCNN x4; when
opencv-contrib is installed and their files are found). Columns: one 64x64 LR patch through
the runtime, a 512x512 output through the SDK's seam-free tiler, and a 64x64 ROI of a video
through ``Upscaler.stream``. One table per backend: torch (CPU or CUDA), ONNX Runtime,
TFLite fp32 and int8 (the presets are converted with :func:`scopesr.converters.api.convert`).
Timing uses random-init weights (speed does not depend on the weights' values).

Quality (Table 2 analogue): one row per degradation of ``scopesr.sdk.quality.EVAL_DEGRADATIONS``
(how a microscope makes the LR image), with nearest, bicubic, every trained model given with
``--model`` and the peers side by side, on real held-out images (a model card's held-out list,
else fixed samples), scored by ``scopesr.sdk.quality.evaluate``.

``sr-bench`` is a click group: without a subcommand it runs the benchmark (the options below);
``sr-bench release`` runs :func:`scopesr.bench.release.release`.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import click

from scopesr.sdk.errors import ScopesrError
from scopesr.sdk.upscaler import BUNDLES

from .backends import BACKENDS, DEFAULT_BACKENDS
from .machine import usable_cores
from .release import ARTIFACTS
from .run import run_bench
from .settings import FULL, QUICK, Budget, Settings
from .subjects import default_presets

#: exit statuses, the same for every scopesr command
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\b
What is measured:
  Speed (Table 3): for each backend, each preset (teacher ablations srgan, srgan-deconv,
  srgan-interp, srgan-nobn, paper; the students) with random-init weights: one 64x64 LR
  patch (ms), a 128x128 LR image to a 512x512 output through the SDK tiler (ms), and a
  64x64 ROI of a video through Upscaler.stream (FPS), each as median [min-max] after a
  warm-up; plus parameters, MACs per LR pixel and achieved GFLOP/s (and % of the GPU's
  datasheet peak on CUDA). Reference rows: nearest, bicubic, OpenCV ESPCN / FSRCNN x4
  (when opencv-contrib is installed; their model files ship with scopesr, --peers DIR
  to use others).
  GPU path (CUDA only; "not measured" otherwise): bf16 autocast, channels_last, CUDA graphs
  per tile shape, pinned uploads overlapped with compute, optional torch.compile; targets
  for the paper preset: 512x512 output <= 5 ms, 1920x1080 output >= 60 FPS.
  Quality (Table 2): one row per degradation (--degradations; all rows of
  scopesr.sdk.quality.EVAL_DEGRADATIONS, in --quick mode bicubic, binning, noise-snr8,
  cubic-noaa), nearest, bicubic, each --model and the peers side by side, PSNR and SSIM,
  the best per row named. Images: the held-out list of a --model's card (or the bundled
  default's): metrics.heldout.sources specs such as sample:stardist-nuclei-2d, or
  training.heldout planes. Scored by scopesr.sdk.quality.evaluate: raw intensities, 8 px
  border (quality.DEFAULT_BORDER); earlier sr-bench versions scored 0..1-scaled images
  with a 4 px border, so older tables are not comparable.
\b
Output in --out: bench.json (everything, with the machine), bench.md (the tables), bench.png.
\b
Examples:
  sr-bench --quick --out benchmarks/results/bench_quick
  sr-bench --model sdk/models/default.onnx --backends torch-cpu,onnx --out results/
  sr-bench --device cuda --backends torch-cuda --presets paper --compile
  sr-bench --no-speed --model runs/paper/final.safetensors --image my_cells.tif
  sr-bench --no-speed --model sdk/models/default.onnx --degradations bicubic,noise-snr20
  sr-bench release RUN/final/generator.safetensors --models-dir sdk/models
\b
Without a command sr-bench runs the benchmark (the options above); `sr-bench release
WEIGHTS --models-dir DIR` bundles trained weights as the default model (its own --help).
\b
Exit status: 0 everything asked for was measured; 1 some measurements or inputs failed
(a conversion, a --model that does not load, no real images; the report still lists the
rest and names the failures); 2 usage error (an unknown option, backend, preset,
degradation or command).
"""

RELEASE_EPILOG = """\b
Steps (scopesr.bench.release):
  1. copy WEIGHTS as MODELS_DIR/default-weights.safetensors (+ card);
  2. convert to ONNX fp32, TFLite fp32, TFLite int8 and ONNX int8 (int8 calibrated on the
     run's training sources only), each parity-checked against PyTorch;
  3. score every artifact through scopesr.sdk.load on the card's held-out sources
     (metrics.heldout.sources) under every degradation row, into each artifact's card;
  4. write MODELS_DIR/README.md, the demo's clean and noisy samples (--data-dir) and,
     with --results-dir, quality_default.{json,md}.
Takes minutes (four conversions and their scoring). --add ARTIFACT converts and scores
only that one (and the fp32 file it is measured against) for a bundle released before.
\b
Example:
  sr-train pretrain --config trainer/recipes/default.toml --out runs/default
  sr-bench release runs/default/final/generator.safetensors --models-dir sdk/models \\
      --results-dir benchmarks/results
\b
Exit status: 0 released; 1 the release failed (a conversion, a parity check, a card
without held-out sources, a missing sample); 2 usage error.
"""


def _logging(verbose: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("onnxscript", "torch.onnx", "torch._dynamo", "absl", "tifffile"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _split(v: str | None) -> list[str] | None:
    return None if v is None else [x.strip() for x in v.split(",") if x.strip()]


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _degradations(v: str | None) -> list[str] | None:
    """``--degradations A,B`` (or ``all``) -> row names, checked against ``EVAL_DEGRADATIONS``."""
    from scopesr.sdk.quality import EVAL_DEGRADATIONS

    names = _split(v)
    if not names:
        return None
    if names == ["all"]:
        return list(EVAL_DEGRADATIONS)
    unknown = [n for n in names if n not in EVAL_DEGRADATIONS]
    if unknown:
        raise click.BadParameter(
            f"{unknown}: choose from {', '.join(EVAL_DEGRADATIONS)} (or all)", param_hint="--degradations"
        )
    return list(dict.fromkeys(names))


@click.group(context_settings=CONTEXT, epilog=EPILOG, invoke_without_command=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Folder for bench.json, bench.md and bench.png.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A few minutes on a small CPU: fewer repeats, teachers on torch and "
    "ONNX only, smaller quality crops (one image per source).",
)
@click.option(
    "--presets", default=None, metavar="A,B", help="Presets to time (default: the five teachers and every student)."
)
@click.option(
    "--backends",
    default=None,
    metavar="A,B",
    help=f"Any of {', '.join(BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)}; torch follows --device; "
    "unavailable ones are reported as skipped).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="torch and ONNX Runtime device; auto = CUDA when available.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Threads per runtime (default: the usable CPU cores)."
)
@click.option(
    "--torch-dtype",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="torch autocast dtype (auto: bf16 on CUDA, fp32 on CPU).",
)
@click.option("--channels-last/--no-channels-last", default=None, help="torch NHWC memory format (default: on CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the torch models (slow to start).")
@click.option(
    "--cuda-graphs/--no-cuda-graphs", default=None, help="Replay CUDA graphs per tile shape (default: on with CUDA)."
)
@click.option(
    "--peers",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with OpenCV dnn_superres .pb files (default: the ESPCN/FSRCNN x4 files bundled in "
    "scopesr.bench.peers).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A trained model for the quality table (.safetensors with card, or any SDK artifact). Repeatable.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An extra real HR image for the quality table. Repeatable.",
)
@click.option(
    "--degradations",
    default=None,
    metavar="A,B",
    help="Quality rows: names from scopesr.sdk.quality.EVAL_DEGRADATIONS (bicubic, binning, psf, "
    "noise-snr20, noise-snr8, cubic-noaa, camera-12bit) or all (default: all; with --quick: "
    "bicubic,binning,noise-snr8,cubic-noaa).",
)
@click.option("--no-speed", is_flag=True, help="Skip the speed tables.")
@click.option("--no-quality", is_flag=True, help="Skip the quality table.")
@click.option("--tile", type=int, default=None, help="LR tile for the tiler column (default: the SDK's choice).")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="Timed calls per cell (upper bound).")
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds of timed calls per cell before stopping early.",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep converted artifacts here and reuse them (default: a temporary folder).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-init weights.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.pass_context
def main(
    ctx: click.Context,
    out: Path,
    quick: bool,
    presets: str | None,
    backends: str | None,
    device: str,
    threads: int | None,
    torch_dtype: str,
    channels_last: bool | None,
    compile_: bool,
    cuda_graphs: bool | None,
    peers: Path | None,
    models: tuple[Path, ...],
    images: tuple[Path, ...],
    degradations: str | None,
    no_speed: bool,
    no_quality: bool,
    tile: int | None,
    repeats: int | None,
    budget: float | None,
    cache: Path | None,
    seed: int,
    no_progress: bool,
    verbose: int,
) -> None:
    """Reproduce the paper's Table 3 (speed, every backend) and Table 2 (PSNR/SSIM per degradation)
    side by side; or, with the release command, bundle trained weights as the default model."""
    _logging(verbose)
    if ctx.invoked_subcommand is not None:
        return  # a subcommand (release) runs with its own options
    be = _split(backends) or list(DEFAULT_BACKENDS)
    bad = [b for b in be if b not in BACKENDS]
    if bad:
        raise click.BadParameter(f"{bad}: choose from {', '.join(BACKENDS)}", param_hint="--backends")
    names = _split(presets)
    if names:
        from scopesr.trainer import list_presets

        known = [p.name for p in list_presets()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise click.BadParameter(
                f"{unknown}: choose from {', '.join(known)} (see `sr-train presets`)", param_hint="--presets"
            )
    degs = _degradations(degradations)
    b = QUICK if quick else FULL
    b = Budget(b.warmup, repeats or b.repeats, min(b.min_repeats, repeats or b.repeats), budget or b.budget_s)
    st = Settings(
        out=out,
        quick=quick,
        backends=be,
        device=device,
        threads=threads or usable_cores(),
        torch_dtype=torch_dtype,
        channels_last=channels_last,
        compile=compile_,
        cuda_graphs=cuda_graphs,
        peers=peers,
        models=list(models),
        images=list(images),
        degradations=degs,
        speed=not no_speed,
        quality=not no_quality,
        tile=tile,
        seed=seed,
        cache=cache,
        progress=not no_progress,
        command="sr-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        budget=b,
    )
    try:
        st.presets = names if names is not None else (default_presets() if st.speed else [])
        res = run_bench(st)
    except ScopesrError as exc:
        click.echo(f"sr-bench: error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo((out / "bench.md").read_text(encoding="utf-8"))
    click.echo(
        f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'} ({res['elapsed_s']:.0f} s)", err=True
    )
    if res["failures"]:
        click.echo(f"sr-bench: {len(res['failures'])} measurement(s) failed (listed in bench.md):", err=True)
        for f in res["failures"]:
            click.echo(f"  {f}", err=True)
        sys.exit(EXIT_FAILED)


@main.command(
    "release",
    context_settings=CONTEXT,
    epilog=RELEASE_EPILOG,
    short_help="Bundle trained weights as the SDK's default model, scored per degradation.",
)
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--models-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the default model's files go (the SDK's own: sdk/models).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo's sample images go (default: the SDK's data folder).",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also record quality_default.{json,md} here (e.g. benchmarks/results).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads for scoring the artifacts (default: the usable CPU cores).",
)
@click.option(
    "--max-planes",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Planes scored per held-out stack (evenly spaced).",
)
@click.option(
    "--name",
    type=click.Choice(list(BUNDLES)),
    default="default",
    show_default=True,
    help="Which bundled model this is: default (its files in sdk/models), low-noise (sdk/models/low-noise) "
    "or large (sdk/models/large). "
    "Files are NAME.onnx, NAME-fp32.tflite, NAME-int8.tflite, NAME-onnx-int8.onnx, NAME-weights.safetensors; results "
    "quality_default, quality_low_noise or quality_large; only the default writes the demo's samples.",
)
@click.option(
    "--add",
    "add",
    multiple=True,
    type=click.Choice(list(ARTIFACTS)),
    help="Add this artifact to a bundle released before from the same WEIGHTS (the bundled weights file), "
    "e.g. --add onnx-int8: only it is converted, the other files keep their bytes, and the README and "
    "results (--results-dir, required) gain its scores. Repeatable.",
)
@click.option("-v", "--verbose", count=True, help="More log output.")
def release_cmd(
    weights: Path,
    models_dir: Path,
    data_dir: Path | None,
    results_dir: Path | None,
    threads: int | None,
    max_planes: int,
    name: str,
    add: tuple[str, ...],
    verbose: int,
) -> None:
    """Bundle WEIGHTS (a trained generator's .safetensors with its card) as the SDK's default
    model: convert, score per degradation on the card's held-out sources, write cards and README."""
    from .release import release

    if verbose:
        _logging(verbose)
    try:
        summary = release(
            weights,
            models_dir,
            data_dir=data_dir,
            results_dir=results_dir,
            threads=threads or usable_cores(),
            max_planes=max_planes,
            name=name,
            add=add,
        )
    except (ScopesrError, OSError) as exc:
        click.echo(f"sr-bench release: error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    for key, a in summary["artifacts"].items():
        if add and key not in add:
            continue
        gains = ", ".join(f"{d} {e['gain_db_vs_bicubic']:+.2f} dB" for d, e in a["summary"].items())
        click.echo(f"{models_dir / a['file']}: gain over bicubic: {gains}")
    w = summary["int8_vs_fp32"]["worst"]
    click.echo(
        f"int8 vs fp32: mean {summary['int8_vs_fp32']['mean_db']:+.3f} dB, worst {w['delta_db']:+.3f} dB "
        f"({w['image']}, {w['degradation']}); wrote {models_dir / 'README.md'}"
    )
    if "int8_vs_fp32_onnx" in summary:
        w = summary["int8_vs_fp32_onnx"]["worst"]
        click.echo(
            f"int8 vs fp32 (ONNX): mean {summary['int8_vs_fp32_onnx']['mean_db']:+.3f} dB, worst "
            f"{w['delta_db']:+.3f} dB ({w['image']}, {w['degradation']})"
        )


if __name__ == "__main__":
    main()
