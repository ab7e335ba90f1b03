"""Generator and discriminator architectures, typed configs, and the preset factory.

The teacher presets reproduce the rows of the paper's Table 3 with ONE generator class:
the variants differ only in their :class:`GeneratorConfig` (upsampling kind, BatchNorm),
so no block code is duplicated.

============== ============================ ==================
preset         upsampling (x2 per stage)    BN in res. blocks
============== ============================ ==================
srgan          sub-pixel (conv + shuffle)   yes
srgan-deconv   transposed conv (3x3, s=2)   yes
srgan-interp   nearest x2 + conv            yes
srgan-nobn     sub-pixel (conv + shuffle)   no
paper          nearest x2 + conv            no   ("Our Method")
============== ============================ ==================

Tensor contract (docs/CONTRIBUTING.md): input is the normalised LR image in 0..1 (NCHW,
float32), output the normalised HR image in 0..1 range. The paper's code feeds the
network [-1, 1] and ends in tanh; the teacher keeps that *inside* the module
(``x*2-1`` at the entry, ``(tanh(y)+1)/2`` at the exit) so its external contract is the
project's 0..1 in / 0..1 out. Students (trainer/student.py) end without any squashing, and so
does a teacher built with ``anchor=True`` (bicubic of the input plus the network's residual).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import PresetError

log = logging.getLogger(__name__)

UPSAMPLE_KINDS = ("subpixel", "deconv", "nearest")
ACTIVATIONS = ("prelu", "lrelu", "relu")


# ---------------------------------------------------------------------------- configs
@dataclass
class GeneratorConfig:
    """Arguments of the SRGAN-family generator (teacher). Stored in the card as arch_args."""

    upsample: str = "nearest"  # one of UPSAMPLE_KINDS
    batchnorm: bool = False  # BN inside the residual blocks
    trunk_bn: bool = True  # conv3x3 + BN before the long skip (SRGAN and the paper's code both have it)
    n_blocks: int = 16
    channels: int = 64
    up_channels: int = 256  # width of the upsampling convs (the paper's code: 256)
    up_activation: str = "lrelu"  # paper code: LeakyReLU(0.2) after each upsampling conv; SRGAN: PReLU
    in_channels: int = 3
    out_channels: int = 3
    scale: int = 4
    head_kernel: int = 9
    tail_kernel: int = 9
    deconv_kernel: int = 3  # kernel not divisible by the stride: the checkerboard's cause
    # not the paper's: PIL bicubic of the input (a fixed convolution, as the students' anchor) is
    # added to the output, which then has no tanh; the zero-initialised tail makes the untrained
    # network exactly bicubic, so a teacher trained for minutes starts from bicubic's quality
    # instead of having to learn the identity (a 5-minute unanchored teacher on the microscopy
    # degradation was 1.15 dB below bicubic on a clean high-SNR image)
    anchor: bool = False

    def validate(self) -> None:
        if self.upsample not in UPSAMPLE_KINDS:
            raise PresetError(f"upsample={self.upsample!r}: must be one of {UPSAMPLE_KINDS}")
        if self.up_activation not in ACTIVATIONS:
            raise PresetError(f"up_activation={self.up_activation!r}: must be one of {ACTIVATIONS}")
        if self.scale < 2 or self.scale & (self.scale - 1):
            raise PresetError(f"scale={self.scale}: must be a power of two >= 2 (x2 stages)")
        for name in ("n_blocks",):
            if getattr(self, name) < 0:
                raise PresetError(f"{name} must be >= 0")
        for name in ("channels", "up_channels", "in_channels", "out_channels"):
            if getattr(self, name) < 1:
                raise PresetError(f"{name} must be >= 1")
        if self.upsample == "subpixel" and self.up_channels % 4:
            raise PresetError(f"up_channels={self.up_channels}: sub-pixel x2 needs a multiple of 4")
        for name in ("head_kernel", "tail_kernel", "deconv_kernel"):
            if getattr(self, name) % 2 == 0:
                raise PresetError(f"{name}={getattr(self, name)}: odd kernels only (centred padding)")
        if self.anchor and self.in_channels != self.out_channels:
            raise PresetError(
                f"anchor=True adds the bicubic input to the output: in_channels ({self.in_channels}) must equal "
                f"out_channels ({self.out_channels})"
            )


@dataclass
class DiscriminatorConfig:
    """SRGAN discriminator: conv64 + 8 conv-BN-LeakyReLU blocks, then a head.

    ``head="gap"`` (the paper): global average pooling -> dense(1). ``head="dense"``
    (original SRGAN): flatten -> dense(1024) -> LeakyReLU -> dense(1); needs ``input_size``.
    Outputs logits (the sigmoid lives in the loss, BCE-with-logits, for numerical safety).
    """

    in_channels: int = 3
    channels: int = 64
    head: str = "gap"
    input_size: int | None = None  # HR crop size, only for head="dense"
    dense_features: int = 1024

    def validate(self) -> None:
        if self.head not in ("gap", "dense"):
            raise PresetError(f"discriminator head={self.head!r}: must be 'gap' or 'dense'")
        if self.head == "dense" and (not self.input_size or self.input_size % 16):
            raise PresetError(
                "discriminator head='dense' needs input_size, a multiple of 16 "
                "(four stride-2 blocks); use head='gap' for any size"
            )


# ---------------------------------------------------------------------------- blocks
def _act(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "lrelu":
        return nn.LeakyReLU(0.2)
    return nn.ReLU()


def _conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)


class ResidualBlock(nn.Module):
    """conv3x3 [BN] PReLU conv3x3 [BN] + identity (Fig. 4 of the paper, BN optional)."""

    def __init__(self, channels: int, batchnorm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(channels, channels, 3)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.PReLU(channels))
        layers.append(_conv(channels, channels, 3))
        if batchnorm:
            layers.append(nn.BatchNorm2d(channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsample_stage(kind: str, cin: int, up_channels: int, act: str, deconv_kernel: int) -> tuple[nn.Module, int]:
    """One x2 stage; returns (module, output channels)."""
    if kind == "subpixel":
        # conv to 4*C' then depth-to-space: the kernel *is* divisible by the stride,
        # yet the paper saw checkerboards emerge during training.
        cout = up_channels // 4
        return nn.Sequential(_conv(cin, up_channels, 3), nn.PixelShuffle(2), _act(act, cout)), cout
    if kind == "deconv":
        # 3x3 stride 2: uneven overlap (Odena et al.) -> periodic checkerboard from the start.
        k = deconv_kernel
        return nn.Sequential(
            nn.ConvTranspose2d(cin, up_channels, k, stride=2, padding=k // 2, output_padding=1), _act(act, up_channels)
        ), up_channels
    # nearest x2 then conv: resize-convolution, no uneven overlap.
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, up_channels, 3), _act(act, up_channels)
    ), up_channels


class Generator(nn.Module):
    """The SRGAN-family generator; every Table 3 row is a :class:`GeneratorConfig`.

    External contract: 0..1 in, 0..1 out (see the module docstring).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config.channels
        self.head = nn.Sequential(_conv(config.in_channels, c, config.head_kernel), nn.PReLU(c))
        self.blocks = nn.Sequential(*[ResidualBlock(c, config.batchnorm) for _ in range(config.n_blocks)])
        trunk: list[nn.Module] = [_conv(c, c, 3)]
        if config.trunk_bn:
            trunk.append(nn.BatchNorm2d(c))
        self.trunk = nn.Sequential(*trunk)
        stages, cin = [], c
        for _ in range(int(math.log2(config.scale))):
            stage, cin = _upsample_stage(
                config.upsample, cin, config.up_channels, config.up_activation, config.deconv_kernel
            )
            stages.append(stage)
        self.upsample = nn.Sequential(*stages)
        self.tail = _conv(cin, config.out_channels, config.tail_kernel)
        self.anchor: nn.Module | None = None
        if config.anchor:
            from .student import BicubicAnchor  # noqa: PLC0415  (student.py imports nothing from here)

            self.anchor = nn.Sequential(BicubicAnchor(config.scale, config.in_channels), nn.PixelShuffle(config.scale))
            nn.init.zeros_(self.tail.weight)  # untrained: exactly the anchor
            nn.init.zeros_(self.tail.bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    def rf_branches(self) -> list[nn.Module]:
        """The parallel paths for the receptive-field count: the network and, when anchored, the
        bicubic anchor (registered after the tail, so registration order would chain them)."""
        main = nn.Sequential(self.head, self.blocks, self.trunk, self.upsample, self.tail)
        return [main] if self.anchor is None else [main, self.anchor]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x * 2.0 - 1.0)  # the paper's code works in [-1, 1]
        h = h + self.trunk(self.blocks(h))  # long skip
        y = self.tail(self.upsample(h))
        if self.anchor is not None:  # the residual over bicubic, in the 0..1 contract's units
            return self.anchor(x) + y
        return (torch.tanh(y) + 1.0) * 0.5  # back to the project's 0..1 contract


