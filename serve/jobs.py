"""The bounded inference queue: uploads become jobs, a fixed number of worker threads run them.

Admission is decided before the upload is read: ``reserve()`` takes one of ``queue_size +
workers`` slots or raises :class:`Busy` (HTTP 503 with Retry-After), so memory holds at most
that many decoded inputs whatever the load. Each job lives in its own folder of a private
temporary folder (mode 0700) under a random name; an uploaded file's name is never used. A
result is kept ``result_ttl_s`` after it finished, then deleted, and the oldest finished results
go earlier when all kept ones together pass ``max_kept_bytes`` (disk stays bounded whatever the
traffic); the whole folder goes at shutdown.

The model runs under one lock shared with the live page (TFLite interpreters are not
thread-safe). Big images run band by band (one row of tiles), taking the lock per band, so a
live viewer waits for one band, not for a whole upload, and the job reports its progress.
"""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import Image, ImageError, ModelIOError, ScopesrError, read_image, write_image, write_tiff_streaming
from scopesr.sdk.upscaler import whole_plane_options

from .imaging import previews

log = logging.getLogger("scopesr.serve.jobs")

#: results with more output pixels than this run band by band (progress, a shared lock per band)
BANDED_ABOVE_PX = 16_000_000


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(p.stat().st_size for p in folder.iterdir())
    except OSError:
        return 0


