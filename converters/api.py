"""``convert()``: one PyTorch generator -> one artifact + its card, proven by a parity check.

Flow: resolve the source (a trainer checkpoint with its card, or an ``nn.Module``), make
real calibration tiles when quantising, have the target registered under the requested
name (``targets.py``) export to a temporary file beside the output, run parity on it (real
tiles, artifact vs PyTorch, through the target's runners), move it into place atomically,
then write the card (sha256 of the final bytes, parity report in ``extra``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import (
    FORMATS,
    CardError,
    ModelCard,
    Normalisation,
    card_path_for,
    package_versions,
    sha256_path,
    tile_entry,
    tile_label,
    tile_shapes,
)
from scopesr.sdk.atomic import output_error, remove_stale_temps, temp_prefix
from scopesr.sdk.card import COST_KEYS, MAX_TILE_SIDE

from . import data as D
from .errors import ConversionError, ParityError
from .parity import DEFAULT_TOLERANCES, ParityReport, evaluate_case, run_batched
from .targets import ExportJob, ExportTarget, get_target, target_names

log = logging.getLogger(__name__)

#: target -> (artifact suffix, precisions it supports, default precision): a summary of the
#: registered targets (targets.py), for the CLI and callers that list them
TARGETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    name: (t.suffix, t.precisions, t.default_precision) for name in target_names() for t in [get_target(name)]
}
DEFAULT_TILE_SIZES = (64, 128, 256)
CALIB_BUDGET_PX = 16 * 64 * 64  # calibration pixels per tile size (16 tiles of 64x64)
PARITY_BUDGET_PX = 8 * 64 * 64
CALIB_PEAK = 2.0  # normalised intensity that int8 ranges must reach without clipping


@dataclass
class ConversionResult:
    """What ``convert`` made: the artifact, its card, and the parity report (None if not verified)."""

    artifact: Path
    card: ModelCard
    card_path: Path
    parity: ParityReport | None
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.parity is None or self.parity.passed


# --------------------------------------------------------------------------- source
def _versions() -> dict[str, str]:
    """The converter stack that made an artifact, for its card."""
    return package_versions(
        (
            "scopesr",
            "torch",
            "onnx",
            "onnxscript",
            "onnxruntime",
            "litert-torch",
            "ai-edge-litert",
            "ai-edge-quantizer",
            "coremltools",
            "bioimageio.spec",
            "numpy",
        )
    )


def _infer_halo(module: Any) -> int:
    try:
        from scopesr.trainer import receptive_field_radius  # analytic, exact for our presets
    except ImportError:
        receptive_field_radius = None
    if receptive_field_radius is not None:
        try:
            return int(receptive_field_radius(module))
        except Exception as exc:  # unknown module shapes: fall back on the probe below
            log.debug("receptive_field_radius failed (%s); probing by gradient", exc)
    return probe_halo(module)


def probe_halo(module: Any, in_channels: int | None = None, size: int = 97) -> int:
    """Receptive-field radius in LR pixels, measured: the farthest input pixel whose
    gradient reaches the centre output block (impulse-response probe, a few random inputs)."""
    import torch

    c = in_channels or _first_in_channels(module)
    radius = 0
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        x = torch.rand(1, c, size, size, generator=g, requires_grad=True)
        y = module(x)
        s = y.shape[-1] // size
        mid = size // 2
        y[..., mid * s : (mid + 1) * s, mid * s : (mid + 1) * s].sum().backward()
        nz = torch.nonzero(x.grad.abs().sum(dim=(0, 1)) > 0)
        if len(nz):
            radius = max(radius, int((nz - mid).abs().max()))
    if radius >= size // 2:
        log.warning("receptive field reaches the probe's border (%d px): halo may be larger", radius)
    return radius


def _model_config(module: Any) -> Any:
    """A trainer model's typed config (``config``), else None."""
    cfg = getattr(module, "config", None)
    return cfg if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else None


def _first_in_channels(module: Any) -> int:
    import torch

    cfg = _model_config(module)
    if cfg is not None and hasattr(cfg, "in_channels"):  # the first conv may read a rearranged input
        return int(cfg.in_channels) + int(getattr(cfg, "cond_channels", 0) or 0)
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            return int(m.in_channels)
    raise ConversionError("cannot tell the model's input channels (no Conv2d); pass card=ModelCard(...)")


