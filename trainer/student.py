"""The edge student: a small all-convolutional x4 network built for int8 NPUs and CPUs.

Why this shape (the mobile SR challenges' lesson on int8-friendly upsampling, and the paper's checkerboard lesson):

* every convolution runs at LR resolution (16x fewer pixels than HR at x4);
* the only upsampling is depth-to-space (``PixelShuffle``): no nearest/bilinear resize
  inside (slow on mobile NPUs) and no transposed convolution (checkerboard);
* an *anchor*: the input repeated ``scale**2`` times (a plain channel concat) is added to
  the last convolution's output before depth-to-space. Depth-to-space of the repeated
  input is exactly nearest upsampling, so the network only learns a residual; with the
  last convolution zero-initialised the untrained network *is* nearest upsampling, which
  has no period-2 (checkerboard) pattern to start from. Concat + add quantise well
  because the anchor has the input's own scale;
* only Conv2d + ReLU: every runtime (TFLite, Core ML, ONNX, NNAPI/XNNPACK) runs them
  natively in int8.

Budget: at most 1 % of the ``paper`` teacher's multiply-accumulates per LR pixel
(about 12 M MAC/px), i.e. <= ~120 k MAC per LR pixel.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import PresetError

__all__ = ["StudentConfig", "STUDENT_PRESETS", "Student", "RepConv", "build_student", "student_from_args"]


ANCHOR_KERNELS = ("nearest", "bicubic")
#: LR taps per axis that PIL's bicubic needs for every phase of one LR pixel at any scale >= 2
BICUBIC_TAPS = 5


def cubic_weight(t: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel (PIL's BICUBIC uses a = -0.5)."""
    t = abs(t)
    if t <= 1.0:
        return (a + 2.0) * t**3 - (a + 3.0) * t**2 + 1.0
    if t < 2.0:
        return a * t**3 - 5.0 * a * t**2 + 8.0 * a * t - 4.0 * a
    return 0.0


def bicubic_phase_weights(scale: int, channels: int = 1) -> torch.Tensor:
    """(channels*scale**2, 1, 5, 5) grouped-convolution weights whose depth-to-space is PIL's
    bicubic x``scale`` upsampling (pixel centres at half-pixel positions), channel-major."""
    r = BICUBIC_TAPS // 2
    rows = []
    for phase in range(scale):
        off = (phase + 0.5) / scale - 0.5  # where this HR row sits, in LR pixels from its LR row
        w = [cubic_weight(off - k) for k in range(-r, r + 1)]
        rows.append(torch.tensor(w, dtype=torch.float64) / sum(w))
    k = torch.stack([torch.outer(rows[i], rows[j]) for i in range(scale) for j in range(scale)])  # (s2, 5, 5)
    return k[:, None].repeat(channels, 1, 1, 1).float()


class BicubicAnchor(nn.Conv2d):
    """PIL's bicubic x``scale`` as a fixed grouped 5x5 convolution (one kernel per output phase,
    channel-major, as PixelShuffle expects). A real Conv2d, so exporters and the MAC counter see
    an ordinary convolution; its weight is a buffer, so it is saved with the model but neither
    trained nor counted as a parameter."""

    def __init__(self, scale: int, channels: int, trainable: bool = False) -> None:
        s2 = scale * scale
        super().__init__(channels, channels * s2, BICUBIC_TAPS, padding=BICUBIC_TAPS // 2, groups=channels, bias=False)
        del self.weight  # the Parameter Conv2d made, with a random start
        if trainable:  # starts as bicubic, then learns: the same key, so plain files load either way
            self.weight = nn.Parameter(bicubic_phase_weights(scale, channels))
        else:
            self.register_buffer("weight", bicubic_phase_weights(scale, channels))


#: fixed 3x3 edge filters of a RepConv's edge branches: Sobel x, Sobel y, Laplacian
EDGE_MASKS = (
    ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0)),
    ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0)),
    ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
)


