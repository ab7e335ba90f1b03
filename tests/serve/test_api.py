"""sr-serve's HTTP API through the framework's test client: results, limits, refusals, headers."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from serve_helpers import SAMPLE, mjpeg_frames

import scopesr.sdk as sr
from scopesr.serve import ServeConfig, create_app

pytest.importorskip("fastapi", reason="sr-serve needs the serve extra: pip install -e '.[serve]'")
pytestmark = pytest.mark.edge


def client(upscaler, frames=None, **cfg):
    from fastapi.testclient import TestClient

    app = create_app(upscaler, ServeConfig(**cfg), live_frames=frames, live_name="test")
    return TestClient(app)


def tiff_bytes(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, a, **kw)
    return buf.getvalue()


def png_bytes(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _decoded_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def c(upscaler):
    with client(upscaler) as cl:
        yield cl


def test_health_and_model_summary(c):
    assert c.get("/healthz").json()["status"] == "ok"
    m = c.get("/v1/model").json()
    bundled = json.loads((Path(sr.__file__).parent / "models" / "default.card.json").read_text())
    assert m["scale"] == 4 and m["halo"] == bundled["halo"] and m["name"]
    assert m["cost"] == {
        "params": bundled["extra"]["params"],
        "macs_per_lr_pixel": bundled["extra"]["macs_per_lr_pixel"],
    }
    assert m["training"]["sources"] and all("source" in s for s in m["training"]["sources"])
    # the bundled default is a quantisation-aware fine-tune of earlier runs: both show
    assert m["training"]["quant_aware"] is True and m["training"]["started_from_steps"] > 0
    # every stage, oldest first, ending with this one
    stages = m["training"]["stages"]
    last = bundled["training"]
    assert len(stages) >= 2 and stages[-1] == {
        "mode": last["mode"],
        "steps": m["training"]["steps"],
        "depth": bundled["arch_args"]["depth"],
        "quant_aware": True,
        "teacher_ensemble": last.get("teacher_ensemble"),
        "self_distilled": bool(last.get("teacher_sha256")) and last["teacher_sha256"] == last["init_from"]["sha256"],
    }
    assert stages[-2]["steps"] == m["training"]["started_from_steps"]
    assert stages[0]["mode"] == "pretrain" and stages[0]["self_distilled"] is False
    assert "bicubic" in m["heldout"] and isinstance(m["heldout"]["bicubic"]["gain_db_vs_bicubic"], float)
    assert m["limits"]["max_pixels"] == ServeConfig().max_pixels


def test_upscale_equals_the_sdk_for_each_kind_of_input(c, upscaler):
    rng = np.random.default_rng(1)
    cases = {
        "16-bit TIFF": (tiff_bytes(tifffile.imread(SAMPLE)), tifffile.imread(SAMPLE), None),
        "8-bit PNG": (png_bytes(a8 := rng.integers(0, 255, (40, 56), np.uint8)), a8, None),
        "JPEG": (jpeg_bytes(a8), _decoded_jpeg(jpeg_bytes(a8)), None),
        "RGB PNG": (png_bytes(rgb := rng.integers(0, 255, (24, 32, 3), np.uint8)), rgb, "YXC"),
        "stack": (tiff_bytes(st := rng.integers(0, 4000, (3, 32, 40), np.uint16), photometric="minisblack"), st, "ZYX"),
    }
    for what, (body, arr, axes) in cases.items():
        r = c.post("/v1/upscale", content=body)
        assert r.status_code == 200, (what, r.text)
        assert r.headers["content-type"] == "image/tiff"
        out = tifffile.imread(io.BytesIO(r.content))
        ref = upscaler.upscale(arr, axes=axes)
        assert out.dtype == arr.dtype and np.array_equal(out, ref), what


def test_ensemble_query_equals_the_sdks_ensemble(c, upscaler):
    arr = tifffile.imread(SAMPLE)
    r = c.post("/v1/upscale?ensemble=4", content=tiff_bytes(arr))
    assert r.status_code == 200, r.text
    out = tifffile.imread(io.BytesIO(r.content))
    assert np.array_equal(out, upscaler.upscale(arr, ensemble=4))
    assert not np.array_equal(out, upscaler.upscale(arr))  # the query is not ignored
    j = c.post("/v1/jobs?ensemble=2", content=tiff_bytes(arr)).json()
    assert j["ensemble"] == 2
    c.delete(f"/v1/jobs/{j['id']}")


def test_strength_query_equals_the_sdks_strength(c, upscaler):
    arr = tifffile.imread(SAMPLE)
    r = c.post("/v1/upscale?strength=0.5", content=tiff_bytes(arr))
    assert r.status_code == 200, r.text
    out = tifffile.imread(io.BytesIO(r.content))
    assert np.array_equal(out, upscaler.upscale(arr, strength=0.5))
    assert not np.array_equal(out, upscaler.upscale(arr))  # the query is not ignored
    j = c.post("/v1/jobs?strength=0.75&ensemble=2", content=tiff_bytes(arr)).json()
    assert j["strength"] == 0.75 and j["ensemble"] == 2
    c.delete(f"/v1/jobs/{j['id']}")


@pytest.mark.parametrize("bad", ["-0.5", "2.5", "nan", "strong"])
def test_a_bad_strength_is_refused_with_the_range(c, bad):
    r = c.post(f"/v1/upscale?strength={bad}", content=SAMPLE.read_bytes())
    assert r.status_code == 400 and "from 0 (bicubic) to 2" in r.json()["detail"] and bad in r.json()["detail"]


@pytest.mark.parametrize("bad", ["3", "0", "eight", "-4"])
def test_a_bad_ensemble_is_refused_with_the_choices(c, bad):
    r = c.post(f"/v1/upscale?ensemble={bad}", content=SAMPLE.read_bytes())
    assert r.status_code == 400 and "1, 2, 4, 8" in r.json()["detail"] and bad in r.json()["detail"]


def test_ensemble_refused_for_a_result_written_in_bands(upscaler):
    from scopesr.serve.jobs import BANDED_ABOVE_PX

    side = int((BANDED_ABOVE_PX / 16) ** 0.5) + 8  # x4 result just over the banded threshold
    body = tiff_bytes(np.zeros((side, side), np.uint8))
    with client(upscaler, max_pixels=side * side) as cl:
        r = cl.post("/v1/jobs?ensemble=4", content=body)
        assert r.status_code == 413 and "bands" in r.json()["detail"] and "without ensemble" in r.json()["detail"]
        r = cl.post("/v1/jobs?strength=0.5", content=body)
        assert r.status_code == 413 and "without strength" in r.json()["detail"]
        assert cl.get("/healthz").json()["status"] == "ok"


def test_job_reports_progress_and_serves_previews(c):
    r = c.post("/v1/jobs", content=SAMPLE.read_bytes())
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    jid = r.json()["id"]
    for _ in range(300):
        j = c.get(f"/v1/jobs/{jid}").json()
        if j["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert j["state"] == "done", j
    assert j["output"]["shape"] == [512, 512] and j["output"]["dtype"] == "uint16"
    for panel, side in (("nearest", 128), ("bicubic", 512), ("model", 512)):
        p = c.get(j["panels"][panel])
        assert p.status_code == 200 and p.content[:8] == b"\x89PNG\r\n\x1a\n"
        from PIL import Image

        assert Image.open(io.BytesIO(p.content)).size == (side, side)
    assert tifffile.imread(io.BytesIO(c.get(j["result"]).content)).shape == (512, 512)
    assert c.delete(f"/v1/jobs/{jid}").status_code == 204
    assert c.get(f"/v1/jobs/{jid}").status_code == 404
    assert c.get("/v1/jobs/../../etc/passwd").status_code == 404
    assert c.get("/v1/jobs/" + "a" * 32 + "/model.png").status_code == 404


def test_big_images_go_band_by_band_with_progress(upscaler, monkeypatch):
    """Above the band threshold (lowered here) a job streams its result band by band, reports a
    rising progress and gives the same pixels as the whole-image call."""
    import scopesr.serve.jobs as jobs

    monkeypatch.setattr(jobs, "BANDED_ABOVE_PX", 1000)
    # the job waits after its first band until the poller has seen a progress between 0 and 1:
    # on a busy runner a free-running job may finish between two polls
    seen_mid = threading.Event()
    bands = upscaler.upscale_bands

    def bands_that_wait(*args, **kwargs):
        for k, item in enumerate(bands(*args, **kwargs)):
            yield item
            if k == 0:
                seen_mid.wait(60)

    monkeypatch.setattr(upscaler, "upscale_bands", bands_that_wait)
    rng = np.random.default_rng(3)
    img = rng.integers(0, 3000, (2, 300, 90), np.uint16)  # a stack: 2 planes of several bands each
    seen = []
    with client(upscaler) as cl:
        jid = cl.post("/v1/jobs", content=tiff_bytes(img, photometric="minisblack")).json()["id"]
        while (j := cl.get(f"/v1/jobs/{jid}").json())["state"] not in ("done", "failed"):
            seen.append(j["progress"])
            if 0 < j["progress"] < 1:
                seen_mid.set()
            time.sleep(0.01)
        assert j["state"] == "done", j
        out = tifffile.imread(io.BytesIO(cl.get(j["result"]).content))
    assert np.array_equal(out, upscaler.upscale(img, axes="ZYX"))
    assert seen == sorted(seen) and any(0 < p < 1 for p in seen), seen


def test_stack_previews_any_plane(c, upscaler):
    from PIL import Image

    rng = np.random.default_rng(5)
    st = rng.integers(0, 4000, (5, 24, 32), np.uint16)
    jid = c.post("/v1/jobs", content=tiff_bytes(st, photometric="minisblack")).json()["id"]
    while (j := c.get(f"/v1/jobs/{jid}").json())["state"] not in ("done", "failed"):
        time.sleep(0.05)
    assert j["preview"]["planes"] == 5 and j["preview"]["plane_index"] == 2
    sr = upscaler.upscale(st, axes="ZYX")
    for k in (0, 4):
        model = np.asarray(Image.open(io.BytesIO(c.get(f"{j['panels']['model']}?plane={k}").content)))
        near = np.asarray(Image.open(io.BytesIO(c.get(f"{j['panels']['nearest']}?plane={k}").content)))
        assert model.shape == (96, 128) and near.shape == (24, 32)
        # the plane shown is plane k: the model panel follows the result's plane k, not another one
        corr = [np.corrcoef(model.ravel(), sr[i].ravel())[0, 1] for i in range(5)]
        assert int(np.argmax(corr)) == k, corr
    assert c.get(f"{j['panels']['model']}?plane=5").status_code == 422
    assert c.get(f"{j['panels']['model']}?plane=-1").status_code == 422


def test_bad_inputs_get_clear_4xx(upscaler):
    good = SAMPLE.read_bytes()
    with client(upscaler, max_upload_bytes=200_000, max_pixels=100_000) as cl:
        cases = {
            "not an image": (b"hello, I am text" * 10, 415, "not an image"),
            "truncated TIFF": (good[: len(good) // 2], 400, "truncated"),
            "empty body": (b"", 400, "empty body"),
            "oversize upload": (b"\0" * 300_000, 413, "over the limit"),
            "too many pixels": (tiff_bytes(np.zeros((400, 400), np.uint8)), 413, "decompression bomb"),
            "decompression bomb": (_bomb(), 413, "decompression bomb"),
            "PNG bomb": (_png_bomb(), 413, "pixels"),
        }
        for what, (body, status, words) in cases.items():
            r = cl.post("/v1/upscale", content=body)
            assert r.status_code == status, (what, r.status_code, r.text)
            detail = r.json()["detail"]
            assert words in detail, (what, detail)
            assert "/tmp" not in detail and "scopesr-serve-" not in detail, detail  # no server paths
        r = cl.post("/v1/upscale", files={"file": ("a.tif", good)})
        assert r.status_code == 415 and "--data-binary" in r.json()["detail"]
        r = cl.post("/v1/upscale", content=good, headers={"content-length": "999999999"})
        assert r.status_code == 413
        # no Content-Length (chunked): counted while it streams in
        r = cl.post("/v1/upscale", content=iter([b"\0" * 65536] * 5))
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    with client(upscaler, time_limit_s=0.5) as cl:
        status, body = _slow_upload(cl.app, pause_s=0.3, chunks=4)
        assert status == 408 and b"time limit" in body, body


def _slow_upload(app, pause_s: float, chunks: int) -> tuple[int, bytes]:
    """POST /v1/upscale straight into the ASGI app with a pause before each body chunk (a
    client trickling its upload); the test client would buffer the whole body first."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/upscale",
        "raw_path": b"/v1/upscale",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(1000 * chunks).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent = {"n": 0}
    out: dict = {"body": b""}

    async def receive():
        if sent["n"] >= chunks:
            await asyncio.sleep(3600)
        await asyncio.sleep(pause_s)
        sent["n"] += 1
        return {"type": "http.request", "body": b"\0" * 1000, "more_body": sent["n"] < chunks}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return out["status"], out["body"]


