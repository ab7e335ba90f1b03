"""The live page's engine: frames from a source, the ROI super-resolved, JPEGs for the viewers.

One thread reads the source (a TIFF stack or image folder here; ``demo_pi/run.py --serve``
passes the demo's cameras and videos), cuts the ROI, upscales it with the chosen method
(nearest, bicubic or the model, under the lock shared with the upload queue) and publishes the
newest frame as a :class:`Packet`. Viewers (WebSocket or MJPEG) always send the newest packet
and skip the ones they missed, so a slow link drops frames instead of falling behind. The
loop runs only while someone watches. The ROI and the method are shared: one microscope, one
view of it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk import ImageError, InputError, find_inputs, read_image, sample_path
from scopesr.sdk.compare import to_uint8

from .imaging import bicubic, encode, frame_view, nearest

log = logging.getLogger("scopesr.serve.live")

MODES = ("nearest", "bicubic", "model")
DEFAULT_ROI = 64


@dataclass
class Packet:
    seq: int
    header: dict[str, Any]
    frame_jpeg: bytes
    roi_jpeg: bytes

    def ws_message(self) -> bytes:
        """One WebSocket message: 4-byte big-endian header length, JSON header, frame JPEG, ROI JPEG."""
        head = json.dumps({**self.header, "frame_bytes": len(self.frame_jpeg), "roi_bytes": len(self.roi_jpeg)})
        hb = head.encode()
        return len(hb).to_bytes(4, "big") + hb + self.frame_jpeg + self.roi_jpeg


class Meter:
    """Frames per second over the last ``window`` frames."""

    def __init__(self, window: int = 30) -> None:
        self.times: deque[float] = deque(maxlen=window + 1)

    def tick(self) -> float:
        self.times.append(time.perf_counter())
        if len(self.times) < 2:
            return 0.0
        dt = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / dt if dt > 0 else 0.0


def file_frames(spec: str, max_pixels: int = 1 << 28) -> tuple[str, Callable[[], Iterable[np.ndarray]]]:
    """A TIFF stack / time-lapse, an image folder, one image or ``sample:KEY`` as a replayable
    frame source, read with the SDK's reader (torch-free, no OpenCV). Returns (name, factory)."""
    if spec.startswith("sample:"):
        path = sample_path(spec.split(":", 1)[1])
    else:
        path = Path(spec).expanduser()
    if path.is_dir():
        files = find_inputs([path])
        if not files:
            raise InputError(f"{path}: no images (PNG, JPEG, TIFF) in this folder")

        def folder() -> Iterator[np.ndarray]:
            for f in files:
                try:
                    yield from _planes(read_image(f, max_pixels=max_pixels))
                except ImageError as exc:
                    log.warning("%s", exc)

        return f"folder:{path.name}", folder
    img = read_image(path, max_pixels=max_pixels)
    return f"{'tiff' if img.format == 'tiff' else 'image'}:{path.name}", lambda: _planes(img)


def _planes(img: Any) -> Iterator[np.ndarray]:
    """The 2-D frames (H, W) or (H, W, C) of an image, over its T and Z axes."""
    a, axes = img.array, img.axes
    if "C" in axes:
        a = np.moveaxis(a, axes.index("C"), -1)
        axes = axes.replace("C", "") + "C"
    lead = a.shape[: axes.index("Y")]
    for idx in np.ndindex(*lead):
        yield np.asarray(a[idx])


