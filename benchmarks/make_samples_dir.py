"""Copy the real sample images a GPU session needs into .samples/, laid out as their packages.

A lent GPU machine is offline and has none of the sample packages; benchmarks/gpu_env.sh puts
.samples/ on PYTHONPATH, where each copied folder reads as its package (a namespace package), so
``scopesr.sdk.samples`` finds the files as it does here. Default keys: the default recipe's
training sources plus the stardist and napari images the GPU tests use (~48 MB, under the device
tool's 64 MB a call with the checkout). Carry it with ``carry=[".samples"]``; it is git-ignored
through .git/info/exclude (this script adds the line).

    python benchmarks/make_samples_dir.py [--out .samples] [--key KEY ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "trainer" / "recipes" / "default-zoom10.toml"
FOR_TESTS = ("stardist-nuclei-2d", "stardist-nuclei-3d", "napari-timelapse")


def recipe_keys(recipe: Path = RECIPE) -> list[str]:
    """The sample keys among a recipe's training sources (``sample:KEY[a:b]#invert``)."""
    from scopesr.bench.evaluation import sample_key
    from scopesr.trainer.train import load_config_file

    return [k for spec in load_config_file(recipe)["data"]["data"] if (k := sample_key(spec))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / ".samples")
    ap.add_argument("--key", action="append", help="a sample key (repeatable; default: the recipe's + the tests')")
    args = ap.parse_args(argv)
    from scopesr.sdk.errors import ScopesrError
    from scopesr.sdk.samples import SAMPLES, sample_path

    keys = args.key or list(dict.fromkeys([*recipe_keys(), *FOR_TESTS]))
    total, failed = 0, []
    for key in keys:
        try:
            src = sample_path(key)
        except ScopesrError as exc:
            failed.append(f"{key}: {exc}")
            continue
        s = SAMPLES[key]
        dst = args.out / s.package / s.relpath
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        total += dst.stat().st_size
    exclude = ROOT / ".git" / "info" / "exclude"
    if args.out.resolve() == (ROOT / ".samples").resolve() and exclude.parent.is_dir():
        lines = exclude.read_text().splitlines() if exclude.exists() else []
        if "/.samples/" not in lines:
            exclude.write_text("\n".join([*lines, "/.samples/"]) + "\n")
    print(f"{args.out}: {len(keys) - len(failed)} samples, {total / 2**20:.1f} MB")
    for f in failed:
        print(f"not copied: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
