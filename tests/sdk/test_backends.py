"""Backends: real ONNX Runtime / TFLite interpreters on the committed fixtures; torch (.pt2)
where torch is installed; missing runtimes simulated by making their import fail."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk import ModelCard, card_path_for, sha256_path
from scopesr.sdk.backends import open_backend

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def x_nchw(n: int, h: int, w: int, c: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def test_onnx_backend_runs_any_size_and_batch():
    card = ModelCard.load(FIX / "tiny_x4.onnx")
    be = open_backend(FIX / "tiny_x4.onnx", card, num_threads=1)
    assert be.name == "onnx" and be.dynamic
    for shape in [(1, 1, 1), (3, 5, 9), (2, 33, 17)]:
        y = be.run(x_nchw(*shape))
        assert y.shape == (shape[0], 1, 4 * shape[1], 4 * shape[2]) and y.dtype == np.float32
    # batching does not change results
    x = x_nchw(3, 12, 10)
    np.testing.assert_allclose(be.run(x)[1:2], be.run(x[1:2]), atol=1e-6)
    d = be.describe()
    assert d["backend"] == "onnx" and d["device"] == "cpu" and d["num_threads"] == 1


def test_onnx_backend_wrong_channels():
    card = ModelCard.load(FIX / "tiny_x4.onnx")
    be = open_backend(FIX / "tiny_x4.onnx", card)
    with pytest.raises(sr.ModelIOError, match=r"expected input \(N, 1, h, w\)"):
        be.run(x_nchw(1, 8, 8, c=3))


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is not None
    and "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="a CUDA onnxruntime is installed",
)
def test_onnx_cuda_request_without_cuda_is_clear():
    card = ModelCard.load(FIX / "tiny_x4.onnx")
    with pytest.raises(sr.BackendUnavailable, match="onnxruntime-gpu"):
        open_backend(FIX / "tiny_x4.onnx", card, device="cuda")


def test_tflite_backend_fixed_sizes_and_nhwc():
    card = ModelCard.load(FIX / "tiny_x4_fixed.tflite")
    be = open_backend(FIX / "tiny_x4_fixed.tflite", card, num_threads=1)
    assert be.name == "tflite" and not be.dynamic and be.tile_sizes == (32, 48)
    onnx = open_backend(FIX / "tiny_x4.onnx", ModelCard.load(FIX / "tiny_x4.onnx"))
    for n in (32, 48):
        x = x_nchw(2, n, n, seed=n)
        y = be.run(x)  # NCHW in and out although the file is NHWC
        assert y.shape == (2, 1, 4 * n, 4 * n)
        np.testing.assert_allclose(y, onnx.run(x), atol=1e-5)
    with pytest.raises(sr.ModelIOError, match=r"tiles of 32, 48 LR px, got 40x40"):
        be.run(x_nchw(1, 40, 40))
    assert be.describe()["runtime"] in ("ai-edge-litert", "tflite-runtime", "tensorflow")


def _lying_copy(tmp_path: Path, name: str, **changes) -> Path:
    """Copy a fixture with a card that misdescribes it (but a valid sha256)."""
    src = FIX / name
    dst = tmp_path / name
    shutil.copy(src, dst)
    card = dataclasses.replace(ModelCard.load(src), **changes)
    card.sha256 = sha256_path(dst)
    card.save(card_path_for(dst))
    return dst


@pytest.mark.parametrize("name", ["tiny_x4.onnx", "tiny_x4_fixed.tflite"])
def test_output_shape_is_always_checked(tmp_path, name):
    """A card that says x2 for an x4 file: the runtime's output shape gives it away."""
    p = _lying_copy(tmp_path, name, scale=2)
    up = sr.load(p)
    with pytest.raises(sr.ScopesrError, match=rf"{name}.*expected \(1, 1, 64, 64\)"):
        up.backend.run(x_nchw(1, 32, 32))


def test_tflite_card_size_without_signature(tmp_path):
    p = _lying_copy(tmp_path, "tiny_x4_fixed.tflite", tile_sizes=[32, 64])
    with pytest.raises(sr.CardError, match="no signature 'lr64'"):
        sr.load(p)


def test_backend_must_fit_the_artifact():
    with pytest.raises(sr.ScopesrError, match="tflite backend cannot run a .onnx"):
        sr.load(FIX / "tiny_x4.onnx", backend="tflite")
    with pytest.raises(sr.ScopesrError, match="not one of"):
        sr.load(FIX / "tiny_x4.onnx", backend="tensorrt")
    with pytest.raises(sr.ScopesrError, match="does not take option"):
        sr.load(FIX / "tiny_x4.onnx", dtype="bf16")