class Busy(Exception):
    """Every slot of the queue is taken: answer 503 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the inference queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class ImageTooLargeForEnsemble(ScopesrError):
    """The upload's result would be streamed to disk, which the self-ensemble and the strength blend
    cannot do (HTTP 413)."""


class TimeLimit(ScopesrError):
    """A job did not finish within the request time limit."""


@dataclass
class Job:
    id: str
    folder: Path
    created: float = field(default_factory=time.monotonic)
    deadline: float = 0.0
    state: str = "queued"  # queued | running | done | failed
    progress: float = 0.0
    error: str | None = None
    status: int = 200  # the HTTP status that goes with a failure
    image: Image | None = None
    info: dict[str, Any] = field(default_factory=dict)
    finished: float | None = None
    done_event: threading.Event = field(default_factory=threading.Event)
    slot_held: bool = True
    #: a POST /v1/upscale waits to send it: not evicted for disk space (the TTL still applies)
    pinned: bool = False
    #: copies of the self-ensemble (``?ensemble=N``); 1 = one pass
    ensemble: int = 1
    #: the blend with bicubic (``?strength=T``); 1 = the model
    strength: float = 1.0

    @property
    def result_path(self) -> Path:
        return self.folder / "result.tif"

    def public(self) -> dict[str, Any]:
        info = {k: v for k, v in self.info.items() if not k.startswith("_")}
        d = {"id": self.id, "state": self.state, "progress": round(self.progress, 4), **info}
        if self.error:
            d["error"] = self.error
        return d


class JobQueue:
    """``reserve`` a slot, ``new_job`` + ``submit`` the decoded image, poll ``get`` or wait on the job."""

    def __init__(
        self,
        upscaler: Any,
        *,
        queue_size: int = 4,
        workers: int = 1,
        time_limit_s: float = 120.0,
        result_ttl_s: float = 600.0,
        max_kept_bytes: int = 2 << 30,
        temp_root: str | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.upscaler = upscaler
        self.scale = int(upscaler.scale)
        self.capacity = queue_size + workers
        self.workers = workers
        self.time_limit_s = time_limit_s
        self.result_ttl_s = result_ttl_s
        self.max_kept_bytes = max_kept_bytes
        self.lock = lock or threading.Lock()
        self.folder = Path(tempfile.mkdtemp(prefix="scopesr-serve-", dir=temp_root))  # mode 0700
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._q: queue.Queue[Job | None] = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._jobs_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._durations: list[float] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"sr-serve-worker-{i}", daemon=True) for i in range(workers)
        ]
        self._closed = False
        self.counts = {"accepted": 0, "refused_busy": 0, "done": 0, "failed": 0}
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ admission
    def reserve(self) -> None:
        """Take a slot, or raise Busy with an estimate of when one frees up."""
        if not self._slots.acquire(blocking=False):
            self.counts["refused_busy"] += 1
            raise Busy(self.retry_after())
        self.counts["accepted"] += 1

    def release(self) -> None:
        self._slots.release()

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the recent mean job time times the jobs ahead per worker."""
        recent = self._durations[-20:]
        mean = sum(recent) / len(recent) if recent else 1.0
        ahead = self._q.qsize() + 1
        return max(1, min(120, int(np.ceil(mean * ahead / max(1, self.workers)))))

    def new_job(self) -> Job:
        """A job with its own private folder (call after reserve(); the slot passes to the job)."""
        self.cleanup()
        jid = uuid.uuid4().hex
        folder = self.folder / jid
        folder.mkdir(mode=0o700)
        job = Job(jid, folder, deadline=time.monotonic() + self.time_limit_s)
        with self._jobs_lock:
            self._jobs[jid] = job
        return job

    def decode(self, job: Job, upload: Path, max_pixels: int) -> None:
        """Read the uploaded file with the SDK's reader (its size, pixel and bomb checks run
        before any pixel is decoded). Raises ImageError with the server's path left out."""
        try:
            img = read_image(upload, max_pixels=max_pixels)
        except ImageError as exc:
            raise ImageError(str(exc).replace(str(upload), "upload")) from None
        self._check_fits(img)
        whole = " and ".join(whole_plane_options(job.ensemble, job.strength))
        if whole and self.banded(img):
            out_mpx = int(np.prod(img.shape, dtype=np.int64)) * self.scale**2 / 1e6
            raise ImageTooLargeForEnsemble(
                f"the result ({out_mpx:.0f} Mpx) is written to disk in bands, which {whole} does not do "
                f"(up to {BANDED_ABOVE_PX / 1e6:.0f} Mpx it does); send it without {whole}, or a smaller image"
            )
        job.image = img
        job.info["ensemble"] = job.ensemble
        job.info["strength"] = job.strength
        job.info["input"] = {"shape": list(img.shape), "axes": img.axes, "dtype": str(img.dtype), "format": img.format}
        out_shape = [d * self.scale if a in "YX" else d for a, d in zip(img.axes, img.shape)]
        if "C" in img.axes and self.upscaler.card.in_channels == img.channels:
            out_shape[img.axes.index("C")] = self.upscaler.card.out_channels
        job.info["output"] = {"shape": out_shape, "axes": img.axes, "dtype": str(img.dtype), "format": "tiff"}

    def _check_fits(self, img: Image) -> None:
        card = self.upscaler.card
        c = img.channels
        if c != card.in_channels and not (card.in_channels == 1 and card.out_channels == 1):
            raise ModelIOError(f"the image has {c} channels; the model {card.name!r} takes {card.in_channels}")

    def submit(self, job: Job) -> None:
        self._q.put(job)

    def forget(self, job: Job) -> None:
        """Drop a job that never reached the queue (its upload was refused) and free its slot."""
        with self._jobs_lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)
        if job.slot_held:
            job.slot_held = False
            self.release()

    def get(self, jid: str) -> Job | None:
        with self._jobs_lock:
            return self._jobs.get(jid)

    def delete(self, jid: str) -> bool:
        with self._jobs_lock:
            job = self._jobs.get(jid)
            if job is None or job.state in ("queued", "running"):
                return False
            self._jobs.pop(jid, None)
        shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def position(self, job: Job) -> int:
        """How many jobs are ahead of this one (0: running or next)."""
        with self._jobs_lock:
            ahead = [j for j in self._jobs.values() if j.state == "queued" and j.created < job.created]
        return len(ahead)

    def cleanup(self) -> None:
        """Delete finished jobs older than the time to live, then the oldest finished ones while
        all kept files together are over ``max_kept_bytes``."""
        now = time.monotonic()
        with self._jobs_lock:
            done = [j for j in self._jobs.values() if j.finished is not None]
        old = [j for j in done if now - j.finished > self.result_ttl_s]
        kept = sorted((j for j in done if j not in old and not j.pinned), key=lambda j: j.finished or 0.0)
        sizes = {j.id: _folder_bytes(j.folder) for j in kept}
        total = sum(sizes.values()) + sum(_folder_bytes(j.folder) for j in done if j.pinned and j not in old)
        while kept and total > self.max_kept_bytes:
            j = kept.pop(0)
            total -= sizes[j.id]
            old.append(j)
        with self._jobs_lock:
            for j in old:
                self._jobs.pop(j.id, None)
        for j in old:
            shutil.rmtree(j.folder, ignore_errors=True)

    def stats(self) -> dict[str, Any]:
        with self._jobs_lock:
            states = [j.state for j in self._jobs.values()]
        return {
            "queued": states.count("queued"),
            "running": states.count("running"),
            "kept": states.count("done") + states.count("failed"),
            "capacity": self.capacity,
            **self.counts,
        }

    def close(self) -> None:
        """Stop the workers and remove the private folder with everything in it."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._q.put(None)
        for t in self._threads:
            t.join(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------ work
    def _work(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            t0 = time.monotonic()
            job.state = "running"
            try:
                self._run(job)
                job.state, job.progress = "done", 1.0
                self.counts["done"] += 1
            except TimeLimit as exc:
                job.state, job.error, job.status = "failed", str(exc), 503
            except ModelIOError as exc:
                job.state, job.error, job.status = "failed", str(exc), 422
            except ScopesrError as exc:
                job.state, job.error, job.status = "failed", str(exc).replace(str(job.folder), "upload"), 400
            except MemoryError:
                job.state, job.error, job.status = "failed", "not enough memory for this image; try a smaller one", 503
            except OSError as exc:  # the disk is full (or the folder went): the server's state, not the image's
                log.warning("job %s: cannot write its result (%s)", job.id, exc)
                job.state, job.status = "failed", 503
                job.error = (
                    f"the server cannot store this result now ({exc.strerror or type(exc).__name__}); retry later"
                )
            except Exception as exc:  # noqa: BLE001 - a worker must survive any one job
                log.exception("job %s failed", job.id)
                job.state, job.error, job.status = "failed", f"internal error ({type(exc).__name__})", 500
            finally:
                if job.state == "failed":
                    self.counts["failed"] += 1
                    job.result_path.unlink(missing_ok=True)
                # the input's memory (or memory map) goes now; a stack's file stays for the previews of
                # its other planes (deleted with the job)
                if job.state != "done" or int(job.info.get("preview", {}).get("planes", 1)) <= 1:
                    (job.folder / "upload").unlink(missing_ok=True)
                job.image = None
                job.info["seconds"] = round(time.monotonic() - t0, 3)
                self._durations.append(time.monotonic() - t0)
                del self._durations[:-50]
                job.finished = time.monotonic()
                job.slot_held = False
                self.release()
                job.done_event.set()
                self.cleanup()

    def render_plane(self, job: Job, plane: int) -> dict[str, bytes]:
        """The three preview PNGs of one plane of a finished stack (the last one asked is kept)."""
        with self._render_lock:  # one at a time: each reads its input and result planes
            cached = job.info.get("_plane_cache")
            if cached and cached[0] == plane:
                return cached[1]
            lr = read_image(job.folder / "upload", max_pixels=2**62, check_finite=False)
            sr = read_image(job.result_path, max_pixels=2**62, memmap=True, check_finite=False)
            pngs, _ = previews(lr.array, lr.axes, sr.array, self.scale, plane=plane)
            job.info["_plane_cache"] = (plane, pngs)
            return pngs

    def _check_time(self, job: Job) -> None:
        if time.monotonic() > job.deadline:
            raise TimeLimit(
                f"the request did not finish within the time limit of {self.time_limit_s:g} s "
                "(the server is busy or the image is too large for the limit: sr-serve --time-limit)"
            )

    def banded(self, img: Image) -> bool:
        """Whether the result is written band by band (too large to hold in memory comfortably)."""
        out_px = int(np.prod(img.shape, dtype=np.int64)) * self.scale**2
        yi = img.axes.index("Y")
        return (
            out_px > BANDED_ABOVE_PX
            and img.axes[yi:] in ("YX", "YXC")
            and ("C" not in img.axes[:yi] or self.upscaler.card.in_channels == 1)
        )

    def _run(self, job: Job) -> None:
        img = job.image
        assert img is not None
        up, s = self.upscaler, self.scale
        self._check_time(job)
        if self.banded(img):
            self._run_banded(job, img)
            # the result is on disk, never whole in memory: the previews read their crop from a memory map
            sr_array = read_image(job.result_path, max_pixels=2**62, memmap=True, check_finite=False).array
        else:
            # the call sr-upscale makes for a result of this size: the same result, bit for bit
            with self.lock:
                self._check_time(job)
                sr_array = up.upscale(img.array, axes=img.axes, ensemble=job.ensemble, strength=job.strength)
            job.progress = 0.95
            write_image(job.result_path, sr_array, img.axes, img.metadata, scale=s)
        pngs, info = previews(img.array, img.axes, sr_array, s)
        for name, data in pngs.items():
            (job.folder / f"{name}.png").write_bytes(data)
        job.info["preview"] = info

    def _run_banded(self, job: Job, img: Image) -> None:
        up, s = self.upscaler, self.scale
        yi = img.axes.index("Y")
        lead = img.shape[:yi]
        plane_axes = img.axes[yi:]
        out_shape = tuple(lead) + tuple(d * s if a in "YX" else d for a, d in zip(plane_axes, img.shape[yi:]))
        total = max(1, int(np.prod(lead, dtype=np.int64)) * img.shape[yi] * s)
        done = 0

        def bands():
            nonlocal done
            for idx in np.ndindex(*lead):
                plane = img.array[idx] if idx else img.array
                it = up.upscale_bands(plane, axes=plane_axes)
                while True:
                    self._check_time(job)
                    with self.lock:
                        item = next(it, None)
                    if item is None:
                        break
                    band = item[1]
                    done += band.shape[0]
                    job.progress = min(0.95, 0.95 * done / total)
                    yield band

        write_tiff_streaming(job.result_path, out_shape, img.dtype, img.axes, bands(), img.metadata, scale=s)
