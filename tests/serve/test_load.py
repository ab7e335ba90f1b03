"""A bounded load test against a real sr-serve on 127.0.0.1: 200 uploads, 16 at a time.

With one worker and a queue of 2, most of 16 concurrent uploads find the queue full: they must
get 503 with Retry-After (never another 5xx, never a hang), every accepted one the right
result, and the server's memory must stay flat.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile

pytest.importorskip("fastapi", reason="sr-serve needs the serve extra: pip install -e '.[serve]'")
pytestmark = pytest.mark.edge

REQUESTS, CONCURRENCY = 200, 16


def test_200_uploads_16_at_a_time(server, upscaler):
    import httpx

    rng = np.random.default_rng(7)
    img = rng.integers(0, 4000, (48, 64), np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, img)
    body = buf.getvalue()
    want = upscaler.upscale(img)

    def one(_i: int, client: httpx.Client) -> tuple[int, str | None, bool]:
        r = client.post(server.base + "/v1/upscale", content=body, timeout=60)
        ok = None
        if r.status_code == 200:
            ok = np.array_equal(tifffile.imread(io.BytesIO(r.content)), want)
        return r.status_code, r.headers.get("retry-after"), bool(ok)

    with httpx.Client(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        assert one(0, client)[0] == 200
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            # warm up at the same concurrency: the server's thread pool, its threads' malloc arenas
            # and the runtime's buffers reach their working size; what is measured is growth after
            list(pool.map(lambda i: one(i, client), range(2 * CONCURRENCY)))
            rss0 = server.rss_kb()
            results = list(pool.map(lambda i: one(i, client), range(REQUESTS)))
        rss1 = server.rss_kb()

    statuses = [s for s, _, _ in results]
    fives = [s for s in statuses if s >= 500]
    assert set(fives) <= {503}, f"5xx other than 503: {sorted(set(fives))}"
    assert all(ra is not None and int(ra) >= 1 for s, ra, _ in results if s == 503)
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    accepted = [ok for s, _, ok in results if s == 200]
    assert accepted and all(accepted), f"{accepted.count(False)} of {len(accepted)} accepted results were wrong"
    growth_mb = (rss1 - rss0) / 1024
    print(f"{REQUESTS} uploads x{CONCURRENCY}: {len(accepted)} answered 200, {statuses.count(503)} 503; ", end="")
    print(f"server RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB")
    assert growth_mb < 40, f"server RSS grew {growth_mb:.1f} MB over the run"
    # the server still answers, and nothing is left queued
    with httpx.Client() as c:
        q = c.get(server.base + "/v1/model").json()["queue"]
        assert q["queued"] == 0 and q["running"] == 0
