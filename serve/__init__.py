"""scopesr.serve: ``sr-serve``, the SDK behind a local web page and a small HTTP API.

    sr-serve                          # http://127.0.0.1:8000/ : upload page, live page, API
    sr-serve --source stack.tif       # the live page plays a TIFF stack (cameras: demo_pi/run.py --serve)
    sr-serve --host 0.0.0.0           # reachable from the network: a token is generated and printed

Torch-free: it imports ``scopesr.sdk`` and the ``serve`` extra (FastAPI, uvicorn) only, so it runs
in the edge env on a Raspberry Pi. :func:`create_app` builds the ASGI app around a loaded
:class:`~scopesr.sdk.Upscaler`; ``demo_pi/run.py --serve`` passes it the demo's frame source.
"""

from __future__ import annotations

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - the signature is app.create_app's
    """Build the FastAPI app (see :func:`scopesr.serve.app.create_app`); imports FastAPI on first use."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
