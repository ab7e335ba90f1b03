"""sr-serve's command line (token rules, bad sources) and ``demo_pi/run.py --serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from serve_helpers import MODEL, ROOT, free_port, mjpeg_frames

import scopesr.serve.cli as serve_cli

pytest.importorskip("fastapi", reason="sr-serve needs the serve extra: pip install -e '.[serve]'")
pytestmark = pytest.mark.edge


@pytest.fixture
def served(monkeypatch):
    """Run sr-serve's main without listening: the app it would serve is captured."""
    got = {}

    def fake_serve(app, host, port, log_level="warning"):
        got.update(app=app, host=host, port=port)

    monkeypatch.setattr(serve_cli, "serve", fake_serve)
    return got


def test_loopback_needs_no_token_but_checks_the_host(served, capsys):
    assert serve_cli.main(["--model", str(MODEL), "--port", "8123"]) == 0
    guard = served["app"]
    assert guard.token is None and "127.0.0.1:8123" in guard.allowed and "evil.example" not in guard.allowed
    assert "http://127.0.0.1:8123/" in capsys.readouterr().err


def test_beyond_loopback_a_token_is_generated_and_printed(served, capsys, monkeypatch):
    monkeypatch.delenv("SCOPESR_SERVE_TOKEN", raising=False)
    assert serve_cli.main(["--model", str(MODEL), "--host", "0.0.0.0", "--port", "8124"]) == 0
    token = served["app"].token
    assert token and len(token) >= 24 and served["app"].allowed is None
    err = capsys.readouterr().err
    assert f"?token={token}" in err and f"Authorization: Bearer {token}" in err


def test_a_given_token_is_used(served, monkeypatch):
    monkeypatch.setenv("SCOPESR_SERVE_TOKEN", "from-the-environment")
    assert serve_cli.main(["--model", str(MODEL), "--host", "0.0.0.0"]) == 0
    assert served["app"].token == "from-the-environment"
    assert serve_cli.main(["--model", str(MODEL), "--token", "given"]) == 0
    assert served["app"].token == "given"


def test_bad_source_or_model_is_exit_1(served, capsys, tmp_path):
    assert serve_cli.main(["--model", str(MODEL), "--source", str(tmp_path / "missing.tif")]) == 1
    assert "missing.tif" in capsys.readouterr().err
    assert serve_cli.main(["--model", str(tmp_path / "none.onnx")]) == 1
    assert "app" not in served


def test_demo_pi_serve_streams_the_stack(stack_tif):
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "demo_pi" / "run.py"), "--source", str(stack_tif), "--model", str(MODEL)]
        + ["--serve", "--port", str(port), "--roi", "8,8,32,32"],
        cwd=ROOT,
        env=dict(os.environ, SCOPESR_PROBE="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "demo_pi --serve did not answer"
                time.sleep(0.2)
        with httpx.stream("GET", base + "/v1/live/mjpeg?part=roi", timeout=30) as r:
            data = mjpeg_frames(r)
        assert b'"roi": [8, 8, 32, 32]' in data and b"image/jpeg" in data
        state = httpx.get(base + "/v1/live").json()
        assert state["source"] == f"tiff:{stack_tif.name}" and state["frames"] >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/" in out


def test_demo_pi_serve_refuses_headless():
    r = subprocess.run(
        [sys.executable, str(ROOT / "demo_pi" / "run.py"), "--serve", "--headless", "--out", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2 and "--serve" in r.stderr
