"""Image borders across backends: agreement, quality and the cost of the border padding.

Runs the bundled default model as ONNX and as TFLite fp32 (the same weights) through the SDK and
reports, for the SDK in this tree and, with ``--before REV``, for the SDK of git revision REV
side by side in the same process:

* agreement: the largest |ONNX - TFLite fp32| in grey levels over crops of the bundled
  ``sdk/data/sample_nuclei.tif`` (uint16), in the border band (within the halo of the edge,
  in HR pixels ``halo * scale``) and inside it;
* border quality: PSNR in that band and inside it against the 512x512 ground truth (the
  stardist sample the bundled LR image was made from, ``pip install --no-deps stardist``),
  over 96x80 LR crops of its x4 down-sampled copy, beside PIL bicubic on the same pixels;
* cost: ``Upscaler.upscale`` time for a camera ROI, a camera frame, the 96x80 crop and a
  512x512 image, interleaved between the two SDKs so that load falls on both alike.

    python benchmarks/bench_borders.py [--before REV] [--repeats 15] [--threads 1 --cpu-clock] [--no-record]
    python benchmarks/bench_borders.py --pad-modes    # which mirror the rule uses: band PSNR per padding
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CROPS = [(96, 80), (128, 128), (64, 64), (33, 47), (120, 100), (17, 90), (1, 50), (50, 1), (7, 7), (2, 3)]
SPEED_SIZES = [(64, 64), (120, 160), (96, 80), (512, 512)]


def load_sdk(rev: str | None, tmp: Path) -> Any:
    """``scopesr.sdk`` of this tree, or the ``sdk/`` folder of git revision ``rev`` imported
    under another package name (its imports are relative, so both live in one process)."""
    if rev is None:
        import scopesr.sdk as sdk

        return sdk
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "sdk"], check=True, capture_output=True).stdout
    dest = tmp / "before"
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(dest, filter="data")
    name = "scopesr_sdk_before"
    spec = importlib.util.spec_from_file_location(
        name, dest / "sdk" / "__init__.py", submodule_search_locations=[str(dest / "sdk")]
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def band_mask(h: int, w: int, width: int) -> np.ndarray:
    """True within ``width`` pixels of the edge of an (h, w) image."""
    yy = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None]
    xx = np.minimum(np.arange(w), np.arange(w)[::-1])[None, :]
    return np.minimum(yy, xx) < width


def crops_of(img: np.ndarray, size: tuple[int, int], step: int = 16) -> list[np.ndarray]:
    h, w = size
    return [
        img[y : y + h, x : x + w]
        for y in range(0, img.shape[0] - h + 1, step)
        for x in range(0, img.shape[1] - w + 1, step)
    ]


def agreement(sdk: Any, lr: np.ndarray) -> dict[str, Any]:
    onnx = sdk.load(sdk.default_model_path("onnx"))
    tfl = sdk.load(sdk.default_model_path("tflite"))
    band_w = onnx.card.halo * onnx.scale
    rows = []
    for size in CROPS:
        band = inner = 0
        for c in crops_of(lr, size):
            d = np.abs(onnx.upscale(c).astype(np.int64) - tfl.upscale(c).astype(np.int64))
            m = band_mask(*d.shape, band_w)
            band = max(band, int(d[m].max()))
            inner = max(inner, int(d[~m].max()) if (~m).any() else 0)
        rows.append({"size": f"{size[0]}x{size[1]}", "crops": len(crops_of(lr, size)), "band": band, "inner": inner})
    return {"band_hr_px": band_w, "rows": rows, "range": int(lr.max()) - int(lr.min())}


def quality(sdk: Any, hr: np.ndarray) -> dict[str, Any]:
    q = sdk.quality
    onnx = sdk.load(sdk.default_model_path("onnx"))
    tfl = sdk.load(sdk.default_model_path("tflite"))
    s = onnx.scale
    band_w = onnx.card.halo * s
    lr = np.clip(np.rint(q.downsample(hr, s)), 0, 65535).astype(np.uint16)
    dr = float(hr.max() - hr.min())
    sq: dict[str, dict[str, list[float]]] = {k: {"band": [], "inner": []} for k in ("onnx", "tflite", "bicubic")}
    for y in range(0, lr.shape[0] - 96 + 1, 16):
        for x in range(0, lr.shape[1] - 80 + 1, 16):
            c = lr[y : y + 96, x : x + 80]
            ref = hr[y * s : (y + 96) * s, x * s : (x + 80) * s].astype(np.float64)
            m = band_mask(*ref.shape, band_w)
            outs = {
                "onnx": onnx.upscale(c).astype(np.float64),
                "tflite": tfl.upscale(c).astype(np.float64),
                "bicubic": np.clip(np.rint(q.upscale_bicubic(c, s)), 0, 65535),
            }
            for k, o in outs.items():
                e = (o - ref) ** 2
                sq[k]["band"].extend(e[m].ravel().tolist())
                sq[k]["inner"].extend(e[~m].ravel().tolist())

    def db(v: list[float]) -> float:
        return round(10 * math.log10(dr * dr / float(np.mean(v))), 3)

    return {k: {r: db(v) for r, v in parts.items()} for k, parts in sq.items()}


def speed(sdks: dict[str, Any], lr: np.ndarray, repeats: int, threads: int, cpu_clock: bool) -> list[dict[str, Any]]:
    """``cpu_clock``: time this process's CPU time (with one runtime thread, a measure that other
    processes' load hardly moves) instead of the wall clock."""
    import time

    from scopesr.bench.timing import time_interleaved

    rows = []
    opts = {"num_threads": threads} if threads else {}
    ups = {
        (label, fmt): sdk.load(sdk.default_model_path(fmt), **opts)
        for label, sdk in sdks.items()
        for fmt in ("onnx", "tflite")
    }
    clock = time.process_time if cpu_clock else time.perf_counter
    for h, w in SPEED_SIZES:
        img = np.ascontiguousarray(np.tile(lr, (-(-h // lr.shape[0]), -(-w // lr.shape[1])))[:h, :w])
        reps = repeats if h * w <= 160 * 160 else max(3, repeats // 3)
        for fmt in ("onnx", "tflite"):
            keys = [k for k in ups if k[1] == fmt]
            fns = [lambda u=ups[k], im=img: u.upscale(im) for k in keys]
            ts = time_interleaved(fns, warmup=2, repeats=reps, clock=clock)
            row: dict[str, Any] = {"size": f"{h}x{w}", "backend": fmt}
            for k, t in zip(keys, ts):
                up = ups[k]
                plan = up._plan(h, w, None, up.card.halo)
                row[k[0]] = {
                    "ms": round(t.median * 1e3, 3),
                    "min_ms": round(t.min * 1e3, 3),
                    "tiles": plan.label,
                    "pixels_computed": round(plan.pixels / (h * w), 3),  # LR pixels the network runs on / image pixels
                }
            rows.append(row)
    return rows


PAD_MODES = ("network-zeros", "symmetric", "reflect", "edge")
PAD_DEGRADATIONS = ("bicubic", "binning", "noise-snr8", "cubic-noaa", "psf")


def pad_modes(sdk: Any) -> dict[str, dict[str, float]]:
    """Which padding suits the border band best: the bundled ONNX model's raw session on 96x80
    LR crops (stride 24) of the stardist and napari time-lapse samples, each degradation of
    ``PAD_DEGRADATIONS`` (seed 0), padded by the halo with each numpy mode of ``PAD_MODES``
    ("network-zeros": no padding, the network's own zero padding acts); PSNR in the band
    against the degradation's target, bicubic beside it."""
    import tifffile

    q = sdk.quality
    up = sdk.load(sdk.default_model_path("onnx"), num_threads=1)
    be, s, h = up.backend, up.scale, up.card.halo
    sources = [tifffile.imread(sdk.samples.sample_path("stardist-nuclei-2d")).astype(np.float64)]
    try:
        sources.append(tifffile.imread(sdk.samples.sample_path("napari-timelapse"))[10][:508, :508].astype(np.float64))
    except sdk.ScopesrError:
        pass
    band = band_mask(96 * s, 80 * s, h * s)
    out: dict[str, dict[str, float]] = {}
    for name in PAD_DEGRADATIONS:
        deg = q.degradation_from_name(name, s)
        err: dict[str, list[float]] = {m: [] for m in (*PAD_MODES, "bicubic")}
        for hr in sources:
            lr, tgt = deg.apply(hr, np.random.default_rng(0))
            lr, tgt = np.asarray(lr), np.asarray(tgt, dtype=np.float64)
            dr = float(tgt.max() - tgt.min())
            for y in range(0, lr.shape[0] - 96 + 1, 24):
                for x in range(0, lr.shape[1] - 80 + 1, 24):
                    c = lr[y : y + 96, x : x + 80]
                    ref = tgt[y * s : (y + 96) * s, x * s : (x + 80) * s]
                    st = sdk.normalize.compute_stats(c[..., None], up.card.normalisation)
                    xn = st.normalise(c[..., None])[..., 0]
                    for m in PAD_MODES:
                        if m == "network-zeros":
                            o = be.run(xn[None, None])[0, 0]
                        else:
                            o = be.run(np.pad(xn, h, mode=m)[None, None])[0, 0, h * s : -h * s, h * s : -h * s]
                        o = st.denormalise(o[..., None].copy(), np.dtype(np.float32))[..., 0]
                        err[m].append(float(np.mean((o - ref)[band] ** 2)) / dr**2)
                    b = q.upscale_bicubic(c, s)
                    err["bicubic"].append(float(np.mean((b - ref)[band] ** 2)) / dr**2)
        out[name] = {m: round(-10 * math.log10(float(np.mean(v))), 3) for m, v in err.items()}
        print(name, out[name], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=None, metavar="REV", help="also measure the SDK of this git revision")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="runtime threads (0: the SDK's default)")
    ap.add_argument("--cpu-clock", action="store_true", help="time CPU time, not wall time (use with --threads 1)")
    ap.add_argument("--speed-only", action="store_true", help="skip the agreement and quality rows")
    ap.add_argument("--pad-modes", action="store_true", help="only compare padding modes in the border band")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    import tifffile

    from scopesr.sdk import samples

    if args.pad_modes:
        import scopesr.sdk as sdk

        modes = pad_modes(sdk)
        if not args.no_record:
            from scopesr.bench.results import record

            md = [
                "Border-band PSNR (dB, band = halo x scale HR px) of the bundled ONNX model's session on 96x80 LR "
                "crops, the image padded by the halo with each numpy mode (network-zeros: no padding).",
                "",
                "| degradation | " + " | ".join((*PAD_MODES, "bicubic")) + " |",
                "|---|" + "---|" * (len(PAD_MODES) + 1),
            ]
            md += [f"| {d} | " + " | ".join(str(v) for v in row.values()) + " |" for d, row in modes.items()]
            record(RESULTS, "borders_pad_modes", {"psnr_band_db": modes}, "\n".join(md) + "\n", "bench_borders.py")
        return 0
    lr = tifffile.imread(ROOT / "sdk" / "data" / "sample_nuclei.tif")
    try:
        hr = tifffile.imread(samples.sample_path("stardist-nuclei-2d"))
    except Exception as exc:  # noqa: BLE001 - the ground truth is optional
        print(f"no ground truth for the quality rows ({exc})", file=sys.stderr)
        hr = None
    out: dict[str, Any] = {"before_rev": args.before, "sdks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sdks = {"now": load_sdk(None, Path(tmp))}
        if args.before:
            sdks = {"before": load_sdk(args.before, Path(tmp)), **sdks}
        for label, sdk in sdks.items():
            if args.speed_only:
                continue
            res: dict[str, Any] = {"agreement": agreement(sdk, lr)}
            if hr is not None:
                res["quality_psnr_db"] = quality(sdk, hr)
            out["sdks"][label] = res
            print(label, json.dumps(res, indent=1), flush=True)
        out["speed"] = speed(sdks, lr, args.repeats, args.threads, args.cpu_clock)
        out["speed_clock"] = "process CPU time" if args.cpu_clock else "wall"
        out["threads"] = args.threads or "SDK default"
    for r in out["speed"]:
        print(r, flush=True)
    if not args.no_record:
        from scopesr.bench.results import record

        md = ["| SDK | crop (LR) | max abs ONNX-TFLite fp32, band | inside |", "|---|---|---|---|"]
        for label, res in out["sdks"].items():
            for r in res["agreement"]["rows"]:
                md.append(f"| {label} | {r['size']} | {r['band']} | {r['inner']} |")
        md += ["", "| SDK | PSNR dB (band / inside) | ONNX | TFLite fp32 | bicubic |", "|---|---|---|---|---|"]
        for label, res in out["sdks"].items():
            q = res.get("quality_psnr_db")
            if q:
                md.append(
                    f"| {label} | | {q['onnx']['band']} / {q['onnx']['inner']} | "
                    f"{q['tflite']['band']} / {q['tflite']['inner']} | "
                    f"{q['bicubic']['band']} / {q['bicubic']['inner']} |"
                )
        md += [
            "",
            f"Speed: `Upscaler.upscale`, {out['speed_clock']} clock, runtime threads {out['threads']}, "
            "interleaved between the SDKs; pixels computed = LR pixels the network runs on / image pixels.",
            "",
            "| size | backend | " + " | ".join(f"{k}: median / min ms (tiles, pixels computed)" for k in sdks) + " |",
            "|---|---|" + "---|" * len(sdks),
        ]
        for r in out["speed"]:
            md.append(
                f"| {r['size']} | {r['backend']} | "
                + " | ".join(
                    f"{r[k]['ms']} / {r[k]['min_ms']} ({r[k]['tiles']}, {r[k]['pixels_computed']}x)" for k in sdks
                )
                + " |"
            )
        record(RESULTS, "borders", out, "\n".join(md) + "\n", "bench_borders.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
