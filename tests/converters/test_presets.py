"""Every trainer preset (teachers reduced in width/depth, students as shipped) converts to
TFLite, the most constrained target, and reproduces PyTorch; the deconv rewrite is exact."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from scopesr.converters import card_for_module, convert  # noqa: E402
from scopesr.converters.rewrite import DeconvAsConv, replace_conv_transpose  # noqa: E402


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (4, 2, 1, 0), (5, 2, 2, 1), (3, 1, 1, 0)])
def test_deconv_rewrite_is_exact(k, s, p, op):
    torch.manual_seed(0)
    ct = torch.nn.ConvTranspose2d(5, 7, k, stride=s, padding=p, output_padding=op)
    x = torch.rand(2, 5, 9, 13)
    with torch.no_grad():
        a, b = ct(x), DeconvAsConv(ct)(x)
    assert a.shape == b.shape and (a - b).abs().max() < 1e-5
    seq, n = replace_conv_transpose(torch.nn.Sequential(torch.nn.Conv2d(5, 5, 1), ct))
    assert n == 1 and isinstance(seq[1], DeconvAsConv)


@pytest.mark.slow
def test_every_preset_converts_to_tflite(tmp_path):
    from scopesr.trainer import create_model, list_presets

    seen = []
    for info in list_presets():
        kw = dict(n_blocks=1, channels=8, up_channels=8) if info.kind == "teacher" else {}
        torch.manual_seed(0)
        model = create_model(info.name, **kw).eval()
        if info.kind == "student":  # students start with a zero tail (output = anchor): make the body matter
            for p in model.parameters():
                torch.nn.init.normal_(p, std=0.05)
        card = card_for_module(model, name=info.name)
        card.architecture = info.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "mostly halo" for the reduced teachers
            r = convert(model, "tflite", tmp_path / info.name, card=card, tile_sizes=[48])
        assert r.passed, (info.name, r.parity.table())
        assert all(0 < c.max_abs_err <= 1e-4 for c in r.parity.cases), (info.name, r.parity.table())
        if info.name == "srgan-deconv":
            assert "ConvTranspose2d" in r.card.extra["rewrites"]
        seen.append(info.name)
    # the bicubic-anchored teacher (GeneratorConfig.anchor): the anchor's grouped conv + shuffle export too
    torch.manual_seed(0)
    model = create_model("paper", anchor=True, in_channels=1, out_channels=1, n_blocks=1, channels=8, up_channels=8)
    torch.nn.init.normal_(model.tail.weight, std=0.05)  # the zero tail would hide the network
    card = card_for_module(model.eval(), name="paper-anchored")
    card.architecture = "paper"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = convert(model, "tflite", tmp_path / "paper-anchored", card=card, tile_sizes=[48])
    assert r.passed and all(0 < c.max_abs_err <= 1e-4 for c in r.parity.cases), r.parity.table()
    assert {"srgan", "srgan-deconv", "srgan-interp", "srgan-nobn", "paper"} <= set(seen)
    assert any(n.startswith("student") for n in seen)


@pytest.mark.slow
def test_student_reading_its_square_root_converts_with_parity(tmp_path):
    """``sqrt_input`` computes the square root inside the model: ONNX and TFLite reproduce it, and
    the int8 file keeps the head (which reads the image and its root) in float; the same student
    with separable hidden layers (depthwise + 1x1) converts with parity too."""
    from scopesr.trainer import create_model

    torch.manual_seed(0)
    # with separable hidden layers too: depthwise convolutions export and quantise as well
    model = create_model("student-tiny", anchor_kernel="bicubic", sqrt_input=True, separable=True).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    card = card_for_module(model, name="student-sqrt")
    card.architecture = "student-tiny"
    for target in ("onnx", "tflite"):
        r = convert(model, target, tmp_path / f"sqrt-{target}", card=card, tile_sizes=[48])
        assert r.passed and all(c.max_abs_err <= 1e-4 for c in r.parity.cases), (target, r.parity.table())
    r = convert(model, "tflite", tmp_path / "sqrt-int8", card=card, tile_sizes=[48], precision="int8")
    assert r.passed, r.parity.table()
