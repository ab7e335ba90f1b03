"""Helpers of the sr-serve tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "sdk" / "models" / "default.onnx"
SAMPLE = ROOT / "sdk" / "data" / "sample_nuclei.tif"
CHROMIUM = os.environ.get("SCOPESR_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ``sr-serve`` process (this interpreter's console script) on 127.0.0.1."""

    def __init__(self, args: list[str], tmp: Path) -> None:
        exe = Path(sys.executable).parent / "sr-serve"
        if not exe.exists():
            pytest.skip(f"sr-serve is not installed in {exe.parent} (pip install -e '.[edge,serve]')")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"sr-serve-{self.port}.log"
        self._fh = open(self.log, "w")
        env = dict(os.environ, SCOPESR_PROBE="0", TMPDIR=str(tmp))
        self.proc = subprocess.Popen(
            [str(exe), "--port", str(self.port), "--model", str(MODEL), *args],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"sr-serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"sr-serve did not answer in 60 s:\n{self.log.read_text()}") from None
                time.sleep(0.1)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


def wait_text(page, selector: str, pred, timeout: float = 30.0) -> str:
    """Poll an element's text until ``pred(text)`` (the pages' CSP forbids playwright's evaluated waits)."""
    deadline = time.monotonic() + timeout
    while True:
        text = page.locator(selector).inner_text()
        if pred(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector}: {text!r} after {timeout:g} s")
        page.wait_for_timeout(100)


def mjpeg_frames(response, n: int = 2) -> bytes:
    """The bytes of a streamed multipart MJPEG response up to its ``n``-th frame boundary."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if data.count(b"--frame") >= n:
            break
    return data
