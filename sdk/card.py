"""The model card: what an artifact is, how to feed it, and proof that it is the file we think.

A card is ``NAME.card.json`` beside the artifact ``NAME.<suffix>``. It plays the role of
torchvision's weights description: architecture and arguments, scale, I/O layout,
normalisation, halo (receptive-field radius), fixed tile sizes, precision, training
recipe, measured metrics, and the artifact's sha256, checked before anything runs.
The tile-size grammar is in ``tiles.py``, hashing and versions in ``provenance.py``.

Only the standard library here: the card is read on a Raspberry Pi without torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text as _atomic_write_text
from .errors import CardError, IntegrityError
from .provenance import sha256_path as _sha256_path
from .tiles import is_tile_size as _is_tile_size

CARD_FORMAT_VERSION = 1
CARD_SUFFIX = ".card.json"
#: card.extra keys of the network's cost: parameters and multiply-accumulates per LR pixel (the
#: trainer writes them into the weights card; every converted artifact's card carries them on)
COST_KEYS = ("params", "macs_per_lr_pixel")

#: artifact suffix -> format name used in the card
FORMATS: dict[str, str] = {
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".tflite": "tflite",
    ".pt2": "pt2",
    ".mlpackage": "mlpackage",
    ".zip": "bioimageio",
}
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
LAYOUTS = ("NCHW", "NHWC")
NORM_MODES = ("percentile", "range")
#: bounds of a card's numbers: a hostile or mistyped card must fail its check, not ask for
#: 30 GiB (scale 1000) or a 20000x20000 tile at run time
MAX_SCALE = 16
MAX_CHANNELS = 1024
MAX_HALO = 1024
MAX_TILE_SIDE = 4096
#: a card is a few KB; anything this large is not one (and is not read whole into memory)
MAX_CARD_BYTES = 16 << 20
#: JSON nesting a card may have (the bundled cards reach 7): deeper values parse, but copying or
#: writing the card (to_dict, save, a converted artifact's new card) recurses past Python's limit
MAX_CARD_DEPTH = 64


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/dicts more than ``limit`` deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            if d > limit:
                return True
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_plain_name(name: Any) -> bool:
    """A file name with no folder part: what a card may name as its artifact (never a path:
    a card must not point outside its own folder)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and name not in (".", "..")
        and not any(ch in name for ch in "/\\\0")
        and Path(name).name == name
    )


@dataclass
class Normalisation:
    """How raw pixel values are mapped to the model's input range, and back.

    ``percentile``: per image and channel, ``p_low``..``p_high`` percentiles map to 0..1
    (CSBDeep style); the output is mapped back with the same affine transform, so results
    do not depend on exposure. ``range``: the dtype's full range maps to 0..1 (uint8 /255,
    uint16 /65535; float data is taken as already in 0..1).
    """

    mode: str = "percentile"
    p_low: float = 0.1
    p_high: float = 99.9

    def validate(self, where: str = "normalisation") -> None:
        if not isinstance(self.mode, str) or self.mode not in NORM_MODES:
            raise CardError(f"{where}.mode: {self.mode!r} is not one of {NORM_MODES}")
        for fld in ("p_low", "p_high"):
            v = getattr(self, fld)
            if not _is_number(v):
                raise CardError(f"{where}.{fld}: must be a number (a percentile, 0..100), got {v!r}")
        if not (0.0 <= self.p_low < self.p_high <= 100.0):
            raise CardError(f"{where}: need 0 <= p_low < p_high <= 100, got p_low={self.p_low}, p_high={self.p_high}")


