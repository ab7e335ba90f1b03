"""The FastAPI app: the upload page, the live page, the HTTP API and its OpenAPI description.

FastAPI (on Starlette, served by uvicorn) because it gives the OpenAPI description of the API
from the route declarations, so ``/openapi.json`` and the API page cannot drift from the code,
while staying a small, pure-Python stack that installs on a Raspberry Pi. Its bundled docs page
loads its assets from a CDN, so it is switched off; ``/api`` renders the same description from
this package's own files.

Endpoints (all under the token when one is set, except /healthz):

- ``POST /v1/upscale``: the image's bytes as the body (TIFF, PNG, JPEG); answers the x4 result
  as a TIFF in the input's dtype, the array ``sr-upscale`` writes.
- ``POST /v1/jobs`` (the same body): answers 202 at once with a job to poll (``GET
  /v1/jobs/{id}``: state, progress), then ``/v1/jobs/{id}/result.tif`` and the preview panels
  ``/v1/jobs/{id}/{nearest,bicubic,model}.png``. The upload page uses these.
- ``GET /v1/model``: the model card's summary and the server's limits; ``GET /healthz``.
- ``GET/POST /v1/live``, ``GET /v1/live/mjpeg``, ``WS /v1/live/ws``: the live feed.

Errors are JSON ``{"detail": "..."}``: 400 unreadable image, 401 token, 408 upload too slow,
413 upload or pixel count over the limit, 415 not an image, 422 image the model cannot take,
503 queue full or time limit (with Retry-After).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from scopesr.sdk import ImageError, InputError, ModelIOError, ScopesrError, training_stages
from scopesr.sdk.ensemble import ENSEMBLE_SIZES, check_ensemble
from scopesr.sdk.upscaler import STRENGTH_RANGE, check_strength

from .config import ServeConfig
from .jobs import BANDED_ABOVE_PX, Busy, ImageTooLargeForEnsemble, Job, JobQueue
from .live import LiveHub
from .security import Guard

log = logging.getLogger("scopesr.serve")

STATIC = Path(__file__).resolve().parent / "static"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
PANELS = ("nearest", "bicubic", "model")
IMAGE_BODY = {
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/tiff": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
    "required": True,
    "description": "The image file's bytes as the request body (curl --data-binary @cells.tif).",
}
ENSEMBLE_PARAM = {
    "name": "ensemble",
    "in": "query",
    "required": False,
    "description": "Self-ensemble: run the model on 1, 2, 4 or 8 flipped/transposed copies and average them "
    "(closer to the truth, most on noisy or aliased images; N times the time). Default 1. Not for results "
    f"over {BANDED_ABOVE_PX / 1e6:g} Mpx, which are written in bands (413).",
    "schema": {"type": "integer", "enum": list(ENSEMBLE_SIZES), "default": 1},
}
STRENGTH_PARAM = {
    "name": "strength",
    "in": "query",
    "required": False,
    "description": "How much of the model's change over bicubic to keep: bicubic + T x (model - bicubic); 1 "
    "(default) is the model, 0 bicubic. About 0.5 suits low-noise images sampled finer than their optics "
    "resolve (averaged confocal, Airyscan at high zoom); on noisy images it also halves the denoising. Not "
    f"for results over {BANDED_ABOVE_PX / 1e6:g} Mpx, which are written in bands (413).",
    "schema": {"type": "number", "minimum": STRENGTH_RANGE[0], "maximum": STRENGTH_RANGE[1], "default": 1.0},
}
ERRORS = {
    400: {"description": "unreadable image (truncated, corrupt), empty body, or a bad ensemble or strength"},
    401: {"description": "missing or wrong token"},
    408: {"description": "the upload took longer than the time limit"},
    413: {
        "description": "upload larger than the byte limit, more pixels than the pixel limit, "
        "or an ensemble or strength asked for a result written in bands"
    },
    415: {"description": "not a TIFF, PNG or JPEG"},
    422: {"description": "an image the model cannot take (channels)"},
    503: {"description": "the inference queue is full, or the time limit passed (see Retry-After)"},
}


def image_error_status(msg: str) -> int:
    """413 for size and pixel limits (decompression bombs), 415 for a non-image, else 400."""
    low = msg.lower()
    if "decompression bomb" in low or "more than the limit" in low or "too large" in low:
        return 413
    if "not an image" in low or "not a valid" in low:
        return 415
    return 400


def model_summary(up: Any) -> dict[str, Any]:
    """The card's summary for the pages and GET /v1/model: name, scale, halo, training sources, metrics."""
    c = up.card
    training = c.training if isinstance(c.training, dict) else {}
    data = training.get("data") if isinstance(training.get("data"), dict) else {}
    sources = [
        {"source": p.get("source"), "licence": p.get("licence")}
        for p in (data.get("provenance") or [])
        if isinstance(p, dict)
    ] or [{"source": s, "licence": None} for s in (data.get("sources") or [])]
    heldout: dict[str, Any] = {}
    held = c.metrics.get("heldout") if isinstance(c.metrics, dict) else None
    if isinstance(held, dict) and isinstance(held.get("summary"), dict):
        for row, e in held["summary"].items():
            if not isinstance(e, dict):
                continue
            mean = e.get("mean") if isinstance(e.get("mean"), dict) else {}
            heldout[row] = {
                "gain_db_vs_bicubic": e.get("gain_db_vs_bicubic"),
                "worst_gain_db": e.get("worst_gain_db"),
                "psnr_model": mean.get("psnr_model"),
                "psnr_bicubic": mean.get("psnr_bicubic"),
                "ssim_model": mean.get("ssim_model"),
                "ssim_bicubic": mean.get("ssim_bicubic"),
            }
    be = up.backend.describe() if hasattr(up.backend, "describe") else {}
    init = training.get("init_from")
    # every training run, oldest first (long run, fine-tunes, deepening), from the nested init records
    stages = [
        {
            "mode": st.get("mode"),
            "steps": st.get("steps"),
            "depth": st.get("depth"),
            "quant_aware": bool(st.get("quant_aware")),
            # a distillation: how many flipped copies the teacher averaged, and whether the teacher
            # was the very weights this stage started from (self-distillation)
            "teacher_ensemble": st.get("teacher_ensemble"),
            "self_distilled": _self_distilled(st),
        }
        for st in training_stages(training, c.arch_args.get("depth"))
    ]
    return {
        "name": c.name,
        "architecture": c.architecture,
        "scale": c.scale,
        "halo": c.halo,
        # parameters and multiply-accumulates per LR pixel, where the card records them
        "cost": c.cost,
        "in_channels": c.in_channels,
        "out_channels": c.out_channels,
        "format": c.format,
        "precision": c.precision,
        "artifact": c.artifact,
        "sha256": c.sha256,
        "degradation": c.degradation,
        "training": {
            "mode": training.get("mode"),
            "preset": training.get("preset"),
            "steps": training.get("steps"),
            # a fine-tune: the steps of the run it started from, and whether it trained through int8 rounding
            "started_from_steps": init.get("steps") if isinstance(init, dict) else None,
            "quant_aware": bool(training.get("quant_aware")),
            "stages": stages,
            "sources": sources,
        },
        "heldout_sources": held.get("sources") if isinstance(held, dict) else None,
        "heldout": heldout,
        "heldout_descriptions": (held.get("degradations") if isinstance(held, dict) else None) or {},
        "backend": be.get("backend", getattr(up.backend, "name", None)),
        "selection": (up.selection or {}).get("reason") if getattr(up, "selection", None) else None,
    }


