"""Headless outputs: PNG (or TIFF) frames in the source's dtype, an animated GIF and an MP4.

Writing happens in its own thread behind a bounded queue, so encoding PNGs overlaps
inference (and cannot grow memory without bound). Every file is written to a temporary
name in the same folder and renamed into place, so a crash or Ctrl-C never leaves a
half-written frame that looks whole.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pipeline import Result, side_by_side

from scopesr.sdk import atomic_write_text

log = logging.getLogger("demo_pi.outputs")


def _tmp(path: Path) -> Path:
    # keep the suffix last: PIL, tifffile and OpenCV pick the format from it
    return path.with_name(f".{path.stem}.{os.getpid()}.part{path.suffix}")


def save_frame(path_stem: Path, img: np.ndarray) -> Path:
    """PNG for uint8 and 2-D uint16 (Pillow writes 16-bit grey PNG); TIFF for everything else."""
    png_ok = (
        img.dtype == np.uint8
        and img.ndim in (2, 3)
        and (img.ndim == 2 or img.shape[2] in (3, 4))
        or (img.dtype == np.uint16 and img.ndim == 2)
    )
    path = path_stem.with_suffix(".png" if png_ok else ".tif")
    tmp = _tmp(path)
    try:
        if png_ok:
            from PIL import Image

            Image.fromarray(img).save(tmp, format="PNG", compress_level=1)  # fast: we are real-time
        else:
            import tifffile

            tifffile.imwrite(tmp, img)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def mp4_writer_available() -> str | None:
    """'opencv' or 'imageio' when an MP4 encoder is installed, else None."""
    if importlib.util.find_spec("cv2") is not None:
        return "opencv"
    if importlib.util.find_spec("imageio") is not None and importlib.util.find_spec("imageio_ffmpeg") is not None:
        return "imageio"
    return None


class _Mp4:
    def __init__(self, path: Path, fps: float, kind: str) -> None:
        self.path, self.tmp, self.fps, self.kind = path, _tmp(path), fps, kind
        self.size: tuple[int, int] | None = None
        self._w: Any = None
        self.skipped = 0

    def add(self, img: np.ndarray) -> None:
        rgb = img if img.ndim == 3 else np.stack([img] * 3, -1)
        # codecs want even sizes: crop the odd row/column
        rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
        if self._w is None:
            self.size = rgb.shape[:2]
            if self.kind == "opencv":
                import cv2

                self._w = cv2.VideoWriter(
                    str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (rgb.shape[1], rgb.shape[0])
                )
            else:
                import imageio.v2 as iio2

                self._w = iio2.get_writer(self.tmp, fps=self.fps, macro_block_size=1)
        if rgb.shape[:2] != self.size:  # the ROI changed size: a video has one size
            self.skipped += 1
            return
        if self.kind == "opencv":
            self._w.write(np.ascontiguousarray(rgb[..., ::-1]))
        else:
            self._w.append_data(rgb)

    def close(self) -> Path | None:
        if self._w is None:
            return None
        if self.kind == "opencv":
            self._w.release()
        else:
            self._w.close()
        os.replace(self.tmp, self.path)
        return self.path


class HeadlessWriter:
    """Consumes pipeline Results: frames/lr_NNNNN, frames/sr_NNNNN, demo.gif, demo.mp4, run.json."""

    def __init__(
        self,
        out: Path,
        scale: int,
        video: str = "both",
        fps: float = 10.0,
        gif_max_frames: int = 300,
        save_frames: bool = True,
    ) -> None:
        self.out = Path(out)
        self.frames_dir = self.out / "frames"
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.scale, self.fps, self.save_frames = scale, fps, save_frames
        self.want_gif = video in ("gif", "both")
        self.gif: list[np.ndarray] = []
        self.gif_max = gif_max_frames
        self.mp4: _Mp4 | None = None
        if video in ("mp4", "both"):
            kind = mp4_writer_available()
            if kind:
                self.mp4 = _Mp4(self.out / "demo.mp4", fps, kind)
            else:
                msg = "MP4 needs an encoder: pip install opencv-python-headless (or imageio imageio-ffmpeg)"
                (log.warning if video == "mp4" else log.info)("%s; writing the GIF and PNG frames only", msg)
        self.written: list[dict[str, Any]] = []
        self._q: queue.Queue = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="writer", daemon=True)
        self._thread.start()

    def __call__(self, result: Result) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(result)

    def _work(self) -> None:
        while True:
            r = self._q.get()
            if r is None:
                return
            if self._error is not None:
                continue  # drain so the producer never blocks on a dead writer
            try:
                self._write(r)
            except BaseException as exc:  # surfaced to the pipeline on the next frame
                self._error = exc

    def _write(self, r: Result) -> None:
        n = len(self.written)
        rec: dict[str, Any] = {
            "n": n,
            "index": r.index,
            "roi": list(r.roi),
            "latency_s": round(r.latency_s, 6),
            "dtype": str(r.sr.dtype),
            "lr_shape": list(r.lr.shape),
            "sr_shape": list(r.sr.shape),
        }
        if self.save_frames:
            rec["lr"] = save_frame(self.frames_dir / f"lr_{n:05d}", r.lr).name
            rec["sr"] = save_frame(self.frames_dir / f"sr_{n:05d}", r.sr).name
        if self.want_gif or self.mp4 is not None:
            pair = side_by_side(r, self.scale)
            if self.want_gif and len(self.gif) < self.gif_max:
                self.gif.append(pair)
            if self.mp4 is not None:
                self.mp4.add(pair)
        self.written.append(rec)

    def close(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Finish the queue, write the GIF/MP4 and run.json; return the summary written."""
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        files: dict[str, str] = {}
        if self.gif:
            from PIL import Image

            path = self.out / "demo.gif"
            tmp = _tmp(path)
            ims = [Image.fromarray(a) for a in self.gif]
            ims[0].save(tmp, save_all=True, append_images=ims[1:], duration=int(1000 / self.fps), loop=0)
            os.replace(tmp, path)
            files["gif"] = path.name
        if self.mp4 is not None and (p := self.mp4.close()) is not None:
            files["mp4"] = p.name
        summary = dict(summary, outputs=files, frames_written=self.written)
        atomic_write_text(self.out / "run.json", json.dumps(summary, indent=1))
        return summary
