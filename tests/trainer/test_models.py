"""Architectures: presets, receptive field (analytic vs impulse probe), MACs, card I/O, checkerboard."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from scopesr.sdk import ModelCard  # noqa: E402
from scopesr.trainer import (  # noqa: E402
    Discriminator,
    DiscriminatorConfig,
    PresetError,
    create_model,
    list_presets,
    load_generator,
    macs_per_lr_pixel,
    probe_receptive_field_radius,
    receptive_field_radius,
    save_generator,
)
from scopesr.trainer.analysis import period2_energy  # noqa: E402
from scopesr.trainer.models import TEACHER_PRESETS, count_params  # noqa: E402

TEACHERS = list(TEACHER_PRESETS)
# Small overrides keep the probe fast on 2 CPU cores; the field depends on kernels, not widths.
SMALL = dict(n_blocks=3, channels=8, up_channels=16)


def test_paper_preset_matches_paper_code_figures():
    m = create_model("paper")
    # the paper's code: about 2.0 M parameters, about 50 GMAC per 64x64 LR tile, radius about 39
    assert 1.9e6 < count_params(m) < 2.1e6
    assert macs_per_lr_pixel(m) * 64 * 64 == pytest.approx(50e9, rel=0.03)
    assert receptive_field_radius(m) == 39
    assert receptive_field_radius("paper") == 39


@pytest.mark.parametrize("name", TEACHERS)
def test_teacher_shapes_and_range(name):
    m = create_model(name, **SMALL).eval()
    x = torch.rand(2, 3, 12, 10)
    y = m(x)
    assert y.shape == (2, 3, 48, 40)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0  # 0..1 out (tanh inside)


def test_grey_channels_and_override_errors():
    m = create_model("srgan", in_channels=1, out_channels=1, **SMALL)
    assert m(torch.rand(1, 1, 8, 8)).shape == (1, 1, 32, 32)
    with pytest.raises(PresetError, match="no argument"):
        create_model("paper", widht=3)
    with pytest.raises(PresetError, match="unknown preset"):
        create_model("nope")


def test_presets_use_one_block_class():
    from scopesr.trainer.models import Generator, ResidualBlock

    for name in TEACHERS:
        m = create_model(name, **SMALL)
        assert type(m) is Generator
        assert all(isinstance(b, ResidualBlock) for b in m.blocks)
    bn = sum(isinstance(x, torch.nn.BatchNorm2d) for x in create_model("srgan", **SMALL).blocks.modules())
    nobn = sum(isinstance(x, torch.nn.BatchNorm2d) for x in create_model("paper", **SMALL).blocks.modules())
    assert bn == 2 * SMALL["n_blocks"] and nobn == 0


@pytest.mark.parametrize("name", TEACHERS)
def test_receptive_field_analytic_equals_impulse_probe(name):
    m = create_model(name, **SMALL)
    assert receptive_field_radius(m) == probe_receptive_field_radius(m, scale=4)


@pytest.mark.parametrize("kernel,blocks", [(5, 1), (9, 0), (3, 2)])
def test_receptive_field_probe_other_kernels(kernel, blocks):
    m = create_model("paper", head_kernel=kernel, tail_kernel=kernel, n_blocks=blocks, channels=4, up_channels=4)
    assert receptive_field_radius(m) == probe_receptive_field_radius(m)


def test_student_presets_if_present():
    infos = {p.name: p for p in list_presets()}
    for n in TEACHERS:
        assert infos[n].kind == "teacher" and infos[n].halo >= 39
    for p in infos.values():
        if p.kind == "student":
            m = create_model(p.name)
            assert receptive_field_radius(m) == probe_receptive_field_radius(m)
            assert p.macs_per_lr_pixel <= 0.01 * infos["paper"].macs_per_lr_pixel


def test_macs_counted_by_hooks_match_hand_count():
    m = create_model("paper", n_blocks=1, channels=4, up_channels=8, in_channels=1, out_channels=1)
    hand = (
        81 * 1 * 4
        + 2 * 9 * 4 * 4
        + 9 * 4 * 4  # head, block, trunk at LR
        + 4 * 9 * 4 * 8
        + 16 * 9 * 8 * 8  # two upsampling convs at 2x and 4x resolution
        + 16 * 81 * 8 * 1
    )  # tail at 4x
    assert macs_per_lr_pixel(m) == pytest.approx(hand)


def test_discriminator_heads():
    d = Discriminator(DiscriminatorConfig(channels=8))
    assert d(torch.rand(2, 3, 48, 48)).shape == (2,)
    assert d(torch.rand(2, 3, 64, 32)).shape == (2,)  # GAP: any size
    dd = Discriminator(DiscriminatorConfig(channels=8, head="dense", input_size=32, dense_features=16))
    assert dd(torch.rand(2, 3, 32, 32)).shape == (2,)
    with pytest.raises(PresetError):
        Discriminator(DiscriminatorConfig(head="dense"))


def test_save_load_generator_roundtrip(tmp_path):
    m = create_model("srgan-nobn", in_channels=1, out_channels=1, **SMALL).eval()
    card = save_generator(
        m, tmp_path / "g.safetensors", training={"steps": 7}, metrics={"val": {"psnr": 1.0}}, degradation="pil-bilinear"
    )
    assert card.halo == receptive_field_radius(m) and card.format == "safetensors"
    on_disk = json.loads((tmp_path / "g.card.json").read_text())
    assert on_disk["architecture"] == "srgan-nobn" and on_disk["degradation"] == "pil-bilinear"
    m2, card2 = load_generator(tmp_path / "g.safetensors")
    x = torch.rand(1, 1, 9, 9)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert card2.training["steps"] == 7 and ModelCard.load(tmp_path / "g.safetensors").sha256 == card.sha256
    # equal weights saved again: same bytes, same sha256 (safetensors orders its metadata at random)
    for _ in range(3):
        assert save_generator(m, tmp_path / "g.safetensors").sha256 == card.sha256
    with torch.no_grad():
        next(m.parameters()).add_(1e-3)
    assert save_generator(m, tmp_path / "g.safetensors").sha256 != card.sha256  # changed weights: rewritten
    (tmp_path / "g.safetensors").write_bytes((tmp_path / "g.safetensors").read_bytes()[:-4] + b"abcd")
    from scopesr.sdk import IntegrityError

    with pytest.raises(IntegrityError):
        load_generator(tmp_path / "g.safetensors")


def _smooth(n: int) -> torch.Tensor:
    t = torch.linspace(0, 1, n)
    return (0.3 + 0.4 * t[None, :] * t[:, None]).expand(1, 3, n, n).contiguous()


@pytest.mark.parametrize("inp", ["constant", "smooth"])
def test_checkerboard_at_init_deconv_yes_resize_conv_no(inp):
    """The paper's central claim, at initialisation: transposed conv paints a period-2
    pattern on a featureless input, nearest x2 + conv does not."""
    torch.manual_seed(0)
    x = torch.full((1, 3, 24, 24), 0.5) if inp == "constant" else _smooth(24)
    border = 40  # cut the zero-padding border (radius ~39 LR px * 4 would be exact; the interior suffices)
    e = {}
    for name in ("srgan-deconv", "paper", "srgan-interp"):
        with torch.no_grad():
            e[name] = period2_energy(create_model(name, n_blocks=2).eval()(x), border=border)
    # the input itself (nearest-upsampled) as the reference for "no pattern"
    if inp == "constant":  # a featureless input: any period-2 energy is the network's own
        assert e["srgan-deconv"] > 1e-7
        assert e["paper"] < 1e-10 and e["srgan-interp"] < 1e-10
    else:  # smooth: nearest x2 leaves faint staircases, an order of magnitude below deconv's pattern
        assert e["srgan-deconv"] > 10 * max(e["paper"], e["srgan-interp"])
    # and the measure is not blind: an explicit checkerboard scores high
    chk = torch.zeros(32, 32)
    chk[::2, ::2] = 1
    assert period2_energy(chk) > 0.5 and period2_energy(torch.ones(32, 32)) == 0.0


def test_anchored_teacher_starts_as_bicubic_and_keeps_its_halo():
    """anchor=True: the untrained teacher is exactly the students' bicubic anchor (zero tail),
    the halo is the network's (the anchor's 5x5 reach is inside it), the probe agrees, and
    training moves it away from the anchor."""
    from scopesr.trainer.student import BicubicAnchor

    small = dict(n_blocks=1, channels=4, up_channels=8, in_channels=1, out_channels=1)
    m = create_model("paper", anchor=True, **small)
    x = torch.rand(2, 1, 14, 18)
    bicubic = torch.nn.Sequential(BicubicAnchor(4, 1), torch.nn.PixelShuffle(4))
    with torch.no_grad():
        assert torch.equal(m(x), bicubic(x))
    plain = create_model("paper", **small)
    assert receptive_field_radius(m) == receptive_field_radius(plain) == probe_receptive_field_radius(m)
    assert count_params(m) == count_params(plain)  # the anchor's kernel is a fixed buffer
    loss = (m(x) - torch.rand(2, 1, 56, 72)).abs().mean()
    loss.backward()
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    with torch.no_grad():
        assert not torch.equal(m(x), bicubic(x))
    with pytest.raises(PresetError, match="in_channels"):
        create_model("paper", anchor=True, in_channels=3, out_channels=1)
