"""The demo's pipeline: capture thread -> bounded queue -> ROI cut + SR -> sink.

Capture and inference overlap: a thread reads the source into a small queue while the
inference loop works on the previous frame. Live sources (cameras) drop the oldest queued
frame when inference lags, so what is shown is always recent; file sources block instead,
so every frame is processed. The same ``RoiProcessor`` is used by the benchmark
(benchmarks/bench_pi_pipeline.py), so its figures are the demo's.

Only ``scopesr.sdk`` does the SR (ROI with its context, normalise, infer, back to the frame's dtype).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("demo_pi.pipeline")

DEFAULT_ROI = 64  # the paper's 64x64 LR video ROI


class UpscalerLike(Protocol):
    def upscale(self, image: np.ndarray) -> np.ndarray: ...


Roi = tuple[int, int, int, int]  # x, y, w, h in LR (frame) pixels


def parse_roi(text: str) -> Roi:
    """'x,y,w,h' -> (x, y, w, h)."""
    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"--roi {text!r}: expected four integers x,y,w,h (e.g. 100,80,64,64)") from None
    if x < 0 or y < 0:
        raise ValueError(
            f"--roi {text!r}: the ROI must lie inside the frame: its top-left corner x,y must be >= 0 "
            "(LR pixels from the frame's top-left), e.g. 0,0,64,64"
        )
    if w < 1 or h < 1:
        raise ValueError(f"--roi {text!r}: the ROI's width and height must be >= 1, e.g. 0,0,64,64")
    return x, y, w, h


def centred_roi(frame_hw: tuple[int, int], size: int = DEFAULT_ROI) -> Roi:
    """A size x size ROI in the middle of the frame (smaller when the frame is smaller)."""
    h, w = frame_hw
    rw, rh = min(size, w), min(size, h)
    return (w - rw) // 2, (h - rh) // 2, rw, rh


def clamp_roi(roi: Roi, frame_hw: tuple[int, int]) -> Roi:
    """Keep the ROI inside the frame (shift it back, shrink it only if the frame is smaller)."""
    h, w = frame_hw
    x, y, rw, rh = roi
    rw, rh = max(1, min(rw, w)), max(1, min(rh, h))
    x, y = min(max(0, x), w - rw), min(max(0, y), h - rh)
    return x, y, rw, rh


#: the live path's default halo: "fast" = 0 (the network's own zero padding past the edge) where
#: the frame or ROI then runs as one tile and computes fewer pixels (a 64x64 ROI: 64x64 instead of
#: 82x82), else the receptive field (``Upscaler.resolve_halo``). On whole frames halo 0 scores as
#: well as the mirror; at an ROI's edge it gives up 0.07-0.10 dB against the frame's real pixels
#: (benchmarks/results/live_halo.md).
LIVE_HALO = "fast"


class RoiProcessor:
    """Cut the ROI (or take the full frame) and super-resolve it with any ``.upscale``.

    An SDK upscaler gets the whole frame and the ROI (``upscale_region``). ``halo``: what the
    network sees past the edge: ``"fast"`` (default) 0 where the region runs as one tile and that
    computes fewer pixels, else "auto"; 0 its own zero padding; ``"auto"`` a receptive field of
    the frame's real pixels around the ROI (a mirror past the frame's border), at
    (w + 2*halo) x (h + 2*halo) pixels of compute.

    ``roi`` may be reassigned from another thread (mouse selection): a tuple is replaced
    atomically, and each frame reads it once.
    """

    def __init__(
        self, upscaler: UpscalerLike, roi: Roi | None = None, full: bool = False, halo: int | str = LIVE_HALO
    ) -> None:
        self.upscaler = upscaler
        self.full = full
        self.roi: Roi | None = roi
        self.halo = halo
        self.last_halo: int | str | None = None  # what the last frame used (run.json reports it)

    def halo_for(self, h: int, w: int) -> int | str:
        """The halo this processor uses for an (h, w) region ("fast" resolved by the SDK)."""
        resolve = getattr(self.upscaler, "resolve_halo", None)
        return resolve(self.halo, h, w) if resolve is not None else self.halo

    def resolve(self, frame_hw: tuple[int, int]) -> Roi:
        h, w = frame_hw
        if self.full:
            return 0, 0, w, h
        roi = self.roi if self.roi is not None else centred_roi(frame_hw)
        return clamp_roi(roi, frame_hw)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, Roi]:
        roi = self.resolve(frame.shape[:2])
        x, y, w, h = roi
        lr = frame[y : y + h, x : x + w]
        region = getattr(self.upscaler, "upscale_region", None)
        if region is None:  # a plain upscaler (a peer): the cut-out alone
            sr = self.upscaler.upscale(lr)
        else:
            self.last_halo = self.halo_for(h, w)
            sr = region(frame, roi, halo=self.last_halo)
        return lr, sr, roi


@dataclass
class Result:
    index: int  # frame number from the source (0-based)
    roi: Roi
    lr: np.ndarray  # the LR ROI, in the frame's dtype
    sr: np.ndarray  # the SR ROI, same dtype, scale x larger
    latency_s: float  # capture -> SR done
    fps: float  # rolling, over the last frames
    frame: np.ndarray | None = None  # the whole frame (for the window's ROI picker)


class FpsMeter:
    """Frames per second over a sliding window of the last ``window`` frames."""

    def __init__(self, window: int = 30) -> None:
        self.times: deque[float] = deque(maxlen=window + 1)

    def tick(self, t: float | None = None) -> float:
        self.times.append(time.perf_counter() if t is None else t)
        if len(self.times) < 2:
            return 0.0
        dt = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / dt if dt > 0 else 0.0


_END = object()


class CaptureThread(threading.Thread):
    """Reads frames into a bounded queue; for live sources, drops the oldest when full."""

    def __init__(
        self, frames: Iterable[np.ndarray], maxsize: int = 4, drop_old: bool = False, limit: int | None = None
    ) -> None:
        super().__init__(name="capture", daemon=True)
        self.frames, self.drop_old, self.limit = frames, drop_old, limit
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.dropped = 0

    def _put(self, item: Any) -> bool:
        while not self.stop_event.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.drop_old and item is not _END:
                    try:
                        self.q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def run(self) -> None:
        try:
            for i, frame in enumerate(self.frames):
                if self.stop_event.is_set() or (self.limit is not None and i >= self.limit):
                    break
                if not self._put((i, frame, time.perf_counter())):
                    break
        except BaseException as exc:  # reported by the consumer, not lost in the thread
            self.error = exc
        finally:
            # The end marker must get through even to a full queue.
            while True:
                try:
                    self.q.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self.stop_event.is_set():
                        try:
                            self.q.get_nowait()
                        except queue.Empty:
                            pass

    def stop(self) -> None:
        self.stop_event.set()


@dataclass
class Stats:
    frames: int = 0
    wall_s: float = 0.0
    infer_s: float = 0.0
    dropped: int = 0
    latencies: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def infer_fps(self) -> float:
        return self.frames / self.infer_s if self.infer_s > 0 else 0.0


def run_pipeline(
    frames: Iterable[np.ndarray],
    processor: RoiProcessor,
    sink: Callable[[Result], None],
    max_frames: int | None = None,
    live: bool = False,
    stop_event: threading.Event | None = None,
) -> Stats:
    """Run capture (in a thread) and SR (here) until the source ends, ``max_frames`` or a stop.

    ``stop_event`` lets another thread (a window, a signal handler) end the run cleanly.
    KeyboardInterrupt also ends it cleanly: the stats so far are returned with ``interrupted``.
    """
    cap = CaptureThread(frames, maxsize=4, drop_old=live, limit=max_frames)
    stats = Stats()
    meter = FpsMeter()
    stop_event = stop_event or threading.Event()
    t0 = time.perf_counter()
    cap.start()
    finished = False  # the source ended or max_frames was reached (not stopped from outside)
    try:
        while not stop_event.is_set():
            try:
                item = cap.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                finished = True
                break
            index, frame, t_cap = item
            t1 = time.perf_counter()
            lr, sr, roi = processor(frame)
            t2 = time.perf_counter()
            stats.infer_s += t2 - t1
            stats.frames += 1
            stats.latencies.append(t2 - t_cap)
            sink(Result(index, roi, lr, sr, t2 - t_cap, meter.tick(t2), frame))
            if max_frames is not None and stats.frames >= max_frames:
                finished = True
                break
    except KeyboardInterrupt:
        stats.interrupted = True
        log.info("interrupted: stopping cleanly")
    finally:
        stats.wall_s = time.perf_counter() - t0
        stats.interrupted = not finished
        cap.stop()
        cap.join(timeout=5)
        stats.dropped = cap.dropped
    if cap.error is not None:
        raise cap.error
    return stats


# --------------------------------------------------------------------------- display helpers
def display_range(lr: np.ndarray) -> tuple[float, float]:
    """The grey range used to show both panes (the same for both, so they compare fairly)."""
    if lr.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = np.percentile(lr, (0.5, 99.8))
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def to_uint8(img: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    """Any dtype -> uint8 grey or RGB for display (first 3 channels; 2-channel: first)."""
    if img.ndim == 3 and img.shape[2] not in (3,):
        img = img[..., 0] if img.shape[2] != 4 else img[..., :3]
    if img.dtype == np.uint8 and rng == (0.0, 255.0):
        return np.ascontiguousarray(img)
    lo, hi = rng
    out = (img.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def nearest_up(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)


def side_by_side(result: Result, scale: int, gap: int = 4, label: bool = True) -> np.ndarray:
    """uint8 image: nearest-upscaled LR | gap | SR, with an FPS label on the SR pane."""
    rng = display_range(result.lr)
    near = to_uint8(nearest_up(result.lr, scale), rng)
    sr = to_uint8(result.sr, rng)
    if near.ndim != sr.ndim:  # grey LR with an RGB model or vice versa: show both as RGB
        near = near if near.ndim == 3 else np.stack([near] * 3, -1)
        sr = sr if sr.ndim == 3 else np.stack([sr] * 3, -1)
    h = max(near.shape[0], sr.shape[0])
    w = near.shape[1] + gap + sr.shape[1]
    canvas = np.zeros((h, w) + near.shape[2:], np.uint8)
    canvas[: near.shape[0], : near.shape[1]] = near
    canvas[: sr.shape[0], near.shape[1] + gap :] = sr
    if label:
        from PIL import Image, ImageDraw

        im = Image.fromarray(canvas)
        d = ImageDraw.Draw(im)
        d.text((4, 2), "nearest", fill=255 if canvas.ndim == 2 else (255, 255, 0))
        d.text(
            (near.shape[1] + gap + 4, 2), f"SR  {result.fps:5.1f} fps", fill=255 if canvas.ndim == 2 else (255, 255, 0)
        )
        canvas = np.asarray(im)
    return canvas
