#!/usr/bin/env python3
"""Which live transport keeps up: sr-serve's WebSocket or MJPEG feed, measured in headless Chromium.

For each transport and each setting (source frames per second, ROI size, method) it starts one
``sr-serve --source`` on a free 127.0.0.1 port, opens the live page in Chromium with that
transport, lets it run, and reads what the page drew against what the server produced:

- drawn FPS (frames the page drew per second) and the share of the server's frames it drew
  (1.00: it keeps up; below: frames were skipped because the link or the browser lagged);
- end-to-end latency, capture on the server to drawn in the page (one machine, one clock), median
  and 90th percentile of the page's readings;
- the server's SR time per ROI.

Writes benchmarks/results/serve_live.{json,md} (scopesr.bench.results.record). Needs Debian's
chromium and playwright (the test extra). The machine's load is recorded with the figures.

    python benchmarks/bench_serve_live.py [--seconds 8] [--fps 15 30] [--roi 64 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from serve_screenshots import free_port, start_server  # noqa: E402


def run_one(browser, transport: str, fps: float, roi: int, mode: str, seconds: float, source: str) -> dict:
    port = free_port()
    proc = start_server(port, source, ["--source-fps", str(fps)])
    base = f"http://127.0.0.1:{port}"
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base}/live?transport={transport}")
        deadline = time.monotonic() + 60
        while int(page.locator("#frames").inner_text() or 0) < 3:
            assert time.monotonic() < deadline, "no frames"
            page.wait_for_timeout(100)
        st = httpx.get(base + "/v1/live").json()
        fw, fh = st["frame"]["width"], st["frame"]["height"]
        httpx.post(base + "/v1/live", json={"mode": mode, "roi": [(fw - roi) // 2, (fh - roi) // 2, roi, roi]})
        page.wait_for_timeout(1500)  # settle on the new ROI and method
        s0 = httpx.get(base + "/v1/live").json()["frames"]
        d0, t0 = int(page.locator("#frames").inner_text()), time.monotonic()
        lat, sr = [], []
        while time.monotonic() - t0 < seconds:
            page.wait_for_timeout(200)
            try:
                lat.append(float(page.locator("#latency").inner_text()))
                sr.append(float(page.locator("#sr-ms").inner_text()))
            except ValueError:
                pass
        dt = time.monotonic() - t0
        d1 = int(page.locator("#frames").inner_text())
        s1 = httpx.get(base + "/v1/live").json()["frames"]
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    served = (s1 - s0) / dt
    drawn = (d1 - d0) / dt
    lat.sort()
    return {
        "transport": transport,
        "source_fps": fps,
        "roi": roi,
        "mode": mode,
        "frame": [fw, fh],
        "server_fps": round(served, 2),
        "drawn_fps": round(drawn, 2),
        "drawn_share": round(drawn / served, 3) if served else None,
        "latency_ms_median": round(statistics.median(lat), 1) if lat else None,
        "latency_ms_p90": round(lat[int(0.9 * (len(lat) - 1))], 1) if lat else None,
        "sr_ms_median": round(statistics.median(sr), 2) if sr else None,
        "seconds": round(dt, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, nargs="+", default=[15.0, 30.0])
    ap.add_argument("--roi", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--mode", default="model")
    ap.add_argument("--source", default="sample:napari-timelapse")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from scopesr.bench.results import record

    rows = []
    load0 = os.getloadavg()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
        for fps in args.fps:
            for roi in args.roi:
                for transport in ("ws", "mjpeg"):
                    r = run_one(browser, transport, fps, roi, args.mode, args.seconds, args.source)
                    print(r, flush=True)
                    rows.append(r)
        browser.close()
    load1 = os.getloadavg()
    lines = [
        "# sr-serve live feed: WebSocket vs MJPEG",
        "",
        f"Source `{args.source}` ({rows[0]['frame'][0]}x{rows[0]['frame'][1]}), method `{args.mode}`, "
        f"{args.seconds:g} s per row, headless Chromium on the same machine as the server. "
        f"Load average {load0[0]:.1f} before, {load1[0]:.1f} after (other jobs shared the CPU).",
        "",
        "| transport | source FPS | ROI | server FPS | drawn FPS | drawn / served | latency ms median | p90 | SR ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {'WebSocket' if r['transport'] == 'ws' else 'MJPEG'} | {r['source_fps']:g} | {r['roi']} "
            f"| {r['server_fps']:.1f} | {r['drawn_fps']:.1f} | {r['drawn_share']:.2f} "
            f"| {r['latency_ms_median']} | {r['latency_ms_p90']} | {r['sr_ms_median']} |"
        )
    lines += [
        "",
        "drawn / served: the share of the server's frames the page drew (1.00 keeps up). Latency: capture "
        "on the server to drawn in the page. Command: `python benchmarks/bench_serve_live.py "
        + " ".join(sys.argv[1:])
        + "`.",
        "",
    ]
    data = {"rows": rows, "load_before": load0, "load_after": load1, "args": vars(args) | {"results": None}}
    j, md = record(args.results, "serve_live", data, "\n".join(lines), "bench_serve_live.py")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
