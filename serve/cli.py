"""``sr-serve``: the upload page, the live page and the HTTP API on one port.

Binds 127.0.0.1 (this machine only) unless --host says otherwise; any other address needs a
token, generated and printed with the URL when --token is not given.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import click

from scopesr.sdk import ScopesrError
from scopesr.sdk.clitools import EXIT_FAILED, EXIT_OK, run_command, runtime_options

from .config import (
    DEFAULT_KEEP_MB,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_QUEUE,
    DEFAULT_RESULT_TTL_S,
    DEFAULT_SOURCE_FPS,
    DEFAULT_TIME_LIMIT_S,
    LOOPBACK_HOSTS,
    ServeConfig,
    loopback_hosts,
)

log = logging.getLogger("scopesr.serve.cli")

EPILOG = """\b
Pages: / (upload: nearest | bicubic | model side by side, download the x4 TIFF),
/live (the --source feed with SR on a dragged ROI), /api (the HTTP API, OpenAPI).
\b
Examples:
  sr-serve                                   # http://127.0.0.1:8000/
  sr-serve --source sample:napari-timelapse  # the live page plays a real time-lapse
  sr-serve --host 0.0.0.0 --port 8080        # on the network: prints a URL with a new token
  curl --data-binary @cells.tif http://127.0.0.1:8000/v1/upscale -o cells_x4.tif
  Cameras and videos: python demo_pi/run.py --source picamera2 --serve
\b
Exit status: 0 the server stopped (Ctrl-C); 1 the model or the --source could not be
opened, or the port is taken; 2 usage error (an unknown option or a bad value).
"""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build(
    model: str | None,
    backend: str,
    threads: int | None,
    source: str | None,
    cfg: ServeConfig,
    spin: bool | None = None,
) -> Any:
    """Load the model (and the live source) and return the ASGI app; ScopesrError when they cannot be opened."""
    import scopesr.sdk as sr

    from .app import create_app
    from .live import file_frames

    opts: dict[str, Any] = {"num_threads": threads} if threads else {}
    if spin is not None:
        opts["spin"] = spin
    up = sr.load(model or "default", backend=backend, **opts)
    frames, name = None, "live"
    if source is not None:
        name, frames = file_frames(source)
    return up, create_app(up, cfg, live_frames=frames, live_name=name)


def serve(app: Any, host: str, port: int, log_level: str = "warning") -> None:
    """Run uvicorn on the app (blocks until Ctrl-C)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws="wsproto",
        timeout_keep_alive=5,
        limit_concurrency=128,  # connections beyond this get 503 from uvicorn itself
        server_header=False,
    )


def announce(host: str, port: int, token: str | None, generated: bool) -> None:
    shown = (
        "127.0.0.1"
        if host in ("127.0.0.1", "localhost")
        else ("<this machine's address>" if host in ("0.0.0.0", "::") else host)
    )
    url = f"http://{shown}:{port}/"
    click.echo(f"sr-serve: {url}{'?token=' + token if token else ''}", err=True)
    if token and generated:
        click.echo("sr-serve: a new token was generated for this run (--token TOKEN to choose one);", err=True)
        click.echo(f"          API clients send the header 'Authorization: Bearer {token}'", err=True)


@click.command(
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; beyond 127.0.0.1 a token is required."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option(
    "--token",
    default=None,
    metavar="TOKEN",
    help="Access token (also read from $SCOPESR_SERVE_TOKEN). Default: none on 127.0.0.1, a new "
    "random one otherwise, printed with the URL.",
)
@click.option(
    "--model",
    default=None,
    metavar="PATH|NAME",
    help="Model artifact with its .card.json, or a bundled model by name: default, low-noise "
    "(for images with little noise) or large (stills; 4.7x the default's work per pixel). "
    "Default: the bundled default model.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnx", "tflite"]),
    default="auto",
    show_default=True,
    help="Runtime (torch-free ones only).",
)
@runtime_options
@click.option(
    "--source",
    default=None,
    metavar="SRC",
    help="Live page source: a TIFF stack / time-lapse, an image folder or sample:KEY "
    "(cameras and videos: demo_pi/run.py --serve).",
)
@click.option(
    "--source-fps",
    type=click.FloatRange(min=0.1, max=240),
    default=DEFAULT_SOURCE_FPS,
    show_default=True,
    help="Frames per second a file --source plays at.",
)
@click.option(
    "--max-upload-mb",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_UPLOAD_MB,
    show_default=True,
    help="Largest upload accepted (413 above).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Most input pixels (all planes) accepted; checked before decoding (413 above).",
)
@click.option(
    "--queue",
    "queue_size",
    type=click.IntRange(min=0),
    default=DEFAULT_QUEUE,
    show_default=True,
    help="Uploads waiting for the model beyond those running (503 + Retry-After when full).",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Uploads upscaled at once.")
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=DEFAULT_TIME_LIMIT_S,
    show_default=True,
    help="Seconds a request may take, upload and queue included.",
)
@click.option(
    "--keep-results",
    type=click.FloatRange(min=1),
    default=DEFAULT_RESULT_TTL_S,
    show_default=True,
    help="Seconds a finished upload's result is kept for download.",
)
@click.option(
    "--keep-mb",
    type=click.IntRange(min=1),
    default=DEFAULT_KEEP_MB,
    show_default=True,
    help="Disk for finished results, all together; the oldest are deleted first beyond it.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def cli(**o: Any) -> int:
    """Serve scopesr super-resolution: an upload page, a live page and an HTTP API."""
    logging.basicConfig(
        level=logging.INFO if o["verbose"] else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    host, port = o["host"], o["port"]
    token = o["token"] or os.environ.get("SCOPESR_SERVE_TOKEN") or None
    generated = False
    if token is None and not is_loopback(host):
        token, generated = secrets.token_urlsafe(24), True
    cfg = ServeConfig(
        max_upload_bytes=o["max_upload_mb"] << 20,
        max_pixels=o["max_pixels"],
        queue_size=o["queue_size"],
        workers=o["workers"],
        time_limit_s=o["time_limit"],
        result_ttl_s=o["keep_results"],
        max_kept_bytes=o["keep_mb"] << 20,
        token=token,
        allowed_hosts=loopback_hosts(port) if (is_loopback(host) and token is None) else None,
        live_fps=o["source_fps"],
    )
    try:
        _up, app = build(o["model"], o["backend"], o["threads"], o["source"], cfg, o["spin"])
    except ScopesrError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_FAILED
    announce(host, port, token, generated)
    try:
        serve(app, host, port, "info" if o["verbose"] else "warning")
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port", err=True)
        return EXIT_FAILED
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        if exc.code:
            click.echo(f"error: cannot listen on {host}:{port}; choose another --port", err=True)
            return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run sr-serve on ``argv`` (default: the process's arguments); returns the exit status."""
    return run_command(cli, argv, "sr-serve")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
