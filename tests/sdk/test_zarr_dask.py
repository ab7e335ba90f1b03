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


def test_ome_zarr_result_keeps_the_inputs_channels_and_metadata(tmp_path, model, up, nuclei):
    """OME-Zarr in, OME-Zarr out (sr-upscale, auto format): the omero block (labels, colours,
    display windows), the name, the units, the pixel size / 4 and the translation moved so that
    the result covers the same area."""
    _need_cluster()
    import zarr
    from click.testing import CliRunner

    from scopesr.sdk import zarr_io
    from scopesr.sdk.cli import main

    lr = np.stack([nuclei[:64, :80], nuclei[64:128, :80]])[None]  # Z, C, Y, X -> written as C, Z, Y, X
    src = zarr_io.write_ome_zarr(
        tmp_path / "cells.ome.zarr",
        lr,
        "ZCYX",
        chunk=32,
        name="cells",
        scale=[2.0, 1.0, 0.4, 0.4],
        units={"Z": "micrometer", "Y": "micrometer", "X": "micrometer"},
    )
    g = zarr.open_group(str(src), mode="r+")
    omero = {
        "channels": [
            {"label": "DAPI", "color": "0000FF", "window": {"min": 0, "max": 4095, "start": 10, "end": 900}},
            {"label": "GFP", "color": "00FF00", "window": {"min": 0, "max": 4095, "start": 5, "end": 700}},
        ],
        "rdefs": {"model": "color"},
    }
    g.attrs["omero"] = omero
    ms = g.attrs["multiscales"]
    ms[0]["datasets"][0]["coordinateTransformations"].append({"type": "translation", "translation": [0, 0, 10, 20]})
    g.attrs["multiscales"] = ms
    res = CliRunner().invoke(main, [str(src), "-o", str(tmp_path / "out"), "--model", str(model), "-q"])
    assert res.exit_code == 0, res.output
    out = zarr_io.read_ome_zarr(tmp_path / "out" / "cells_x4.ome.zarr")
    ngff = out.metadata["ngff"]
    assert out.axes == "CZYX" and out.shape == (2, 1, 256, 320)
    assert ngff["name"] == "cells"
    assert ngff["omero"]["channels"] == [{**c, "active": True} for c in omero["channels"]]  # "active" filled in
    assert ngff["omero"]["rdefs"] == omero["rdefs"] and ngff["channel_names"] == ["DAPI", "GFP"]
    assert ngff["units"] == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
    assert ngff["scale"] == pytest.approx([1.0, 2.0, 0.1, 0.1])
    # the first HR pixel centre sits 1.5 HR pixels before the first LR centre: (0.1 - 0.4) / 2
    assert ngff["translation"] == pytest.approx([0.0, 0.0, 10 - 0.15, 20 - 0.15])
    np.testing.assert_array_equal(np.asarray(out.array), up.upscale(lr.transpose(1, 0, 2, 3), axes="CZYX"))