@dataclass
class ModelCard:
    """Typed model card. ``ModelCard.load(artifact)`` validates it and checks the sha256."""

    name: str
    architecture: str  # preset name, e.g. "paper", "srgan", "student-small"
    scale: int
    in_channels: int
    out_channels: int
    halo: int  # receptive-field radius in LR pixels: the minimum seam-free tile overlap
    format: str  # one of FORMATS.values()
    artifact: str = ""  # file name of the artifact, relative to the card's folder
    sha256: str = ""
    arch_args: dict[str, Any] = field(default_factory=dict)
    layout: str = "NCHW"  # layout of the artifact's input and output tensors
    precision: str = "fp32"
    # fixed LR input sizes, halo included: N (an N x N tile) or [H, W] (e.g. a camera frame,
    # [120, 160]); None: any H and W (dynamic shapes). See tile_shapes().
    tile_sizes: list[int | list[int]] | None = None
    normalisation: Normalisation = field(default_factory=Normalisation)
    degradation: str = "pil-bicubic"  # the down-sampling the model was trained to invert
    training: dict[str, Any] = field(default_factory=dict)  # data summary, steps, recipe
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. {"heldout": {"psnr": ..}}
    versions: dict[str, str] = field(default_factory=dict)  # software that made it
    extra: dict[str, Any] = field(default_factory=dict)  # format-specific (signatures, ...)
    format_version: int = CARD_FORMAT_VERSION

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise CardError naming the first bad field."""

        def need(cond: bool, fld: str, msg: str) -> None:
            if not cond:
                raise CardError(f"model card field {fld!r}: {msg}")

        need(
            isinstance(self.format_version, int) and 1 <= self.format_version <= CARD_FORMAT_VERSION,
            "format_version",
            f"unsupported card version {self.format_version!r} "
            f"(this scopesr reads up to {CARD_FORMAT_VERSION}; upgrade scopesr)",
        )
        need(isinstance(self.name, str) and self.name != "", "name", "must be a non-empty string")
        need(
            isinstance(self.architecture, str) and self.architecture != "", "architecture", "must be a non-empty string"
        )
        for fld, top in (("scale", MAX_SCALE), ("in_channels", MAX_CHANNELS), ("out_channels", MAX_CHANNELS)):
            v = getattr(self, fld)
            need(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= top,
                fld,
                f"must be an integer from 1 to {top}, got {v!r}",
            )
        need(
            isinstance(self.halo, int) and not isinstance(self.halo, bool) and 0 <= self.halo <= MAX_HALO,
            "halo",
            f"must be an integer from 0 to {MAX_HALO}, got {self.halo!r}",
        )
        need(
            isinstance(self.artifact, str) and (self.artifact == "" or is_plain_name(self.artifact)),
            "artifact",
            f"must be the artifact's file name in the card's folder (no folder part), got {self.artifact!r}",
        )
        need(isinstance(self.degradation, str), "degradation", f"must be a string, got {self.degradation!r}")
        need(
            self.format in FORMATS.values(), "format", f"{self.format!r} is not one of {sorted(set(FORMATS.values()))}"
        )
        need(self.layout in LAYOUTS, "layout", f"{self.layout!r} is not one of {LAYOUTS}")
        need(self.precision in PRECISIONS, "precision", f"{self.precision!r} is not one of {PRECISIONS}")
        if self.tile_sizes is not None:
            need(
                isinstance(self.tile_sizes, list)
                and len(self.tile_sizes) > 0
                and all(_is_tile_size(t) for t in self.tile_sizes),
                "tile_sizes",
                f"must be null (dynamic) or a non-empty list of positive integers N "
                f"(N x N tiles) or [H, W] pairs, got {self.tile_sizes!r}",
            )
            need(
                all(max(t if isinstance(t, (list, tuple)) else [t]) <= MAX_TILE_SIDE for t in self.tile_sizes),
                "tile_sizes",
                f"a tile side is at most {MAX_TILE_SIDE} LR pixels, got {self.tile_sizes!r}",
            )
        need(
            isinstance(self.sha256, str) and (self.sha256 == "" or len(self.sha256) == 64),
            "sha256",
            "must be the 64-hex-digit sha256 of the artifact",
        )
        for fld in ("arch_args", "training", "metrics", "versions", "extra"):
            need(isinstance(getattr(self, fld), dict), fld, "must be a JSON object")
        m = self.arch_args.get("unshuffle", 1) if isinstance(self.arch_args, dict) else 1
        need(
            isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= MAX_SCALE,
            "arch_args.unshuffle",
            f"must be an integer 1..{MAX_SCALE} (the space-to-depth factor), got {m!r}",
        )
        self.normalisation.validate()

    @property
    def size_multiple(self) -> int:
        """What the network's input height and width must be multiples of: its space-to-depth
        factor (``arch_args.unshuffle``; 1 for most models). The SDK's tiles start and end on
        multiples of it in image coordinates, so a tiled image equals the whole-image result."""
        return int(self.arch_args.get("unshuffle", 1) or 1)

    @property
    def cost(self) -> dict[str, Any] | None:
        """The network's parameters and multiply-accumulates per LR pixel (``COST_KEYS`` of
        ``extra``) where the card records them, else None."""
        return {k: self.extra[k] for k in COST_KEYS if k in self.extra} or None

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<card>") -> ModelCard:
        if not isinstance(data, dict):
            raise CardError(f"{source}: a model card must be a JSON object")
        if _depth_over(data, MAX_CARD_DEPTH):
            raise CardError(f"{source}: not a model card: JSON nested more than {MAX_CARD_DEPTH} deep")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardError(f"{source}: unknown model card field(s) {unknown}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise CardError(f"{source}: model card is missing required field(s) {missing}")
        kwargs = dict(data)
        norm = kwargs.get("normalisation", {})
        if not isinstance(norm, dict):
            raise CardError(f"{source}: model card field 'normalisation' must be a JSON object")
        try:
            kwargs["normalisation"] = Normalisation(**norm)
        except TypeError as exc:
            raise CardError(f"{source}: model card field 'normalisation': {exc}") from None
        card = cls(**kwargs)
        try:
            card.validate()
        except CardError as exc:
            raise CardError(f"{source}: {exc}") from None
        return card

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the card atomically to ``path`` (a ``.card.json`` file)."""
        self.validate()
        return _atomic_write_text(Path(path), self.to_json())

    @classmethod
    def read(cls, card_file: str | os.PathLike) -> ModelCard:
        """Read and validate a card file (without checking the artifact)."""
        card_file = Path(card_file)
        try:
            st = card_file.stat()
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever
                raise CardError(
                    f"{card_file}: a model card must be a regular file (this is a "
                    f"{'folder' if stat.S_ISDIR(st.st_mode) else 'pipe, device or socket'})"
                )
            if st.st_size > MAX_CARD_BYTES:
                raise CardError(
                    f"{card_file}: {st.st_size:,} bytes is not a model card (cards are a few KB; "
                    f"the limit is {MAX_CARD_BYTES >> 20} MB)"
                )
            with open(card_file, "rb") as fh:
                raw = fh.read(MAX_CARD_BYTES + 1)
        except FileNotFoundError:
            raise CardError(f"{card_file}: model card not found") from None
        except OSError as exc:
            raise CardError(f"{card_file}: cannot read model card ({exc.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CardError(
                f"{card_file}: not a model card: not UTF-8 text (byte {exc.start}); cards are "
                "JSON written by sr-train / sr-convert"
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CardError(f"{card_file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        except RecursionError:
            raise CardError(f"{card_file}: not a model card: JSON nested too deeply") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise CardError(f"{card_file}: not a valid model card ({exc})") from None
        return cls.from_dict(data, source=str(card_file))

    @classmethod
    def load(cls, artifact: str | os.PathLike, verify: bool = True) -> ModelCard:
        """Read the card beside ``artifact`` and check the artifact's sha256 against it."""
        artifact = Path(artifact)
        card_file = card_path_for(artifact)
        try:
            mode = artifact.stat().st_mode
        except OSError:
            mode = None
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            # hashing a FIFO would block forever: only files (and .mlpackage folders) are models
            raise CardError(f"{artifact}: not a model file (a pipe, device or socket); pass the artifact file itself")
        if not card_file.exists():
            raise CardError(
                f"{artifact}: no model card found (expected {card_file.name} beside it). "
                "Artifacts made by sr-convert / sr-train come with one; keep the two files together."
            )
        card = cls.read(card_file)
        if card.artifact and card.artifact != artifact.name:
            raise CardError(f"{card_file}: the card describes {card.artifact!r}, not {artifact.name!r}")
        if verify:
            if not card.sha256:
                raise IntegrityError(f"{card_file}: the card records no sha256 for {artifact.name}")
            actual = _sha256_path(artifact)
            if actual != card.sha256:
                raise IntegrityError(
                    f"{artifact}: sha256 mismatch (card says {card.sha256[:12]}..., file is "
                    f"{actual[:12]}...): the file was modified or corrupted after its card was written. "
                    "Re-export it, or restore the original file."
                )
        return card


def training_stages(training: dict[str, Any], depth: Any = None, channels: Any = None) -> list[dict[str, Any]]:
    """Every training run behind a card's weights, oldest first: the nested ``init_from`` records
    (each run names the one it started from) and, last, ``training`` itself at ``depth`` (and
    ``channels``, where given)."""
    stages = [{**training, "depth": depth, **({"channels": channels} if channels is not None else {})}]
    init = training.get("init_from")
    while isinstance(init, dict):
        stages.append(init)
        init = init.get("init_from")
    return stages[::-1]


def stage_zoom_p(stage: dict[str, Any]) -> float | None:
    """The share of a training stage's sharp crops that were zoomed (oversampled references): a
    lineage record's ``zoom_p``, else the ``data`` a card's training section records (no ``zoom``
    there: 0, off); None for a record that names neither (written before records carried it)."""
    if stage.get("zoom_p") is not None:
        return float(stage["zoom_p"])
    data = stage.get("data")
    if isinstance(data, dict):
        return float((data.get("zoom") or {}).get("p", 0.0))
    return None


def card_path_for(artifact: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.card.json`` (also for folders such as ``.mlpackage``)."""
    artifact = Path(artifact)
    return artifact.with_name(
        artifact.name[: -len(artifact.suffix)] + CARD_SUFFIX if artifact.suffix else artifact.name + CARD_SUFFIX
    )


#: names that lived here before the card module held the card only: module -> names. They are
#: still served, with a DeprecationWarning, until the last importer moves to the new home.
_MOVED = {
    "atomic": ("atomic_write_text", "atomic_write_bytes"),
    "tiles": ("tile_shapes", "parse_tile_sizes", "tile_label", "tile_entry"),
    "provenance": ("package_versions", "sha256_path"),
}


def __getattr__(name: str) -> Any:
    for module, names in _MOVED.items():
        if name in names:
            import importlib
            import warnings

            warnings.warn(
                f"scopesr.sdk.card.{name} moved to scopesr.sdk.{module}.{name} (or import it from scopesr.sdk)",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(f"{__package__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
