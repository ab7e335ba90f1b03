"""The edge student: budget, shape, anchor == nearest at init, no checkerboard, edge-only ops."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scopesr.trainer.student import (  # noqa: E402
    STUDENT_PRESETS,
    RepConv,
    StudentConfig,
    build_student,
    conditioned_state,
    deepened_state,
    reparam_state,
    student_from_args,
    widened_state,
)

# the `paper` teacher: about 50 GMAC per 64x64 LR tile (the paper's code) -> ~12 M MAC per LR pixel
PAPER_MACS_PER_PX = 50e9 / (64 * 64)


def _smooth_input(n: int = 48, seed: int = 0) -> torch.Tensor:
    """A smooth, positive image: a few wide Gaussian blobs on a ramp (no high frequencies)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    img = 0.2 + 0.3 * xx / n
    for _ in range(4):
        cy, cx = rng.uniform(0, n, 2)
        img += 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (n / 6) ** 2))
    return torch.from_numpy(img.astype(np.float32))[None, None]


def _period2(img) -> float:
    try:
        from scopesr.trainer.analysis import period2_energy
    except ImportError:  # pragma: no cover - the trainer's analysis module is the reference
        a = img.detach().double().numpy()[0, 0]
        m = np.array([[a[i::2, j::2].mean() for j in (0, 1)] for i in (0, 1)])
        return float(((m - m.mean()) ** 2).mean() / (a**2).mean())  # polyphase-mean spread
    return period2_energy(img, border=8)


def assert_bicubic_at_init(model: torch.nn.Module, seed: int) -> None:
    """An untrained student with the bicubic anchor (zero tail) is PIL's bicubic x4 (interior)."""
    from PIL import Image

    x = np.random.default_rng(seed).random((24, 30)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)[None, None])[0, 0].numpy()
    ref = np.asarray(Image.fromarray(x, mode="F").resize((120, 96), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(y[8:-8, 8:-8], ref[8:-8, 8:-8], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(STUDENT_PRESETS))
def test_budget_and_shape(name):
    cfg = STUDENT_PRESETS[name]
    assert cfg.macs_per_lr_pixel() <= 0.01 * PAPER_MACS_PER_PX, "student must stay within 1% of paper's MACs"
    model = build_student(name).eval()
    x = torch.rand(2, 1, 20, 28)
    y = model(x)
    assert y.shape == (2, 1, 80, 112)
    # analytic MACs agree with the trainer's hook-based count when it is available
    try:
        from scopesr.trainer.receptive_field import macs_per_lr_pixel, receptive_field_radius
    except ImportError:
        return
    assert macs_per_lr_pixel(model, in_channels=1, scale=4) == pytest.approx(cfg.macs_per_lr_pixel(), rel=0.02)
    assert receptive_field_radius(model) == cfg.halo


def test_presets_sizes_are_ordered_and_medium_within_budget():
    macs = [STUDENT_PRESETS[n].macs_per_lr_pixel() for n in ("student-tiny", "student-small", "student-medium")]
    assert macs == sorted(macs)
    assert 20_000 <= STUDENT_PRESETS["student-small"].macs_per_lr_pixel() <= 30_000  # ESPCN size
    assert STUDENT_PRESETS["student-medium"].macs_per_lr_pixel() <= 120_000


def test_init_is_exactly_nearest_upsampling():
    model = build_student("student-small").eval()
    x = torch.rand(1, 1, 16, 16)
    near = x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    with torch.no_grad():
        assert torch.equal(model(x), near)


def test_multichannel_anchor_is_per_channel_nearest():
    model = student_from_args("student-tiny", in_channels=3, out_channels=3).eval()
    x = torch.rand(1, 3, 8, 8)
    near = x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    with torch.no_grad():
        assert torch.equal(model(x), near)


def test_bicubic_anchor_is_pils_bicubic_at_init():
    """anchor_kernel="bicubic": the untrained network is PIL's bicubic x4 (interior; at the
    border the tiler's halo supplies context), per channel, for 1.4 k more MAC per LR pixel."""

    cfg = StudentConfig(channels=16, depth=6, anchor_kernel="bicubic")
    model = build_student(cfg).eval()
    assert_bicubic_at_init(model, seed=2)
    assert cfg.macs_per_lr_pixel() - StudentConfig(channels=16, depth=6).macs_per_lr_pixel() == 16 * 25
    from scopesr.trainer.receptive_field import macs_per_lr_pixel

    assert macs_per_lr_pixel(model) == cfg.macs_per_lr_pixel()  # the hook count sees the fixed anchor too
    # the anchor runs beside the body, not after it: the halo is the body's (9), as measured
    from scopesr.trainer.receptive_field import probe_receptive_field_radius, receptive_field_radius

    assert receptive_field_radius(model) == cfg.halo == probe_receptive_field_radius(model, scale=4) == 9
    shallow = StudentConfig(channels=4, depth=0, head_kernel=3, tail_kernel=1, anchor_kernel="bicubic")
    tiny = build_student(shallow)
    assert shallow.halo == receptive_field_radius(tiny) == probe_receptive_field_radius(tiny, scale=4) == 2  # anchor
    rgb = student_from_args("student-tiny", in_channels=3, out_channels=3, anchor_kernel="bicubic").eval()
    x3 = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        y3 = rgb(x3)
        y1 = model(x3[:, 1:2])
    torch.testing.assert_close(y3[:, 1:2], y1)  # each channel its own bicubic
    # the fixed kernel travels with the weights (a buffer, not a trained parameter), and a
    # nearest student has none
    key = "bicubic_anchor.weight"
    assert key in model.state_dict() and key not in dict(model.named_parameters())
    assert key not in build_student("student-tiny").state_dict()
    # files saved when the kernel was a plain buffer of the student load unchanged
    old = {("anchor_weight" if k == key else k): v.clone() for k, v in model.state_dict().items()}
    again = build_student(cfg)
    again.load_state_dict(old)  # strict
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x3[:, 1:2]), model(x3[:, 1:2]))
    with pytest.raises(ValueError, match="anchor_kernel"):
        StudentConfig(anchor_kernel="lanczos")


