"""Exact graph rewrites for runtimes that cannot lower an op.

litert-torch 0.10 fails to legalise ``ConvTranspose2d`` with ``output_padding`` (the
``srgan-deconv`` ablation's upsampler: "failed to legalize operation 'mhlo.convolution'").
A transposed convolution equals a plain convolution over the zero-stuffed, padded input
with the kernel flipped and its in/out axes swapped; zero stuffing is a channel concat +
PixelShuffle, both of which TFLite runs. The rewrite is exact (parity checks it against
the original module, to float rounding).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class DeconvAsConv(nn.Module):
    """``ConvTranspose2d`` (groups=1, dilation=1) as zero-stuffing + ``conv2d``."""

    def __init__(self, ct: nn.ConvTranspose2d) -> None:
        super().__init__()
        if ct.groups != 1 or tuple(ct.dilation) != (1, 1) or ct.padding_mode != "zeros":
            raise ValueError("DeconvAsConv handles groups=1, dilation=1, zero padding only")
        self.stride = tuple(int(s) for s in ct.stride)
        self.kernel = tuple(int(k) for k in ct.kernel_size)
        pad = tuple(int(p) for p in ct.padding)
        opad = tuple(int(p) for p in ct.output_padding)
        # conv over the stuffed input: k-1-p before, k-1-p+output_padding after, minus the
        # s-1 zeros PixelShuffle already leaves after the last sample
        self.before = [self.kernel[i] - 1 - pad[i] for i in range(2)]
        self.after = [self.kernel[i] - 1 - pad[i] + opad[i] - (self.stride[i] - 1) for i in range(2)]
        # (in, out, kh, kw) -> (out, in, kh, kw), spatially flipped
        self.weight = nn.Parameter(ct.weight.detach().flip(2, 3).transpose(0, 1).contiguous())
        self.bias = nn.Parameter(ct.bias.detach().clone()) if ct.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        if sh != sw:
            raise ValueError("DeconvAsConv needs equal strides")
        s = sh
        if s > 1:
            n, c, h, w = x.shape
            zeros = torch.zeros_like(x).unsqueeze(2).expand(n, c, s * s - 1, h, w)
            stacked = torch.cat([x.unsqueeze(2), zeros], dim=2).reshape(n, c * s * s, h, w)
            x = F.pixel_shuffle(stacked, s)  # x lands on (h*s, w*s); zeros elsewhere
        # F.pad order: (left, right, top, bottom); negative values crop
        x = F.pad(x, (self.before[1], self.after[1], self.before[0], self.after[0]))
        return F.conv2d(x, self.weight, self.bias)


def replace_conv_transpose(module: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy of ``module`` with every ConvTranspose2d rewritten; and how many were."""
    out = copy.deepcopy(module)
    count = 0

    def visit(parent: Any) -> None:
        nonlocal count
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ConvTranspose2d):
                setattr(parent, name, DeconvAsConv(child))
                count += 1
            else:
                visit(child)

    visit(out)
    return out.eval(), count
