"""Record a parity table: one model through every target and precision, on real tiles.

    python -m scopesr.converters.parity_table sdk/models/default-weights.safetensors \\
        --name default --out-dir benchmarks/results

writes ``parity_<name>.json`` and ``parity_<name>.md``. Artifacts are made in a temporary
folder and deleted (only the figures are kept). ``--preset paper`` instead of a checkpoint
builds a preset with seeded random weights (fp32/fp16 parity is meaningful for any weights;
the int8 ground-truth drop is not, so int8 is left out for untrained models).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scopesr.sdk import parse_tile_sizes

from .api import convert

log = logging.getLogger(__name__)

ALL = (
    "onnx:fp32",
    "onnx:fp16",
    "onnx:int8",
    "tflite:fp32",
    "tflite:fp16",
    "tflite:int8",
    "torch:fp32",
    "coreml:fp16",
    "bioimageio:fp32",
)


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def run(
    source: Any,
    name: str,
    targets: list[str],
    tile_sizes: list[Any] | None,
    out_dir: Path,
    model_label: str,
    card: Any = None,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in targets:
            target, precision = spec.split(":")
            t0 = time.perf_counter()
            try:
                r = convert(
                    source,
                    target,
                    Path(tmp) / f"{name}-{target}-{precision}",
                    precision=precision,
                    tile_sizes=tile_sizes if target == "tflite" else None,
                    card=card,
                )
            except Exception as exc:  # record the failure, keep going with the other targets
                rows.append({"target": target, "precision": precision, "error": str(exc)[:300]})
                log.error("%s %s failed: %s", target, precision, exc)
                continue
            secs = time.perf_counter() - t0
            rep = r.parity
            base = {
                "target": target,
                "precision": precision,
                "artifact_bytes": _size(r.artifact),
                "convert_and_check_s": round(secs, 1),
                "passed": r.passed,
                "tile_sizes": r.card.tile_sizes,
                "halo": r.card.halo,
            }
            if rep is None or not rep.cases:
                rows.append({**base, "case": "-", "note": rep.skipped if rep else "not verified"})
            for c in rep.cases if rep else []:
                rows.append(
                    {
                        **base,
                        "case": c.case,
                        "n_tiles": c.n_tiles,
                        "max_abs_err": c.max_abs_err,
                        "psnr_vs_torch": c.psnr_vs_torch if math.isfinite(c.psnr_vs_torch) else None,
                        "psnr_gt_torch": c.psnr_gt_torch,
                        "psnr_gt_artifact": c.psnr_gt_artifact,
                        "drop_db": c.drop_db,
                        "psnr_gt_bicubic": c.psnr_gt_bicubic,
                        "criterion": c.criterion,
                        "case_passed": c.passed,
                    }
                )
            tiles_from = rep.tiles_from if rep else ""
            log.info("%s %s: %.1f s, passed=%s", target, precision, secs, r.passed)
    from .api import _versions

    result = {
        "model": model_label,
        "name": name,
        "rows": rows,
        "tiles_from": tiles_from if rows else "",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "versions": _versions(),
        "command": "python -m scopesr.converters.parity_table " + " ".join(sys.argv[1:]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    from scopesr.sdk import atomic_write_text

    atomic_write_text(out_dir / f"parity_{name}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out_dir / f"parity_{name}.md", to_markdown(result))
    return result


def _f(v: Any, fmt: str) -> str:
    return "n/a" if v is None else (fmt.format(v) if isinstance(v, (int, float)) else str(v))


def to_markdown(res: dict[str, Any]) -> str:
    lines = [
        f"# Parity: {res['model']}",
        "",
        "Each artifact vs the PyTorch fp32 model on real image tiles "
        f"({res.get('tiles_from', '')}). PSNR peak 1.0 on normalised values, unclipped; "
        "'GT' = against the real HR crop (LR by PIL bicubic x4; the most structured crops, incl. "
        "H&E histology channels, so absolute GT PSNRs are low; 'GT bicubic' = plain bicubic upsampling "
        "on the same tiles, for context); drop = GT PSNR of torch fp32 minus that of the artifact. "
        "Pass: fp32 max abs err <= 1e-4, fp16 PSNR vs torch >= 45 dB, int8 drop <= 0.5 dB.",
        "",
        "| target | precision | case | max abs err | PSNR vs torch | GT torch | GT artifact | drop dB "
        "| GT bicubic | size KiB | s | pass |",
        "|" + "---|" * 12,
    ]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['target']} | {r['precision']} | - | error: {r['error'][:80]} | | | | | | | | NO |")
            continue
        if r.get("case") == "-":
            lines.append(
                f"| {r['target']} | {r['precision']} | - | {r.get('note', '')[:90]} | | | | | | "
                f"{r['artifact_bytes'] / 1024:.0f} | {r['convert_and_check_s']} | skipped |"
            )
            continue
        lines.append(
            f"| {r['target']} | {r['precision']} | {r['case']} | {_f(r['max_abs_err'], '{:.1e}')} | "
            f"{_f(r['psnr_vs_torch'], '{:.1f}') if r['psnr_vs_torch'] is not None else 'exact'} | "
            f"{_f(r['psnr_gt_torch'], '{:.2f}')} | {_f(r['psnr_gt_artifact'], '{:.2f}')} | "
            f"{_f(r['drop_db'], '{:.3f}')} | {_f(r['psnr_gt_bicubic'], '{:.2f}')} | "
            f"{r['artifact_bytes'] / 1024:.0f} | {r['convert_and_check_s']} | "
            f"{'yes' if r['case_passed'] else 'NO'} |"
        )
    lines += [
        "",
        f"Machine: {res['machine']}; versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        "",
        f"Command: `{res['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scopesr.converters.parity_table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", help="generator .safetensors (with its card)")
    p.add_argument("--preset", help="instead of a checkpoint: a trainer preset with seeded random weights")
    p.add_argument("--name", required=True, help="table name: writes parity_<name>.json/.md")
    p.add_argument("--targets", default=",".join(ALL), help="comma list of target:precision (default: all)")
    p.add_argument("--tile-sizes", default=None, help="TFLite tile sizes, N or HxW, e.g. 64,128,120x160")
    p.add_argument("--out-dir", default="benchmarks/results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("scopesr").setLevel(logging.INFO)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    card = None
    if args.preset:
        import torch

        from scopesr.trainer import create_model

        from .api import card_for_module

        torch.manual_seed(0)
        source: Any = create_model(args.preset).eval()
        card = card_for_module(source, name=args.preset)
        card.architecture = args.preset
        label = f"preset {args.preset!r}, seeded random weights (torch.manual_seed(0)), untrained"
        targets = [t for t in targets if not t.endswith(":int8")]  # GT drop is meaningless untrained
    elif args.model:
        source, label = args.model, Path(args.model).name
    else:
        p.error("give a MODEL.safetensors or --preset NAME")
    sizes = parse_tile_sizes(args.tile_sizes) if args.tile_sizes else None
    res = run(source, args.name, targets, sizes, Path(args.out_dir), label, card=card)
    print(to_markdown(res))
    return 0 if all(r.get("passed", False) or r.get("note") for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