def test_no_checkerboard_at_init():
    """Smooth input -> no period-2 pattern at init; a transposed conv (srgan-deconv's op) has one."""
    x = _smooth_input()
    model = build_student("student-medium").eval()
    with torch.no_grad():
        e_init = _period2(model(x))
        e_near = _period2(x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3))
        deconv = torch.nn.ConvTranspose2d(1, 1, 6, stride=4, padding=1)
        torch.manual_seed(0)
        torch.nn.init.uniform_(deconv.weight, 0, 1)
        e_deconv = _period2(deconv(x))
    # at init the student IS nearest upsampling (whose staircase leaves ~1e-6 after the
    # analysis' high-pass), orders of magnitude below a transposed conv's checkerboard
    assert e_init == pytest.approx(e_near, rel=1e-6)
    assert e_init < 1e-4
    assert e_deconv > 1e-3


def test_trained_default_has_no_checkerboard():
    """The bundled default (trained) keeps smooth input free of period-2 patterns."""
    from scopesr.sdk import ModelCard, default_model_path

    path = default_model_path("safetensors")  # a clear error names the recipe's file if missing
    card = ModelCard.load(path)
    from safetensors.torch import load_file

    model = student_from_args(None, **card.arch_args).eval()
    model.load_state_dict(load_file(path))
    x = _smooth_input()
    with torch.no_grad():
        e = _period2(model(x))
        e_near = _period2(x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3))
    assert e < max(10 * e_near, 1e-4), (e, e_near)


@pytest.mark.parametrize("bundle", ["default", "low-noise", "large"])
def test_bundled_cards_record_the_networks_cost(bundle):
    """Every bundled card names the parameters and MAC per LR pixel of the network it holds."""
    from scopesr.sdk import ModelCard, bundle_dir, bundle_files

    for fname in bundle_files(bundle).values():
        card = ModelCard.read(bundle_dir(bundle) / (fname.rsplit(".", 1)[0] + ".card.json"))
        model = student_from_args(None, **card.arch_args)
        assert card.extra["params"] == sum(p.numel() for p in model.parameters()), fname
        assert card.extra["macs_per_lr_pixel"] == model.cfg.macs_per_lr_pixel(), fname


