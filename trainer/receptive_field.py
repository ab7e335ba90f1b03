"""Receptive-field radius (the card's ``halo``) and multiply-accumulates per LR pixel.

The radius is computed *analytically*: the network's spatial ops are read in forward
order (convolutions, transposed convolutions, nearest/bilinear upsampling, pixel
shuffle, pooling) and the interval of LR input pixels that an HR output pixel depends on
is propagated backwards exactly, in 1-D (every op here is separable in its extent).
Residual skips never widen the field, so summing along the main path is exact for the
SRGAN family and for students with an input "anchor". :func:`probe_receptive_field_radius`
measures the same number from the gradient of an output pixel block (an impulse-response
probe); the tests check both agree.

Why it matters: a tile read with this many LR pixels of overlap on each side gives a
seam-free result (the SDK's tiler keeps only each tile's centre).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from .models import create_model  # to measure a preset given by name (models never imports this module)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpatialOp:
    """One spatial op, 1-D view. kind: conv | deconv | up_nearest | up_linear | down."""

    kind: str
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    factor: int = 1


def _pair0(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def spatial_ops(model: nn.Module) -> list[SpatialOp]:
    """The spatial ops of ``model`` in forward (registration) order. A model whose registration
    order is not its forward order, or that has parallel paths, lists its paths as modules in
    ``rf_branches()`` (see :func:`receptive_field_radius`).
    """
    ops: list[SpatialOp] = []
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            ops.append(
                SpatialOp("deconv", _pair0(m.kernel_size), _pair0(m.stride), _pair0(m.padding), _pair0(m.dilation))
            )
        elif isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str):  # "same"/"valid"
                pad = (_pair0(m.dilation) * (_pair0(m.kernel_size) - 1)) // 2 if m.padding == "same" else 0
            else:
                pad = _pair0(m.padding)
            ops.append(SpatialOp("conv", _pair0(m.kernel_size), _pair0(m.stride), pad, _pair0(m.dilation)))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair0(m.kernel_size)
            ops.append(SpatialOp("conv", k, _pair0(m.stride or k), _pair0(m.padding), 1))
        elif isinstance(m, nn.Upsample):
            f = m.scale_factor
            f = int(f[0] if isinstance(f, (tuple, list)) else f)
            kind = "up_nearest" if m.mode == "nearest" else "up_linear"
            ops.append(SpatialOp(kind, factor=f))
        elif isinstance(m, nn.PixelShuffle):
            ops.append(SpatialOp("up_nearest", factor=m.upscale_factor))  # HR y <- LR y // r
        elif isinstance(m, nn.PixelUnshuffle):
            ops.append(SpatialOp("down", factor=m.downscale_factor))
    return ops


def _back(op: SpatialOp, a: int, b: int) -> tuple[int, int]:
    """Input interval that output interval [a, b] of ``op`` depends on."""
    if op.kind == "conv":
        return a * op.stride - op.padding, b * op.stride - op.padding + op.dilation * (op.kernel - 1)
    if op.kind == "deconv":
        # o = i*s - p + d*j, j in [0, k): hull of the i that reach [a, b]
        lo = math.ceil((a + op.padding - op.dilation * (op.kernel - 1)) / op.stride)
        return lo, (b + op.padding) // op.stride
    if op.kind == "up_nearest":
        return a // op.factor, b // op.factor
    if op.kind == "up_linear":  # align_corners=False: source (o+0.5)/f-0.5, floor and floor+1
        return math.floor((a + 0.5) / op.factor - 0.5), math.floor((b + 0.5) / op.factor - 0.5) + 1
    if op.kind == "down":
        return a * op.factor, b * op.factor + op.factor - 1
    raise ValueError(f"unknown spatial op {op.kind!r}")


def _total_factor(ops: list[SpatialOp]) -> float:
    f = 1.0
    for op in ops:
        if op.kind in ("up_nearest", "up_linear"):
            f *= op.factor
        elif op.kind == "deconv":
            f *= op.stride
        elif op.kind == "down":
            f /= op.factor
        elif op.kind == "conv":
            f /= op.stride
    return f


def analytic_radius(ops: list[SpatialOp], scale: int) -> int:
    """Radius in LR pixels: max over the ``scale`` HR outputs of LR pixel 0 of their reach."""
    r = 0
    for y in range(scale):
        a, b = y, y
        for op in reversed(ops):
            a, b = _back(op, a, b)
        r = max(r, -a, b)
    return r


def _resolve(model_or_name: nn.Module | str) -> nn.Module:
    if isinstance(model_or_name, str):
        return create_model(model_or_name)
    return model_or_name


def receptive_field_radius(model_or_name: nn.Module | str, scale: int | None = None) -> int:
    """Exact receptive-field radius in LR pixels (the card's ``halo``).

    Analytic from the layer list; if the ops found do not account for the model's scale
    (e.g. upsampling done with functional calls the walk cannot see), it falls back to the
    impulse-response probe and says so in the log.
    """
    model = _resolve(model_or_name)
    if scale is None:
        scale = int(getattr(getattr(model, "config", None), "scale", 4))
    # a model with parallel paths (a student's anchor beside its body) lists each one
    paths = model.rf_branches() if hasattr(model, "rf_branches") else [model]
    branches = [spatial_ops(p) for p in paths]
    for ops in branches:
        if abs(_total_factor(ops) - scale) > 1e-9:
            log.warning(
                "%s: spatial ops account for x%s, not x%s; measuring the radius with a probe",
                type(model).__name__,
                _total_factor(ops),
                scale,
            )
            return probe_receptive_field_radius(model, scale=scale)
    return max(analytic_radius(ops, scale) for ops in branches)


def _in_channels(model: nn.Module, default: int = 3) -> int:
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "in_channels"):
        return int(cfg.in_channels) + int(getattr(cfg, "cond_channels", 0) or 0)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return int(m.in_channels)
    return default


def probe_receptive_field_radius(
    model: nn.Module, scale: int = 4, in_channels: int | None = None, size: int = 33, max_size: int = 257, seed: int = 0
) -> int:
    """Measure the radius: gradient of the HR block of the centre LR pixel w.r.t. the input.

    Input pixels with a non-zero gradient are exactly the ones that block depends on
    (generic random weights and input; eval mode so BN is a fixed affine map). The input is
    grown until the field no longer touches the border.
    """
    cin = in_channels or _in_channels(model)
    g = torch.Generator().manual_seed(seed)
    # A copy with jittered weights: a zero-initialised layer (a student's tail) would hide
    # dependencies that the architecture has, and the halo is a property of the architecture.
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(p.device, p.dtype))
    device = next(model.parameters()).device
    # a space-to-depth student takes sides in multiples of its factor
    cfg = getattr(model, "config", None)
    mult = int(getattr(cfg, "unshuffle", 1) or 1)
    while True:
        size = -(-size // mult) * mult
        x = torch.rand(1, cin, size, size, generator=g).to(device).requires_grad_(True)
        y = model(x)
        c = size // 2
        y[..., c * scale : (c + 1) * scale, c * scale : (c + 1) * scale].sum().backward()
        nz = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero()
        r = int((nz - c).abs().max()) if len(nz) else 0
        if r < c - 1 or size >= max_size:
            return r
        size = size * 2 + 1


def macs_per_lr_pixel(
    model: nn.Module, in_channels: int | None = None, scale: int | None = None, size: int = 16
) -> float:
    """Multiply-accumulates per LR input pixel, counted by forward hooks on a probe input.

    Counts Conv2d, ConvTranspose2d and Linear (the cost that matters); activations,
    BatchNorm, the anchor add and depth-to-space are free by this convention.
    """
    del scale  # the count is per LR pixel whatever the scale; kept for a uniform signature
    cin = in_channels or _in_channels(model)
    total = [0]

    def hook(m: nn.Module, inp, out) -> None:
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total[0] += out.numel() * (m.in_channels // m.groups) * k
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total[0] += inp[0].numel() * (m.out_channels // m.groups) * k
        elif isinstance(m, nn.Linear):
            total[0] += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, cin, size, size, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0] / float(size * size)
