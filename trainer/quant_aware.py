"""Quantisation-aware fine-tuning of a student for its int8 TFLite file.

``sr-convert --precision int8`` computes the student's inner body convolutions in int8 (per
output channel symmetric int8 weights, per-tensor int8 activations over a [0, max] range after
the fused ReLU) and keeps in float those that read the image, the one after them and the tail
(``int8_conv_indices`` states the same rule in module terms; a test converts a student and checks
that both agree). A longer-trained student leans on small activation differences that int8 steps
erase (measured: 120 k steps lost up to 0.24 dB to its int8 file, 40 k steps 0.06 dB). Training
through the same rounding (straight-through gradients) teaches the network to tolerate it.

The activation ranges follow an exponential moving average of each batch's maximum (the int8
converter later calibrates its own ranges on real tiles; these only have to be of the same size).
A tensor that no ReLU follows (a separable student's depthwise output, which its 1x1 convolution
reads) is signed: it is rounded over [min, max], the way the converter's asymmetric int8 does,
not clipped at zero.
Rounding is active in training mode only: validation and held-out evaluation score the plain
float weights, which are what is saved.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .errors import TrainError
from .student import Student

WEIGHT_LEVELS = 127  # symmetric int8 weights: [-127, 127]
ACT_LEVELS = 255  # int8 activation with zero point -128 over [0, max]


def int8_conv_indices(student: Student) -> list[int]:
    """Indices into ``student.body`` of the convolutions the int8 file computes in int8: the body
    convolutions after the first two (the head reads the image; the one after it stays float when
    at least two more are left), never the tail."""
    hidden = [i for i, m in enumerate(student.body) if isinstance(m, nn.Conv2d)][1:]  # after the head
    # the converter counts the hidden convolutions plus the tail; with three or more, the first stays float
    return hidden[1:] if len(hidden) + 1 >= 3 else hidden


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 rounding with a straight-through gradient."""
    scale = w.detach().abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-12) / WEIGHT_LEVELS
    q = (w / scale).round().clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS) * scale
    return w + (q - w).detach()


def fake_quant_act(x: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Rounding to 256 levels over [0, top]; no gradient outside the range (it is clipped)."""
    scale = top.clamp_min(1e-8) / ACT_LEVELS
    xc = torch.minimum(x.clamp_min(0.0), top)
    return xc + ((xc / scale).round() * scale - xc).detach()


def fake_quant_signed(x: torch.Tensor, low: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Rounding to 256 levels over [low, top] (widened to hold 0, which stays exact, as an int8
    zero point keeps it); no gradient outside the range (it is clipped)."""
    low, top = low.clamp_max(0.0), top.clamp_min(0.0)
    scale = (top - low).clamp_min(1e-8) / ACT_LEVELS
    zero = (-low / scale).round()
    xc = torch.maximum(torch.minimum(x, top), low)
    q = ((xc / scale).round() + zero).clamp(0, ACT_LEVELS)
    return xc + ((q - zero) * scale - xc).detach()


class QuantAware:
    """Patches the int8 convolutions of a student in place (their ``forward``; the state dict is
    unchanged) and keeps one activation range per quantised tensor."""

    def __init__(self, student: nn.Module, momentum: float = 0.99) -> None:
        if not isinstance(student, Student):
            raise TrainError(
                f"quant_aware needs a student (the int8 TFLite layout); preset model is {type(student).__name__}"
            )
        self.student = student
        self.momentum = momentum
        self.indices = int8_conv_indices(student)
        if not self.indices:
            raise TrainError("quant_aware: this student has no convolution that the int8 file computes in int8")
        body = student.body
        # per int8 conv, is its input / output signed (no ReLU between it and the convolution)?
        self.signed = [
            (i > 0 and not isinstance(body[i - 1], nn.ReLU), i + 1 >= len(body) or not isinstance(body[i + 1], nn.ReLU))
            for i in self.indices
        ]
        # per int8 conv: the range of its input and of its output (the top; the low end for a
        # signed tensor, 0 otherwise); 0 = not yet observed
        self.ranges = torch.zeros(len(self.indices), 2)
        self.lows = torch.zeros(len(self.indices), 2)
        for k, i in enumerate(self.indices):
            conv = student.body[i]
            conv.forward = types.MethodType(self._make_forward(k), conv)  # type: ignore[method-assign]

    def _observe(self, k: int, j: int, x: torch.Tensor, low: bool = False) -> torch.Tensor:
        """Update and return the moving top (or, ``low``, the low end) of quantised tensor (k, j).
        The batch extreme is taken of ``x`` and then held to >= 0 (<= 0): the same as of ReLU(x),
        without a tensor-sized pass for it."""
        table = self.lows if low else self.ranges
        if table.device != x.device:  # kept beside the activations: no host sync per step
            table = table.to(x.device)
            setattr(self, "lows" if low else "ranges", table)
        d = x.detach()
        seen = d.amin().float().clamp_max(0.0) if low else d.amax().float().clamp_min(0.0)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # the same ranges on every rank
            dist.all_reduce(seen, op=dist.ReduceOp.MIN if low else dist.ReduceOp.MAX)
        cur = table[k, j]
        table[k, j] = torch.where(cur == 0, seen, self.momentum * cur + (1.0 - self.momentum) * seen)
        return table[k, j].clone().to(x.dtype)  # a copy: the next update writes in place

    def _round(self, k: int, j: int, x: torch.Tensor) -> torch.Tensor:
        if self.signed[k][j]:
            return fake_quant_signed(x, self._observe(k, j, x, low=True), self._observe(k, j, x))
        # the int8 output is the fused ReLU's: rounding over [0, top] is ReLU plus rounding
        return fake_quant_act(x, self._observe(k, j, x))

    def _make_forward(self, k: int) -> Any:
        qa = self

        def forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
            if not conv.training:
                return conv._conv_forward(x, conv.weight, conv.bias)
            x = qa._round(k, 0, x)
            y = conv._conv_forward(x, fake_quant_weight(conv.weight), conv.bias)
            return qa._round(k, 1, y)

        return forward

    def state_dict(self) -> dict[str, Any]:
        return {
            "indices": list(self.indices),
            "ranges": self.ranges.detach().cpu().clone(),
            "lows": self.lows.detach().cpu().clone(),
            "momentum": self.momentum,
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if list(st["indices"]) != self.indices:
            raise TrainError(f"quant_aware checkpoint covers convolutions {st['indices']}, this model {self.indices}")
        self.ranges = st["ranges"].clone().float().to(self.ranges.device)
        if "lows" in st:  # checkpoints from before signed tensors were tracked have no low ends (all 0)
            self.lows = st["lows"].clone().float().to(self.lows.device)

    def describe(self) -> dict[str, Any]:
        """For the card: which body convolutions trained through int8 rounding, and their ranges."""
        return {
            "int8_body_convs": list(self.indices),
            "weights": "per output channel, symmetric, 8 bit",
            "activations": "per tensor, [0, max] in 256 levels ([min, max] where no ReLU follows), "
            "max and min = moving averages of the batch extremes",
            "momentum": self.momentum,
            "ranges": [[round(float(a), 4), round(float(b), 4)] for a, b in self.ranges.tolist()],
            "low_ends": [[round(float(a), 4), round(float(b), 4)] for a, b in self.lows.tolist()],
        }