def test_only_edge_ops():
    """Conv2d, ReLU, PixelShuffle only: nothing a mobile NPU or int8 runtime lacks."""
    model = build_student("student-medium")
    kinds = {type(m).__name__ for m in model.modules() if not list(m.children())}
    assert kinds <= {"Conv2d", "ReLU", "PixelShuffle"}, kinds
    ops = {n.target for n in torch.fx.symbolic_trace(model).graph.nodes if n.op == "call_function"}
    names = {getattr(o, "__name__", str(o)) for o in ops}
    assert names <= {"cat", "add", "getitem"}, names  # no interpolate / resize anywhere


def test_config_validation():
    with pytest.raises(ValueError, match="odd"):
        StudentConfig(kernel=4)
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        StudentConfig(in_channels=3, out_channels=1)
    with pytest.raises(ValueError, match="unknown student argument"):
        student_from_args("student-small", width=3)
    with pytest.raises(ValueError, match="unknown student preset"):
        build_student("student-huge")


def test_errors_are_preset_errors_never_bare_value_or_key_errors():
    """Every refusal is the trainer's PresetError (a ScopesrError the CLIs report, and still a
    ValueError for callers that catch that); an unknown preset is not a KeyError."""
    from scopesr.sdk import ScopesrError
    from scopesr.trainer import PresetError

    assert issubclass(PresetError, ScopesrError) and issubclass(PresetError, ValueError)
    bad = [
        lambda: StudentConfig(kernel=4),
        lambda: StudentConfig(channels="32"),
        lambda: StudentConfig(depth=-1),
        lambda: StudentConfig(in_channels=3, out_channels=1),
        lambda: student_from_args("student-huge"),
        lambda: student_from_args(None, width=3),
        lambda: student_from_args("student-small", channels=0),
        lambda: build_student("student-huge"),
        lambda: build_student({"channels": 8}),
    ]
    for call in bad:
        with pytest.raises(PresetError):
            call()


