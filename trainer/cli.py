"""``sr-train``: list presets, pre-train, GAN-train, distil, evaluate.

Option precedence (lowest first): built-in defaults, ``--config FILE`` (TOML or JSON; top
level options plus ``[data]`` and ``[model_args]`` tables), the run's saved
``config.json`` when ``--resume`` finds one, then the options given on the command line.
Only options actually given override: one left out keeps the value of the layer below.
The resolved config is saved as ``OUT/config.json``.

Examples::

    sr-train presets --json
    sr-train pretrain --data DIR --preset paper --steps 20000 --out runs/pre
    sr-train gan --data DIR --preset paper --init-from runs/pre/final/generator.safetensors --out runs/gan
    sr-train gan --out runs/gan --resume
    torchrun --nproc-per-node 4 -m scopesr.trainer.cli gan --data DIR --out runs/ddp
    sr-train distill --teacher runs/gan/final/generator.safetensors --preset student-small --data DIR --out runs/st
    sr-train eval --model runs/gan/final/generator.safetensors --data HR_DIR --out runs/eval
    sr-train pretrain --data DIR --preset paper --precision bf16 --compile --out runs/fast   # GPU path
    sr-train pretrain --config trainer/recipes/default.toml --out runs/default   # the bundled default's recipe
    sr-train pretrain --config trainer/recipes/default.toml --init-from runs/default/final/generator.safetensors \
        --quant-aware --steps 8000 --lr 1e-4 --lr-min 1e-6 --out runs/default-qat   # then: int8-safe fine-tune
    sr-train pretrain --preset student-robust --data 'sample:napari-nuclei[0:50]' 'synthetic:mixed?n=64' \\
        --balance sources --degradation microscopy --lr-schedule cosine --lr-min 1e-5 \\
        --eval-sources sample:stardist-nuclei-2d --eval-every 1000 --out runs/blind   # blind, per-source scores

Every run records its training throughput (images/s, HR Mpx/s) in OUT/throughput.json,
in metrics.jsonl and in the card.

Exit status: 0 done; 1 the run failed after it had started (a non-finite loss, a data
error found mid-run; the checkpoints written so far are kept), or eval failed on its
inputs; 2 usage error, nothing was trained (an unknown or bad option, a bad --config file
or value, an unknown preset, data that cannot be found, an --out that is a file or not
writable, an --out that already holds a run and no --resume, --resume where OUT holds no
checkpoint).

``--resume`` continues from the newest readable checkpoint in OUT/checkpoints: a newer one
that cannot be read (truncated) is set aside as ``*.pt.bad`` with a warning.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from scopesr.sdk import ScopesrError
from scopesr.sdk.clitools import EXIT_FAILED, EXIT_OK, EXIT_USAGE, run_command

log = logging.getLogger("scopesr.trainer")

#: exit statuses, the same for every scopesr command

# option dest -> where it goes in the config dict ("data" table or top level)
_DATA_KEYS = {
    "data",
    "layout",
    "channels",
    "hr_size",
    "degradation",
    "augment",
    "val_fraction",
    "norm_mode",
    "p_low",
    "p_high",
    "balance",
    "zoom_p",
}

# options that take one or more values (``--data A B C``, as before the move to click);
# see _spread
_MULTI: dict[str, tuple[str, ...]] = {
    "train": ("--data", "--eval-sources", "--eval-degradations"),
    "eval": ("--data",),
}

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

_PRECEDENCE_AND_EXIT = """\b
Option precedence (lowest first): built-in defaults < --config FILE < the run's saved
OUT/config.json (with --resume) < options given here. Only options actually given override.
\b
Exit status: 0 done; 1 the run failed after it had started (a non-finite loss, a data error
found mid-run; checkpoints written so far are kept); 2 usage error, nothing was trained (a bad
option, a bad --config file or value, an unknown preset, data not found, an --out that is a
file or not writable, an --out that holds a run and no --resume, --resume with no checkpoint).
"""

_EVAL_EXIT = """\b
Exit status: 0 done; 1 the evaluation failed on its inputs (a model or image that cannot be
read or used); 2 usage error (a bad option, a --model file that does not exist).
"""


def _plain(text: str) -> str:
    """Docstring RST -> terminal text."""
    return text.replace("``", "").replace("::", ":")


def _epilog_from_doc() -> str:
    """The module docstring after its first paragraph, each paragraph kept as written."""
    rest = (__doc__ or "").partition("\n\n")[2]
    return "\n\n".join("\b\n" + _plain(p.strip("\n")) for p in rest.split("\n\n") if p.strip())


# ---------------------------------------------------------------------------- option types
def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r}: use KEY=VALUE, e.g. n_blocks=8")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def _model_args(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> list[tuple[str, Any]]:
    return [_kv(v) for v in value]


def _as_int(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else int(value)


def _compile(ctx: click.Context, param: click.Parameter, value: str | None) -> bool | str | None:
    # --compile alone = True (the default backend, inductor); --compile BACKEND = that backend
    return True if value == _COMPILE_DEFAULT else value


_COMPILE_DEFAULT = "\0default"


def _degradation_names() -> str:
    from scopesr.sdk.quality import LEGACY_DEGRADATIONS  # numpy only: cheap for --help

    return ", ".join(LEGACY_DEGRADATIONS)


def _eval_degradation_names() -> list[str]:
    from scopesr.sdk.quality import EVAL_DEGRADATIONS

    return list(EVAL_DEGRADATIONS)


# ---------------------------------------------------------------------------- the options
def _train_options(mode: str) -> list[Callable[[Any], Any]]:
    """click decorators of one training subcommand; every default is None (not given) and only
    options given on the command line reach resolve_config."""
    o = click.option
    opts: list[Callable[[Any], Any]] = [
        o("--config", type=click.Path(dir_okay=False), help="TOML/JSON config file (options, [data], [model_args])."),
        o(
            "--data",
            multiple=True,
            metavar="SRC...",
            help="Training sources, one or more (the option may repeat): folders/files of images or TIFF "
            "stacks, a Human Protein Atlas layout folder, sample:KEY[a:b][#invert] (planes a..b-1 of a "
            "real image a pip package ships; #invert = grey and inverted, for brightfield/H&E) or "
            "synthetic:KIND?n=N (N rendered fluorescence scenes; KIND nuclei, filaments, membranes, "
            "puncta or mixed). Quote specs with [ ] or ? in a shell.",
        ),
        o("--layout", type=click.Choice(["auto", "hpa", "folder"]), help="How --data folders are read (default auto)."),
        o(
            "--channels",
            type=click.Choice(["1", "3"]),
            callback=_as_int,
            help="1 grey or 3 RGB (default: the model's).",
        ),
        o(
            "--balance",
            type=click.Choice(["items", "sources"]),
            help="items: every image plane equally likely (default); sources: every --data entry equally "
            "likely whatever its number of planes (or as [data.source_weights] in --config says).",
        ),
        o(
            "--preset",
            metavar="NAME",
            help="Generator preset (see `sr-train presets`; default paper, distill: student-small).",
        ),
        o(
            "--model-arg",
            "model_args",
            multiple=True,
            callback=_model_args,
            metavar="KEY=VALUE",
            help="Override a preset argument, e.g. --model-arg n_blocks=8 (repeatable).",
        ),
        o("--steps", type=int, help="Training steps (default 1000)."),
        o("--batch-size", type=int, help="Crops per step (default 16)."),
        o("--hr-size", type=int, help="HR crop size (default 256)."),
        o(
            "--degradation",
            metavar="NAME",
            help=f"How LR crops are made: microscopy (the blind microscope model of scopesr.sdk.quality: a "
            f"PSF, sampling, noise and camera drawn per crop, ranges from [data.degradation_ranges]) or a "
            f"PIL resampling: {_degradation_names()} (default pil-bicubic, the paper's).",
        ),
        o(
            "--zoom-p",
            type=float,
            help="microscopy: share of the sharp crops resampled by a random zoom before the degradation "
            "(oversampled references, so smooth images get smooth answers; range from [data] zoom_range). "
            "Overrides the recipe's [data] zoom_p (default 0: off).",
        ),
        o("--augment/--no-augment", default=None, help="Random flips and 90-degree rotations (default on)."),
        o("--val-fraction", type=float, help="Share of the items held out for validation (default 0.1)."),
        o(
            "--content-loss",
            type=click.Choice(["vgg", "mse", "l1"]),
            help="Default: vgg for gan, mse for pretrain, l1 for distill.",
        ),
        o(
            "--mse-weight",
            type=float,
            help="With --content-loss l1: add this times the MSE (L1's pull on small errors, MSE's on "
            "large ones; equal at an error of 1/(2*weight)). Default 0.",
        ),
        o(
            "--crop-log-eps",
            type=float,
            help="> 0: every L1 loss becomes the mean over crops of log(EPS + the crop's L1), so a crop "
            "counts by its relative error, as an image's PSNR does (EPS in normalised units, e.g. 0.01). "
            "Default 0: plain L1.",
        ),
        o(
            "--loss-margin",
            type=int,
            help="LR pixels at each side of every training crop left out of the pixel losses (pretrain, "
            "distill): there the network reads its own zero padding, where in use it reads real "
            "neighbours. Default 0: the whole crop.",
        ),
        o("--vgg-weights", metavar="FILE", help="torchvision VGG19 state dict file (offline use)."),
        o("--lr", type=float, help="Learning rate (default 1e-4; distill 1e-3)."),
        o(
            "--lr-schedule",
            type=click.Choice(["step", "cosine"]),
            help="step: one drop by --lr-drop-factor at --lr-drop-at (the paper; default); cosine: decay to "
            "--lr-min over the run.",
        ),
        o("--lr-min", type=float, help="cosine: the last learning rate (default 0)."),
        o("--lr-drop-at", type=float, help="step: <=1 a fraction of the steps, >1 a step (default 0.5)."),
        o("--lr-drop-factor", type=float, help="step: factor of the drop (default 0.1)."),
        o("--beta1", type=float, help="Adam beta1 (default 0.9)."),
        o("--beta2", type=float, help="Adam beta2 (default 0.99, the paper's text)."),
        o(
            "--init-from",
            metavar="FILE",
            help="Start from a generator .safetensors (e.g. a pretrain run). A student with more "
            "hidden layers (--model-arg depth=N) starts from a shallower one's weights, the new "
            "layers as the identity; one trained as RepConv branches (--model-arg reparam=true) "
            "starts as exactly the plain file's function.",
        ),
        o(
            "--quant-aware/--no-quant-aware",
            default=None,
            help="Students: train through the rounding of the int8 TFLite file (int8 weights and activations "
            "in the layers it computes in int8), so the int8 file keeps the float model's quality. Use it to "
            "fine-tune a trained student (--init-from, a low --lr, a few thousand steps). Default off.",
        ),
    ]
    if mode == "gan":
        opts += [
            o("--adv-weight", type=float, help="Adversarial loss weight (default 1e-3)."),
            o("--l1-weight", type=float, help="L1 loss weight (default 1e-2)."),
            o(
                "--real-label-range",
                type=float,
                nargs=2,
                metavar="LO HI",
                help="Default 0.8 1.2 (paper text); 0.8 1.0 = the paper's code.",
            ),
            o("--fake-label-range", type=float, nargs=2, metavar="LO HI", help="Default 0.0 0.2."),
            o("--disc-head", type=click.Choice(["gap", "dense"]), help="gap (the paper; default) or dense (SRGAN)."),
            o("--disc-channels", type=int, help="Discriminator width (default 64)."),
        ]
    if mode == "distill":
        opts += [
            o("--teacher", metavar="FILE|none", help="Teacher generator .safetensors, or 'none' (ground truth alone)."),
            o("--teacher-weight", type=float, help="Weight of the L1 to the teacher (default 1)."),
            o("--gt-weight", type=float, help="Weight of the L1 to the ground truth (default 1)."),
            o(
                "--teacher-ensemble",
                type=click.Choice(["1", "2", "4", "8"]),
                callback=lambda _c, _p, v: None if v is None else int(v),
                help="Average the teacher over N flipped/transposed copies of each batch (default 1). "
                "A student distilled from its own 8-copy ensemble learns part of what the ensemble gains.",
            ),
        ]
    opts += [
        o(
            "--eval-sources",
            multiple=True,
            metavar="SPEC...",
            help="Held-out sources scored per degradation during and after training (same forms as --data; "
            "never training data), one or more.",
        ),
        o(
            "--eval-degradations",
            multiple=True,
            type=click.Choice(_eval_degradation_names()),
            metavar="NAME...",
            help=f"Degradation rows of the held-out scores, one or more of {', '.join(_eval_degradation_names())} "
            "(default: all).",
        ),
        o("--eval-every", type=int, help="Score the held-out sources every N steps (default 0: at the end only)."),
        o("--eval-max-planes", type=int, help="Planes scored per held-out source, evenly spaced (default 6)."),
        o("--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N (default auto)."),
        o("--amp/--no-amp", default=None, help="With --precision auto: bf16 on CUDA (default), --no-amp: fp32."),
        o(
            "--precision",
            type=click.Choice(["auto", "fp32", "bf16"]),
            help="Autocast: auto = bf16 on CUDA, fp32 on CPU (default); bf16 = on any device. Weights stay fp32.",
        ),
        o("--channels-last/--no-channels-last", default=None, help="NHWC memory format (default: on CUDA only)."),
        o(
            "--compile",
            is_flag=False,
            flag_value=_COMPILE_DEFAULT,
            callback=_compile,
            metavar="[BACKEND]",
            help="torch.compile the generator (default backend inductor).",
        ),
        o(
            "--throughput-warmup",
            type=int,
            metavar="STEPS",
            help="Steps per session left out of the throughput figures (default 5).",
        ),
        o("--workers", type=int, help="DataLoader worker processes (default 2)."),
        o(
            "--threads",
            type=int,
            help="torch intra-op threads (default 0: torch's choice). On shared cores 1 avoids spinning threads; "
            "resume with the same number for the exact same weights.",
        ),
        o("--seed", type=int, help="Seed of the model init, crops, split and labels (default 0)."),
        o("--ckpt-every", type=int, help="Checkpoint every N steps (default 500; 0: at the end only)."),
        o("--keep", type=int, help="Checkpoints kept (default 3)."),
        o("--val-every", type=int, help="Validate every N steps (default 500; 0: at the end only)."),
        o("--val-size", type=int, help="HR size of the validation centre crops (default: --hr-size)."),
        o("--log-every", type=int, help="Log every N steps (default 10)."),
        o("--progress/--no-progress", default=None, help="Progress bar (default on)."),
        o("--time-limit-min", type=float, help="Stop and save after this many minutes."),
        o("--stop-at", type=int, hidden=True),
        o("--vgg-random-init", is_flag=True, default=None, hidden=True),
        o("--out", metavar="DIR", help="Run folder (default runs/run)."),
        o(
            "--resume",
            is_flag=True,
            default=None,
            help="Continue from OUT's newest readable checkpoint (refused when OUT holds none).",
        ),
    ]
    return opts


def _with_options(opts: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def deco(f: Any) -> Any:
        for opt in reversed(opts):  # listed order = --help order
            f = opt(f)
        return f

    return deco


def _given(ctx: click.Context, params: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line (or by environment), as resolve_config takes them."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if ctx.get_parameter_source(name) not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue
        out[name] = (
            list(value) if isinstance(value, tuple) and name not in ("real_label_range", "fake_label_range") else value
        )
    return out


# ---------------------------------------------------------------------------- config
def resolve_config(mode: str, given: dict[str, Any]):
    """Defaults < --config < saved run config (with --resume) < command line."""
    from .train import TrainConfig, TrainError, load_config_file  # noqa: PLC0415

    given = dict(given)
    base: dict[str, Any] = {"mode": mode}
    if mode == "distill":
        base.update(preset="student-small", lr=1e-3)
    merged = dict(base)
    source = str(given.get("config", "options"))
    if "config" in given:
        recipe = given.pop("config")
        merged = _merge(merged, load_config_file(recipe))
        merged["recipe"] = str(recipe)  # the card names the recipe file of each stage
    out = given.get("out", merged.get("out", "runs/run"))
    saved = Path(out) / "config.json"
    if given.get("resume") and saved.exists():
        try:
            prior = json.loads(saved.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrainError(f"--resume: {saved} cannot be read ({exc}); fix or delete it") from None
        if not isinstance(prior, dict):
            raise TrainError(f"--resume: {saved} does not hold a config (a JSON object); fix or delete it")
        for once in ("stop_at", "resume"):  # one-off options of the earlier invocation
            prior.pop(once, None)
        merged = _merge(merged, prior)
    cli: dict[str, Any] = {"data": {}}
    for k, v in given.items():
        if k == "model_args":
            cli["model_args"] = dict(v)
        elif k in _DATA_KEYS:
            cli["data"][k] = v
        else:
            cli[k] = v
    merged = _merge(merged, cli)
    merged["mode"] = mode
    merged.setdefault("resume", False)
    return TrainConfig.from_dict(merged, source=source)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------- commands
def _error(exc: Exception) -> None:
    click.echo(f"sr-train: error: {exc}", err=True)


def _saved_config_stamp(out: Path) -> tuple[int, int] | None:
    try:
        st = (out / "config.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _run_training(mode: str, given: dict[str, Any]) -> int:
    """Resolve the config and train; 2 when the run could not start, 1 when it failed later."""
    try:
        cfg = resolve_config(mode, given)
    except ScopesrError as exc:
        _error(exc)
        return EXIT_USAGE
    from .train import train  # noqa: PLC0415

    # The run has started once train() (re)writes OUT/config.json: after the checks of the
    # options, the data, the model and the run folder. An error before that is a usage
    # error (nothing trained); one after it is a failed run.
    before = _saved_config_stamp(Path(cfg.out))
    try:
        final = train(cfg)
    except ScopesrError as exc:
        _error(exc)
        after = _saved_config_stamp(Path(cfg.out))
        return EXIT_FAILED if after is not None and after != before else EXIT_USAGE
    if final is not None:
        click.echo(f"wrote {final}")
    return EXIT_OK


@click.group(
    context_settings=_CONTEXT,
    no_args_is_help=False,
    help=_plain((__doc__ or "").partition("\n\n")[0]),
    epilog=_epilog_from_doc(),
)
@click.option("-v", "--verbose", is_flag=True, help="Debug log output.")
def cli(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@cli.command(
    context_settings=_CONTEXT,
    epilog="\b\nExit status: 0 done; 1 a preset could not be built (the "
    "message names it);\n2 usage error (a bad option).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def presets(as_json: bool) -> int:
    """List generator presets: parameters, MACs per LR pixel, halo."""
    from .catalogue import list_presets  # noqa: PLC0415

    try:
        infos = list_presets()
    except ScopesrError as exc:
        _error(exc)
        return EXIT_FAILED
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return EXIT_OK
    click.echo(f"{'preset':<16}{'kind':<9}{'params':>11}{'MAC/LR px':>13}{'halo':>6}  description")
    for i in infos:
        click.echo(f"{i.name:<16}{i.kind:<9}{i.params:>11,}{i.macs_per_lr_pixel:>13,.0f}{i.halo:>6}  {i.description}")
    return EXIT_OK


def _train_command(mode: str, summary: str) -> None:
    @cli.command(mode, context_settings=_CONTEXT, help=summary, epilog=_PRECEDENCE_AND_EXIT)
    @_with_options(_train_options(mode))
    @click.pass_context
    def command(ctx: click.Context, **params: Any) -> int:
        return _run_training(mode, _given(ctx, params))


_train_command("pretrain", "Pixel-loss warm-up of a generator.")
_train_command("gan", "Adversarial training (the paper's schedule).")
_train_command("distill", "Train a student from a frozen teacher (or ground truth alone).")


@cli.command("eval", context_settings=_CONTEXT, epilog=_EVAL_EXIT)
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Generator .safetensors with its card (repeatable).",
)
@click.option(
    "--data",
    multiple=True,
    required=True,
    metavar="SRC...",
    help="HR images: folders/files, one or more (the option may repeat).",
)
@click.option("--out", default="runs/eval", show_default=True, help="Folder for eval.md, eval.json, compare/.")
@click.option("--crop", type=int, default=0, show_default=True, help="Centre crop of each HR image (0 = whole image).")
@click.option("--max-images", type=int, default=0, show_default=True, help="At most this many images (0 = all).")
@click.option("--border", type=int, default=None, help="HR pixels cut from each border (default: the scale).")
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N.")
@click.option("--degradation", default=None, help="How LR is made from HR (default: the model card's).")
def eval_(
    models: tuple[str, ...],
    data: tuple[str, ...],
    out: str,
    crop: int,
    max_images: int,
    border: int | None,
    device: str,
    degradation: str | None,
) -> int:
    """PSNR/SSIM vs nearest and bicubic (the paper's Table 2 layout)."""
    from .evaluate import evaluate  # noqa: PLC0415

    try:
        res = evaluate(
            list(models),
            list(data),
            out,
            crop=crop,
            max_images=max_images,
            border=border,
            device=device,
            degradation=degradation,
        )
    except ScopesrError as exc:
        _error(exc)
        return EXIT_FAILED
    click.echo((Path(out) / "eval.md").read_text(), nl=False)
    click.echo(f"wrote {Path(out) / 'eval.json'} ({res['n_images']} images)")
    return EXIT_OK


# ---------------------------------------------------------------------------- entry point
def _spread(args: Sequence[str]) -> list[str]:
    """``--data A B C`` -> ``--data A --data B --data C`` for the options that take one or
    more values (click options take a fixed number). A value never starts with ``-``."""
    multi = {name for names in _MULTI.values() for name in names}
    out: list[str] = []
    greedy: str | None = None
    count = 0
    args = list(args)
    for i, tok in enumerate(args):
        if tok == "--":
            out += args[i:]
            greedy = None
            break
        if greedy is not None and not tok.startswith("-"):
            out += [greedy, tok]
            count += 1
            continue
        if greedy is not None and count == 0:
            raise click.UsageError(f"{greedy} needs one or more values; see sr-train COMMAND --help")
        greedy = None
        name = tok.split("=", 1)[0]
        if name in multi:
            if "=" in tok:
                out.append(tok)
                greedy, count = name, 1
            else:
                greedy, count = tok, 0
            continue
        out.append(tok)
    if greedy is not None and count == 0:
        raise click.UsageError(f"{greedy} needs one or more values; see sr-train COMMAND --help")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run sr-train on ``argv`` (default: the process's arguments); returns the exit status."""
    try:
        args = _spread(list(sys.argv[1:] if argv is None else argv))
    except click.UsageError as exc:  # an option that takes values given none
        exc.show()
        return EXIT_USAGE
    return run_command(cli, args, "sr-train")


if __name__ == "__main__":
    sys.exit(main())
