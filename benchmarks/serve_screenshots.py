#!/usr/bin/env python3
"""Screenshots of sr-serve's pages for the README (docs/images/serve_*.png), by headless Chromium.

Starts ``sr-serve --source sample:napari-timelapse`` on a free 127.0.0.1 port, uploads
``sdk/data/sample_nuclei_noisy.tif`` on the upload page and zooms into the three panels, drags an
ROI on the live page, opens the API page, and saves one PNG of each. Needs Debian's ``chromium``
(``make apt-deps``) and playwright (the ``test`` extra); it never downloads a browser.

    python benchmarks/serve_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, source: str, extra: list[str] | None = None) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "sr-serve"
    proc = subprocess.Popen(
        [str(exe), "--port", str(port), "--source", source, *(extra or ["--source-fps", "10"])],
        cwd=ROOT,
        env=dict(os.environ, SCOPESR_PROBE="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sr-serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("sr-serve did not answer within 60 s")


def wait_frames(page, n: int, timeout: float = 60.0) -> None:
    """Until the live page counts more than ``n`` frames (polled from here: the page's CSP
    forbids the evaluated scripts playwright's wait_for_function would run)."""
    deadline = time.monotonic() + timeout
    while int(page.locator("#frames").inner_text() or 0) <= n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the live page showed no {n} frames in {timeout:g} s")
        page.wait_for_timeout(100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--source", default="sample:napari-timelapse")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_server(port, args.source)
    base = f"http://127.0.0.1:{port}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 860}, device_scale_factor=1)
            page.goto(base + "/")
            page.set_input_files("#files", str(ROOT / "sdk" / "data" / "sample_nuclei_noisy.tif"))
            page.wait_for_selector("#download:not(.disabled)", timeout=60_000)
            box = page.locator("#panel-model").bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.45)
            for _ in range(2):
                page.mouse.wheel(0, -250)
                time.sleep(0.05)
            page.wait_for_timeout(300)
            page.screenshot(path=str(args.out / "serve_upload.png"))

            page.goto(base + "/live")
            wait_frames(page, 5)
            fb = page.locator("#frame").bounding_box()
            assert fb is not None
            page.mouse.move(fb["x"] + fb["width"] * 0.66, fb["y"] + fb["height"] * 0.40)
            page.mouse.down()
            page.mouse.move(fb["x"] + fb["width"] * 0.86, fb["y"] + fb["height"] * 0.60, steps=8)
            page.mouse.up()
            page.wait_for_timeout(2500)
            page.screenshot(path=str(args.out / "serve_live.png"))

            page.goto(base + "/api")
            page.wait_for_selector(".ep", timeout=30_000)
            page.screenshot(path=str(args.out / "serve_api.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for name in ("serve_upload.png", "serve_live.png", "serve_api.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
