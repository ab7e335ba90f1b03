"""The SDK's torch fast path (TorchRunner, RunnerBackend, TorchBackend for .pt2).

CPU: every switch on and off, describe() saying why CUDA-only switches are off, run_many
equal to run (also through the overlapped pipeline's bookkeeping), the output-shape check
on both paths, and a .pt2 exported from a tiny student through the tiler equal to the
whole image. CUDA (gpu-marked): graphs == eager, pinned overlap == sequential, bf16 close.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import scopesr.sdk as sr  # noqa: E402
from scopesr.sdk import ModelCard, ModelIOError, Normalisation, ScopesrError, card_path_for, sha256_path  # noqa: E402
from scopesr.sdk.backends.torch_runner import MAX_GRAPHS, RunnerBackend, TorchRunner  # noqa: E402


def _student(seed: int = 0):
    """student-tiny with random weights everywhere (its tail starts at zero, which would
    make every precision give the same nearest-neighbour output)."""
    from scopesr.trainer import create_model

    m = create_model("student-tiny")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p[0].numel()) ** 0.5)
    return m.eval()


def _card(m, name: str = "student-tiny", **kw) -> ModelCard:
    from scopesr.trainer import receptive_field_radius

    return ModelCard(
        name=name,
        architecture="student-tiny",
        scale=4,
        in_channels=1,
        out_channels=1,
        halo=receptive_field_radius(m),
        format=kw.pop("format", "safetensors"),
        normalisation=Normalisation(),
        **kw,
    )


def _x(n: int = 2, h: int = 24, w: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, h, w), dtype=np.float32)


@pytest.fixture(scope="module")
def pt2(tmp_path_factory) -> Path:
    """A real .pt2 (torch.export, dynamic N/H/W) of a random-weight student-tiny, with its card."""
    m = _student()
    dims = {
        0: torch.export.Dim("N", min=1, max=64),
        2: torch.export.Dim("H", min=8, max=4096),
        3: torch.export.Dim("W", min=8, max=4096),
    }
    ep = torch.export.export(m, (torch.from_numpy(_x()),), dynamic_shapes=({**dims},))
    p = tmp_path_factory.mktemp("pt2") / "student.pt2"
    torch.export.save(ep, str(p))
    _card(m, format="pt2", artifact=p.name, sha256=sha256_path(p)).save(card_path_for(p))
    return p


class _LookaheadRunner(TorchRunner):
    """A CPU runner that drives RunnerBackend's overlapped path: like the CUDA pipeline, it
    takes batch i+1 from the iterator before handing out batch i's result."""

    calls = 0

    @property
    def overlaps(self) -> bool:
        return True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return super().__call__(x)

    def run_many(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        it = iter(batches)
        cur = next(it, None)
        while cur is not None:
            y = self(cur)
            cur = next(it, None)
            yield y


class _Backend(RunnerBackend):
    def __init__(self, runner: TorchRunner, card: ModelCard) -> None:
        super().__init__(Path("live.module"), card)
        self.runner = runner


# ---------------------------------------------------------------------------------- CPU
def test_sdk_imports_without_torch():
    """The torch-free env imports the SDK and these modules (torch only inside functions)."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import scopesr.sdk, scopesr.sdk.backends.torch_runner, scopesr.sdk.backends.torch_backend\n"
        "assert sys.modules['torch'] is None\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]


def test_runner_switches_on_cpu_and_describe_says_why():
    m = _student()
    x = _x()
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    r = TorchRunner(m, device="cpu", cuda_graphs=True, pinned=True, num_threads=1)
    np.testing.assert_allclose(r(x), ref, atol=1e-5)
    d = r.describe()
    assert d["device"] == "cpu" and d["cuda_graphs"] is False and d["pinned"] is False and d["overlap"] is False
    assert set(d["off"]) == {"cuda_graphs", "pinned"} and "CUDA" in d["off"]["pinned"]
    assert "off" not in TorchRunner(m, device="cpu", pinned=False).describe()
    np.testing.assert_allclose(TorchRunner(m, device="cpu", channels_last=True)(x), ref, atol=1e-5)
    # a real torch.compile (dynamo + AOT autograd; "aot_eager" skips inductor's C++ build time)
    c = TorchRunner(m, device="cpu", compile="aot_eager")
    np.testing.assert_allclose(c(x), ref, atol=1e-5)
    assert c.describe()["compile"] == "aot_eager"
    # bf16 autocast: computed in bf16 (differs) yet close, weights untouched in fp32
    bf = TorchRunner(m, device="cpu", dtype="bfloat16")
    y = bf(x)
    assert bf.describe()["dtype"] == "bf16" and y.dtype == np.float32 and y.shape == ref.shape
    assert 0 < np.abs(y - ref).max() < 0.05 * (np.abs(ref).max() + 1)
    assert all(p.dtype == torch.float32 for p in bf.module.parameters())
    with pytest.raises(ScopesrError, match="dtype 'int4'"):
        TorchRunner(m, device="cpu", dtype="int4")
    with pytest.raises(ScopesrError, match="device 'tpu'"):
        TorchRunner(m, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error(pt2):
    with pytest.raises(sr.BackendUnavailable, match="no CUDA GPU"):
        TorchRunner(_student(), device="cuda")
    with pytest.raises(sr.BackendUnavailable, match="no CUDA GPU"):
        sr.load(pt2, device="cuda")


def test_run_many_equals_run_on_both_paths():
    m = _student()
    card = _card(m)
    batches = [_x(2, 24, 20, 1), _x(1, 24, 20, 2), _x(3, 16, 28, 3)]
    plain = _Backend(TorchRunner(m, device="cpu"), card)
    want = [plain.run(b) for b in batches]
    assert not plain.runner.overlaps
    for be in (plain, _Backend(_LookaheadRunner(m, device="cpu"), card)):
        got = list(be.run_many(iter(batches)))
        assert len(got) == 3 and all(np.array_equal(g, w) for g, w in zip(got, want))
        assert list(be.run_many([])) == []
    assert be.runner.calls == 3  # each batch computed once, by the pipeline, and handed over
    # the pipeline's hand-over never leaks into a run() made between its results
    la = _Backend(_LookaheadRunner(m, device="cpu"), card)
    gen = la.run_many(batches)
    first = next(gen)
    assert np.array_equal(la.run(batches[2]), want[2])
    assert np.array_equal(first, want[0]) and all(np.array_equal(g, w) for g, w in zip(gen, want[1:]))


def test_output_shape_and_input_checks_fire_on_both_paths():
    m = _student()
    wrong = dataclasses.replace(_card(m), scale=2)  # the card lies about the scale
    bad_in = np.repeat(_x(), 2, axis=1)  # 2 channels, the model takes 1
    for runner in (TorchRunner(m, device="cpu"), _LookaheadRunner(m, device="cpu")):
        be = _Backend(runner, wrong)
        with pytest.raises(ScopesrError, match=r"expected \(2, 1, 48, 40\)"):
            be.run(_x())
        with pytest.raises(ScopesrError, match=r"expected \(2, 1, 48, 40\)"):
            list(be.run_many([_x(), _x()]))
        ok = _Backend(runner, _card(m))
        with pytest.raises(ModelIOError, match=r"expected input \(N, 1, h, w\)"):
            list(ok.run_many([_x(), bad_in]))
        assert ok._computed is None


def test_pt2_backend_options_and_tiler(pt2):
    img = np.random.default_rng(5).random((70, 52), dtype=np.float32)
    up = sr.load(pt2, device="cpu", num_threads=1)
    whole = up.upscale(img, tile=256)
    tiled = up.upscale(img, tile=24)  # many tiles, batches handed to run_many per band
    assert whole.shape == (280, 208)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    x = _x(3, 20, 36, 6)
    with torch.no_grad():  # the exported file computes what the live model computes
        np.testing.assert_allclose(up.backend.run(x), _student()(torch.from_numpy(x)).numpy(), atol=1e-5)

    fast = sr.load(
        pt2, device="cpu", dtype="bf16", channels_last=True, compile="aot_eager", cuda_graphs=True, pinned=True
    )
    d = fast.describe()["backend"]
    assert d["backend"] == "torch" and d["dtype"] == "bfloat16" and d["weights"] == "float32"
    assert d["channels_last"] and d["compile"] == "aot_eager" and not d["cuda_graphs"] and not d["pinned"]
    assert set(d["off"]) == {"cuda_graphs", "pinned"}
    out = fast.upscale(img, tile=24)
    rng = float(whole.max() - whole.min())
    assert 0 < np.abs(out - whole).max() < 0.05 * rng  # bf16 really used, and close
    with pytest.raises(ScopesrError, match=r"does not take option\(s\) \['graphs'\]"):
        sr.load(pt2, device="cpu", graphs=True)


def test_fp16_on_cpu_warns(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="scopesr.sdk.backends.torch_runner"):
        TorchRunner(_student(), device="cpu", dtype="fp16")
    assert "bf16 is the CPU choice" in caplog.text


# ---------------------------------------------------------------------------------- CUDA
@pytest.fixture
def no_tf32():
    """Compare fp32 with fp32: cuDNN may otherwise use TF32."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old


@pytest.mark.gpu
def test_cuda_graphs_equal_eager_and_pinned_overlap_equals_sequential(no_tf32):
    m = _student()
    batches = [_x(8, 32, 32, i) for i in range(5)] + [_x(3, 32, 24, 9)]
    eager = TorchRunner(m, device="cuda", pinned=False)
    assert not eager.overlaps
    want = [eager(b) for b in batches]
    with torch.no_grad():
        cpu = _student()(torch.from_numpy(batches[0])).numpy()
    np.testing.assert_allclose(want[0], cpu, atol=1e-4)
    g = TorchRunner(_student(), device="cuda", cuda_graphs=True, pinned=True, channels_last=True)
    d = g.describe()
    assert d["cuda_graphs"] and d["pinned"] and d["overlap"] and "off" not in d
    seq = [g(b) for b in batches]
    assert g.describe()["graphs_captured"] == 2  # one per shape
    over = list(g.run_many(batches))  # uploads overlapped with graph replays
    for a, b, c in zip(want, seq, over):
        np.testing.assert_allclose(b, a, atol=1e-4)
        assert np.array_equal(c, b)
    assert np.array_equal(g(batches[0]), seq[0])  # replays agree after the pipeline ran


@pytest.mark.gpu
def test_cuda_pt2_fast_options_through_the_tiler(pt2, no_tf32):
    img = np.random.default_rng(7).random((300, 270), dtype=np.float32)
    ref = sr.load(pt2, device="cpu").upscale(img, tile=64)
    eager = sr.load(pt2, device="cuda", pinned=False)
    np.testing.assert_allclose(eager.upscale(img, tile=64, batch=8), ref, atol=1e-4, rtol=0)
    fast = sr.load(pt2, device="cuda", cuda_graphs=True, pinned=True, channels_last=True)
    assert fast.describe()["backend"]["overlap"]
    np.testing.assert_allclose(fast.upscale(img, tile=64, batch=8), ref, atol=1e-4, rtol=0)
    bf = sr.load(pt2, device="cuda", dtype="bf16", cuda_graphs=True, channels_last=True)
    rng = float(ref.max() - ref.min())
    assert np.abs(bf.upscale(img, tile=64, batch=8) - ref).max() < 0.05 * rng
    assert len(bf.backend.runner._graphs) <= MAX_GRAPHS


def test_sr_upscale_torch_options(pt2, tmp_path):
    """sr-upscale passes --torch-dtype/--channels-last/--cuda-graphs to the .pt2 backend, and
    says they are for .pt2 models when given with another artifact."""
    import tifffile
    from click.testing import CliRunner

    from scopesr.sdk.cli import main

    img = (np.random.default_rng(3).random((40, 36)) * 4000).astype(np.uint16)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, img)
    outs = {}
    for name, extra in (("plain", []), ("fast", ["--torch-dtype", "bf16", "--channels-last", "--cuda-graphs"])):
        res = CliRunner().invoke(
            main, [str(src), "-o", str(tmp_path / name), "--model", str(pt2), "--device", "cpu", "-q", *extra]
        )
        assert res.exit_code == 0, res.output
        outs[name] = tifffile.imread(tmp_path / name / "in_x4.tif").astype(np.float64)
    assert outs["plain"].shape == (160, 144)
    diff = np.abs(outs["fast"] - outs["plain"]).max()
    assert 0 < diff < 0.05 * np.ptp(outs["plain"])  # bf16 was used, and is close
    onnx = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_x4.onnx"
    res = CliRunner().invoke(main, [str(src), "-o", str(tmp_path / "o"), "--model", str(onnx), "--torch-dtype", "bf16"])
    assert res.exit_code != 0 and "apply to .pt2 models" in res.output
