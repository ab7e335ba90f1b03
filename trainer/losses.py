"""Losses: VGG19 content loss, adversarial loss with one-sided label smoothing, pixel losses.

* Content loss (SRGAN's "VGG54"): MSE between VGG19 ``relu5_4`` features of SR and HR,
  each divided by 12.75 as in SRGAN and the paper's code (so the loss is on the scale of a
  pixel MSE). Inputs 0..1 are normalised with the ImageNet mean/std; grey images are
  repeated to 3 channels. Weights: torchvision's ImageNet VGG19 from the torch hub cache,
  downloaded when online, or ``--vgg-weights FILE``.
* Adversarial loss: binary cross-entropy on the discriminator's logits, computed in
  float32 with probabilities clipped to [1e-7, 1-1e-7] as Keras does (the paper's code is
  Keras): with the paper's real labels in [0.8, 1.2] an unclipped loss would have no
  minimum. One-sided: only the discriminator's targets are smoothed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LossError

log = logging.getLogger(__name__)

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's IMAGENET1K_V1 file name
RELU5_4 = 36  # torchvision vgg19().features[:36] ends with the ReLU after conv5_4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_SCALE = 12.75
_EPS = 1e-7


def _load_vgg19_state(weights: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise LossError(f"--vgg-weights {path}: no such file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            try:  # a .safetensors file works too
                from safetensors.torch import load_file  # noqa: PLC0415

                state = load_file(str(path))
            except Exception:
                raise LossError(f"--vgg-weights {path}: not a readable state dict ({exc})") from None
        return state
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    from torchvision.models import VGG19_Weights  # noqa: PLC0415

    try:
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:
        raise LossError(
            f"the VGG19 content loss needs torchvision's ImageNet VGG19 weights, which are not in "
            f"the cache ({cached}) and cannot be downloaded here ({type(exc).__name__}). Fix: on a "
            f'machine with internet run `python -c "import torchvision; torchvision.models.vgg19('
            f"weights='IMAGENET1K_V1')\"` and copy {VGG19_FILE} to {cached.parent}/, or pass "
            f"--vgg-weights FILE (a torchvision vgg19 state dict), or train with --content-loss mse|l1."
        ) from None


def _vgg19_features() -> nn.Sequential:
    """torchvision's vgg19().features (same layer indices and state-dict keys)."""
    try:
        from torchvision.models.vgg import cfgs, make_layers  # noqa: PLC0415

        return make_layers(cfgs["E"], batch_norm=False)
    except ImportError:  # private helpers moved: build the whole model
        from torchvision.models import vgg19  # noqa: PLC0415

        return vgg19(weights=None).features


class VGGContentLoss(nn.Module):
    """MSE of VGG19 relu5_4 features / 12.75 (frozen network, ImageNet normalisation).

    ``random_init=True`` builds an untrained VGG19: only for tests that exercise the code
    path without the ImageNet weights (the loss is then not perceptual).
    """

    def __init__(
        self, weights: str | os.PathLike | None = None, random_init: bool = False, layer_end: int = RELU5_4
    ) -> None:
        super().__init__()
        if random_init:
            features = _vgg19_features()  # the conv part only: the classifier is 120 M unused weights
        else:
            state = _load_vgg19_state(weights)
            with torch.device("meta"):  # no random init of weights about to be replaced
                features = _vgg19_features()
            # accept a full torchvision state dict ("features.N.weight") or a features-only one
            if any(k.startswith("features.") for k in state):
                state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
            try:
                features.load_state_dict(state, strict=True, assign=True)
            except RuntimeError as exc:
                raise LossError(
                    f"VGG19 weights do not fit torchvision's vgg19 ({str(exc).splitlines()[0]}); "
                    "give a torchvision vgg19 state dict"
                ) from None
        self.features = features[:layer_end].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        for m in self.features.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGContentLoss:
        super().train(mode)
        self.features.eval()  # always frozen
        return self

    def _feat(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std) / VGG_SCALE

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self._feat(hr)
        return F.mse_loss(self._feat(sr).float(), target.float())