class Discriminator(nn.Module):
    """SRGAN discriminator with a GAP head (paper) or flatten + dense-1024 head (SRGAN)."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        config.validate()
        self.config = config
        c = config.channels
        layers: list[nn.Module] = [_conv(config.in_channels, c, 3), nn.LeakyReLU(0.2)]
        # (out multiplier, stride) for the 8 blocks: 64s2, 64, 128s2, 128, 256s2, 256, 512s2, 512
        plan = [(1, 2), (1, 1), (2, 2), (2, 1), (4, 2), (4, 1), (8, 2), (8, 1)]
        cin = c
        for mult, stride in plan:
            layers += [_conv(cin, c * mult, 3, stride=stride, bias=False), nn.BatchNorm2d(c * mult), nn.LeakyReLU(0.2)]
            cin = c * mult
        self.features = nn.Sequential(*layers)
        if config.head == "gap":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1))
        else:
            side = config.input_size // 16  # type: ignore[operator]
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(cin * side * side, config.dense_features),
                nn.LeakyReLU(0.2),
                nn.Linear(config.dense_features, 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: HR image in 0..1 -> one logit per image, shape (N,)."""
        return self.head(self.features(x * 2.0 - 1.0)).squeeze(1)


# ---------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # "teacher" | "student"
    description: str
    config: Any  # a dataclass instance
    build: Callable[[Any], nn.Module]


