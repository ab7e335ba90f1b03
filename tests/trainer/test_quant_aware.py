"""Quantisation-aware fine-tuning: the rounding it trains through, the layers it covers, and a
real tiny run that resumes exactly and records what it did in the card."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402
from test_microscopy_training import _base  # noqa: E402  (tests/trainer is on sys.path)

from scopesr.sdk import ModelCard  # noqa: E402
from scopesr.trainer import create_model  # noqa: E402
from scopesr.trainer.cli import main as cli_main  # noqa: E402
from scopesr.trainer.errors import TrainError  # noqa: E402
from scopesr.trainer.quant_aware import (  # noqa: E402
    QuantAware,
    fake_quant_act,
    fake_quant_signed,
    fake_quant_weight,
    int8_conv_indices,
)


def test_weights_round_to_255_levels_per_output_channel_with_identity_gradient():
    torch.manual_seed(0)
    w = (torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 10.0]).view(4, 1, 1, 1)).requires_grad_()
    q = fake_quant_weight(w)
    for o in range(4):
        step = w[o].detach().abs().max() / 127
        levels = q[o].detach() / step
        assert torch.allclose(levels, levels.round(), atol=1e-3)  # on the channel's own grid
        assert torch.allclose(q[o].detach(), w[o].detach(), atol=float(step) / 2 + 1e-7)
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through


def test_activations_clip_to_range_and_block_gradient_outside():
    x = torch.linspace(-1.0, 3.0, 4001, requires_grad=True)
    top = torch.tensor(2.0)
    q = fake_quant_act(x, top)
    assert float(q.detach().min()) == 0.0 and float(q.detach().max()) == pytest.approx(2.0)
    assert len(torch.unique(q.detach())) <= 256
    assert float((q - x.clamp(0, 2)).abs().max()) <= 2.0 / 255 / 2 + 1e-6
    q.sum().backward()
    inside = (x > 0) & (x < 2)
    assert torch.all(x.grad[inside] == 1) and torch.all(x.grad[~inside & ((x < 0) | (x > 2))] == 0)


@pytest.mark.parametrize(("depth", "expected"), [(1, [2]), (2, [4]), (6, [4, 6, 8, 10, 12])])
def test_int8_layers_are_the_body_convolutions_after_the_first_two(depth, expected):
    model = create_model("student-tiny", depth=depth)
    assert int8_conv_indices(model) == expected


def test_rounding_only_in_training_and_state_dict_unchanged():
    torch.manual_seed(1)
    model = create_model("student-tiny", anchor_kernel="bicubic")
    for p in model.tail.parameters():  # a non-zero residual, so the body matters
        torch.nn.init.normal_(p, std=0.1)
    keys = set(model.state_dict())
    x = torch.rand(2, 1, 16, 16)
    model.eval()
    plain = model(x).detach()
    qa = QuantAware(model)
    assert set(model.state_dict()) == keys
    assert torch.equal(model(x), plain)  # eval: the float network, what is saved and scored
    assert float(qa.ranges.abs().sum()) == 0.0  # nothing observed in eval
    model.train()
    rounded = model(x)
    assert not torch.equal(rounded.detach(), plain)
    assert float((rounded.detach() - plain).abs().max()) < 0.05  # rounding, not a different network
    assert torch.all(qa.ranges > 0)
    rounded.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_only_students_can_train_quant_aware():
    with pytest.raises(TrainError, match="student"):
        QuantAware(create_model("paper", n_blocks=1))


@pytest.mark.slow
@pytest.mark.integration
def test_quant_aware_run_resumes_exactly_and_records_its_ranges(tmp_path: Path, real_image):
    real_image("napari-nuclei")
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    # half the references oversampled, so that the next stage's record has a share to name
    qa = ["--quant-aware", "--zoom-p", "0.5"]
    assert cli_main([*_base(straight), *qa]) == 0
    assert cli_main([*_base(parts), *qa, "--stop-at", "3", "--ckpt-every", "3"]) == 0
    # a resume that drops the option would train on without rounding: refused
    assert cli_main([*_base(parts), "--no-quant-aware", "--resume"]) != 0
    assert cli_main([*_base(parts), *qa, "--resume"]) == 0
    a = load_file(str(straight / "final" / "generator.safetensors"))
    b = load_file(str(parts / "final" / "generator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = ModelCard.load(straight / "final" / "generator.safetensors")
    rec = card.training["quant_aware"]
    assert rec["int8_body_convs"] == [4] and len(rec["ranges"]) == 1 and all(r > 0 for r in rec["ranges"][0])
    assert rec == ModelCard.load(parts / "final" / "generator.safetensors").training["quant_aware"]
    # a fine-tune names the run it started from
    tuned = tmp_path / "tuned"
    assert cli_main([*_base(tuned), *qa, "--init-from", str(straight / "final" / "generator.safetensors")]) == 0
    start = ModelCard.load(tuned / "final" / "generator.safetensors").training["init_from"]
    assert start["file"] == "generator.safetensors" and start["steps"] == 6 and start["quant_aware"] is True
    assert start["zoom_p"] == 0.5  # the stage's share of zoomed references, for the release's recipe line
    assert start["sha256"] == ModelCard.load(straight / "final" / "generator.safetensors").sha256


@pytest.mark.slow
@pytest.mark.integration
def test_reparam_fine_tune_starts_from_a_plain_file_resumes_exactly_and_saves_plain(tmp_path: Path, real_image):
    """--model-arg reparam=true from a plain file: trained through int8 rounding as RepConv
    branches, checkpointed as branches (an exact resume), saved as the plain kernels."""
    from scopesr.trainer.checkpoint import load_generator

    real_image("napari-nuclei")
    src = tmp_path / "plain"
    assert cli_main([*_base(src, steps=2), "--ckpt-every", "0", "--val-every", "0"]) == 0
    w = str(src / "final" / "generator.safetensors")
    rep = ["--model-arg", "reparam=true", "--init-from", w, "--quant-aware"]
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    assert cli_main([*_base(straight), *rep]) == 0
    assert cli_main([*_base(parts), *rep, "--stop-at", "3", "--ckpt-every", "3"]) == 0
    assert cli_main([*_base(parts), *rep, "--resume"]) == 0
    a = load_file(str(straight / "final" / "generator.safetensors"))
    b = load_file(str(parts / "final" / "generator.safetensors"))
    assert sorted(a) == sorted(load_file(w)) and all(torch.equal(a[k], b[k]) for k in a)
    card = ModelCard.load(straight / "final" / "generator.safetensors")
    assert card.arch_args["reparam"] is False and card.training["reparam"] is True
    model, _ = load_generator(straight / "final" / "generator.safetensors")
    assert not any(type(m).__name__ == "RepConv" for m in model.modules())
    assert not all(torch.equal(a[k], v) for k, v in load_file(w).items())  # it did train


@pytest.mark.slow
@pytest.mark.integration
def test_init_from_a_shallower_student_deepens_it(tmp_path: Path, real_image):
    real_image("napari-nuclei")
    shallow, deep = tmp_path / "shallow", tmp_path / "deep"
    # checkpoints and validation every 0 steps: only at the end
    assert cli_main([*_base(shallow, steps=3), "--ckpt-every", "0", "--val-every", "0"]) == 0
    src = shallow / "final" / "generator.safetensors"
    assert cli_main([*_base(deep, steps=2), "--model-arg", "depth=4", "--init-from", str(src)]) == 0
    card = ModelCard.load(deep / "final" / "generator.safetensors")
    assert card.arch_args["depth"] == 4 and card.training["init_from"]["sha256"] == ModelCard.load(src).sha256
    # a fine-tune of the deepened model names both earlier stages, nested, with their depths
    tuned = tmp_path / "tuned"
    deep_w = deep / "final" / "generator.safetensors"
    assert cli_main([*_base(tuned, steps=2), "--model-arg", "depth=4", "--init-from", str(deep_w)]) == 0
    rec = ModelCard.load(tuned / "final" / "generator.safetensors").training["init_from"]
    assert rec["sha256"] == card.sha256 and rec["depth"] == 4 and rec["steps"] == 2
    assert rec["init_from"]["sha256"] == ModelCard.load(src).sha256
    assert rec["init_from"]["depth"] == ModelCard.load(src).arch_args["depth"] < 4
    # wider and deeper at once: widened at the file's depth, then deepened
    both = tmp_path / "both"
    args = ["--model-arg", "channels=24", "--model-arg", "depth=4", "--init-from", str(src)]
    assert cli_main([*_base(both, steps=2), *args]) == 0
    arch = ModelCard.load(both / "final" / "generator.safetensors").arch_args
    assert arch["channels"] == 24 and arch["depth"] == 4
    # other shape changes are still refused with the reason
    assert cli_main([*_base(tmp_path / "wide", steps=2), "--model-arg", "channels=8", "--init-from", str(src)]) != 0


def test_signed_activations_round_over_their_own_range_with_zero_exact():
    x = torch.linspace(-2.0, 3.0, 5001, requires_grad=True)
    q = fake_quant_signed(x, torch.tensor(-1.0), torch.tensor(2.0))
    assert float(q.detach().min()) == pytest.approx(-1.0, abs=2e-2) and float(q.detach().max()) == pytest.approx(
        2.0, abs=2e-2
    )
    assert len(torch.unique(q.detach())) <= 256
    assert 0.0 in q.detach().tolist()  # zero is a level: padding and ReLU'd zeros stay exact
    inside = (x > -1) & (x < 2)
    assert float((q - x).detach()[inside].abs().max()) <= 3.0 / 255 / 2 + 1e-6
    q.sum().backward()
    assert torch.all(x.grad[inside] == 1) and torch.all(x.grad[(x < -1) | (x > 2)] == 0)


def test_separable_student_rounds_its_depthwise_outputs_signed_not_clipped():
    """A depthwise output has no ReLU after it: clipping it at zero (as for a ReLU'd tensor) would
    train a different network from the one the int8 file computes."""
    torch.manual_seed(2)
    model = create_model("student-robust", anchor_kernel="bicubic", channels=8, depth=3, separable=True)
    for p in model.tail.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 1, 16, 16)
    model.eval()
    plain = model(x).detach()
    qa = QuantAware(model)
    body = model.body
    for i, (signed_in, signed_out) in zip(qa.indices, qa.signed):
        assert signed_in == (not isinstance(body[i - 1], torch.nn.ReLU))
        assert signed_out == (body[i].groups > 1)  # the depthwise half feeds the 1x1 directly
    assert any(s_out for _, s_out in qa.signed) and any(s_in for s_in, _ in qa.signed)
    model.train()
    rounded = model(x).detach()
    assert float((rounded - plain).abs().max()) < 0.05
    assert torch.all(qa.lows[torch.tensor(qa.signed)] < 0)  # signed tensors saw their negative side
    assert torch.all(qa.lows[~torch.tensor(qa.signed)] == 0)
    st = qa.state_dict()
    again = QuantAware(create_model("student-robust", anchor_kernel="bicubic", channels=8, depth=3, separable=True))
    again.load_state_dict(st)
    assert torch.equal(again.lows, qa.lows) and torch.equal(again.ranges, qa.ranges)