def test_safetensors_is_not_a_runtime_artifact(tmp_path):
    p = tmp_path / "w.safetensors"
    p.write_bytes(b"x")
    card = dataclasses.replace(
        ModelCard.load(FIX / "tiny_x4.onnx"), format="safetensors", artifact="w.safetensors", sha256=sha256_path(p)
    )
    card.save(card_path_for(p))
    with pytest.raises(sr.ScopesrError, match="sr-convert --target onnx"):
        sr.load(p)


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_coreml_elsewhere_is_a_clear_error(tmp_path):
    pkg = tmp_path / "m.mlpackage"
    pkg.mkdir()
    (pkg / "Manifest.json").write_text("{}")
    card = dataclasses.replace(
        ModelCard.load(FIX / "tiny_x4.onnx"), format="mlpackage", artifact="m.mlpackage", sha256=sha256_path(pkg)
    )
    card.save(card_path_for(pkg))
    with pytest.raises(sr.BackendUnavailable, match=r"only on macOS.*\.onnx or \.tflite"):
        sr.load(pkg)


# ---------------------------------------------------------------------------- missing runtimes
def test_missing_onnxruntime_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(sr.BackendUnavailable, match=r'pip install "scopesr\[edge\]".*onnxruntime'):
        sr.load(FIX / "tiny_x4.onnx")


def test_missing_tflite_runtimes_names_the_package(monkeypatch):
    for mod in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(sr.BackendUnavailable, match=r"ai-edge-litert"):
        sr.load(FIX / "tiny_x4_fixed.tflite")


def test_tflite_falls_back_to_next_runtime(monkeypatch):
    """ai-edge-litert missing: tflite-runtime / tensorflow.lite are tried, else a clear error."""
    from scopesr.sdk.backends import tflite_backend

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    try:
        _cls, pkg = tflite_backend.find_interpreter()
        assert pkg in ("tflite-runtime", "tensorflow")
    except sr.BackendUnavailable as exc:
        assert "ai-edge-litert: not installed" in str(exc)


def test_missing_torch_names_the_package(monkeypatch, tmp_path):
    p = tmp_path / "m.pt2"
    p.write_bytes(b"not really")
    card = dataclasses.replace(
        ModelCard.load(FIX / "tiny_x4.onnx"), format="pt2", artifact="m.pt2", sha256=sha256_path(p)
    )
    card.save(card_path_for(p))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(sr.BackendUnavailable, match=r"scopesr\[train\]"):
        sr.load(p)


# ---------------------------------------------------------------------------- torch (.pt2)
def test_torch_backend_matches_onnx(tmp_path, fixture_script):
    p = fixture_script.export_pt2(tmp_path)
    up = sr.load(p, device="cpu")
    assert up.backend.name == "torch" and up.backend.dynamic
    ref = sr.load(FIX / "tiny_x4.onnx")
    img = np.random.default_rng(2).random((45, 38), dtype=np.float32)
    np.testing.assert_allclose(up.upscale(img, tile=16), ref.upscale(img), atol=1e-5, rtol=0)
    cl = sr.load(p, device="cpu", channels_last=True, num_threads=1)
    np.testing.assert_allclose(cl.upscale(img), ref.upscale(img), atol=1e-5, rtol=0)
    bf = sr.load(p, device="cpu", dtype="bf16")
    assert bf.describe()["backend"]["dtype"] == "bfloat16"
    out = bf.upscale(img)
    # bf16 has an 8-bit mantissa: ~1e-2 relative error is expected, a wrong model is far off
    assert np.abs(out - ref.upscale(img)).max() < 0.1
    with pytest.raises(sr.ScopesrError, match="dtype 'int4'"):
        sr.load(p, device="cpu", dtype="int4")


def test_onnx_fixed_batch_file_is_fed_one_at_a_time(tmp_path):
    """An ONNX export traced with batch 1 (a fixed N) still takes batched tiles."""
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(FIX / "tiny_x4.onnx"))
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_value = 1
    p = tmp_path / "b1.onnx"
    onnx.save(m, str(p))
    card = dataclasses.replace(ModelCard.load(FIX / "tiny_x4.onnx"), artifact=p.name, sha256=sha256_path(p))
    card.save(card_path_for(p))
    up = sr.load(p)
    assert up.backend.fixed_batch == 1 and up.backend.default_batch == 1
    x = x_nchw(3, 10, 12)
    ref = open_backend(FIX / "tiny_x4.onnx", ModelCard.load(FIX / "tiny_x4.onnx")).run(x)
    np.testing.assert_allclose(up.backend.run(x), ref, atol=1e-6)


