"""``sr-train``: list presets, pre-train, GAN-train, distil, evaluate.

Option precedence (lowest first): built-in defaults, ``--config FILE`` (TOML or JSON; top
level options plus ``[data]`` and ``[model_args]`` tables), the run's saved
``config.json`` when ``--resume`` finds one, then the options given on the command line.
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

Every run records its training throughput (images/s, HR Mpx/s) in OUT/throughput.json,
in metrics.jsonl and in the card.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from scopesr.sdk.errors import ScopesrError

log = logging.getLogger("scopesr.trainer")

# option dest -> where it goes in the config dict ("data" table or top level)
_DATA_KEYS = {"data", "layout", "channels", "hr_size", "degradation", "augment", "val_fraction", "norm_mode",
              "p_low", "p_high"}


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, e.g. n_blocks=8")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def _add_train_options(p: argparse.ArgumentParser, mode: str) -> None:
    S = argparse.SUPPRESS  # absent options stay absent: only given ones override
    p.add_argument("--config", help="TOML/JSON config file (options, [data], [model_args])", default=S)
    p.add_argument("--data", nargs="+", help="folders/files of images or TIFF stacks, or an HPA layout folder",
                   default=S)
    p.add_argument("--layout", choices=["auto", "hpa", "folder"], default=S)
    p.add_argument("--channels", type=int, choices=[1, 3], default=S, help="1 grey or 3 RGB (default: the model's)")
    p.add_argument("--preset", default=S, help="generator preset (see `sr-train presets`)")
    p.add_argument("--model-arg", dest="model_args", action="append", type=_kv, default=S, metavar="KEY=VALUE",
                   help="override a preset argument, e.g. --model-arg n_blocks=8 (repeatable)")
    p.add_argument("--steps", type=int, default=S)
    p.add_argument("--batch-size", type=int, default=S)
    p.add_argument("--hr-size", type=int, default=S, help="HR crop size (default 256)")
    p.add_argument("--degradation", default=S, help="LR kernel: pil-bicubic (default), pil-bilinear, pil-lanczos, ...")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=S)
    p.add_argument("--val-fraction", type=float, default=S)
    p.add_argument("--content-loss", choices=["vgg", "mse", "l1"], default=S)
    p.add_argument("--vgg-weights", default=S, help="torchvision VGG19 state dict file (offline use)")
    p.add_argument("--lr", type=float, default=S)
    p.add_argument("--lr-drop-at", type=float, default=S, help="<=1: fraction of the steps, >1: step (default 0.5)")
    p.add_argument("--lr-drop-factor", type=float, default=S)
    p.add_argument("--beta1", type=float, default=S)
    p.add_argument("--beta2", type=float, default=S)
    p.add_argument("--init-from", default=S, help="start from a generator .safetensors (e.g. a pretrain run)")
    if mode == "gan":
        p.add_argument("--adv-weight", type=float, default=S)
        p.add_argument("--l1-weight", type=float, default=S)
        p.add_argument("--real-label-range", type=float, nargs=2, default=S,
                       help="default 0.8 1.2 (paper text); 0.8 1.0 = the paper's code")
        p.add_argument("--fake-label-range", type=float, nargs=2, default=S)
        p.add_argument("--disc-head", choices=["gap", "dense"], default=S)
        p.add_argument("--disc-channels", type=int, default=S)
    if mode == "distill":
        p.add_argument("--teacher", default=S, help="teacher generator .safetensors, or 'none'")
        p.add_argument("--teacher-weight", type=float, default=S)
        p.add_argument("--gt-weight", type=float, default=S)
    p.add_argument("--device", default=S, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=S,
                   help="with --precision auto: train in fp32 on CUDA too")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=S,
                   help="autocast: auto = bf16 on CUDA, fp32 on CPU (default); bf16 = on any device. "
                        "Weights stay fp32")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=S,
                   help="NHWC memory format (default: on CUDA only)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=S)
    p.add_argument("--compile", nargs="?", const=True, default=S, metavar="BACKEND",
                   help="torch.compile the generator (default backend inductor)")
    p.add_argument("--throughput-warmup", type=int, default=S, metavar="STEPS",
                   help="steps per session left out of the throughput figures (default 5)")
    p.add_argument("--workers", type=int, default=S)
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--ckpt-every", type=int, default=S)
    p.add_argument("--keep", type=int, default=S, help="checkpoints kept (default 3)")
    p.add_argument("--val-every", type=int, default=S)
    p.add_argument("--val-size", type=int, default=S)
    p.add_argument("--log-every", type=int, default=S)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=S)
    p.add_argument("--time-limit-min", type=float, default=S, help="stop and save after this many minutes")
    p.add_argument("--stop-at", type=int, default=S, help=argparse.SUPPRESS)
    p.add_argument("--vgg-random-init", action="store_true", default=S, help=argparse.SUPPRESS)
    p.add_argument("--out", default=S, help="run folder (default runs/run)")
    p.add_argument("--resume", action="store_true", default=S, help="continue from OUT's latest checkpoint")


def build_parser() -> argparse.ArgumentParser:
    head, _, rest = __doc__.partition("\n\n")
    plain = lambda text: text.replace("``", "").replace("::", ":")  # noqa: E731 - docstring RST -> terminal
    ap = argparse.ArgumentParser(prog="sr-train", description=plain(head), epilog=plain(rest),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("presets", help="list generator presets: parameters, MACs per LR pixel, halo")
    pp.add_argument("--json", action="store_true")
    for mode, hlp in (("pretrain", "pixel-loss warm-up"), ("gan", "adversarial training (the paper's schedule)"),
                      ("distill", "train a student from a frozen teacher (or ground truth)")):
        _add_train_options(sub.add_parser(mode, help=hlp), mode)
    ev = sub.add_parser("eval", help="PSNR/SSIM vs nearest and bicubic (Table 2 layout)")
    ev.add_argument("--model", action="append", required=True, help="generator .safetensors (repeatable)")
    ev.add_argument("--data", nargs="+", required=True, help="folder(s)/files of HR images")
    ev.add_argument("--out", default="runs/eval")
    ev.add_argument("--crop", type=int, default=0, help="centre crop of each HR image (0 = whole image)")
    ev.add_argument("--max-images", type=int, default=0)
    ev.add_argument("--border", type=int, default=None, help="HR pixels cut from each border (default: scale)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--degradation", default=None, help="default: the model card's")
    return ap


def resolve_config(mode: str, given: dict[str, Any]):
    """Defaults < --config < saved run config (with --resume) < command line."""
    from .train import TrainConfig, load_config_file  # noqa: PLC0415

    base: dict[str, Any] = {"mode": mode}
    if mode == "distill":
        base.update(preset="student-small", lr=1e-3)
    merged = dict(base)
    if "config" in given:
        merged = _merge(merged, load_config_file(given.pop("config")))
    out = given.get("out", merged.get("out", "runs/run"))
    saved = Path(out) / "config.json"
    if given.get("resume") and saved.exists():
        prior = json.loads(saved.read_text())
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
    return TrainConfig.from_dict(merged, source=str(given.get("config", "options")))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def cmd_presets(as_json: bool) -> None:
    from .catalogue import list_presets  # noqa: PLC0415

    infos = list_presets()
    if as_json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    print(f"{'preset':<16}{'kind':<9}{'params':>11}{'MAC/LR px':>13}{'halo':>6}  description")
    for i in infos:
        print(f"{i.name:<16}{i.kind:<9}{i.params:>11,}{i.macs_per_lr_pixel:>13,.0f}{i.halo:>6}  {i.description}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "presets":
            cmd_presets(args.json)
        elif args.cmd == "eval":
            from .evaluate import evaluate  # noqa: PLC0415

            res = evaluate(args.model, args.data, args.out, crop=args.crop, max_images=args.max_images,
                           border=args.border, device=args.device, degradation=args.degradation)
            print((Path(args.out) / "eval.md").read_text(), end="")
            print(f"wrote {Path(args.out) / 'eval.json'} ({res['n_images']} images)")
        else:
            from .train import train  # noqa: PLC0415

            given = {k: v for k, v in vars(args).items() if k not in ("cmd", "verbose")}
            cfg = resolve_config(args.cmd, given)
            out = train(cfg)
            if out is not None:
                print(f"wrote {out}")
    except ScopesrError as exc:
        print(f"sr-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