def card_for_module(module: Any, name: str = "model", normalisation: Normalisation | None = None) -> ModelCard:
    """A minimal card for a bare nn.Module: scale and channels measured, halo probed."""
    import torch

    cin = _first_in_channels(module)
    with torch.no_grad():
        y = module(torch.rand(1, cin, 16, 16))
    if y.ndim != 4 or y.shape[-1] % 16 or y.shape[-2] % 16 or y.shape[-1] // 16 != y.shape[-2] // 16:
        raise ConversionError(
            f"the model maps 1x{cin}x16x16 to {tuple(y.shape)}: not an integer-scale super-resolution network"
        )
    return ModelCard(
        name=name,
        architecture=type(module).__name__,
        scale=int(y.shape[-1] // 16),
        in_channels=cin,
        out_channels=int(y.shape[1]),
        halo=_infer_halo(module),
        format="safetensors",
        # the architecture's arguments (a space-to-depth student's cell size among them)
        arch_args=dataclasses.asdict(cfg) if (cfg := _model_config(module)) is not None else {},
        normalisation=normalisation or Normalisation(),
    )


def load_source(source: Any, card: ModelCard | None = None) -> tuple[Any, ModelCard, str]:
    """(module in eval mode on CPU fp32, source card, a label) from a checkpoint path or a module."""
    import torch

    if isinstance(source, torch.nn.Module):
        module = copy.deepcopy(source).float().cpu().eval()
        return module, card or card_for_module(module), type(source).__name__
    path = Path(source)
    if not path.exists():
        raise ConversionError(f"{path}: no such checkpoint; pass the .safetensors written by sr-train")
    if path.suffix != ".safetensors":
        raise ConversionError(
            f"{path}: sr-convert reads trainer checkpoints (.safetensors with a "
            f".card.json beside them), not {path.suffix or 'a suffix-less file'}"
        )
    # the card first: a missing card or a corrupted checkpoint is caught with a clear message
    src_card = ModelCard.load(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            list(fh.keys())
    except Exception as exc:
        raise ConversionError(
            f"{path}: not a readable safetensors checkpoint ({exc}); "
            "re-export it with sr-train or restore the original file"
        ) from None
    try:
        from scopesr.trainer import load_generator
    except ImportError as exc:
        raise ConversionError(
            f'building the model needs scopesr.trainer ({exc}); pip install "scopesr[train]"'
        ) from None
    try:
        module, loaded_card = load_generator(path)
    except (CardError, ConversionError):
        raise
    except Exception as exc:
        raise ConversionError(
            f"{path}: cannot build the generator from this checkpoint ({exc}); is it a generator saved by sr-train?"
        ) from exc
    module = module.float().cpu().eval()
    return module, card or loaded_card or src_card, path.name


# --------------------------------------------------------------------------- options
def check_tile_sizes(
    tile_sizes: Sequence[Any] | None, halo: int, explicit: bool, multiple: int = 1
) -> tuple[list[int | list[int]], list[str]]:
    """Validate LR tile sizes (N, or (H, W) e.g. a camera frame) against the halo.

    A side <= 2*halo leaves nothing of a tile but halo: an error when the user asked for
    it, silently dropped from the defaults. A side < 4*halo keeps under a quarter of each
    tile: allowed, with a warning (slow: mostly halo). Returns the card's form of the sizes.
    """
    try:
        shapes = tile_shapes(list(tile_sizes or DEFAULT_TILE_SIZES))
    except CardError as exc:
        raise ConversionError(str(exc)) from None
    labels = lambda ss: ", ".join(tile_label(t) for t in ss)  # noqa: E731
    msgs: list[str] = []
    if any(min(t) < 8 for t in shapes):
        raise ConversionError(f"tile sizes must be >= 8 LR pixels, got {labels(shapes)}")
    if any(max(t) > MAX_TILE_SIDE for t in shapes):  # 100000 asked for 40 GB at export; no card takes it
        raise ConversionError(f"tile sizes must be <= {MAX_TILE_SIDE} LR pixels, got {labels(shapes)}")
    odd = [t for t in shapes if t[0] % multiple or t[1] % multiple]
    if odd:  # a space-to-depth network (card size_multiple) cannot take them
        raise ConversionError(
            f"tile size(s) {labels(odd)}: this model computes on {multiple}x{multiple} cells, so tile sides "
            f"must be multiples of {multiple}"
        )
    too_small = [t for t in shapes if min(t) <= 2 * halo]
    if too_small:
        if explicit:
            raise ConversionError(
                f"tile size(s) {labels(too_small)} smaller than twice the halo (2 x {halo} = {2 * halo} LR px): "
                f"such tiles are all halo and keep no pixels; use --tile-sizes above {2 * halo}, "
                f"e.g. {_round_up(2 * halo + 32)},{_round_up(4 * halo + 32)}"
            )
        shapes = [t for t in shapes if min(t) > 2 * halo] or [(_round_up(4 * halo + 32),) * 2]
        msgs.append(f"default tile sizes adjusted to {labels(shapes)} for halo {halo}")
    for th, tw in shapes:
        if min(th, tw) < 4 * halo:
            keep = (th - 2 * halo) * (tw - 2 * halo) / (th * tw)
            msgs.append(
                f"tile size {tile_label((th, tw))} is mostly halo (halo {halo}): only {keep:.0%} of each "
                f"tile is kept; sizes >= {4 * halo} waste less compute"
            )
    return [tile_entry(t) for t in shapes], msgs


def _round_up(v: int, m: int = 32) -> int:
    return int(-(-v // m) * m)


def default_output(source_label: str, source_path: Path | None, target: str, precision: str) -> Path:
    stem = Path(source_label).stem if source_label else "model"
    folder = source_path.parent if source_path is not None else Path.cwd()
    suffix = get_target(target).suffix
    name = f"{stem}-bioimageio" if target == "bioimageio" else f"{stem}-{target}-{precision}"
    return folder / (name + suffix)


def resolve_output(
    out: str | os.PathLike | None, target: str, precision: str, source_label: str, source_path: Path | None
) -> Path:
    suffix = get_target(target).suffix
    if out is None:
        return default_output(source_label, source_path, target, precision)
    p = Path(out)
    if p.is_dir() and p.suffix != suffix:
        return p / default_output(source_label, None, target, precision).name
    if p.suffix == "":
        p = p.with_name(p.name + suffix)  # -o model -> model.onnx
    elif p.suffix != suffix:
        raise ConversionError(
            f"{p}: a {target} artifact must end in {suffix} (got {p.suffix}); "
            f"use -o {p.with_suffix(suffix).name} or leave the suffix out"
        )
    return p


# --------------------------------------------------------------------------- tiles
def _images(
    norm: Normalisation, channels: int, calibration: str | os.PathLike | None, role: str
) -> tuple[list[D.RealImage], str]:
    if role == "calibration" and calibration is not None:
        files = D.list_image_files(calibration)
        return D.load_images(files, norm, channels, source=str(calibration)), str(calibration)
    keys = D.CALIBRATION_SAMPLES if role == "calibration" else D.PARITY_SAMPLES
    imgs = D.sample_images(keys, norm, channels)
    return imgs, D.sample_source(keys, imgs)


def _torch_runner(module: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return run


# --------------------------------------------------------------------------- convert
def convert(
    source: Any,
    target: str,
    out: str | os.PathLike | None = None,
    precision: str | None = None,
    tile_sizes: Sequence[Any] | None = None,
    calibration: str | os.PathLike | None = None,
    card: ModelCard | None = None,
    verify: bool = True,
    tolerances: dict[str, float] | None = None,
    raise_on_failure: bool = False,
    overwrite: bool = True,
) -> ConversionResult:
    """Convert a generator to ``target`` and prove the artifact against PyTorch.

    ``source``: a ``.safetensors`` checkpoint from the trainer (its card beside it) or an
    ``nn.Module`` (then ``card`` describes it; measured when omitted). ``tile_sizes``: LR
    tile sizes of fixed-shape targets, N or (H, W) (TFLite; Core ML enumerates them when given).
    ``calibration``: a folder of real images for int8 (default: the real samples shipped
    by pip packages; without those packages, parity and sample tensors use these images
    too). ``verify``: run the parity check (a failure is recorded in the card and in the
    result; ``raise_on_failure`` raises ParityError instead). ``overwrite=False``: an
    existing artifact at the output path is refused (ConversionError), checked before the
    slow export and again, atomically, when the artifact is put in place (sr-convert
    without --overwrite).
    """
    tgt = get_target(target)  # ConversionError naming the known targets
    precision = precision or tgt.default_precision
    if precision not in tgt.precisions:
        raise ConversionError(f"target {target} supports precision {', '.join(tgt.precisions)}, not {precision!r}")
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    if calibration is not None:
        D.list_image_files(calibration)  # fail fast, before any slow export

    import torch

    src_path = None if isinstance(source, torch.nn.Module) else Path(source)
    module, src_card, label = load_source(source, card)
    if int(src_card.arch_args.get("cond_channels", 0) or 0):
        # the runtime does not feed a noise-map channel yet (see docs/degradation.md)
        raise ConversionError(
            f"{label}: a noise-aware model (cond_channels={src_card.arch_args['cond_channels']}) cannot be "
            "converted yet: the SDK does not feed its noise-map input; train without noise_map for deployment"
        )
    out_path = resolve_output(out, target, precision, label if src_path is None else src_path.name, src_path)
    _check_output_collision(out_path, src_path)
    if not overwrite and os.path.lexists(out_path):
        raise ConversionError(
            f"{out_path}: exists; pass --overwrite (overwrite=True) to replace it, or choose another -o"
        )

    fixed = tgt.uses_fixed_sizes(tile_sizes is not None)
    msgs: list[str] = []
    if tile_sizes is not None and not fixed:
        msgs.append(f"--tile-sizes ignored: {target} artifacts take any H and W")
    if calibration is not None and precision != "int8":
        msgs.append(
            "--calibration not used for calibration: only int8 needs calibration images"
            + (" (its images stand in for the missing sample images)" if D.samples_missing() else "")
        )
    sizes: list[tuple[int, int]] | None = None  # (H, W) of each fixed input
    if fixed:
        entries, msgs = check_tile_sizes(
            tile_sizes, src_card.halo, explicit=tile_sizes is not None, multiple=src_card.size_multiple
        )
        sizes = tile_shapes(entries)
    for m in msgs:
        log.warning("%s", m)
        warnings.warn(m, stacklevel=2)

    # real tiles: calibration (int8) and parity (held-out images)
    cal_tiles: dict[tuple[int, int], list[np.ndarray]] | None = None
    cal_from = ""
    # the --calibration images stand in for the real sample images where their packages are
    # missing (parity tiles, bioimage.io sample tensors), for this conversion only
    D.USER_IMAGES = Path(calibration) if calibration is not None else None
    try:
        if precision == "int8":
            imgs, cal_from = _images(src_card.normalisation, src_card.in_channels, calibration, "calibration")
            if calibration is None:
                log.info("no --calibration folder: calibrating int8 on %s", cal_from)
            cal_tiles = {}
            for shape in tgt.calibration_shapes(sizes):
                ts = D.make_tiles(
                    imgs, shape, src_card.scale, D.tiles_for_budget(shape, CALIB_BUDGET_PX, 2, 16), with_hr=False
                )
                # plus copies of half the tiles brightened so their peak reaches CALIB_PEAK: percentile
                # normalisation puts the brightest 0.1 % above 1 (bright nuclei reach 1.5-2), and ranges
                # calibrated on a few dim tiles clip them (measured: saturated highlights, max err ~1)
                cal_tiles[shape] = list(ts.lr) + [
                    t * (CALIB_PEAK / max(float(t.max()), 1e-3)) for t in ts.lr[: max(1, len(ts.lr) // 2)]
                ]

        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(out_path, suffix="")  # a temporary folder left by a killed sr-convert
            tmp_dir = Path(tempfile.mkdtemp(prefix=temp_prefix(out_path, ""), dir=out_path.parent))
        except OSError as exc:
            raise ConversionError(str(output_error(exc, out_path))) from None
        tmp = tmp_dir / out_path.name
        try:
            exported = tgt.export(ExportJob(module, src_card, tmp, precision, sizes, cal_tiles))
            extra = dict(exported.extra)
            report = None
            if verify:
                report = _parity(tgt, module, src_card, exported.path, precision, sizes, tol)
                if cal_from:
                    report.notes.append(f"int8 calibrated on {cal_from}")
                report.notes.extend(msgs)
                extra["parity"] = report.to_dict()
            _replace(exported.path, out_path, overwrite)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    finally:
        D.USER_IMAGES = None

    new_card = _make_card(src_card, out_path, precision, exported.layout, exported.tile_sizes, extra, source_name=label)
    card_file = card_path_for(out_path)
    new_card.save(card_file)
    result = ConversionResult(out_path, new_card, card_file, report, msgs)
    if report is not None:
        log.info("parity for %s:\n%s", out_path.name, report.table())
        if not report.passed and raise_on_failure:
            raise ParityError(f"{out_path}: parity check failed\n{report.table()}")
    return result


def _check_output_collision(out_path: Path, src_path: Path | None) -> None:
    card_file = card_path_for(out_path)
    if src_path is not None and (
        out_path.resolve() == src_path.resolve() or card_file.resolve() == card_path_for(src_path).resolve()
    ):
        raise ConversionError(
            f"{out_path}: its card {card_file.name} would overwrite the source's card; "
            "choose another -o name (e.g. add the target or precision)"
        )
    if card_file.exists():
        try:
            other = ModelCard.read(card_file)
        except CardError:
            return
        if other.artifact and other.artifact != out_path.name:
            raise ConversionError(
                f"{out_path}: {card_file} already describes {other.artifact!r}; choose another "
                "-o name so that each artifact keeps its own card"
            )


def _replace(tmp: Path, final: Path, overwrite: bool = True) -> None:
    """Atomic for files; for folders (.mlpackage) the old one is removed first.
    ``overwrite=False``: the final name is taken exclusively (a hard link for a file, which
    fails when another run created the name meanwhile)."""
    exists = ConversionError(
        f"{final}: exists (another run may have written it meanwhile); not replaced. "
        "Pass --overwrite (overwrite=True) to replace it"
    )
    try:
        if tmp.is_dir():
            if final.exists() or final.is_symlink():
                if not overwrite:
                    raise exists
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            os.replace(tmp, final)
        elif overwrite:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise exists from None
            except OSError:  # no hard links here: claim the name, then replace it
                try:
                    os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                except FileExistsError:
                    raise exists from None
                os.replace(tmp, final)
    except OSError as exc:
        raise ConversionError(str(output_error(exc, final))) from None


def parity_check(
    module: Any,
    card: ModelCard,
    artifact: Path,
    target: str,
    precision: str,
    sizes: Sequence[Any] | None = None,
    tolerances: dict[str, float] | None = None,
) -> ParityReport:
    """Run the artifact and the PyTorch model on the same real tiles; compare.

    ``sizes``: the fixed input sizes, N or (H, W) each (None for dynamic-shape artifacts).
    """
    sizes = tile_shapes(sizes) if sizes else None
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    return _parity(get_target(target), module, card, Path(artifact), precision, sizes, tol)


def _parity(
    tgt: ExportTarget,
    module: Any,
    card: ModelCard,
    artifact: Path,
    precision: str,
    sizes: list[tuple[int, int]] | None,
    tol: dict[str, float],
) -> ParityReport:
    target = tgt.name
    runners, notes = tgt.runners(artifact, card, sizes)
    imgs, src = _images(card.normalisation, card.in_channels, None, "parity")
    report = ParityReport(artifact.name, target, precision, src, tolerances=tol, notes=list(notes))
    ref = _torch_runner(module)
    for case, ((h, w), fn) in runners.items():
        n = D.tiles_for_budget((h, w), PARITY_BUDGET_PX, 2, 8)
        tiles = D.make_tiles(imgs, (h, w), card.scale, n)
        torch_out = run_batched(ref, tiles.lr)
        try:
            art_out = run_batched(fn, tiles.lr)
        except Exception as exc:
            raise ConversionError(f"{artifact.name}: running case {case} failed: {exc}") from exc
        report.cases.append(evaluate_case(case, tiles, torch_out, art_out, precision, tol))
    if not runners:
        report.skipped = "; ".join(notes) or "no runtime for this artifact on this platform"
    return report


def _make_card(
    src: ModelCard,
    out: Path,
    precision: str,
    layout: str,
    sizes: list[tuple[int, int]] | None,
    extra: dict[str, Any],
    source_name: str,
) -> ModelCard:
    fmt = FORMATS[out.suffix]
    tile_sizes = [tile_entry(t) for t in sizes] if sizes else None
    ex = {**extra, "source": {"file": source_name, "sha256": src.sha256, "format": src.format}}
    # the network's size and work per LR pixel do not change with the format: carry them along
    ex.update({k: src.extra[k] for k in COST_KEYS if k in src.extra})
    return ModelCard(
        name=out.name[: -len(out.suffix)],
        architecture=src.architecture,
        scale=src.scale,
        in_channels=src.in_channels,
        out_channels=src.out_channels,
        halo=src.halo,
        format=fmt,
        artifact=out.name,
        sha256=sha256_path(out),
        arch_args=dict(src.arch_args),
        layout=layout,
        precision=precision,
        tile_sizes=tile_sizes,
        normalisation=copy.deepcopy(src.normalisation),
        degradation=src.degradation,
        training=dict(src.training),
        metrics=dict(src.metrics),
        versions={**_versions()},
        extra=ex,
    )
