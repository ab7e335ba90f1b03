#!/usr/bin/env python3
"""Real-time super-resolution of a live microscope feed (Raspberry Pi, or any desktop).

    python demo_pi/run.py --source SRC [--model PATH] [--backend tflite|onnx]
                          [--roi x,y,w,h | --full] [--headless --out DIR] [--frames N]

SRC: ``picamera2`` (Pi camera, lores stream), a camera index (``0``, OpenCV), a video
file, a TIFF stack / time-lapse, a folder of images, or ``sample:napari-timelapse`` (a
real fluorescence time-lapse shipped by a pip package; the default).

Only ``scopesr.sdk`` runs the model (ONNX Runtime or LiteRT / tflite-runtime): no torch.
Prints a final ``fps: X`` line (frames / wall time, capture to SR, outputs included).
"""
from __future__ import annotations

import argparse
import logging
import platform
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script from anywhere, or imported by the benchmark
    sys.path.insert(0, str(HERE))

from pipeline import RoiProcessor, Stats, parse_roi, run_pipeline  # noqa: E402
from sources import SourceError, open_source  # noqa: E402

from scopesr.sdk import ModelError, ScopesrError  # noqa: E402

log = logging.getLogger("demo_pi")

DEFAULT_SOURCE = "sample:napari-timelapse"
# What each backend runs by default: int8 TFLite is the Pi's fast path.
DEFAULT_FORMATS = {"tflite": ("tflite-int8", "tflite"), "onnx": ("onnx",)}


def default_model(backend: str) -> Path:
    """The bundled default student for this backend (scopesr.sdk.default_model_path)."""
    import scopesr.sdk as sdk

    finder = getattr(sdk, "default_model_path", None)
    tried: list[str] = []
    for fmt in DEFAULT_FORMATS[backend]:
        if finder is None:
            break
        try:
            p = finder(fmt)
        except ScopesrError as exc:  # unknown format or not bundled: try the next
            tried.append(f"{fmt}: {exc}")
            continue
        if p is not None and Path(p).exists():
            return Path(p)
    raise ModelError(
        f"no bundled default model for the {backend} backend ({'; '.join(tried) or 'none found'}); "
        "pass one with --model PATH (a .tflite or .onnx with its .card.json)")


def load_upscaler(model: Path, backend: str, threads: int | None = None) -> Any:
    import scopesr.sdk as sdk

    return sdk.load(model, backend=backend, **({"num_threads": threads} if threads else {}))


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WxH, e.g. 160x120") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo_pi/run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=DEFAULT_SOURCE,
                   help="picamera2 | camera index | video | TIFF stack | image folder | sample:KEY "
                        f"(default {DEFAULT_SOURCE})")
    p.add_argument("--model", type=Path, help="a .tflite or .onnx with its .card.json "
                   "(default: the bundled student for --backend)")
    p.add_argument("--backend", choices=("tflite", "onnx"), default=None,
                   help="runtime (default: from --model's suffix, else tflite)")
    roi = p.add_mutually_exclusive_group()
    roi.add_argument("--roi", type=str, help="x,y,w,h in LR pixels (default: centred 64x64, as in the paper)")
    roi.add_argument("--full", action="store_true", help="super-resolve the whole frame")
    p.add_argument("--headless", action="store_true", help="no window: write outputs into --out")
    p.add_argument("--out", type=Path, help="folder for PNG/TIFF frames, demo.gif, demo.mp4, run.json")
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--loop", action="store_true", help="repeat a file source until --frames or Ctrl-C")
    p.add_argument("--video", choices=("gif", "mp4", "both", "none"), default="both",
                   help="animations to write with --out (mp4 when an encoder is installed)")
    p.add_argument("--no-frames", action="store_true", help="with --out: skip the per-frame PNGs")
    p.add_argument("--lores", type=parse_size, default=(160, 120),
                   help="camera frame size for inference, WxH (default 160x120)")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads (default: the runtime's choice; a Pi 4/5 has 4 cores)")
    p.add_argument("--screenshot", type=Path, help="windowed: grab the panes from the screen at the end")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.headless and args.out is None:
        print("error: --headless needs --out DIR (where the frames and the GIF/MP4 go)", file=sys.stderr)
        return 2
    if args.frames is not None and args.frames < 1:
        print("error: --frames must be >= 1", file=sys.stderr)
        return 2
    try:
        roi = parse_roi(args.roi) if args.roi else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        backend = args.backend or ({".onnx": "onnx"}.get(args.model.suffix.lower(), "tflite")
                                   if args.model else "tflite")
        model = args.model or default_model(backend)
        up = load_upscaler(model, backend, args.threads)
        scale = int(up.card.scale)
        source = open_source(args.source, loop=args.loop, lores=args.lores)
    except (ScopesrError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    processor = RoiProcessor(up, roi=roi, full=args.full)
    stop = threading.Event()

    # Ctrl-C: first press stops cleanly (outputs are finished), a second one aborts.
    def on_sigint(_sig: int, _frm: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        print("\nstopping (Ctrl-C again to abort)...", file=sys.stderr)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_sigint)

    writer = None
    if args.out is not None:
        from outputs import HeadlessWriter

        writer = HeadlessWriter(args.out, scale, video=args.video, save_frames=not args.no_frames)

    def work(sink: Any, stop_event: threading.Event) -> Stats:
        def both(r: Any) -> None:
            if writer is not None:
                writer(r)
            if sink is not None:
                sink(r)
        return run_pipeline(source, processor, both, max_frames=args.frames, live=source.live,
                            stop_event=stop_event)

    desc = f"{model.name} [{backend}] {source.name}"
    try:
        if args.headless:
            stats = work(None, stop)
        else:
            from window import LiveWindow, NoDisplay

            try:
                win = LiveWindow(processor, scale, f"scopesr live x{scale}: {desc}", stop,
                                 screenshot=args.screenshot, status=desc)
            except NoDisplay as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            stats = win.run(work)
    except ScopesrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()

    lat = sorted(stats.latencies)
    summary: dict[str, Any] = {
        "model": str(model), "backend": backend, "source": source.name, "scale": scale,
        "roi": "full" if args.full else (list(roi) if roi else "centred-64"),
        "frames": stats.frames, "wall_s": round(stats.wall_s, 4), "fps": round(stats.fps, 2),
        "infer_fps": round(stats.infer_fps, 2), "dropped": stats.dropped,
        "latency_ms_median": round(1000 * statistics.median(lat), 3) if lat else None,
        "interrupted": stats.interrupted, "machine": platform.machine(), "python": platform.python_version(),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        describe = up.describe()
        summary["upscaler"] = describe if isinstance(describe, dict) else str(describe)
    except Exception:  # describe is informative only
        pass
    if writer is not None:
        writer.close(summary)
        print(f"wrote {args.out}/ (frames/, {'demo.gif' if args.video in ('gif', 'both') else ''} run.json)")
    print(f"frames: {stats.frames}  inference-only fps: {stats.infer_fps:.1f}  "
          f"median latency: {summary['latency_ms_median']} ms  dropped: {stats.dropped}"
          + ("  (interrupted)" if stats.interrupted else ""))
    print(f"fps: {stats.fps:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