def test_learns_quickly_on_real_image(real_image):
    """A real (tiny) training run on real fluorescence: 150 steps move it off nearest, towards HR."""
    from scopesr.sdk import quality
    from scopesr.trainer import data as D

    real_image("napari-timelapse")
    cfg = D.DataConfig(data=["sample:napari-timelapse[0:1]"], hr_size=64, channels=1, degradation="microscopy")
    cfg.validate()
    item = D.discover(cfg)[0]
    deg = quality.Degradation(downsample="bicubic-aa")  # one fixed degradation: a quick, steady target

    def batch(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [D.microscope_pair(item, cfg, rng, deg) for _ in range(8)]
        return (torch.stack([D.to_tensor(a) for a, _ in pairs]), torch.stack([D.to_tensor(b) for _, b in pairs]))

    torch.manual_seed(0)
    model = build_student("student-tiny")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    lr_t, hr_t = batch(np.random.default_rng(123))
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(model(lr_t), hr_t).item()
    for step in range(150):
        a, b = batch(np.random.default_rng([1, step]))
        loss = torch.nn.functional.l1_loss(model(a), b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(model(lr_t), hr_t).item()
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize(
    "recipe",
    [
        "default.toml",
        "robust-long.toml",
        "robust-nm.toml",
        "default-zoom.toml",
        "default-zoom10.toml",
        "low-noise.toml",
        "large.toml",
    ],
)
def test_default_recipe_is_a_valid_config_with_disjoint_heldout(recipe):
    """trainer/recipes/*.toml (the bundled model's recipe and the candidate) parse, validate, and
    never train on a source they are scored on."""
    from pathlib import Path

    from scopesr.trainer.train import TrainConfig, load_config_file

    path = Path(__file__).resolve().parents[2] / "trainer" / "recipes" / recipe
    cfg = TrainConfig.from_dict({**load_config_file(path), "mode": "pretrain"})
    cfg.validate()
    assert cfg.data.degradation == "microscopy" and cfg.eval_sources
    assert not set(cfg.eval_sources) & set(cfg.data.data)
    # the second held-out check's sources (benchmarks/bench_unseen.py) are in no recipe's training data
    from scopesr.bench.unseen_quality import UNSEEN_SOURCES

    assert not {s.split("[")[0] for s in cfg.data.data} & set(UNSEEN_SOURCES)
    assert cfg.preset.startswith("student") and cfg.lr_schedule == "cosine"


def test_noise_aware_student_takes_a_map_channel_outside_the_anchor():
    """cond_channels: the head sees image + map; the anchor (nearest at init) only the image."""
    cfg = StudentConfig(channels=8, depth=1, cond_channels=1)
    s = build_student(cfg)
    assert s.body[0].in_channels == 2
    assert cfg.macs_per_lr_pixel() - StudentConfig(channels=8, depth=1).macs_per_lr_pixel() == 8 * 25
    img = _smooth_input(24)
    x = torch.cat([img, torch.full_like(img, 0.7)], dim=1)
    y = s(x)
    assert tuple(y.shape) == (1, 1, 96, 96)
    expected = torch.nn.functional.interpolate(img, scale_factor=4, mode="nearest")
    assert torch.equal(y, expected)
    with pytest.raises(ValueError, match="cond_channels"):
        StudentConfig(cond_channels=-1)
    assert student_from_args("student-robust", cond_channels=1).cfg.cond_channels == 1


def test_deepened_student_starts_as_the_same_function():
    torch.manual_seed(3)
    shallow = student_from_args("student-tiny", anchor_kernel="bicubic")
    for p in shallow.parameters():  # a trained-looking network: every layer matters
        torch.nn.init.normal_(p, std=0.2)
    deep = student_from_args("student-tiny", anchor_kernel="bicubic", depth=shallow.cfg.depth + 2)
    deep.load_state_dict(deepened_state(shallow, deep))
    x = torch.rand(2, 1, 20, 24)
    assert torch.equal(deep.eval()(x), shallow.eval()(x))
    assert deep.cfg.halo == shallow.cfg.halo + 2  # what the tiler must now supply
    with pytest.raises(ValueError, match="only 'depth' may differ"):
        deepened_state(shallow, student_from_args("student-tiny", anchor_kernel="bicubic", channels=8))
    with pytest.raises(ValueError, match="only 'depth' may differ"):
        deepened_state(deep, shallow)


def test_reparam_student_folds_into_plain_convolutions_computing_the_same():
    """Trained as RepConv branches, saved and exported as one plain kernel per layer: the folded
    network computes the same output at the same cost and receptive field."""
    from scopesr.trainer.receptive_field import macs_per_lr_pixel, receptive_field_radius

    torch.manual_seed(6)
    rep = student_from_args("student-tiny", anchor_kernel="bicubic", reparam=True)
    for p in rep.parameters():  # every branch contributes (the tail starts at zero otherwise)
        torch.nn.init.normal_(p, std=0.1)
    convs = [m for m in rep.modules() if isinstance(m, RepConv)]
    assert len(convs) == rep.cfg.depth + 2  # head, hidden layers, tail
    plain = rep.folded()
    assert plain.cfg.reparam is False and not any(isinstance(m, RepConv) for m in plain.modules())
    x = torch.rand(2, 1, 20, 24)
    assert torch.allclose(plain.eval()(x), rep.eval()(x), atol=1e-5)
    assert receptive_field_radius(plain) == receptive_field_radius(rep) == rep.cfg.halo
    assert macs_per_lr_pixel(plain) == macs_per_lr_pixel(rep) == rep.cfg.macs_per_lr_pixel()
    # the edge branches are what a plain kernel cannot be trained as: switching one off changes the sum
    before = convs[1].weight.clone()
    with torch.no_grad():
        convs[1].edge_gain.zero_()
    assert not torch.allclose(convs[1].weight, before)


def test_reparam_student_starts_as_bicubic_and_every_branch_learns():
    torch.manual_seed(7)
    rep = student_from_args("student-tiny", anchor_kernel="bicubic", reparam=True)
    assert_bicubic_at_init(rep, seed=7)
    x, target = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 64, 64)
    opt = torch.optim.SGD(rep.parameters(), lr=0.1)
    for _ in range(2):  # at init only the tail's second stages can move (the summed tail is zero)
        opt.zero_grad()
        (rep(x) - target).square().mean().backward()
        opt.step()
    for name, m in rep.named_modules():
        if isinstance(m, RepConv):
            for pname, p in m.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} gets no gradient"