class LiveHub:
    """Runs the live loop over ``frames`` (a factory returning a fresh iterable each pass, or one
    iterable for a camera). ``live``: a camera (never paced, never replayed)."""

    def __init__(
        self,
        upscaler: Any,
        frames: Callable[[], Iterable[np.ndarray]] | Iterable[np.ndarray],
        name: str,
        *,
        live: bool = False,
        fps: float = 10.0,
        lock: threading.Lock | None = None,
        max_roi: int = 256,
        jpeg_quality: int = 85,
    ) -> None:
        self.upscaler = upscaler
        self.scale = int(upscaler.scale)
        self.frames = frames
        self.name = name
        self.live = live
        self.fps_target = fps
        self.lock = lock or threading.Lock()
        self.max_roi = max_roi
        self.quality = jpeg_quality
        self.mode = "model"
        self.roi: tuple[int, int, int, int] | None = None
        self.frame_hw: tuple[int, int] | None = None
        self.packet: Packet | None = None
        self.error: str | None = None
        self.ended = False
        self._viewers = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.meter = Meter()
        self.frames_done = 0

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="sr-serve-live", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def viewer(self, delta: int) -> None:
        with self._cond:
            self._viewers = max(0, self._viewers + delta)
            self._cond.notify_all()

    def set(self, mode: str | None = None, roi: Any = None) -> None:
        """Change the method and/or the ROI (x, y, w, h in frame pixels); InputError when invalid."""
        if mode is not None:
            if mode not in MODES:
                raise InputError(f"mode {mode!r}: one of {', '.join(MODES)}")
            self.mode = mode
        if roi is not None:
            try:
                x, y, w, h = (int(v) for v in roi)
            except (TypeError, ValueError):
                raise InputError(f"roi {roi!r}: four integers x, y, w, h") from None
            if w < 1 or h < 1 or x < 0 or y < 0:
                raise InputError(f"roi {roi!r}: x, y >= 0 and w, h >= 1")
            self.roi = (x, y, min(w, self.max_roi), min(h, self.max_roi))

    def state(self) -> dict[str, Any]:
        head = self.packet.header if self.packet else {}
        return {
            "source": self.name,
            "mode": self.mode,
            "roi": list(self.resolve_roi()) if self.frame_hw else None,
            "frame": {"width": self.frame_hw[1], "height": self.frame_hw[0]} if self.frame_hw else None,
            "scale": self.scale,
            "fps": head.get("fps", 0.0),
            "sr_ms": head.get("sr_ms"),
            "latency_ms": head.get("latency_ms"),
            "frames": self.frames_done,
            "viewers": self._viewers,
            "ended": self.ended,
            "error": self.error,
            "max_roi": self.max_roi,
        }

    def resolve_roi(self) -> tuple[int, int, int, int]:
        """The ROI inside the current frame: shifted back in, shrunk only if the frame is smaller."""
        assert self.frame_hw is not None
        fh, fw = self.frame_hw
        if self.roi is None:
            w, h = min(DEFAULT_ROI, fw), min(DEFAULT_ROI, fh)
            return (fw - w) // 2, (fh - h) // 2, w, h
        x, y, w, h = self.roi
        w, h = max(1, min(w, fw)), max(1, min(h, fh))
        return min(max(0, x), fw - w), min(max(0, y), fh - h), w, h

    def wait(self, after: int, timeout: float) -> Packet | None:
        """The newest packet with a sequence number above ``after`` (None on timeout or stop)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                p = self.packet
                if p is not None and p.seq > after:
                    return p
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
        return None

    # ------------------------------------------------------------------ the loop
    def _source(self) -> Iterator[np.ndarray]:
        if callable(self.frames):
            while not self._stop.is_set():
                n = 0
                for f in self.frames():
                    n += 1
                    yield f
                if n == 0:
                    return
        else:
            yield from self.frames

    def _loop(self) -> None:
        period = 1.0 / self.fps_target if (self.fps_target > 0 and not self.live) else 0.0
        next_t = time.perf_counter()
        seq = 0
        try:
            for frame in self._source():
                with self._cond:
                    while self._viewers == 0 and not self._stop.is_set():
                        self._cond.wait(0.5)
                        next_t = time.perf_counter()
                if self._stop.is_set():
                    break
                if period:
                    delay = next_t - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    next_t = max(next_t + period, time.perf_counter() - period)
                t_cap_wall, t0 = time.time(), time.perf_counter()
                seq += 1
                packet = self._process(seq, np.asarray(frame), t_cap_wall, t0)
                with self._cond:
                    self.packet = packet
                    self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - the page shows why the feed stopped
            log.exception("live source %s failed", self.name)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended = True
            with self._cond:
                self._cond.notify_all()

    def _process(self, seq: int, frame: np.ndarray, t_cap_wall: float, t0: float) -> Packet:
        self.frame_hw = (int(frame.shape[0]), int(frame.shape[1]))
        x, y, w, h = self.resolve_roi()
        lr = frame[y : y + h, x : x + w]
        mode = self.mode
        view, (lo, hi) = frame_view(frame)
        t1 = time.perf_counter()
        if mode == "model":
            with self.lock:  # the live path's halo, as the Pi demo's: the frame's pixels around the ROI, or
                # the network's own zero padding where that runs the ROI as it is (Upscaler.resolve_halo)
                sr = self.upscaler.upscale_region(frame, (x, y, w, h), halo="fast")
        elif mode == "bicubic":
            sr = bicubic(lr, self.scale)
        else:
            sr = nearest(lr, self.scale)
        t2 = time.perf_counter()
        sr8 = to_uint8(sr if sr.ndim == 2 or sr.shape[-1] == 3 else sr[..., 0], lo, hi)
        frame_jpeg = encode(view, "JPEG", self.quality)
        roi_jpeg = encode(sr8, "JPEG", self.quality)
        t3 = time.perf_counter()
        self.frames_done += 1
        header = {
            "seq": seq,
            "t_capture": t_cap_wall,
            "mode": mode,
            "roi": [x, y, w, h],
            "frame_w": self.frame_hw[1],
            "frame_h": self.frame_hw[0],
            "scale": self.scale,
            "sr_ms": round(1000 * (t2 - t1), 2),
            "latency_ms": round(1000 * (t3 - t0), 2),
            "fps": round(self.meter.tick(), 2),
            "source": self.name,
        }
        return Packet(seq, header, frame_jpeg, roi_jpeg)