def test_ome_zarr_to_tiff_through_the_cli_and_the_sdk(tmp_path, model, up, nuclei):
    """sr-upscale IN.ome.zarr --format tiff, and sr.read_image + sr.write_image: an ImageJ
    TIFF in TZCYX order with the values of one process, the pixel size / 4, unit and z
    spacing; both write the same pixels and metadata."""
    _need_cluster()
    from click.testing import CliRunner

    from scopesr.sdk import zarr_io
    from scopesr.sdk.cli import main

    lr = np.stack([nuclei[:48, :40], nuclei[100:148, 200:240][::-1]])  # C, Y, X
    lr = np.stack([lr, lr // 2, lr[:, ::-1]], axis=1)  # C, Z, Y, X (NGFF order)
    src = zarr_io.write_ome_zarr(
        tmp_path / "stack.ome.zarr",
        lr,
        "CZYX",
        chunk=32,
        version="0.5",
        channel_names=["a", "b"],
        scale=[1.0, 1.5, 0.5, 0.5],
        units={"Z": "micrometer", "Y": "micrometer", "X": "micrometer"},
    )
    res = CliRunner().invoke(
        main, [str(src), "-o", str(tmp_path / "out"), "--format", "tiff", "--model", str(model), "-q", "--compare"]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stack_compare.png", "stack_x4.tif"]
    want = up.upscale(lr.transpose(1, 0, 2, 3), axes="ZCYX")  # ImageJ order
    with tifffile.TiffFile(tmp_path / "out" / "stack_x4.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZCYX"
        np.testing.assert_array_equal(tif.asarray(), want)
        ij = tif.imagej_metadata
        assert ij["unit"] == "micron" and ij["spacing"] == pytest.approx(1.5)
        xres = tif.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(8.0)  # pixels per micron: 1 / (0.5 / 4)
    # the streamed path (--stream-above 0: plane by plane, band by band) writes the same pixels
    res = CliRunner().invoke(
        main,
        [str(src), "-o", str(tmp_path / "streamed"), "--format", "tiff", "--model", str(model), "-q"]
        + ["--stream-above", "0"],
    )
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "streamed" / "stack_x4.tif"), want)
    # the SDK: read_image opens the OME-Zarr lazily in TZCYX order, write_image keeps its pixel size
    img = sr.read_image(src)
    assert img.axes == "ZCYX" and img.format == "ome-zarr" and img.shape == (3, 2, 48, 40)
    hr = up.upscale(img.array, axes=img.axes)
    sr.write_image(tmp_path / "sdk.tif", hr, img.axes, img.metadata, scale=up.scale)
    with tifffile.TiffFile(tmp_path / "sdk.tif") as a, tifffile.TiffFile(tmp_path / "out" / "stack_x4.tif") as b:
        np.testing.assert_array_equal(a.asarray(), b.asarray())
        assert a.imagej_metadata == b.imagej_metadata
        assert a.pages[0].tags["XResolution"].value == b.pages[0].tags["XResolution"].value
    # a pixel budget applies to OME-Zarr inputs too, and OME-Zarr results need OME-Zarr runs
    with pytest.raises(sr.ImageError, match="more than the limit"):
        sr.read_image(src, max_pixels=1000)
    res = CliRunner().invoke(main, [str(src), "-o", str(tmp_path / "x"), "--format", "tiff", "--workers", "2"])
    assert res.exit_code == 2 and "--format tiff runs in this process" in res.output


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on a free 127.0.0.1 port (byte ranges answered, as object
    stores do): yields (folder, base URL)."""
    import functools
    import http.server
    import threading

    try:
        from RangeHTTPServer import RangeRequestHandler as handler  # comes with ome-zarr
    except ImportError:
        handler = http.server.SimpleHTTPRequestHandler

    class Quiet(handler):  # type: ignore[misc,valid-type]
        def log_message(self, *args):
            pass

    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_read_an_ome_zarr_over_http(http_root, tmp_path, up, model, nuclei, version):
    """An OME-Zarr served over HTTP reads as the same image (metadata and pixels) through the
    SDK, upscales into a local OME-Zarr equal to one process, and bad addresses are named."""
    _need_cluster()
    import socket

    import scopesr.sdk.dask as srd
    from scopesr.sdk import zarr_io

    root, base = http_root
    lr = np.stack([nuclei[:96, :64], nuclei[96:192, :64]])
    zarr_io.write_ome_zarr(
        root / "cells.ome.zarr",
        lr,
        "CYX",
        chunk=32,
        version=version,
        channel_names=["DAPI", "GFP"],
        scale=[1.0, 0.3, 0.3],
        units={"Y": "micrometer", "X": "micrometer"},
    )
    url = f"{base}/cells.ome.zarr"
    remote = zarr_io.read_ome_zarr(url + "/")
    local = zarr_io.read_ome_zarr(root / "cells.ome.zarr")
    assert remote.path is None and remote.metadata["ngff"]["url"] == url
    for key in ("version", "axes", "scale", "units", "name", "channel_names", "omero", "chunks"):
        assert remote.metadata["ngff"][key] == local.metadata["ngff"][key], key
    np.testing.assert_array_equal(np.asarray(remote.array), lr)
    assert sr.read_image(url).axes == "CYX"

    rep = srd.upscale_to_ome_zarr(url, tmp_path / "out.ome.zarr", model, chunk=32)
    out = zarr_io.read_ome_zarr(tmp_path / "out.ome.zarr")
    assert rep.written >= 9 and out.metadata["ngff"]["channel_names"] == ["DAPI", "GFP"]
    assert out.metadata["ngff"]["scale"] == pytest.approx([1.0, 0.075, 0.075])
    np.testing.assert_array_equal(np.asarray(out.array), up.upscale(lr, axes="CYX"))

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/cells.ome.zarr"
    with pytest.raises(sr.ImageError, match="cannot reach the server"):
        zarr_io.read_ome_zarr(dead)
    with pytest.raises(sr.ImageError, match="no zarr group at this address"):
        zarr_io.read_ome_zarr(f"{base}/missing.ome.zarr")
    with pytest.raises(sr.ImageError, match="cannot reach the server"):
        srd.upscale_to_ome_zarr(dead, tmp_path / "never.ome.zarr", up)
    with pytest.raises(OutputError, match="not a URL"):
        srd.upscale_to_ome_zarr(url, f"{base}/result.ome.zarr", up)
    assert not (tmp_path / "never.ome.zarr").exists()
    # sr-upscale takes local paths: a URL is refused with a message saying how to read it
    from click.testing import CliRunner

    from scopesr.sdk.cli import main

    res = CliRunner().invoke(main, [url, "-o", str(tmp_path / "cli"), "--model", str(model)])
    assert res.exit_code == 1 and f"{url}: sr-upscale reads local files" in res.output


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