def test_plain_student_goes_into_reparam_branches_unchanged():
    torch.manual_seed(8)
    plain = student_from_args("student-tiny", anchor_kernel="bicubic")
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.2)
    rep = student_from_args("student-tiny", anchor_kernel="bicubic", reparam=True)
    rep.load_state_dict(reparam_state(plain, rep))
    x = torch.rand(2, 1, 20, 24)
    assert torch.allclose(rep.eval()(x), plain.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="only 'reparam' may differ"):
        reparam_state(plain, student_from_args("student-tiny", anchor_kernel="bicubic", channels=8, reparam=True))


def test_conditioned_student_starts_as_the_blind_one():
    """Noise-map channels added to a trained blind student get zero head weights: whatever the
    map holds, the output is the blind model's until training teaches it to use the map."""
    torch.manual_seed(4)
    blind = student_from_args("student-tiny", anchor_kernel="bicubic")
    for p in blind.parameters():
        torch.nn.init.normal_(p, std=0.2)
    cond = student_from_args("student-tiny", anchor_kernel="bicubic", cond_channels=2)
    cond.load_state_dict(conditioned_state(blind, cond))
    x = torch.rand(2, 1, 20, 24)
    mapped = torch.cat([x, torch.full_like(x, 0.7), torch.full_like(x, 1.9)], dim=1)
    assert torch.allclose(cond.eval()(mapped), blind.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="only 'cond_channels' and 'sqrt_input' may differ"):
        wider = student_from_args("student-tiny", anchor_kernel="bicubic", channels=8, cond_channels=1)
        conditioned_state(blind, wider)
    with pytest.raises(ValueError, match="only 'cond_channels' and 'sqrt_input' may differ"):
        conditioned_state(cond, blind)


def test_widened_student_starts_as_the_same_function_and_its_new_features_learn():
    """A wider student from a narrower file: the same output at the start; the weights that read
    the new features are zero but get a gradient at once, so the new features join in."""
    torch.manual_seed(5)
    narrow = student_from_args("student-tiny", anchor_kernel="bicubic", sqrt_input=True)
    for p in narrow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    wide = student_from_args("student-tiny", anchor_kernel="bicubic", sqrt_input=True, channels=24)
    wide.load_state_dict(widened_state(narrow, wide))
    x = torch.rand(2, 1, 20, 24)
    assert torch.allclose(wide.eval()(x), narrow.eval()(x), atol=1e-6)
    assert wide.cfg.halo == narrow.cfg.halo
    assert wide.body[2].weight[:, 16:].abs().max() == 0 and wide.tail.weight[:, 16:].abs().max() == 0
    assert wide.body[0].weight[16:].abs().max() > 0  # the new features are computed from the start
    wide.train()
    wide(x).square().mean().backward()
    assert wide.tail.weight.grad[:, 16:].abs().max() > 0
    with pytest.raises(ValueError, match="only 'channels' may differ"):
        widened_state(narrow, student_from_args("student-tiny", anchor_kernel="bicubic", channels=24))
    with pytest.raises(ValueError, match="only upwards"):
        widened_state(wide, narrow)
    cells = student_from_args("student-wide", anchor_kernel="bicubic")
    with pytest.raises(ValueError, match="only plain students"):
        widened_state(cells, student_from_args("student-wide", anchor_kernel="bicubic", channels=48))