TEACHER_PRESETS: dict[str, tuple[str, GeneratorConfig]] = {
    "srgan": (
        "SRGAN baseline: sub-pixel upsampling, BN in residual blocks (Table 3 row 1)",
        GeneratorConfig(upsample="subpixel", batchnorm=True, up_activation="prelu"),
    ),
    "srgan-deconv": (
        "SRGAN with transposed-conv upsampling, BN (checkerboard-prone)",
        GeneratorConfig(upsample="deconv", batchnorm=True, up_activation="prelu"),
    ),
    "srgan-interp": (
        "SRGAN with nearest x2 + conv upsampling, BN",
        GeneratorConfig(upsample="nearest", batchnorm=True, up_activation="lrelu"),
    ),
    "srgan-nobn": (
        "SRGAN with sub-pixel upsampling, no BN in residual blocks",
        GeneratorConfig(upsample="subpixel", batchnorm=False, up_activation="prelu"),
    ),
    "paper": (
        "The paper's 'Our Method': nearest x2 + conv (256 filters, LeakyReLU), no BN in blocks",
        GeneratorConfig(upsample="nearest", batchnorm=False, up_activation="lrelu"),
    ),
}


def _student_presets() -> dict[str, Preset]:
    # trainer/student.py is written in parallel by another part of the project: the factory
    # must work with or without it.
    try:
        from . import student  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - only while student.py does not exist
        log.debug("no student presets (%s)", exc)
        return {}
    presets = getattr(student, "STUDENT_PRESETS", {})
    build = getattr(student, "build_student", None)
    if build is None:
        return {}
    out = {}
    for name, cfg in presets.items():
        desc = getattr(cfg, "description", None)
        if not desc:  # summarise the size fields the config has
            fields = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
            shown = ", ".join(f"{k}={fields[k]}" for k in ("channels", "depth", "in_channels", "anchor") if k in fields)
            desc = f"edge student ({shown})" if shown else (student.__doc__ or "student").strip().splitlines()[0]
        out[name] = Preset(name, "student", str(desc), cfg, build)
    return out


def presets() -> dict[str, Preset]:
    """Every preset by name: the teacher ablations, then the students."""
    out = {name: Preset(name, "teacher", desc, cfg, Generator) for name, (desc, cfg) in TEACHER_PRESETS.items()}
    out.update(_student_presets())
    return out


def preset_config(name: str, **overrides: Any) -> Any:
    """The typed config of preset ``name`` with ``overrides`` applied (unknown keys: error)."""
    table = presets()
    if name not in table:
        raise PresetError(f"unknown preset {name!r}; known presets: {', '.join(table)} (see `sr-train presets`)")
    cfg = table[name].config
    known = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise PresetError(f"preset {name!r} has no argument(s) {bad}; its arguments are {sorted(known)}")
    return dataclasses.replace(cfg, **overrides)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build any preset by name; ``overrides`` replace fields of its typed config.

    >>> g = create_model("paper", in_channels=1, out_channels=1, n_blocks=4)
    """
    cfg = preset_config(name, **overrides)
    model = presets()[name].build(cfg)
    model.preset_name = name  # type: ignore[attr-defined]  # remembered for cards
    if not hasattr(model, "config"):
        model.config = cfg  # type: ignore[attr-defined]
    return model


def model_config(model: nn.Module) -> Any:
    """The typed config a model was built from (``model.config``)."""
    cfg = getattr(model, "config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        raise PresetError(f"{type(model).__name__} has no typed .config; build it with create_model()")
    return cfg


def model_scale(model: nn.Module) -> int:
    return int(getattr(model_config(model), "scale", 4))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