def _png_bomb() -> bytes:
    """A PNG whose header claims 60000 x 60000 grey pixels, with a few KB of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 60001 * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _bomb() -> bytes:
    """A small TIFF whose header claims 65536 x 65536 pixels (a decompression bomb's shape)."""
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(np.zeros((16, 16), np.uint8))
    data = bytearray(buf.getvalue())
    # patch ImageWidth / ImageLength in the first IFD
    ifd = int.from_bytes(data[4:8], "little")
    n = int.from_bytes(data[ifd : ifd + 2], "little")
    for i in range(n):
        e = ifd + 2 + 12 * i
        tag = int.from_bytes(data[e : e + 2], "little")
        if tag in (256, 257):
            typ = int.from_bytes(data[e + 2 : e + 4], "little")
            size = 2 if typ == 3 else 4
            data[e + 8 : e + 8 + size] = (65535).to_bytes(size, "little")
    return bytes(data)


def test_token_cookie_and_host_rules(upscaler):
    with client(upscaler, token="s3cret-token") as cl:
        assert cl.get("/healthz").status_code == 200  # liveness without the token
        r = cl.get("/v1/model")
        assert (
            r.status_code == 401 and "token" in r.json()["detail"] and "bearer" in r.headers["www-authenticate"].lower()
        )
        assert cl.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert (
            cl.post("/v1/upscale", content=SAMPLE.read_bytes(), headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
        assert cl.get("/v1/model", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        r = cl.get("/live?token=s3cret-token", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/live"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert cl.get("/v1/model").status_code == 200  # the cookie now
    with client(upscaler) as cl:
        r = cl.post("/v1/upscale", content=SAMPLE.read_bytes(), headers={"origin": "https://elsewhere.example"})
        assert r.status_code == 403 and "another origin" in r.json()["detail"]
        same = {"origin": "http://testserver"}
        assert cl.post("/v1/upscale", content=SAMPLE.read_bytes(), headers=same).status_code == 200
    hosts = ("127.0.0.1:8000", "localhost:8000")
    with client(upscaler, allowed_hosts=hosts) as cl:
        assert cl.get("/", headers={"host": "127.0.0.1:8000"}).status_code == 200
        r = cl.get("/", headers={"host": "attacker.example:8000"})
        assert r.status_code == 421 and "Host" in r.json()["detail"]


def test_security_headers(c):
    for path in ("/", "/live", "/api", "/static/upload.js", "/v1/model", "/openapi.json"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert c.get("/v1/model").headers["cache-control"] == "no-store"
    page = c.get("/").text
    assert "http://" not in page and "https://" not in page  # no external assets
    spec = c.get("/openapi.json").json()
    assert {"/v1/upscale", "/v1/model", "/healthz", "/v1/jobs"} <= set(spec["paths"])
    for path in ("/v1/upscale", "/v1/jobs"):  # the ensemble query is documented where it is accepted
        params = {p["name"]: p for p in spec["paths"][path]["post"]["parameters"]}
        assert params["ensemble"]["schema"]["enum"] == [1, 2, 4, 8]
        assert (params["strength"]["schema"]["minimum"], params["strength"]["schema"]["maximum"]) == (0.0, 2.0)
    assert c.get("/docs").status_code == 404  # FastAPI's CDN-backed page is off; /api renders the spec


def test_full_queue_is_503_with_retry_after(upscaler):
    """One worker held inside the model (the lock taken here), no queue: the next upload is refused."""
    with client(upscaler, queue_size=0, workers=1) as cl:
        jq = cl.app.app.state.serve["jobs"]
        with jq.lock:
            r1 = cl.post("/v1/jobs", content=SAMPLE.read_bytes())
            assert r1.status_code == 202
            r2 = cl.post("/v1/upscale", content=SAMPLE.read_bytes())
            assert r2.status_code == 503 and int(r2.headers["retry-after"]) >= 1
            assert "queue is full" in r2.json()["detail"]
        for _ in range(200):
            if cl.get(f"/v1/jobs/{r1.json()['id']}").json()["state"] == "done":
                break
            time.sleep(0.05)
        assert cl.post("/v1/upscale", content=SAMPLE.read_bytes()).status_code == 200  # the slot came back


def test_time_limit_is_503(upscaler):
    with client(upscaler, time_limit_s=1.0) as cl:
        jq = cl.app.app.state.serve["jobs"]
        jq.lock.acquire()
        threading.Timer(1.6, jq.lock.release).start()
        r = cl.post("/v1/upscale", content=SAMPLE.read_bytes())
        assert r.status_code == 503 and "time limit" in r.json()["detail"], r.text


def test_kept_results_stay_under_the_disk_budget(upscaler):
    """Three finished jobs of ~0.5 MB each under a 1.2 MB budget: the oldest is gone, the newest kept."""
    with client(upscaler, max_kept_bytes=1_200_000) as cl:
        ids = []
        for _ in range(3):
            jid = cl.post("/v1/jobs", content=SAMPLE.read_bytes()).json()["id"]
            while cl.get(f"/v1/jobs/{jid}").json()["state"] != "done":
                time.sleep(0.05)
            ids.append(jid)
        assert cl.get(f"/v1/jobs/{ids[0]}").status_code == 404
        assert cl.get(f"/v1/jobs/{ids[2]}/result.tif").status_code == 200
    with client(upscaler, max_kept_bytes=1000) as cl:  # a result over the whole budget still reaches its waiter
        r = cl.post("/v1/upscale", content=SAMPLE.read_bytes())
        assert r.status_code == 200 and tifffile.imread(io.BytesIO(r.content)).shape == (512, 512)


def test_results_live_in_a_private_folder_that_goes_at_shutdown(upscaler):
    with client(upscaler, result_ttl_s=0.2) as cl:
        jq = cl.app.app.state.serve["jobs"]
        folder = jq.folder
        assert folder.stat().st_mode & 0o777 == 0o700
        jid = cl.post("/v1/jobs", content=SAMPLE.read_bytes()).json()["id"]
        while cl.get(f"/v1/jobs/{jid}").json()["state"] != "done":
            time.sleep(0.05)
        names = sorted(p.name for p in (folder / jid).iterdir())
        assert names == ["bicubic.png", "model.png", "nearest.png", "result.tif"]  # no upload, no client name
        time.sleep(0.3)
        jq.cleanup()
        assert not (folder / jid).exists()
    assert not folder.exists()


def test_live_api_ws_and_mjpeg(upscaler, stack_tif):
    from scopesr.serve.live import file_frames

    name, frames = file_frames(str(stack_tif))
    with client(upscaler, frames=frames, live_fps=50) as cl:
        assert cl.post("/v1/live", json={"mode": "sharpest"}).status_code == 422
        assert cl.post("/v1/live", json={"roi": [1, 2, 3]}).status_code == 422
        assert cl.post("/v1/live", json={"mode": "bicubic", "roi": [10, 8, 40, 32]}).json()["mode"] == "bicubic"
        with cl.websocket_connect("/v1/live/ws") as ws:
            msg = ws.receive_bytes()
            n = int.from_bytes(msg[:4], "big")
            head = json.loads(msg[4 : 4 + n])
            assert head["roi"] == [10, 8, 40, 32] and head["mode"] == "bicubic" and head["frame_w"] == 128
            assert msg[4 + n : 4 + n + 2] == b"\xff\xd8"  # a JPEG follows
            ws.send_json({"mode": "model"})
            for _ in range(50):
                m = ws.receive_bytes()
                if json.loads(m[4 : 4 + int.from_bytes(m[:4], "big")])["mode"] == "model":
                    break
            else:
                raise AssertionError("the mode switch did not reach the feed")
        with cl.stream("GET", "/v1/live/mjpeg?part=roi") as r:
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
            got = mjpeg_frames(r)
        assert b"Content-Type: image/jpeg" in got and b"X-Part: roi" in got
        state = cl.get("/v1/live").json()
        assert state["source"] == "test" and name.startswith("tiff:") and state["frames"] >= 2
    with client(upscaler) as cl:
        assert cl.get("/v1/live").status_code == 404
