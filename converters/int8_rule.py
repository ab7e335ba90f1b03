"""Which convolutions an int8 file keeps in float: one rule for every int8 target.

int8 rounds a tensor to 256 levels of its calibrated range. The camera image has 12 or 16 bits,
the first feature map's range is set by the brightest calibration structures (so its steps are
coarse on dim tissue), and the last convolution's output is a residual added to the anchor at
full precision. So the convolutions that read the image (the head, and a bicubic anchor's fixed
filter beside it), the first one after them (when at least three are left for int8) and the last
stay in float; every other one computes in int8. The quantisation-aware trainer
(``scopesr.trainer.quant_aware``) rounds exactly those inner layers, so the weights it fits and
the file agree. The TFLite and ONNX targets list their graphs' convolutions in their own terms
and ask this rule.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["float_convolutions"]


def float_convolutions(
    convs: Sequence[tuple[str, str, Hashable]], image_tensors: set[Hashable] | None = None
) -> list[tuple[str, str]]:
    """Of one graph's convolutions ``(name, op type, input tensor)`` in execution order, the
    ``(name, op type)`` of those kept in float.

    Image readers: convolutions on what the first one reads or on ``image_tensors`` (the input
    and its rearrangements by layout ops: a space-to-depth student's head reads the image cut
    into cells, its bicubic anchor the image itself; both read the camera's pixels)."""
    if len(convs) < 2:
        return [(n, o) for n, o, _ in convs]
    image = {convs[0][2], *(image_tensors or ())}
    reading = [(n, o) for n, o, src in convs if src in image]
    rest = [(n, o) for n, o, src in convs if src not in image]
    after_first = rest[:1] if len(rest) >= 3 else []
    return reading + after_first + rest[-1:]
