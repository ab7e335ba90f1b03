"""OME-Zarr in and out, and seam-free SR on Dask: a real LocalCluster of 2 worker
processes on a real image, compared with the single-process SDK.

The cluster tests need the ``cluster`` extra (dask, distributed, zarr, ome-zarr); each skips
without it, so the torch-free edge env (which has none of them) runs only the first tests,
which check that the SDK imports and fails clearly without them. Run with ``nice -n 10``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import scopesr.sdk as sr
from scopesr.sdk.errors import DependencyError, ModelIOError, OutputError

TIMEOUT = 600  # seconds for one cluster test: a starved 2-core machine is slow, a hang is a failure


def _need_cluster() -> None:
    for mod in ("dask", "distributed", "zarr", "ome_zarr", "ome_zarr_models"):
        pytest.importorskip(mod)


@pytest.fixture(scope="module")
def model(fixtures_dir) -> Path:
    return fixtures_dir / "tiny_x4.onnx"


@pytest.fixture(scope="module")
def up(model):
    return sr.load(model)


@pytest.fixture(scope="module")
def nuclei(real_image) -> np.ndarray:
    """512x512 uint16 fluorescence nuclei (stardist's sample, BSD-3)."""
    return tifffile.imread(real_image("stardist-nuclei-2d"))


# ---------------------------------------------------------------------------- without the extra
@pytest.mark.edge
def test_sdk_imports_without_dask_and_a_missing_package_names_the_extra(monkeypatch, tmp_path):
    import scopesr.sdk.dask as srd
    from scopesr.sdk import zarr_io

    for mod in ("zarr", "dask", "dask.array", "distributed", "ome_zarr", "ome_zarr.reader", "ome_zarr.io"):
        monkeypatch.setitem(sys.modules, mod, None)  # importing it now raises ImportError
    (tmp_path / "in.zarr").mkdir()
    (tmp_path / "in.zarr" / "zarr.json").write_text("{}")
    with pytest.raises(DependencyError, match=r'pip install "scopesr\[cluster\]"'):
        zarr_io.read_ome_zarr(tmp_path / "in.zarr")
    with pytest.raises(DependencyError, match="cluster"):
        with srd.dask_client(workers=2):
            pass


@pytest.mark.edge
def test_import_scopesr_sdk_stays_light():
    import subprocess

    code = (
        "import sys, scopesr.sdk, scopesr.sdk.dask, scopesr.sdk.zarr_io; "
        "print(sorted(m for m in ('dask', 'distributed', 'zarr', 'ome_zarr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.edge
def test_blocks_never_shorter_than_the_halo():
    from scopesr.sdk.dask import axis_chunks

    assert axis_chunks(512, 100, 4) == (100, 100, 100, 100, 100, 12)  # 12 >= the halo: its own block
    assert axis_chunks(512, 170, 6) == (170, 170, 172)  # 2 left: merged into the last block
    assert axis_chunks(512, 512, 4) == (512,)
    assert axis_chunks(300, 512, 4) == (300,)
    assert sum(axis_chunks(1001, 64, 9)) == 1001


@pytest.mark.edge
def test_default_blocks_and_output_chunks():
    from scopesr.sdk.dask import default_chunk, output_chunk

    assert default_chunk(None) == 512
    assert default_chunk(256) == 512 and default_chunk(100) == 600  # whole input chunks per block
    assert default_chunk(1024) == 1024 and default_chunk(4096) == 1024  # bounded memory per block
    assert output_chunk(2048) == 1024 and output_chunk(1200) == 600 and output_chunk(400) == 400


@pytest.mark.parametrize("artifact", ["tiny_x4_fixed.tflite", "tiny_x4_rect.tflite"])
def test_fixed_size_artifacts_equal_one_process(fixtures_dir, nuclei, artifact):
    """TFLite windows (32/48, 24x40/32x32): blocks hold at least one window, so no padding appears
    inside the image, and the result is the single-process one (Dask's synchronous scheduler)."""
    pytest.importorskip("dask")
    import scopesr.sdk.dask as srd

    try:
        fixed = sr.load(fixtures_dir / artifact)
    except sr.BackendUnavailable as exc:
        pytest.skip(str(exc))
    img = nuclei[:300, :280]
    ref = fixed.upscale(img)
    for chunk in (20, 150, 300):  # 20 < a window: raised to one window
        np.testing.assert_array_equal(srd.upscale(img, fixed, chunk=chunk).compute(scheduler="sync"), ref)


# ---------------------------------------------------------------------------- OME-Zarr round trip
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_round_trip_read_back_with_the_ome_zarr_reader(tmp_path, up, nuclei, version):
    """TIFF-like array -> OME-Zarr input (channel names, pixel size) -> upscaled OME-Zarr, read
    back with ome-zarr's own Reader and validated by ome-zarr-models."""
    _need_cluster()
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models import open_ome_zarr

    import scopesr.sdk.dask as srd
    from scopesr.sdk import zarr_io

    lr = np.stack([nuclei, nuclei[::-1, ::-1]])  # C, Y, X
    src = zarr_io.write_ome_zarr(
        tmp_path / "in.ome.zarr",
        lr,
        "CYX",
        chunk=128,
        version=version,
        channel_names=["DAPI", "flipped"],
        scale=[1.0, 0.5, 0.25],
        units={"Y": "micrometer", "X": "micrometer"},
    )
    rep = srd.upscale_to_ome_zarr(src, tmp_path / "out.ome.zarr", up)
    assert rep.levels >= 2 and rep.skipped == 0
    assert ((tmp_path / "out.ome.zarr" / "zarr.json").exists()) == (version == "0.5")  # zarr v3 vs v2

    node = next(iter(Reader(parse_url(str(tmp_path / "out.ome.zarr")))()))
    axes = node.metadata["axes"]
    assert [a["name"] for a in axes] == ["c", "y", "x"]
    assert [a.get("unit") for a in axes] == [None, "micrometer", "micrometer"]
    assert node.metadata["channel_names"] == ["DAPI", "flipped"]
    cts = node.metadata["coordinateTransformations"]
    scale0 = next(t["scale"] for t in cts[0] if t["type"] == "scale")
    assert scale0 == pytest.approx([1.0, 0.5 / 4, 0.25 / 4])  # physical pixel size divided by the scale
    scale1 = next(t["scale"] for t in cts[1] if t["type"] == "scale")
    assert scale1 == pytest.approx([1.0, 0.25, 0.125])  # the pyramid doubles it per level
    data = node.data
    assert data[0].shape == (2, 2048, 2048) and data[0].dtype == np.uint16
    assert data[1].shape == (2, 1024, 1024)
    np.testing.assert_array_equal(np.asarray(data[0]), up.upscale(lr, axes="CYX"))
    assert np.asarray(data[1]).mean() == pytest.approx(np.asarray(data[0]).mean(), rel=2e-2)  # 2x2 means
    model = open_ome_zarr(zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r"))  # NGFF-valid
    assert type(model).__module__.startswith(f"ome_zarr_models.v0{version[-1]}")


def test_tiff_to_ome_zarr_through_the_cli(tmp_path, model, up, real_image):
    """sr-upscale IMAGE.tif -o OUT --format ome-zarr: one process, the ImageJ z spacing, unit
    and the XY resolution carried over (XY size / 4)."""
    _need_cluster()
    from click.testing import CliRunner
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from scopesr.sdk.cli import main

    stack = tifffile.imread(real_image("napari-nuclei"))[:3, :96, :80]  # ZYX uint16
    src = tmp_path / "stack.tif"
    tifffile.imwrite(
        src,
        stack,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "ZYX", "spacing": 0.5, "unit": "micron"},
    )
    res = CliRunner().invoke(
        main,
        [str(src), "-o", str(tmp_path / "out"), "--format", "ome-zarr", "--model", str(model), "--chunk", "32", "-q"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "out" / "stack_x4.ome.zarr"
    node = next(iter(Reader(parse_url(str(out)))()))
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert [a.get("unit") for a in node.metadata["axes"]] == ["micrometer"] * 3
    scale0 = next(t["scale"] for t in node.metadata["coordinateTransformations"][0] if t["type"] == "scale")
    assert scale0 == pytest.approx([0.5, 0.05, 0.05])
    np.testing.assert_array_equal(np.asarray(node.data[0]), up.upscale(stack, axes="ZYX"))
    # the same command again: the finished result is not replaced without --overwrite
    res = CliRunner().invoke(
        main,
        [str(src), "-o", str(tmp_path / "out"), "--format", "ome-zarr", "--model", str(model), "--chunk", "32", "-q"],
        catch_exceptions=False,
    )
    assert res.exit_code == 1 and "--overwrite" in res.output


# ---------------------------------------------------------------------------- on a cluster
@pytest.fixture(scope="module")
def client():
    """A real LocalCluster: 2 worker processes of 1 thread each."""
    _need_cluster()
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("chunk", [100, 512, 200], ids=["smaller", "equal", "not-dividing"])
def test_dask_equals_one_process_bit_for_bit(client, up, model, nuclei, chunk):
    import scopesr.sdk.dask as srd

    hr = srd.upscale(nuclei, model, chunk=chunk)
    assert hr.chunks[0][0] == min(chunk, 512) * 4  # chunk-aligned: LR chunk x scale
    got = client.compute(hr).result()
    np.testing.assert_array_equal(got, up.upscale(nuclei))  # ONNX fp32: bit-identical
    # statistics once per plane (one task for the whole image), not per block
    keys = [str(k[0] if isinstance(k, tuple) else k) for k in hr.__dask_graph__()]
    assert sum(k.startswith("scopesr-stats") for k in keys) == 1


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_stack_and_float_through_the_cluster(client, up, model, real_image):
    import scopesr.sdk.dask as srd

    stack = tifffile.imread(real_image("napari-nuclei"))[:4, :100, :90]
    np.testing.assert_array_equal(
        client.compute(srd.upscale(stack, model, axes="ZYX", chunk=48)).result(), up.upscale(stack, axes="ZYX")
    )
    f = stack[1].astype(np.float32) / 7.0
    np.testing.assert_array_equal(client.compute(srd.upscale(f, model, chunk=40)).result(), up.upscale(f))


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_ome_zarr_on_the_cluster_loads_the_model_once_per_worker(client, tmp_path, up, model, nuclei):
    import scopesr.sdk.dask as srd
    from scopesr.sdk import zarr_io

    src = zarr_io.write_ome_zarr(tmp_path / "in.ome.zarr", nuclei, "YX", chunk=64)
    before = client.run(srd.model_loads)
    rep = srd.upscale_to_ome_zarr(src, tmp_path / "out.ome.zarr", model, scheduler=client, chunk=64)
    assert rep.workers == 2 and rep.level0_blocks == 64 and rep.written >= 64
    loads = {w: n - before.get(w, 0) for w, n in rep.model_loads.items()}
    assert set(loads.values()) <= {0, 1}  # at most one load per worker process, not one per chunk
    assert all(n == 1 for n in rep.model_loads.values())  # the earlier tests' runs used the same model
    threads = [m["num_threads"] for ms in client.run(srd.worker_models).values() for m in ms]
    cpus = srd.usable_cpus()
    assert threads and all(t == max(1, cpus // 2) for t in threads)  # 2 workers share the host's CPUs
    out = zarr_io.read_ome_zarr(tmp_path / "out.ome.zarr")
    np.testing.assert_array_equal(out.array.compute(), up.upscale(nuclei))


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_interrupted_run_resumes_skipping_written_chunks(client, tmp_path, up, model, nuclei):
    import scopesr.sdk.dask as srd
    from scopesr.sdk import zarr_io

    lr = nuclei[:256, 128:384]
    src = zarr_io.write_ome_zarr(tmp_path / "in.ome.zarr", lr, "YX", chunk=128, version="0.5")
    done = []

    def stop_after_5() -> None:
        done.append(1)
        if len(done) == 5:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run

    with pytest.raises(KeyboardInterrupt):
        srd.upscale_to_ome_zarr(
            src, tmp_path / "out.ome.zarr", model, scheduler=client, chunk=64, on_chunk=stop_after_5
        )
    with pytest.raises(OutputError, match="different run"):  # other parameters: refused, not mixed
        srd.upscale_to_ome_zarr(src, tmp_path / "out.ome.zarr", model, scheduler=client, chunk=32)
    rep = srd.upscale_to_ome_zarr(src, tmp_path / "out.ome.zarr", model, scheduler=client, chunk=64)
    assert rep.resumed and rep.skipped >= 5  # the blocks written before the interruption
    fresh = srd.upscale_to_ome_zarr(src, tmp_path / "fresh.ome.zarr", model, scheduler=client, chunk=64)
    assert fresh.skipped == 0 and fresh.written == rep.written + rep.skipped
    assert _tree_digest(tmp_path / "out.ome.zarr") == _tree_digest(tmp_path / "fresh.ome.zarr")  # same bytes


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_bad_chunks_are_named(client, tmp_path, up, model, nuclei):
    import dask.array as da

    import scopesr.sdk.dask as srd

    f = nuclei.astype(np.float32)
    f[300, 150] = np.nan
    with pytest.raises(ModelIOError, match=r"chunk \(y 256:384, x 128:256\) of image: contains NaN"):
        client.compute(srd.upscale(f, model, chunk=128)).result()

    def odd_block(b, block_info=None):
        loc = block_info[0]["chunk-location"]
        return b.astype(np.int32) if loc == (1, 2) else b  # one chunk of the wrong type

    base = da.from_array(nuclei, chunks=128)
    bad = base.map_blocks(odd_block, dtype=np.uint16)
    with pytest.raises(
        ModelIOError,
        match=r"chunk \(y 128:256, x 256:384\) of scan: pixel type int32, but the "
        "image is uint16",
    ):
        client.compute(srd.upscale(bad, model, chunk=128, name="scan")).result()


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_a_killed_worker_does_not_fail_the_job(tmp_path, up, model, nuclei):
    """SIGKILL one of two worker processes mid-run: Dask re-runs its tasks on the other (and
    on the one the nanny restarts), and the output is complete and equal."""
    _need_cluster()
    from distributed import Client, LocalCluster

    import scopesr.sdk.dask as srd
    from scopesr.sdk import zarr_io

    lr = nuclei[128:384, 64:448]
    src = zarr_io.write_ome_zarr(tmp_path / "in.ome.zarr", lr, "YX", chunk=64)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        ) as cluster,
        Client(cluster) as c,
    ):
        pids = c.run(os.getpid)
        victim = sorted(pids.values())[0]
        done = []

        def kill_one() -> None:
            done.append(1)
            if len(done) == 4:
                os.kill(victim, signal.SIGKILL)

        rep = srd.upscale_to_ome_zarr(src, tmp_path / "out.ome.zarr", model, scheduler=c, chunk=64, on_chunk=kill_one)
        assert len(done) == rep.written and rep.skipped == 0
        assert victim not in c.run(os.getpid).values()  # it really died (the nanny started another)
    out = zarr_io.read_ome_zarr(tmp_path / "out.ome.zarr")
    np.testing.assert_array_equal(out.array.compute(), up.upscale(lr))
