#!/usr/bin/env python3
"""Real-time super-resolution of a live microscope feed (Raspberry Pi, or any desktop).

    python demo_pi/run.py --source SRC [--model PATH] [--backend tflite|onnx]
                          [--roi x,y,w,h | --full] [--headless --out DIR] [--frames N]
                          [--serve [--host H] [--port P] [--token T]]

SRC: ``picamera2`` (Pi camera, lores stream), a camera index (``0``, OpenCV), a video
file, a TIFF stack / time-lapse, a folder of images, or ``sample:napari-timelapse`` (a
real fluorescence time-lapse shipped by a pip package; the default).

Only ``scopesr.sdk`` runs the model (ONNX Runtime or LiteRT / tflite-runtime): no torch.
Prints a final ``fps: X`` line (frames / wall time, capture to SR, outputs included).
``--serve`` shows the feed in a browser instead (sr-serve's live page, ``pip install
"scopesr[edge,serve]"``): a headless Pi watched from a laptop.

Exit status: 0 the run ended (after --frames, at the end of a file source, or by one
Ctrl-C); 1 the model, the source, the display or the --out folder could not be used (the
message says how to fix it), no frame of the source could be read, or a second Ctrl-C
aborted the run; 2 usage error (an unknown option, a bad --roi, --lores, --frames or
--threads value, --roi with --full, --headless without --out). Unreadable images of a
folder source are skipped and listed at the end (and in run.json's "skipped").
"""

from __future__ import annotations

import logging
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script from anywhere, or imported by the benchmark
    sys.path.insert(0, str(HERE))

from pipeline import LIVE_HALO, RoiProcessor, Stats, parse_roi, run_pipeline  # noqa: E402
from sources import SourceError, open_source  # noqa: E402

from scopesr.sdk import BUNDLES, ModelError, ScopesrError  # noqa: E402
from scopesr.sdk.clitools import EXIT_FAILED, EXIT_OK, run_command, runtime_options  # noqa: E402

log = logging.getLogger("demo_pi")

DEFAULT_SOURCE = "sample:napari-timelapse"
# What each backend runs by default: int8 TFLite is the Pi's fast path; ONNX Runtime's int8 file
# beats its fp32 one even on CPUs without int8 dot products (docs/degradation.md, "The same rule
# for int8 ONNX"), within 0.06 dB of it on every held-out image
DEFAULT_FORMATS = {"tflite": ("tflite-int8", "tflite"), "onnx": ("onnx-int8", "onnx")}


def default_model(backend: str, bundle: str = "default") -> Path:
    """The bundled student ``bundle`` (default, low-noise or large) for this backend
    (scopesr.sdk.default_model_path)."""
    import scopesr.sdk as sdk

    finder = getattr(sdk, "default_model_path", None)
    tried: list[str] = []
    for fmt in DEFAULT_FORMATS[backend]:
        if finder is None:
            break
        try:
            p = finder(fmt, bundle=bundle)
        except ScopesrError as exc:  # unknown format or not bundled: try the next
            tried.append(f"{fmt}: {exc}")
            continue
        if p is not None and Path(p).exists():
            return Path(p)
    raise ModelError(
        f"no bundled {bundle} model for the {backend} backend ({'; '.join(tried) or 'none found'}); "
        "pass one with --model PATH (a .tflite or .onnx with its .card.json)"
    )


def load_upscaler(model: Path, backend: str, threads: int | None = None, spin: bool | None = None) -> Any:
    """Open the model; ``threads`` None/0 and ``spin`` None follow scopesr's rule
    (scopesr.sdk.cpu.thread_policy: one thread per available core, no spin-waiting on <= 4 cores)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        # an option error, not the model's: said before the model is touched
        raise ValueError(f"--threads {threads!r}: a whole number >= 0 (0: one per available core)")
    import scopesr.sdk as sdk

    opts: dict[str, Any] = {"num_threads": threads} if threads else {}
    if spin is not None:
        opts["spin"] = spin
    return sdk.load(model, backend=backend, **opts)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected WxH, e.g. 160x120") from None


#: exit statuses, the same for every scopesr command


EPILOG = """\b
SRC: picamera2 (Pi camera, lores stream), a camera index (0, OpenCV), a video file, a TIFF
stack / time-lapse, a folder of images, or sample:napari-timelapse (a real fluorescence
time-lapse shipped by a pip package; the default).
\b
Examples:
  python demo_pi/run.py --source picamera2 --threads 4
  python demo_pi/run.py --headless --out out --frames 12 --video gif --roi 250,255,64,64
  python demo_pi/run.py --source picamera2 --serve --host 0.0.0.0   # watch it from a laptop