class L1PlusMSE(nn.Module):
    """Mean absolute error plus ``mse_weight`` times the mean squared error.

    L1 pulls every pixel with the same force, MSE in proportion to its error: the sum behaves
    like L1 where errors are small and like MSE where they are large (the two gradients are equal
    at an error of ``1 / (2 * mse_weight)``)."""

    def __init__(self, mse_weight: float) -> None:
        super().__init__()
        self.mse_weight = float(mse_weight)

    def forward(self, sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = sr - target
        return err.abs().mean() + self.mse_weight * err.square().mean()


class LogL1PerCrop(nn.Module):
    """The mean over crops of ``log(eps + L1 of the crop)``.

    Quality tables average PSNR, a logarithm, per image, so an error halved on a clean crop is
    worth as much as one halved on a noisy crop. Plain L1 weighs crops by the size of their errors
    and so spends a small network's capacity on the noisiest ones. The logarithm gives each crop
    the weight ``1 / (eps + its L1)``; ``eps`` (normalised units) caps the weight of crops that are
    already nearly exact, such as empty background."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        if not eps > 0:
            raise LossError(f"per-crop log L1: eps must be > 0, got {eps!r}")
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_crop = (sr - target).abs().flatten(1).mean(dim=1)
        return torch.log(self.eps + per_crop).mean()


def pixel_loss(kind: str, mse_weight: float = 0.0, crop_log_eps: float = 0.0) -> nn.Module:
    """``mse`` | ``l1``; ``mse_weight`` > 0 adds that much MSE to L1; ``crop_log_eps`` > 0 makes
    L1 the per-crop log L1 (`LogL1PerCrop`)."""
    if kind == "mse":
        return nn.MSELoss()
    if kind == "l1":
        if crop_log_eps > 0:
            if mse_weight > 0:
                raise LossError("the per-crop log L1 does not take an MSE term: set one of the two")
            return LogL1PerCrop(crop_log_eps)
        return L1PlusMSE(mse_weight) if mse_weight > 0 else nn.L1Loss()
    raise LossError(f"pixel loss {kind!r}: use mse or l1")


def content_loss(
    kind: str,
    vgg_weights: str | None = None,
    vgg_random_init: bool = False,
    mse_weight: float = 0.0,
    crop_log_eps: float = 0.0,
) -> nn.Module:
    """``vgg`` | ``mse`` | ``l1`` (plus ``mse_weight`` x MSE, or per crop in log with ``crop_log_eps``)."""
    if kind == "vgg":
        return VGGContentLoss(vgg_weights, random_init=vgg_random_init)
    return pixel_loss(kind, mse_weight, crop_log_eps)


def bce_clipped(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keras-style binary cross-entropy: probabilities clipped to [eps, 1-eps], float32."""
    p = torch.sigmoid(logits.float()).clamp(_EPS, 1 - _EPS)
    t = target.float()
    return -(t * torch.log(p) + (1 - t) * torch.log1p(-p)).mean()


def smoothed_labels(
    n: int,
    real: bool,
    device: torch.device | str,
    generator: torch.Generator | None = None,
    real_range: tuple[float, float] = (0.8, 1.2),
    fake_range: tuple[float, float] = (0.0, 0.2),
) -> torch.Tensor:
    """Random targets for the discriminator: real ~ U(real_range), fake ~ U(fake_range).

    The paper's text: real in [0.8, 1.2]; its code: [0.8, 1.0] (``--real-label-range 0.8 1.0``).
    """
    lo, hi = real_range if real else fake_range
    u = torch.rand(n, generator=generator)
    return (lo + (hi - lo) * u).to(device)


def discriminator_loss(
    d_real: torch.Tensor,
    d_fake: torch.Tensor,
    generator: torch.Generator | None = None,
    real_range: tuple[float, float] = (0.8, 1.2),
    fake_range: tuple[float, float] = (0.0, 0.2),
) -> torch.Tensor:
    n = d_real.shape[0]
    t_real = smoothed_labels(n, True, d_real.device, generator, real_range, fake_range)
    t_fake = smoothed_labels(n, False, d_fake.device, generator, real_range, fake_range)
    return bce_clipped(d_real, t_real) + bce_clipped(d_fake, t_fake)


def generator_adversarial_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """The generator wants its output judged real (target 1, no smoothing: one-sided)."""
    return bce_clipped(d_fake, torch.ones_like(d_fake, dtype=torch.float32))