def test_separable_student_costs_what_it_says_and_keeps_its_own_layout():
    """``separable``: each hidden layer a depthwise k x k then a 1x1 convolution, so 32 features
    cost about what 16 full ones do; the halo counts the k x k layers only; the grow and condition
    helpers refuse it (their layer indices are the plain layout's) instead of loading wrong weights."""
    ds = student_from_args("student-robust", anchor_kernel="bicubic", channels=32, depth=8, separable=True)
    plain = student_from_args("student-robust", anchor_kernel="bicubic")
    c, k = 32, 3
    assert ds.cfg.macs_per_lr_pixel() == 1 * c * 25 + 8 * (c * k * k + c * c) + c * 16 * k * k + 16 * 25
    assert ds.cfg.macs_per_lr_pixel() < plain.cfg.macs_per_lr_pixel()
    assert ds.cfg.halo == 2 + 8 + 1
    depthwise = [m for m in ds.body if isinstance(m, torch.nn.Conv2d) and m.groups == c]
    assert len(depthwise) == 8 and all(m.kernel_size == (3, 3) for m in depthwise)
    from scopesr.trainer.receptive_field import probe_receptive_field_radius

    assert probe_receptive_field_radius(ds.eval()) <= ds.cfg.halo
    assert ds(torch.rand(1, 1, 20, 24)).shape == (1, 1, 80, 96)
    with pytest.raises(ValueError, match="separable"):
        StudentConfig(separable=True, unshuffle=2)
    deeper = student_from_args("student-robust", anchor_kernel="bicubic", channels=32, depth=9, separable=True)
    with pytest.raises(ValueError, match="train them from scratch"):
        deepened_state(ds, deeper)


def test_sqrt_input_student_starts_as_the_plain_one_and_reads_the_square_root():
    """``sqrt_input`` gives the head the image's square root as one more input (after any noise
    map); from a plain file it starts as exactly the plain model, the halo is unchanged and the
    head's work grows by one input channel; with weight on that channel the output depends on
    the square root (not a linear function of the image any more)."""
    plain = student_from_args("student-tiny", anchor_kernel="bicubic")
    for p in plain.parameters():
        torch.nn.init.normal_(p, 0.0, 0.1)
    sq = student_from_args("student-tiny", anchor_kernel="bicubic", sqrt_input=True)
    assert sq.cfg.head_inputs == 2 and sq.cfg.halo == plain.cfg.halo
    extra = sq.cfg.macs_per_lr_pixel() - plain.cfg.macs_per_lr_pixel()
    assert extra == sq.cfg.channels * sq.cfg.head_kernel**2
    sq.load_state_dict(conditioned_state(plain, sq))
    x = torch.rand(2, 1, 20, 24)
    assert torch.allclose(sq.eval()(x), plain.eval()(x), atol=1e-6)

    # a noise map added later keeps the square root's trained weights in their place
    both = student_from_args("student-tiny", anchor_kernel="bicubic", sqrt_input=True, cond_channels=1)
    with torch.no_grad():
        sq.body[0].weight[:, 1:].normal_(0.0, 0.3)
    both.load_state_dict(conditioned_state(sq, both))
    assert torch.allclose(both.eval()(torch.cat([x, torch.rand_like(x)], 1)), sq(x), atol=1e-6)

    # only the square-root channel's weights set: the head sees sqrt(relu(x) + eps)
    only = student_from_args("student-tiny", anchor_kernel="bicubic", sqrt_input=True, anchor=False)
    with torch.no_grad():
        for p in only.parameters():
            p.zero_()
        only.body[0].weight[:, 1, 2, 2] = 1.0  # centre tap of the square-root channel
    feats = only.body[:2](torch.cat([x, torch.sqrt(torch.relu(x) + 1e-3)], 1))
    assert torch.allclose(feats[:, 0], torch.sqrt(x[:, 0] + 1e-3), atol=1e-6)
    with pytest.raises(ValueError, match="only upwards"):
        conditioned_state(sq, plain)