\b
Exit status: 0 the run ended (after --frames, at the end of a file source, or by one
Ctrl-C); 1 the model, the source, the display or the --out folder could not be used (the
message says how to fix it), no frame of the source could be read, or a second Ctrl-C
aborted the run; 2 usage error (an unknown option, a bad --roi, --lores, --frames or
--threads value, --roi with --full, --headless without --out). Unreadable images of a
folder source are skipped and listed at the end (and in run.json's "skipped").
"""


def _size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    return parse_size(value)


def _halo(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    if value in ("auto", "fast"):
        return value
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise click.BadParameter(f"{value!r}: give 'fast', 'auto' or a whole number of LR pixels >= 0, e.g. 0")
    return n


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help=__doc__.split("\n\n")[0],
    epilog=EPILOG,
)
@click.option(
    "--source",
    default=DEFAULT_SOURCE,
    show_default=True,
    metavar="SRC",
    help="picamera2 | camera index | video | TIFF stack | image folder | sample:KEY.",
)
@click.option(
    "--model",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH|NAME",
    help="A .tflite or .onnx with its .card.json, or a bundled model by name: default (blind to noise, "
    "binning, blur and aliasing) or low-noise (sharper on images with little noise, weaker on noisy "
    "frames); large runs too but is made for stills (4.7x the default's work per frame). Default: the "
    "bundled default student for --backend.",
)
@click.option(
    "--backend",
    type=click.Choice(["tflite", "onnx"]),
    default=None,
    help="Runtime (default: from --model's suffix, else tflite).",
)
@click.option(
    "--roi", default=None, metavar="x,y,w,h", help="Region in LR pixels (default: centred 64x64, as in the paper)."
)
@click.option("--full", is_flag=True, help="Super-resolve the whole frame (not with --roi).")
@click.option(
    "--halo",
    default=str(LIVE_HALO),
    show_default=True,
    callback=_halo,
    metavar="fast|auto|N",
    help="What the network sees past the ROI's or frame's edge: 'auto' the frame's real pixels around the "
    "ROI, a receptive field wide; 0 the network's own zero padding (a 64x64 ROI computes 64x64 pixels, not "
    "82x82; 0.07-0.10 dB lower at the ROI's edge, benchmarks/results/live_halo.md); 'fast' 0 where the "
    "runtime can run the ROI as it is (ONNX; TFLite with a window of its size), else 'auto'.",
)
@click.option("--headless", is_flag=True, help="No window: write outputs into --out.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Folder for PNG/TIFF frames, demo.gif, demo.mp4, run.json.",
)
@click.option("--frames", type=click.IntRange(min=1), default=None, metavar="N", help="Stop after N frames.")
@click.option("--loop", is_flag=True, help="Repeat a file source until --frames or Ctrl-C.")
@click.option(
    "--video",
    type=click.Choice(["gif", "mp4", "both", "none"]),
    default="both",
    show_default=True,
    help="Animations to write with --out (mp4 when an encoder is installed).",
)
@click.option("--no-frames", is_flag=True, help="With --out: skip the per-frame PNGs.")
@click.option(
    "--lores",
    default="160x120",
    show_default=True,
    callback=_size,
    metavar="WxH",
    help="Camera frame size for inference.",
)
@runtime_options
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PNG",
    help="Windowed: grab the panes from the screen at the end.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Show the feed in a browser (sr-serve's live page) instead of a window or files; needs the serve extra.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="With --serve: address to bind (beyond 127.0.0.1: a token)."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="With --serve: TCP port.")
@click.option(
    "--token",
    default=None,
    metavar="TOKEN",
    help="With --serve: access token (default: generated when --host is not local).",
)
@click.option("-v", "--verbose", is_flag=True, help="Info log output.")
@click.pass_context
def cli(ctx: click.Context, **params: Any) -> int:
    args = SimpleNamespace(**params)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.serve and (args.headless or args.out is not None):
        raise click.UsageError("--serve shows the feed in a browser: not with --headless or --out", ctx=ctx)
    if args.headless and args.out is None:
        raise click.UsageError("--headless needs --out DIR (where the frames and the GIF/MP4 go)", ctx=ctx)
    if args.roi is not None and args.full:
        raise click.UsageError("--roi and --full exclude each other", ctx=ctx)
    try:
        roi = parse_roi(args.roi) if args.roi else None
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None
    return run(args, roi)


def check_out(out: Path) -> None:
    """Make ``out`` (a folder) and prove it can be written to; OSError with the fix otherwise."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: is a file, not a folder; give a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OSError(f"--out {out}: cannot write there ({exc.strerror or exc}); give a writable folder") from None


def run(args: Any, roi: tuple[int, int, int, int] | None) -> int:
    """The demo with checked options; returns the exit status."""
    if args.out is not None:
        try:
            check_out(args.out)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    try:
        backend = args.backend or (
            {".onnx": "onnx"}.get(args.model.suffix.lower(), "tflite") if args.model else "tflite"
        )
        model = args.model or default_model(backend)
        if str(model) in BUNDLES and not model.exists():  # a bundled model by name
            model = default_model(backend, str(model))
        up = load_upscaler(model, backend, args.threads, args.spin)
        scale = int(up.card.scale)
        source = open_source(args.source, loop=args.loop, lores=args.lores)
    except (ScopesrError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED

    if args.serve:
        return serve_live(args, up, source, roi)

    processor = RoiProcessor(up, roi=roi, full=args.full, halo=args.halo)
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

        return run_pipeline(source, processor, both, max_frames=args.frames, live=source.live, stop_event=stop_event)

    desc = f"{model.name} [{backend}] {source.name}"
    try:
        if args.headless:
            stats = work(None, stop)
        else:
            from window import LiveWindow, NoDisplay

            try:
                win = LiveWindow(
                    processor, scale, f"scopesr live x{scale}: {desc}", stop, screenshot=args.screenshot, status=desc
                )
            except NoDisplay as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_FAILED
            stats = win.run(work)
    except ScopesrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the outputs could not be written (disk full, folder removed, ...)
        print(f"error: writing the outputs into {args.out}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        source.close()
    skipped: dict[Path, str] = dict(getattr(source, "skipped", {}) or {})

    lat = sorted(stats.latencies)
    summary: dict[str, Any] = {
        "model": str(model),
        "backend": backend,
        "source": source.name,
        "scale": scale,
        "roi": "full" if args.full else (list(roi) if roi else "centred-64"),
        "halo": args.halo,
        "halo_used": processor.last_halo,
        "frames": stats.frames,
        "wall_s": round(stats.wall_s, 4),
        "fps": round(stats.fps, 2),
        "infer_fps": round(stats.infer_fps, 2),
        "dropped": stats.dropped,
        "latency_ms_median": round(1000 * statistics.median(lat), 3) if lat else None,
        "interrupted": stats.interrupted,
        "skipped": [{"file": str(p), "error": why} for p, why in skipped.items()],
        "machine": platform.machine(),
        "python": platform.python_version(),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        describe = up.describe()
        summary["upscaler"] = describe if isinstance(describe, dict) else str(describe)
    except Exception:  # describe is informative only
        pass
    if writer is not None:
        try:
            writer.close(summary)
        except OSError as exc:
            print(f"error: writing the outputs into {args.out}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"wrote {args.out}/ (frames/, {'demo.gif' if args.video in ('gif', 'both') else ''} run.json)")
    print(
        f"frames: {stats.frames}  inference-only fps: {stats.infer_fps:.1f}  "
        f"median latency: {summary['latency_ms_median']} ms  dropped: {stats.dropped}"
        + ("  (interrupted)" if stats.interrupted else "")
    )
    if skipped:
        print(f"skipped {len(skipped)} unreadable frame(s):", file=sys.stderr)
        for p, why in skipped.items():
            print(f"  {p}: {why}", file=sys.stderr)
    print(f"fps: {stats.fps:.1f}")
    if stats.frames == 0 and skipped:
        print(f"error: no frame of {source.name} could be read", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def serve_live(args: Any, up: Any, source: Any, roi: tuple[int, int, int, int] | None) -> int:
    """--serve: the source on sr-serve's live page (with its upload page and API beside it)."""
    import secrets

    try:
        from scopesr.serve import ServeConfig, create_app
        from scopesr.serve.cli import announce, is_loopback, serve
    except ImportError as exc:
        print(f'error: --serve needs the serve extra: pip install "scopesr[edge,serve]" ({exc})', file=sys.stderr)
        source.close()
        return EXIT_FAILED
    token, generated = args.token, False
    if token is None and not is_loopback(args.host):
        token, generated = secrets.token_urlsafe(24), True
    from scopesr.serve.config import loopback_hosts

    cfg = ServeConfig(
        token=token,
        allowed_hosts=loopback_hosts(args.port) if (is_loopback(args.host) and token is None) else None,
    )
    if args.full:
        roi = (0, 0, cfg.max_live_roi, cfg.max_live_roi)  # the whole frame, up to the live ROI limit
    # a camera is read as fast as it delivers; a file source is replayed at the page's pace
    frames = source if source.live else (lambda: source)
    app = create_app(up, cfg, live_frames=frames, live_name=source.name, live_camera=source.live, live_roi=roi)
    announce(args.host, args.port, token, generated)
    print(f"live page: /live  ({source.name}; Ctrl-C stops)", file=sys.stderr)
    try:
        serve(app, args.host, args.port, "info" if args.verbose else "warning")
    except SystemExit as exc:
        if exc.code:
            print(f"error: cannot listen on {args.host}:{args.port}; choose another --port", file=sys.stderr)
            return EXIT_FAILED
    finally:
        source.close()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo on ``argv`` (default: the process's arguments); returns the exit status."""
    return run_command(cli, argv, "demo_pi/run.py")


if __name__ == "__main__":
    sys.exit(main())