@pytest.mark.gpu
def test_torch_backend_cuda(tmp_path, fixture_script):
    """On a GPU: fp32 (cuDNN may use TF32, hence 5e-3), fp16 and channels_last agree with ONNX."""
    p = fixture_script.export_pt2(tmp_path)
    ref = sr.load(FIX / "tiny_x4.onnx", device="cpu")
    img = np.random.default_rng(4).random((300, 270), dtype=np.float32)
    want = ref.upscale(img)
    up = sr.load(p, device="cuda")
    assert up.describe()["backend"]["device"] == "cuda"
    np.testing.assert_allclose(up.upscale(img, batch=8), want, atol=5e-3, rtol=0)
    half = sr.load(p, device="cuda", dtype="fp16", channels_last=True)
    assert np.abs(half.upscale(img) - want).max() < 0.05


def test_sdk_never_imports_torch_for_onnx_or_tflite():
    """Even where torch is installed, loading and running ONNX/TFLite artifacts leaves it unimported."""
    import subprocess

    code = (
        "import sys, numpy as np, scopesr.sdk as sr\n"
        f"for name in ('tiny_x4.onnx', 'tiny_x4_fixed.tflite'):\n"
        f"    sr.load(r'{FIX}/' + name).upscale(np.zeros((40, 40), np.uint16))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.slow
def test_fixture_script_rebuilds_the_same_models(tmp_path, fixture_script):
    """The committed fixtures are what make_fixtures.py makes today (real ONNX + TFLite conversion)."""
    pytest.importorskip("litert_torch")
    assert fixture_script.main(tmp_path) == 0
    img = np.random.default_rng(8).random((50, 61), dtype=np.float32)
    for name in ("tiny_x4.onnx", "tiny_x4_fixed.tflite", "tiny_x4_rgb.onnx"):
        a, b = sr.load(tmp_path / name), sr.load(FIX / name)
        x = img if a.card.in_channels == 1 else np.stack([img] * 3, axis=-1)
        np.testing.assert_allclose(a.upscale(x), b.upscale(x), atol=1e-5, rtol=0)
        assert a.card.halo == b.card.halo and a.card.tile_sizes == b.card.tile_sizes


def test_onnx_fp16_io_is_cast_at_the_edge(tmp_path):
    """An fp16 ONNX file whose inputs/outputs are float16 still takes and returns float32."""
    onnx = pytest.importorskip("onnx")
    f16 = pytest.importorskip("onnxruntime.transformers.float16")
    m = f16.convert_float_to_float16(onnx.load(str(FIX / "tiny_x4.onnx")), keep_io_types=False)
    p = tmp_path / "h.onnx"
    onnx.save(m, str(p))
    card = dataclasses.replace(
        ModelCard.load(FIX / "tiny_x4.onnx"), artifact=p.name, precision="fp16", sha256=sha256_path(p)
    )
    card.save(card_path_for(p))
    up = sr.load(p)
    assert up.backend.input_dtype == np.float16
    img = np.random.default_rng(1).random((30, 30), dtype=np.float32)
    out = up.upscale(img)
    assert out.dtype == np.float32
    assert np.abs(out - sr.load(FIX / "tiny_x4.onnx").upscale(img)).max() < 2e-2


# ---------------------------------------------------------------------------- threading
def _spin_entries(be) -> tuple[str, str]:
    so = be.session_options
    return (
        so.get_session_config_entry("session.intra_op.allow_spinning"),
        so.get_session_config_entry("session.inter_op.allow_spinning"),
    )


def test_onnx_session_carries_the_thread_rule(monkeypatch):
    """Read back from ORT's SessionOptions: threads = available cores, no spinning on <= 4 cores."""
    from scopesr.sdk import cpu

    card = ModelCard.load(FIX / "tiny_x4.onnx")
    monkeypatch.setattr(cpu, "available_cores", lambda: 2)
    be = open_backend(FIX / "tiny_x4.onnx", card)
    assert be.session_options.intra_op_num_threads == 2 and _spin_entries(be) == ("0", "0")
    d = be.describe()
    assert d["num_threads"] == 2 and d["spin"] is False and "spin off (2 cores <= 4)" in d["threading"]
    monkeypatch.setattr(cpu, "available_cores", lambda: 8)
    be = open_backend(FIX / "tiny_x4.onnx", card)
    assert be.session_options.intra_op_num_threads == 8 and _spin_entries(be) == ("1", "1")


def test_onnx_session_takes_the_callers_threads_and_spin():
    card = ModelCard.load(FIX / "tiny_x4.onnx")
    be = open_backend(FIX / "tiny_x4.onnx", card, num_threads=3, spin=True)
    assert be.session_options.intra_op_num_threads == 3 and _spin_entries(be) == ("1", "1")
    be = sr.load(FIX / "tiny_x4.onnx", num_threads=1, spin=False).backend
    assert be.session_options.intra_op_num_threads == 1 and _spin_entries(be) == ("0", "0")
    assert be.describe()["spin"] is False and be.run(x_nchw(1, 8, 8)).shape == (1, 1, 32, 32)
    with pytest.raises(sr.InputError, match="spin"):
        sr.load(FIX / "tiny_x4.onnx", spin="off")


def _capture_interpreter(monkeypatch) -> list[dict]:
    """Wrap the TFLite Interpreter class to record the keywords the backend opens it with."""
    from scopesr.sdk.backends import tflite_backend

    real, pkg = tflite_backend.find_interpreter()
    seen: list[dict] = []

    def spy(**kw):
        seen.append(kw)
        return real(**kw)

    monkeypatch.setattr(tflite_backend, "find_interpreter", lambda: (spy, pkg))
    return seen


def test_tflite_interpreter_gets_the_thread_count(monkeypatch, caplog):
    from scopesr.sdk import cpu

    seen = _capture_interpreter(monkeypatch)
    card = ModelCard.load(FIX / "tiny_x4_fixed.tflite")
    monkeypatch.setattr(cpu, "available_cores", lambda: 2)
    be = open_backend(FIX / "tiny_x4_fixed.tflite", card)
    assert seen[-1]["num_threads"] == 2 and be.describe()["num_threads"] == 2
    assert be.describe()["spin"] is None  # XNNPACK's pool: not settable from Python
    be = open_backend(FIX / "tiny_x4_fixed.tflite", card, num_threads=1)
    assert seen[-1]["num_threads"] == 1
    with caplog.at_level("WARNING"):
        open_backend(FIX / "tiny_x4_fixed.tflite", card, spin=False)
    assert "no effect with TFLite" in caplog.text


def test_sr_upscale_threads_and_spin_reach_the_backend(monkeypatch):
    """sr-upscale --threads/--spin: the ONNX session opens with them (read back), and --describe says so."""
    from click.testing import CliRunner

    from scopesr.sdk import cli
    from scopesr.sdk.backends import onnx_backend

    opened: list = []
    real_init = onnx_backend.OnnxBackend.__init__

    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        opened.append(self)

    monkeypatch.setattr(onnx_backend.OnnxBackend, "__init__", spy)
    model = str(FIX / "tiny_x4.onnx")
    res = CliRunner().invoke(cli.main, ["--model", model, "--threads", "1", "--spin", "--describe"])
    assert res.exit_code == 0, res.output
    assert opened[-1].session_options.intra_op_num_threads == 1 and _spin_entries(opened[-1]) == ("1", "1")
    assert "threads: 1" in res.output and "spin on (asked)" in res.output
    res = CliRunner().invoke(cli.main, ["--model", model, "--threads", "3", "--no-spin", "--describe"])
    assert res.exit_code == 0, res.output
    assert opened[-1].session_options.intra_op_num_threads == 3 and _spin_entries(opened[-1]) == ("0", "0")


def test_demo_pi_threads_and_spin_reach_the_backend():
    run_py = Path(__file__).resolve().parents[2] / "demo_pi" / "run.py"
    spec = importlib.util.spec_from_file_location("scopesr_demo_pi_run", run_py)
    demo_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_run)  # demo_pi is a script folder, not a package
    be = demo_run.load_upscaler(FIX / "tiny_x4.onnx", "onnx", threads=1, spin=True).backend
    assert be.session_options.intra_op_num_threads == 1 and _spin_entries(be) == ("1", "1")
    be = demo_run.load_upscaler(FIX / "tiny_x4.onnx", "onnx").backend
    assert be.num_threads == be.threading.cores and be.spin is (be.threading.cores > 4)