class RepConv(nn.Conv2d):
    """A k x k convolution trained as a sum of linear branches and run as the one convolution
    they add up to (structural re-parameterisation).

    Branches: the k x k kernel itself; a 1x1 kernel (the centre tap); a 1x1 expansion to
    ``expand * in_channels`` features followed by a k x k kernel; 1x1 kernels followed by fixed
    Sobel-x, Sobel-y and Laplacian filters with a learnt gain per output; and, with as many
    outputs as inputs, a learnt gain on the identity. All are linear, so their sum is one k x k
    kernel: ``weight`` computes it from the branches on every call and the layer runs as a plain
    convolution, at a plain convolution's cost, in training as in inference. Only the gradients
    differ: each branch is a different path to the same kernel, which is what lets a small
    network train to a better optimum than the same kernel trained directly. ``Student.folded()``
    writes the sum into an ordinary Conv2d for export.
    """

    def __init__(self, cin: int, cout: int, k: int, expand: int = 2) -> None:
        super().__init__(cin, cout, k, padding=k // 2)
        del self.weight, self.bias  # computed from the branches (the properties below)
        mid = expand * cin
        self.kxk = nn.Parameter(torch.empty(cout, cin, k, k))
        self.kxk_bias = nn.Parameter(torch.zeros(cout))
        self.point = nn.Parameter(torch.empty(cout, cin))
        self.expand = nn.Parameter(torch.empty(mid, cin))
        self.squeeze = nn.Parameter(torch.empty(cout, mid, k, k))
        self.edge = nn.Parameter(torch.empty(len(EDGE_MASKS), cout, cin))
        self.edge_gain = nn.Parameter(torch.ones(len(EDGE_MASKS), cout))
        self.skip = nn.Parameter(torch.zeros(cout)) if cin == cout else None
        masks = torch.zeros(len(EDGE_MASKS), k, k)
        if k >= 3:  # centred in the k x k kernel
            c = k // 2
            masks[:, c - 1 : c + 2, c - 1 : c + 2] = torch.tensor(EDGE_MASKS)
        self.register_buffer("edge_masks", masks, persistent=False)
        self.init_branches()

    def reset_parameters(self) -> None:
        if "kxk" in self._parameters:  # Conv2d's constructor calls this before the branches exist
            self.init_branches()
        else:
            super().reset_parameters()

    def init_branches(self, zero: bool = False) -> None:
        """He-normal for the summed kernel (each of the four branch groups a quarter of its
        variance); ``zero``: the summed kernel and bias start at zero while the first stage of
        every two-stage branch stays random, so each branch still gets a gradient."""
        cout, cin, k, _ = self.kxk.shape
        t = math.sqrt(2.0 / (cin * k * k)) / 2.0  # std per branch group: four groups sum to He's variance
        with torch.no_grad():
            nn.init.normal_(self.expand, std=1.0 / math.sqrt(self.expand.shape[0]))
            mask_rms = float(self.edge_masks.square().sum(dim=(1, 2)).mean().sqrt().clamp_min(1e-6))
            nn.init.normal_(self.edge, std=t / mask_rms / math.sqrt(len(EDGE_MASKS)))
            self.kxk_bias.zero_()
            if self.skip is not None:
                self.skip.zero_()
            if zero:
                for p in (self.kxk, self.point, self.squeeze, self.edge_gain):
                    p.zero_()
            else:
                nn.init.normal_(self.kxk, std=t)
                nn.init.normal_(self.point, std=t * k)  # one tap carries a k*k-tap kernel's share
                nn.init.normal_(self.squeeze, std=t)
                self.edge_gain.fill_(1.0)

    def _summed_kernel(self) -> torch.Tensor:
        c = self.kernel_size[0] // 2
        w = self.kxk + F.pad(self.point[:, :, None, None], (c, c, c, c))
        w = w + torch.einsum("omyx,mi->oiyx", self.squeeze, self.expand)
        w = w + torch.einsum("eo,eyx,eoi->oiyx", self.edge_gain, self.edge_masks, self.edge)
        if self.skip is not None:
            w = w + F.pad(torch.diag(self.skip)[:, :, None, None], (c, c, c, c))
        return w

    @property  # type: ignore[override]
    def weight(self) -> torch.Tensor:
        return self._summed_kernel()

    @property  # type: ignore[override]
    def bias(self) -> torch.Tensor:
        return self.kxk_bias

    def to_conv(self) -> nn.Conv2d:
        """The plain convolution that computes exactly what this layer computes."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size[0], padding=self.padding)
        with torch.no_grad():
            conv.weight.copy_(self.weight)
            conv.bias.copy_(self.bias)  # type: ignore[union-attr]
        return conv.to(self.kxk.device)


#: the fixed kernel's state-dict key in files saved before it became a module (the fourth
#: bundled default and older): renamed when such a file is loaded
_OLD_ANCHOR_KEY = "anchor_weight"
#: added under the square root of ``sqrt_input``: keeps its slope finite at a black pixel
SQRT_EPS = 1e-3


@dataclass(frozen=True)
class StudentConfig:
    """Width, depth and kernel sizes of a student.

    ``channels`` features in every hidden layer; ``depth`` hidden 3x3 (``kernel``) layers
    between the head (``head_kernel``) and the tail that produces ``out_channels*scale**2``
    maps for depth-to-space.
    """

    channels: int = 32
    depth: int = 2
    head_kernel: int = 5
    kernel: int = 3
    tail_kernel: int = 3
    scale: int = 4
    in_channels: int = 1
    out_channels: int = 1
    anchor: bool = True
    # extra input channels after the image's (a noise-level map, see scopesr.sdk.noise): they
    # condition the head convolution only and take no part in the anchor
    cond_channels: int = 0
    # what the anchor is: "nearest" (the input repeated: nearest upsampling) or "bicubic" (a
    # fixed 5x5 convolution per output phase: PIL's bicubic upsampling), so the network learns
    # the residual over that
    anchor_kernel: str = "nearest"
    # space-to-depth factor before the head: 2 runs every convolution at half the LR resolution
    # on 4x the input channels, so for the same multiply-accumulates per LR pixel the network is
    # twice as wide and sees twice as far (a 2x larger receptive field for averaging noise);
    # the input's height and width must then be multiples of it (the SDK pads tiles to fit)
    unshuffle: int = 1
    # with unshuffle 2: only the hidden layers run on the cells (``channels`` wide, between 1x1
    # projections from and back to ``lr_channels`` features per LR pixel); the head and the tail
    # stay at LR resolution and the cells' result is added to the head's features (a skip), so
    # fine detail keeps a full-resolution path while the hidden layers see twice as far
    cell_body: bool = False
    lr_channels: int = 16
    # train every convolution as a RepConv (parallel linear branches that sum to one kernel):
    # the same network at inference, ``Student.folded()`` turns it into plain convolutions for
    # saving and export, so the cost per pixel is unchanged
    reparam: bool = False
    # also feed the head the square root of the image (each image channel, negatives clipped):
    # shot noise has a standard deviation proportional to the square root of the signal, so in
    # that channel it is about equally strong in dim and bright regions, and one threshold in
    # the head can tell an edge from noise at every brightness (the variance-stabilising idea
    # of the Anscombe transform, without knowing the camera's gain)
    sqrt_input: bool = False
    # each hidden layer as a depthwise k x k convolution (one filter per feature) then a 1x1 mixing
    # convolution: c*k*k + c*c multiply-accumulates instead of c*c*k*k, so twice the features cost
    # about what the full layers cost now (32 separable: 1312 per layer and LR pixel, 16 full: 2304)
    separable: bool = False
    # train the bicubic anchor's 5x5 kernels too (they start as PIL's bicubic): the best linear x4
    # upsampler for the training draws, learnt at no cost per pixel, so the ReLU layers need not
    # spend features on carrying a linear part of the answer; the file's kernels are what run
    anchor_trainable: bool = False

    @property
    def head_inputs(self) -> int:
        """Channels the head convolution reads per LR pixel: image, noise map, square root."""
        return self.in_channels * (2 if self.sqrt_input else 1) + self.cond_channels

    def __post_init__(self) -> None:
        """Raise PresetError (a ValueError) naming the first bad field."""
        ints = (
            "channels",
            "depth",
            "head_kernel",
            "kernel",
            "tail_kernel",
            "scale",
            "in_channels",
            "out_channels",
            "cond_channels",
            "unshuffle",
            "lr_channels",
        )
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise PresetError(f"StudentConfig.{name} must be an integer, got {v!r}")
        for name in ("channels", "scale", "in_channels", "out_channels", "unshuffle", "lr_channels"):
            if getattr(self, name) < 1:
                raise PresetError(f"StudentConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.cond_channels < 0:
            raise PresetError(f"StudentConfig.cond_channels must be >= 0, got {self.cond_channels}")
        if self.depth < 0:
            raise PresetError(f"StudentConfig.depth must be >= 0, got {self.depth}")
        for name in ("head_kernel", "kernel", "tail_kernel"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                # odd kernels keep 'same' padding symmetric, so the output is not shifted
                raise PresetError(f"StudentConfig.{name} must be odd and >= 1, got {k}")
        if self.anchor_kernel not in ANCHOR_KERNELS:
            raise PresetError(
                f"StudentConfig.anchor_kernel must be one of {ANCHOR_KERNELS}, got {self.anchor_kernel!r}"
            )
        if self.unshuffle not in (1, 2):
            raise PresetError(f"StudentConfig.unshuffle must be 1 or 2, got {self.unshuffle}")
        if self.separable and (self.unshuffle != 1 or self.reparam):
            raise PresetError("StudentConfig.separable is for plain students (unshuffle=1, reparam=False)")
        if self.cell_body and self.unshuffle == 1:
            raise PresetError("StudentConfig.cell_body needs unshuffle=2 (the cells it runs the hidden layers on)")
        if self.anchor_trainable and not (self.anchor and self.anchor_kernel == "bicubic"):
            raise PresetError(
                "StudentConfig.anchor_trainable needs the bicubic anchor (anchor=True, anchor_kernel='bicubic')"
            )
        if self.anchor and self.in_channels != self.out_channels:
            raise PresetError(
                "the anchor (input repeated scale**2 times) needs in_channels == out_channels; "
                "set anchor=False for a channel-changing student"
            )

    # -------------------------------------------------------------- analytic properties
    @property
    def halo(self) -> int:
        """Receptive-field radius in LR pixels (the tile overlap needed for seam-free tiling)."""
        u = self.unshuffle
        if self.cell_body:  # head and tail at LR around the cells' hidden layers
            main = self.head_kernel // 2 + u * self.depth * (self.kernel // 2) + u - 1 + self.tail_kernel // 2
        else:  # r cells of u x u LR pixels each side, plus the farthest pixel of an output's own cell
            main = u * (self.head_kernel // 2 + self.depth * (self.kernel // 2) + self.tail_kernel // 2) + u - 1
        return max(main, BICUBIC_TAPS // 2) if self.anchor and self.anchor_kernel == "bicubic" else main

    def macs_per_lr_pixel(self) -> int:
        """Multiply-accumulates per LR input pixel (convolutions only; adds/ReLU are free)."""
        c, s2, u2 = self.channels, self.scale * self.scale, self.unshuffle**2
        if self.cell_body:
            lc = self.lr_channels
            head = self.head_inputs * lc * self.head_kernel**2
            cells = 2 * lc * c + self.depth * c * c * self.kernel**2 // u2  # the two 1x1 projections + body
            tail = lc * self.out_channels * s2 * self.tail_kernel**2
            bicubic = self.anchor and self.anchor_kernel == "bicubic"
            return head + cells + tail + (self.in_channels * s2 * BICUBIC_TAPS**2 if bicubic else 0)
        head = self.head_inputs * u2 * c * self.head_kernel**2 // u2
        per_layer = c * self.kernel**2 + c * c if self.separable else c * c * self.kernel**2
        body = self.depth * per_layer // u2
        tail = c * self.out_channels * s2 * u2 * self.tail_kernel**2 // u2
        anchor = self.in_channels * s2 * BICUBIC_TAPS**2 if self.anchor and self.anchor_kernel == "bicubic" else 0
        return head + body + tail + anchor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Named sizes. MACs per LR pixel: tiny 8.6 k, robust 16.5 k, wide 19.1 k, small 23.8 k (ESPCN-size), medium 70.3 k;
#: the ``paper`` teacher is about 12 M, so even medium is about 0.6 % of it.
STUDENT_PRESETS: dict[str, StudentConfig] = {
    "student-tiny": StudentConfig(channels=16, depth=2),
    "student-small": StudentConfig(channels=32, depth=2),
    "student-medium": StudentConfig(channels=48, depth=3),
    # the robust default: narrow and deep, so the receptive field (halo 9 LR px, 19x19) is
    # wide enough to average shot noise away, at 16.5 k MAC per LR pixel (below ESPCN's 25 k)
    "student-robust": StudentConfig(channels=16, depth=6),
    # the same depth on half-resolution cells (space-to-depth 2): twice the width and twice the
    # receptive field (halo 17 LR px) for 19.1 k MAC per LR pixel (the speed probe in
    # docs/degradation.md: as fast as OpenCV ESPCN on a 64x64 ROI and a 160x120 frame in int8);
    # measured behind student-robust on clean and binned images at equal steps, so not the default
    "student-wide": StudentConfig(channels=32, depth=6, head_kernel=3, unshuffle=2),
    # head and tail at LR (16 features), the six hidden layers on 2x2 cells (32 wide) with a skip;
    # measured behind student-robust on clean images, its ONNX file slower than ESPCN: an experiment
    "student-cells": StudentConfig(channels=32, depth=6, unshuffle=2, cell_body=True, lr_channels=16),
}


def _conv(cin: int, cout: int, k: int, reparam: bool = False) -> nn.Conv2d:
    # zero 'same' padding: the SDK's tiler supplies real context through the halo
    return RepConv(cin, cout, k) if reparam else nn.Conv2d(cin, cout, k, padding=k // 2)


class Student(nn.Module):
    """Conv/ReLU stack at LR resolution + anchor + depth-to-space. Input/output NCHW float."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.config = cfg  # the name every trainer model's typed config goes by (models.model_config)
        u = cfg.unshuffle
        rp = cfg.reparam
        self.cells: nn.Sequential | None = None
        if cfg.cell_body:
            lc = cfg.lr_channels
            head = _conv(cfg.head_inputs, lc, cfg.head_kernel, rp)
            self.body = nn.Sequential(head, nn.ReLU(inplace=True))
            cells: list[nn.Module] = [
                nn.PixelUnshuffle(u),
                _conv(lc * u * u, cfg.channels, 1, rp),
                nn.ReLU(inplace=True),
            ]
            for _ in range(cfg.depth):
                cells += [_conv(cfg.channels, cfg.channels, cfg.kernel, rp), nn.ReLU(inplace=True)]
            cells += [_conv(cfg.channels, lc * u * u, 1, rp), nn.PixelShuffle(u)]
            self.cells = nn.Sequential(*cells)
            self.tail = _conv(lc, cfg.out_channels * cfg.scale**2, cfg.tail_kernel, rp)
            self.shuffle = nn.PixelShuffle(cfg.scale)
            u = 1  # the image itself is not cut into cells
        else:
            head_in = cfg.head_inputs * u * u
            layers: list[nn.Module] = [_conv(head_in, cfg.channels, cfg.head_kernel, rp), nn.ReLU(inplace=True)]
            for _ in range(cfg.depth):
                if cfg.separable:
                    c, k = cfg.channels, cfg.kernel
                    layers += [nn.Conv2d(c, c, k, padding=k // 2, groups=c), _conv(c, c, 1, rp)]
                else:
                    layers.append(_conv(cfg.channels, cfg.channels, cfg.kernel, rp))
                layers.append(nn.ReLU(inplace=True))
            self.body = nn.Sequential(*layers)
            self.tail = _conv(cfg.channels, cfg.out_channels * (cfg.scale * u) ** 2, cfg.tail_kernel, rp)
            self.shuffle = nn.PixelShuffle(cfg.scale * u)
        # unshuffle 2: the body runs on half-resolution cells and its depth-to-space covers
        # scale*2; the anchor stays at LR resolution with its own depth-to-space, added at HR
        self.unshuffle: nn.PixelUnshuffle | None = nn.PixelUnshuffle(u) if u > 1 else None
        self.anchor_shuffle: nn.PixelShuffle | None = nn.PixelShuffle(cfg.scale) if u > 1 else None
        self.bicubic_anchor: BicubicAnchor | None = None
        if cfg.anchor and cfg.anchor_kernel == "bicubic":  # fixed, saved with the weights
            self.bicubic_anchor = BicubicAnchor(cfg.scale, cfg.in_channels, trainable=cfg.anchor_trainable)
            self.register_load_state_dict_pre_hook(_rename_old_anchor_key)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in [*self.body.modules(), *(self.cells.modules() if self.cells is not None else ())]:
            if isinstance(m, RepConv):
                m.init_branches()
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # zero tail: the untrained network is exactly the anchor, i.e. nearest upsampling
        if isinstance(self.tail, RepConv):
            self.tail.init_branches(zero=True)
        else:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def folded(self) -> Student:
        """This network with plain convolutions (each RepConv summed into one kernel): the same
        function, the layout every exporter and the SDK know. A plain student returns itself."""
        if not self.cfg.reparam:
            return self
        plain = Student(dataclasses.replace(self.cfg, reparam=False)).to(next(self.parameters()).device)
        state = plain.state_dict()
        for name, m in self.named_modules():
            if isinstance(m, RepConv):
                conv = m.to_conv()
                state[f"{name}.weight"], state[f"{name}.bias"] = conv.weight.detach(), conv.bias.detach()  # type: ignore[union-attr]
        if self.bicubic_anchor is not None:
            state["bicubic_anchor.weight"] = self.bicubic_anchor.weight
        plain.load_state_dict(state)
        return plain.train(self.training)

    def rf_branches(self) -> list[nn.Module]:
        """Each parallel path, its layers in forward order, for the halo: body + tail +
        depth-to-space, and the bicubic anchor + depth-to-space beside it (registration order
        would chain the anchor after the body)."""
        if self.cells is not None:  # the path through the cells is the longer one (the skip is inside it)
            branches: list[nn.Module] = [nn.Sequential(self.body, self.cells, self.tail, self.shuffle)]
        elif self.unshuffle is None:
            branches = [nn.Sequential(self.body, self.tail, self.shuffle)]
        else:
            branches = [nn.Sequential(self.unshuffle, self.body, self.tail, self.shuffle)]
        if self.bicubic_anchor is not None:
            branches.append(nn.Sequential(self.bicubic_anchor, self.anchor_shuffle or self.shuffle))
        return branches

    def anchor(self, x: torch.Tensor) -> torch.Tensor:
        """Each input channel repeated scale**2 times, channel-major, as PixelShuffle expects.

        Built from a plain channel concat (no repeat_interleave / 5-D reshape) so that
        ONNX, TFLite and Core ML all see one Concat op.
        """
        s2 = self.cfg.scale * self.cfg.scale
        if self.bicubic_anchor is not None:
            return self.bicubic_anchor(x)
        if self.cfg.in_channels == 1:
            return torch.cat([x] * s2, dim=1)
        chans = [x[:, c : c + 1] for c in range(self.cfg.in_channels) for _ in range(s2)]
        return torch.cat(chans, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, : self.cfg.in_channels] if self.cfg.cond_channels else x
        if self.cfg.sqrt_input:  # after the noise map, so older head weights keep their places
            x = torch.cat([x, torch.sqrt(torch.relu(image) + SQRT_EPS)], dim=1)
        if self.cells is not None:
            f = self.body(x)
            y = self.tail(torch.relu(f + self.cells(f)))
            if self.cfg.anchor:
                y = y + self.anchor(image)
            return self.shuffle(y)
        if self.unshuffle is not None:
            y = self.shuffle(self.tail(self.body(self.unshuffle(x))))
            if self.cfg.anchor and self.anchor_shuffle is not None:
                y = y + self.anchor_shuffle(self.anchor(image))
            return y
        y = self.tail(self.body(x))
        if self.cfg.anchor:
            y = y + self.anchor(image)
        return self.shuffle(y)


def _rename_old_anchor_key(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    old = prefix + _OLD_ANCHOR_KEY
    if old in state_dict:
        state_dict[prefix + "bicubic_anchor.weight"] = state_dict.pop(old)


def build_student(cfg: StudentConfig | str) -> Student:
    """Build a student from a config or a preset name (``student-small`` ...)."""
    if isinstance(cfg, str):
        try:
            cfg = STUDENT_PRESETS[cfg]
        except KeyError:
            raise PresetError(f"unknown student preset {cfg!r}; known: {sorted(STUDENT_PRESETS)}") from None
    if not isinstance(cfg, StudentConfig):
        raise PresetError(f"build_student takes a StudentConfig or a preset name, got {type(cfg).__name__}")
    return Student(cfg)


def student_from_args(preset: str | None = None, **overrides: Any) -> Student:
    """Preset plus overrides (e.g. ``channels=24``), as a model card's ``arch_args`` stores them."""
    if preset and preset not in STUDENT_PRESETS:
        raise PresetError(f"unknown student preset {preset!r}; known: {sorted(STUDENT_PRESETS)}")
    base = STUDENT_PRESETS[preset] if preset else StudentConfig()
    known = {f.name for f in dataclasses.fields(StudentConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise PresetError(f"unknown student argument(s) {bad}; known: {sorted(known)}")
    return Student(dataclasses.replace(base, **overrides))


def _refuse_separable(*cfgs: StudentConfig) -> None:
    """The grow helpers index the plain layout (``body.{2i}``: one convolution per hidden layer);
    a separable student has two, so it is refused instead of loaded with weights in wrong places."""
    if any(c.separable for c in cfgs):
        raise PresetError("separable students have their own layer layout: train them from scratch")


def deepened_state(shallow: Student, deep: Student) -> dict[str, torch.Tensor]:
    """``shallow``'s weights laid out for ``deep`` (same student but for more hidden layers),
    the extra layers set to the identity, so ``deep`` starts as exactly the same function.

    The extra 3x3 layers go after the last hidden one; each passes its input through its
    centre tap with zero bias, and the ReLU after it changes nothing because its input is
    already a ReLU's output. Training then starts from the shallow model's quality instead of
    from scratch (a function-preserving "deeper" step, as in Net2Net).
    """
    a, b = shallow.cfg, deep.cfg
    _refuse_separable(a, b)
    if dataclasses.replace(a, depth=b.depth) != b or b.depth < a.depth:
        raise PresetError(f"cannot deepen {a} into {b}: only 'depth' may differ, and only upwards")
    state = dict(shallow.state_dict())
    c, k = b.channels, b.kernel
    for i in range(a.depth, b.depth):
        key = f"body.{2 * (i + 1)}"  # body = [head, relu, (conv, relu) * depth]
        w = torch.zeros(c, c, k, k)
        w[torch.arange(c), torch.arange(c), k // 2, k // 2] = 1.0
        state[f"{key}.weight"], state[f"{key}.bias"] = w, torch.zeros(c)
    return state


def widened_state(narrow: Student, wide: Student) -> dict[str, torch.Tensor]:
    """``narrow``'s weights laid out for ``wide`` (the same student with more ``channels``), so
    that ``wide`` starts as exactly the same function (a function-preserving "wider" step, as in
    Net2Net).

    Every hidden layer gets new features: their incoming weights and biases are ``wide``'s own
    random initialisation, so they compute something from the start, but every weight *reading*
    a new feature (the next layer's new input columns, the tail's) is zero, so the output is
    unchanged; those weights get a gradient at once, and the new features join in as training
    moves them off zero. Only plain students (no space-to-depth, no RepConv branches).
    """
    a, b = narrow.cfg, wide.cfg
    _refuse_separable(a, b)
    if dataclasses.replace(a, channels=b.channels) != b or b.channels < a.channels:
        raise PresetError(f"cannot widen {a} into {b}: only 'channels' may differ, and only upwards")
    if a.unshuffle != 1 or a.reparam:
        raise PresetError("only plain students can be widened (no space-to-depth, no RepConv)")
    src = narrow.state_dict()
    state = {k: v.clone() for k, v in wide.state_dict().items()}
    c = a.channels
    convs = [f"body.{2 * i}" for i in range(a.depth + 1)] + ["tail"]  # body = [head, relu, (conv, relu) * depth]
    for i, key in enumerate(convs):
        w_old, w = src[f"{key}.weight"], state[f"{key}.weight"]
        n_in = w_old.shape[1]  # the head's inputs (image, maps) keep their count
        if i > 0:
            w[:, c:] = 0.0  # nothing reads the new features yet
        w[: w_old.shape[0], :n_in] = w_old
        state[f"{key}.bias"][: w_old.shape[0]] = src[f"{key}.bias"]
    for k, v in src.items():  # the fixed anchor
        if not k.startswith(("body.", "tail.")):
            state[k] = v
    return state


def reparam_state(plain: Student, rep: Student) -> dict[str, torch.Tensor]:
    """``plain``'s weights laid out for ``rep`` (the same student trained with RepConv branches):
    each kernel goes into its RepConv's k x k branch and every other branch adds zero to the sum,
    so ``rep`` starts as exactly ``plain`` (the two-stage branches keep a random first stage,
    so they still learn)."""
    if dataclasses.replace(plain.cfg, reparam=True) != rep.cfg or plain.cfg.reparam:
        raise PresetError(f"cannot re-parameterise {plain.cfg} into {rep.cfg}: only 'reparam' may differ")
    src = plain.state_dict()
    state = dict(rep.state_dict())
    for name, m in rep.named_modules():
        if isinstance(m, RepConv):
            m.init_branches(zero=True)
            state.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
            state[f"{name}.kxk"], state[f"{name}.kxk_bias"] = src[f"{name}.weight"], src[f"{name}.bias"]
    for k, v in src.items():
        if k in state:
            state[k] = v
    return state


def conditioned_state(blind: Student, conditioned: Student) -> dict[str, torch.Tensor]:
    """``blind``'s weights laid out for ``conditioned`` (the same student whose head reads more
    inputs: noise-map channels, the image's square root): the head convolution's weights for the
    new inputs are zero, so the conditioned model starts as exactly the blind one and learns
    from there how to use them.
    """
    a, b = blind.cfg, conditioned.cfg
    _refuse_separable(a, b)
    same = dataclasses.replace(a, cond_channels=b.cond_channels, sqrt_input=b.sqrt_input) == b
    if not same or b.cond_channels < a.cond_channels or (a.sqrt_input and not b.sqrt_input) or b.unshuffle != 1:
        raise PresetError(
            f"cannot condition {a} into {b}: only 'cond_channels' and 'sqrt_input' may differ, only upwards, "
            "and only without space-to-depth"
        )
    state = dict(blind.state_dict())
    head = state["body.0.weight"]
    n_img = a.in_channels

    def zeros(n: int) -> torch.Tensor:
        return torch.zeros(head.shape[0], n, *head.shape[2:], dtype=head.dtype)

    # the head's inputs in order: image, noise map, square root of the image
    parts = [head[:, :n_img], head[:, n_img : n_img + a.cond_channels], zeros(b.cond_channels - a.cond_channels)]
    if b.sqrt_input:
        parts.append(head[:, n_img + a.cond_channels :] if a.sqrt_input else zeros(n_img))
    state["body.0.weight"] = torch.cat(parts, dim=1)
    return state