def _self_distilled(stage: dict[str, Any]) -> bool:
    init = stage.get("init_from")
    teacher = stage.get("teacher_sha256")
    return bool(teacher) and isinstance(init, dict) and init.get("sha256") == teacher


def create_app(
    upscaler: Any,
    config: ServeConfig | None = None,
    live_frames: Any = None,
    live_name: str = "live",
    live_camera: bool = False,
    live_roi: tuple[int, int, int, int] | None = None,
) -> Any:
    """The app around a loaded Upscaler. ``live_frames``: a factory returning an iterable of
    frames for each pass over a file source, or one iterable (``live_camera=True``: a camera,
    read as fast as it delivers); None: the live page says no source was given. ``live_roi``: the
    first ROI (x, y, w, h; default a centred 64x64, the paper's video ROI). Returns the ASGI
    app (the FastAPI app inside the access guard, as ``.app``)."""
    cfg = config or ServeConfig()
    lock = threading.Lock()
    summary = model_summary(upscaler)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jq = JobQueue(
            upscaler,
            queue_size=cfg.queue_size,
            workers=cfg.workers,
            time_limit_s=cfg.time_limit_s,
            result_ttl_s=cfg.result_ttl_s,
            max_kept_bytes=cfg.max_kept_bytes,
            temp_root=cfg.temp_root,
            lock=lock,
        )
        hub = None
        if live_frames is not None:
            hub = LiveHub(
                upscaler,
                live_frames,
                live_name,
                live=live_camera,
                fps=cfg.live_fps,
                lock=lock,
                max_roi=cfg.max_live_roi,
            )
            if live_roi is not None:
                hub.set(roi=live_roi)
            hub.start()
        state["jobs"], state["hub"] = jq, hub
        try:
            yield
        finally:
            if hub is not None:
                hub.stop()
            jq.close()

    app = FastAPI(
        title="scopesr sr-serve",
        version="1",
        description="Super-resolution of microscopy images with the scopesr SDK: upload, live view, HTTP API.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.serve = state

    def jobs() -> JobQueue:
        return state["jobs"]

    def hub() -> LiveHub:
        h = state.get("hub")
        if h is None:
            raise HTTPException(404, "no live source: start sr-serve --source STACK.tif, or demo_pi/run.py --serve")
        return h

    # ------------------------------------------------------------------ pages
    for page, name in (("/", "index.html"), ("/live", "live.html"), ("/api", "api.html")):

        def serve_page(name: str = name) -> FileResponse:
            return FileResponse(STATIC / name, media_type="text/html")

        app.add_api_route(page, serve_page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------ uploads
    async def receive(request: Request, dest: Path) -> None:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise HTTPException(400, "bad Content-Length")
            if int(length) > cfg.max_upload_bytes:
                raise HTTPException(413, _too_big(int(length), cfg.max_upload_bytes))
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/"):
            raise HTTPException(
                415, "send the image's bytes as the body (curl --data-binary @cells.tif), not a multipart form"
            )
        n = 0
        try:
            with anyio.fail_after(cfg.time_limit_s):
                with open(dest, "wb") as fh:
                    async for chunk in request.stream():
                        n += len(chunk)
                        if n > cfg.max_upload_bytes:
                            raise HTTPException(413, _too_big(n, cfg.max_upload_bytes))
                        fh.write(chunk)
        except TimeoutError:
            raise HTTPException(408, f"the upload took longer than the time limit of {cfg.time_limit_s:g} s") from None
        if n == 0:
            raise HTTPException(400, "empty body: send the image's bytes as the request body")

    def ensemble_of(request: Request) -> int:
        """``?ensemble=N``: copies of the self-ensemble (1, 2, 4, 8; default 1)."""
        raw = request.query_params.get("ensemble", "1")
        try:
            return check_ensemble(int(raw))
        except (ValueError, InputError):
            raise HTTPException(
                400, f"ensemble={raw!r}: must be one of {', '.join(map(str, ENSEMBLE_SIZES))} (copies averaged)"
            ) from None

    def strength_of(request: Request) -> float:
        """``?strength=T``: the blend of the model with bicubic (0 to 2; default 1, the model)."""
        raw = request.query_params.get("strength", "1")
        try:
            return check_strength(float(raw))
        except (ValueError, InputError):
            lo, hi = STRENGTH_RANGE
            raise HTTPException(
                400, f"strength={raw!r}: must be a number from {lo:g} (bicubic) to {hi:g}; 1 is the model"
            ) from None

    async def accept(request: Request, pinned: bool = False) -> Job:
        n_copies = ensemble_of(request)
        strength = strength_of(request)
        jq = jobs()
        try:
            jq.reserve()
        except Busy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        job = jq.new_job()
        job.pinned = pinned
        job.ensemble = n_copies
        job.strength = strength
        try:
            upload = job.folder / "upload"
            await receive(request, upload)
            await run_in_threadpool(jq.decode, job, upload, cfg.max_pixels)
        except HTTPException:
            jq.forget(job)
            raise
        except ImageError as exc:
            jq.forget(job)
            raise HTTPException(image_error_status(str(exc)), str(exc)) from None
        except ModelIOError as exc:
            jq.forget(job)
            raise HTTPException(422, str(exc)) from None
        except ImageTooLargeForEnsemble as exc:
            jq.forget(job)
            raise HTTPException(413, str(exc)) from None
        except ScopesrError as exc:
            jq.forget(job)
            raise HTTPException(400, str(exc).replace(str(job.folder), "upload")) from None
        except BaseException:
            jq.forget(job)
            raise
        jq.submit(job)
        return job

    def failed(job: Job) -> HTTPException:
        headers = {"Retry-After": str(jobs().retry_after())} if job.status == 503 else None
        return HTTPException(job.status, job.error or "failed", headers=headers)

    @app.post(
        "/v1/upscale",
        summary="Upscale one image; the answer is the x4 TIFF",
        openapi_extra={"requestBody": IMAGE_BODY, "parameters": [ENSEMBLE_PARAM, STRENGTH_PARAM]},
        responses={200: {"content": {"image/tiff": {}}, "description": "the result, in the input's dtype"}, **ERRORS},
        response_class=Response,
    )
    async def upscale(request: Request) -> Response:
        job = await accept(request, pinned=True)
        while not job.done_event.is_set():
            await asyncio.sleep(0.02)
        if job.state != "done":
            exc = failed(job)
            jobs().delete(job.id)
            raise exc
        return FileResponse(
            job.result_path,
            media_type="image/tiff",
            filename=f"upload_x{summary['scale']}.tif",
            background=BackgroundTask(jobs().delete, job.id),
        )

    @app.post(
        "/v1/jobs",
        status_code=202,
        summary="Start upscaling one image; poll the job it answers",
        openapi_extra={"requestBody": IMAGE_BODY, "parameters": [ENSEMBLE_PARAM, STRENGTH_PARAM]},
        responses=ERRORS,
    )
    async def create_job(request: Request) -> JSONResponse:
        job = await accept(request)
        return JSONResponse(_job_json(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    def find(jid: str) -> Job:
        job = jobs().get(jid) if JOB_ID.match(jid) else None
        if job is None:
            raise HTTPException(404, f"no job {jid!r} (finished results are kept {cfg.result_ttl_s:g} s)")
        return job

    def _job_json(job: Job) -> dict[str, Any]:
        d = job.public()
        if job.state == "queued":
            d["position"] = jobs().position(job)
        if job.state == "done":
            d["result"] = f"/v1/jobs/{job.id}/result.tif"
            d["panels"] = {p: f"/v1/jobs/{job.id}/{p}.png" for p in PANELS}
        return d

    @app.get("/v1/jobs/{jid}", summary="A job's state, progress and, when done, its result and preview links")
    async def job_state(jid: str) -> JSONResponse:
        return JSONResponse(_job_json(find(jid)))

    @app.get(
        "/v1/jobs/{jid}/result.tif",
        summary="A finished job's x4 TIFF",
        response_class=Response,
        responses={200: {"content": {"image/tiff": {}}}},
    )
    async def job_result(jid: str) -> FileResponse:
        job = find(jid)
        if job.state != "done":
            if job.state == "failed":
                raise failed(job)
            raise HTTPException(409, f"job {jid} is {job.state}; poll GET /v1/jobs/{jid}")
        # no Content-Disposition name: the page's link names the file after the one the user dropped
        return FileResponse(job.result_path, media_type="image/tiff")

    @app.get(
        "/v1/jobs/{jid}/{panel}.png",
        summary="A finished job's preview panel: nearest (the LR crop), bicubic or model, 8-bit; "
        "plane=K for another plane of a stack (default: the middle one)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def job_panel(jid: str, panel: str, plane: int | None = None) -> Response:
        job = find(jid)
        if panel not in PANELS:
            raise HTTPException(404, f"panel {panel!r}: one of {', '.join(PANELS)}")
        if job.state != "done":
            raise HTTPException(409, f"job {jid} is {job.state}")
        preview = job.info.get("preview", {})
        if plane is None or plane == preview.get("plane_index"):
            return FileResponse(job.folder / f"{panel}.png", media_type="image/png")
        n = int(preview.get("planes", 1))
        if not 0 <= plane < n:
            raise HTTPException(422, f"plane {plane}: this image has planes 0 to {n - 1}")
        pngs = await run_in_threadpool(jobs().render_plane, job, plane)
        return Response(pngs[panel], media_type="image/png")

    @app.delete("/v1/jobs/{jid}", status_code=204, summary="Delete a finished job's files now")
    async def job_delete(jid: str) -> Response:
        job = find(jid)
        if not jobs().delete(job.id):
            raise HTTPException(409, f"job {jid} is {job.state}; it can be deleted once finished")
        return Response(status_code=204)

    # ------------------------------------------------------------------ model, health
    @app.get("/v1/model", summary="The model card's summary, the backend and the server's limits")
    async def model() -> dict[str, Any]:
        return {**summary, "limits": cfg.limits(), "live": state.get("hub") is not None, "queue": jobs().stats()}

    @app.get("/healthz", summary="Liveness: 200 while the server answers (no token needed)")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": summary["name"], "time": time.time()}

    # ------------------------------------------------------------------ live
    @app.get("/v1/live", summary="The live feed's state: source, method, ROI, FPS, latency")
    async def live_state() -> dict[str, Any]:
        return hub().state()

    @app.post("/v1/live", summary="Set the live method (nearest | bicubic | model) and/or the ROI [x, y, w, h]")
    async def live_set(settings: dict[str, Any]) -> dict[str, Any]:
        h = hub()
        try:
            h.set(mode=settings.get("mode"), roi=settings.get("roi"))
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None
        return h.state()

    @app.get(
        "/v1/live/mjpeg",
        summary="The live feed as MJPEG (multipart/x-mixed-replace): part=roi (default), frame, or both",
        response_class=StreamingResponse,
    )
    async def live_mjpeg(request: Request, part: str = "roi") -> StreamingResponse:
        h = hub()
        if part not in ("roi", "frame", "both"):
            raise HTTPException(422, "part: roi, frame or both")

        async def parts():
            h.viewer(+1)
            seq = 0
            try:
                while not await request.is_disconnected():
                    p = await run_in_threadpool(h.wait, seq, 1.0)
                    if p is None:
                        if h.ended:
                            break
                        continue
                    seq = p.seq
                    head = json.dumps(p.header)
                    for kind, data in (("frame", p.frame_jpeg), ("roi", p.roi_jpeg)):
                        if part in (kind, "both"):
                            yield (
                                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                + str(len(data)).encode()
                                + f"\r\nX-Part: {kind}\r\nX-Header: {head}\r\n\r\n".encode()
                                + data
                                + b"\r\n"
                            )
            finally:
                h.viewer(-1)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")

    @app.websocket("/v1/live/ws")
    async def live_ws(ws: WebSocket) -> None:
        h = state.get("hub")
        await ws.accept()
        if h is None:
            await ws.close(1011, "no live source")
            return
        h.viewer(+1)

        async def control() -> None:
            while True:
                msg = await ws.receive_json()
                try:
                    h.set(mode=msg.get("mode"), roi=msg.get("roi"))
                except (InputError, AttributeError) as exc:
                    await ws.send_json({"error": str(exc)})

        ctl = asyncio.create_task(control())
        seq = 0
        try:
            while not ctl.done():
                p = await run_in_threadpool(h.wait, seq, 0.5)
                if p is None:
                    if h.ended:
                        break
                    continue
                seq = p.seq
                await ws.send_bytes(p.ws_message())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            ctl.cancel()
            h.viewer(-1)

    return Guard(app, token=cfg.token, allowed_hosts=cfg.allowed_hosts)


def _too_big(n: int, limit: int) -> str:
    return (
        f"upload of {n / 2**20:.1f} MB is over the limit of {limit / 2**20:.0f} MB "
        "(sr-serve --max-upload-mb; for bigger images use sr-upscale)"
    )