def test_trainable_anchor_starts_as_bicubic_loads_plain_files_and_learns():
    """``anchor_trainable`` makes the bicubic anchor's kernels a parameter under the same key:
    a plain file loads into it (and back) unchanged, it starts as exactly the plain model, the
    cost per pixel is the same, and a training step moves the anchor (the fixed one never moves)."""
    plain = student_from_args("student-tiny", anchor_kernel="bicubic")
    for p in plain.parameters():
        torch.nn.init.normal_(p, 0.0, 0.1)
    learn = student_from_args("student-tiny", anchor_kernel="bicubic", anchor_trainable=True)
    assert learn.cfg.macs_per_lr_pixel() == plain.cfg.macs_per_lr_pixel() and learn.cfg.halo == plain.cfg.halo
    learn.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 20, 24)
    assert torch.allclose(learn(x), plain(x), atol=1e-6)
    names = {n for n, _ in learn.named_parameters()}
    assert "bicubic_anchor.weight" in names and "bicubic_anchor.weight" not in {n for n, _ in plain.named_parameters()}

    start = learn.bicubic_anchor.weight.detach().clone()
    opt = torch.optim.SGD(learn.parameters(), lr=1e-2)
    torch.nn.functional.l1_loss(learn(x), torch.rand(2, 1, 80, 96)).backward()
    opt.step()
    assert not torch.equal(learn.bicubic_anchor.weight, start)
    plain.load_state_dict(learn.state_dict())  # and back into a fixed-anchor model: its kernels are what run
    assert torch.allclose(plain(x), learn(x), atol=1e-6)
    for bad in ({"anchor_kernel": "nearest"}, {"anchor": False, "anchor_kernel": "bicubic"}):
        with pytest.raises(ValueError, match="anchor_trainable"):
            student_from_args("student-tiny", anchor_trainable=True, **bad)


def test_wide_student_runs_on_cells_of_two():
    """student-wide: space-to-depth 2, so its six hidden layers see twice as far (halo 17 LR px,
    against student-robust's 9) for about the same work per LR pixel; at init it is bicubic."""
    from scopesr.trainer.receptive_field import probe_receptive_field_radius, receptive_field_radius

    cfg = StudentConfig(**{**STUDENT_PRESETS["student-wide"].to_dict(), "anchor_kernel": "bicubic"})
    robust = StudentConfig(**{**STUDENT_PRESETS["student-robust"].to_dict(), "anchor_kernel": "bicubic"})
    assert cfg.unshuffle == 2 and cfg.halo == 17 and robust.halo == 9
    assert cfg.macs_per_lr_pixel() <= 1.15 * robust.macs_per_lr_pixel()
    model = build_student(cfg).eval()
    assert receptive_field_radius(model) == probe_receptive_field_radius(model, scale=4) == 17
    assert_bicubic_at_init(model, seed=5)
    with pytest.raises(RuntimeError, match="divisible"):
        model(torch.rand(1, 1, 9, 10))  # odd sides: the SDK and the trainer's evaluation pad them
    with pytest.raises(ValueError, match="unshuffle"):
        StudentConfig(unshuffle=3)


def test_trainer_evaluation_pads_odd_images_for_a_wide_student():
    """The held-out evaluation upscales whole images of any size: a space-to-depth student gets
    them mirrored to even sides and its output cropped back, as the SDK does."""
    from scopesr.sdk.card import Normalisation
    from scopesr.trainer.train import torch_upscaler

    torch.manual_seed(6)
    model = student_from_args("student-wide", channels=8, depth=1, anchor_kernel="bicubic").eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    up = torch_upscaler(model, torch.device("cpu"), Normalisation("range"))
    img = (np.random.default_rng(7).random((23, 30)) * 60000).astype(np.uint16)
    out = up(img)
    assert out.shape == (92, 120) and out.dtype == np.uint16
    even = up(np.pad(img, ((0, 1), (0, 0)), mode="symmetric"))
    np.testing.assert_array_equal(out, even[:92])


def test_cell_body_student_keeps_head_and_tail_at_lr():
    """student-cells: only the hidden layers run on 2x2 cells (between 1x1 projections, added
    back to the head's features), so its field is 16 LR px at 18 k MAC; at init it is bicubic."""
    from scopesr.trainer.receptive_field import macs_per_lr_pixel, probe_receptive_field_radius

    cfg = StudentConfig(**{**STUDENT_PRESETS["student-cells"].to_dict(), "anchor_kernel": "bicubic"})
    model = build_student(cfg).eval()
    assert cfg.halo == probe_receptive_field_radius(model, scale=4) == 16
    assert macs_per_lr_pixel(model, in_channels=1, scale=4) == cfg.macs_per_lr_pixel() < 18_500
    assert_bicubic_at_init(model, seed=8)
    with pytest.raises(ValueError, match="cell_body needs unshuffle=2"):
        StudentConfig(cell_body=True)
