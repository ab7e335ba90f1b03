"""Frame sources for the Pi demo: Pi camera, OpenCV camera, video file, TIFF stack, image folder.

Every source is an iterator of numpy frames (H x W grey or H x W x C), keeping the
file's dtype (uint8 / uint16 / float): microscopy cameras and stacks are often 16-bit and
the SDK returns the input's dtype. Optional libraries (picamera2, OpenCV, imageio) are
imported only when their source is asked for, and a missing one says how to install it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scopesr.sdk import ScopesrError

log = logging.getLogger("demo_pi.sources")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
TIFF_SUFFIXES = {".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mjpeg", ".gif"}


class SourceError(ScopesrError):
    """A frame source cannot be opened (names the source and what to install or change)."""


class FrameSource:
    """Base class: iterate to get frames; ``live`` sources drop frames when inference lags."""

    live: bool = False
    name: str = "source"

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or file."""


# --------------------------------------------------------------------------- files
class TiffStackSource(FrameSource):
    """A multi-page TIFF (time-lapse or z-stack): one frame per page, memory-mapped when possible."""

    def __init__(self, path: Path, loop: bool = False) -> None:
        import tifffile  # a base dependency of scopesr

        self.path, self.loop, self.name = path, loop, f"tiff:{path.name}"
        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
        except Exception as exc:  # tifffile raises several types for bad files
            raise SourceError(f"{path}: cannot read as TIFF ({exc}); give a valid .tif stack") from exc
        try:
            data = series.asarray(out="memmap")  # no copy of the whole stack when uncompressed
        except Exception:  # compressed or tiled: fall back to reading into memory
            data = series.asarray()
        axes = series.axes
        # Channels-last for RGB(A) samples ('S'); everything else before Y,X is a frame axis.
        if data.ndim >= 3 and axes.endswith("YXS"):
            frames = data.reshape((-1,) + data.shape[-3:])
        else:
            frames = data.reshape((-1,) + data.shape[-2:])
        self._frames = frames
        log.info("%s: %d frame(s) of %s %s (axes %s)", path, len(frames), frames.shape[1:], frames.dtype, axes)

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            for f in self._frames:
                yield np.asarray(f)
            if not self.loop:
                return

    def close(self) -> None:
        self._tif.close()


def _natural_key(p: Path) -> list:
    # img2.png before img10.png, as a microscope's exporter numbers them
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def read_image(path: Path) -> np.ndarray:
    """One image in its own dtype (16-bit PNG/TIFF stay 16-bit)."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(im).astype(np.uint16)
        if im.mode not in ("L", "RGB", "I", "F"):
            im = im.convert("RGB")
        return np.asarray(im)


class FolderSource(FrameSource):
    """A folder of images (PNG, JPEG, TIFF), in natural name order."""

    def __init__(self, folder: Path, loop: bool = False) -> None:
        self.loop, self.name = loop, f"folder:{folder.name}"
        self.files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not self.files:
            raise SourceError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        self.skipped: dict[Path, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            for p in self.files:
                if p in self.skipped:  # looping: known bad, skip quietly
                    continue
                try:
                    frame = read_image(p)
                except Exception as exc:  # a corrupt / truncated image: skip it, the run goes on
                    self.skipped[p] = f"{type(exc).__name__}: {exc}"
                    log.warning("%s: unreadable image skipped (%s)", p, self.skipped[p])
                    continue
                yield frame
            if not self.loop or len(self.skipped) == len(self.files):
                return


class VideoFileSource(FrameSource):
    """A video file through OpenCV, else imageio (with its ffmpeg or pyav plugin)."""

    def __init__(self, path: Path, loop: bool = False) -> None:
        self.path, self.loop, self.name = path, loop, f"video:{path.name}"
        try:
            import cv2  # noqa: F401

            self._reader = "opencv"
        except ImportError:
            try:
                import imageio.v3  # noqa: F401

                self._reader = "imageio"
            except ImportError:
                raise SourceError(
                    f"{path}: reading a video needs OpenCV or imageio: "
                    "pip install opencv-python-headless (or: pip install imageio imageio-ffmpeg), "
                    "or give a TIFF stack / image folder instead"
                ) from None

    def _iter_once(self) -> Iterator[np.ndarray]:
        if self._reader == "opencv":
            import cv2

            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                raise SourceError(f"{self.path}: OpenCV cannot open this video (codec?)")
            try:
                while True:
                    ok, bgr = cap.read()
                    if not ok:
                        return
                    yield bgr[..., ::-1] if bgr.ndim == 3 else bgr  # OpenCV is BGR
            finally:
                cap.release()
        else:
            import imageio.v3 as iio

            try:
                yield from iio.imiter(self.path)
            except Exception as exc:
                raise SourceError(
                    f"{self.path}: imageio cannot read this video ({exc}); pip install imageio-ffmpeg (or av)"
                ) from exc

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield from self._iter_once()
            if not self.loop:
                return


# --------------------------------------------------------------------------- cameras
class OpenCVCameraSource(FrameSource):
    """A USB / V4L2 camera by index through OpenCV."""

    live = True

    def __init__(self, index: int, size: tuple[int, int] | None = None, grey: bool = True) -> None:
        try:
            import cv2
        except ImportError:
            raise SourceError(
                f"camera {index}: needs OpenCV: pip install opencv-python-headless "
                "(or on a Pi with its camera module: --source picamera2)"
            ) from None
        self.name, self.grey = f"camera:{index}", grey
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            raise SourceError(f"camera {index}: OpenCV cannot open it (is it connected? try another index)")
        if size:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        while True:
            ok, bgr = self._cap.read()
            if not ok:
                log.warning("%s: no more frames", self.name)
                return
            # Fluorescence is one channel: grey keeps the model's 1-channel fast path.
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if self.grey else bgr[..., ::-1]

    def close(self) -> None:
        self._cap.release()


PICAMERA2_HELP = (
    "the Pi camera needs picamera2, which comes with Raspberry Pi OS: "
    "sudo apt install python3-picamera2 (in a venv, create it with "
    "--system-site-packages so it can see the OS package)"
)


class Picamera2Source(FrameSource):
    """The Raspberry Pi camera through picamera2.

    As picamera2's own examples do for inference, the ISP produces a small YUV420 "lores"
    stream beside the main one and we take its Y (luminance) plane: a grey frame at the
    model's input size, with no colour conversion or resize on the Pi's CPU.
    """

    live = True

    def __init__(self, lores: tuple[int, int] = (160, 120), main: tuple[int, int] = (640, 480)) -> None:
        try:
            from picamera2 import Picamera2  # only on a Pi: lazily
        except ImportError:
            raise SourceError(PICAMERA2_HELP) from None
        self.name, self.size = "picamera2", lores
        self._cam = Picamera2()
        cfg = self._cam.create_preview_configuration(
            main={"size": main}, lores={"size": lores, "format": "YUV420"}, buffer_count=4
        )
        self._cam.configure(cfg)
        self._stride = self._cam.stream_configuration("lores")["stride"]
        self._cam.start()

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.size
        while True:
            buf = self._cam.capture_buffer("lores")
            # Y plane is the first stride*h bytes; rows are padded to the stride.
            yield np.asarray(buf[: self._stride * h]).reshape(h, self._stride)[:, :w].copy()

    def close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()


# --------------------------------------------------------------------------- factory
def open_source(spec: str, loop: bool = False, lores: tuple[int, int] = (160, 120)) -> FrameSource:
    """Open ``picamera2``, a camera index (``0``), ``sample:KEY``, a video, a TIFF stack or a folder."""
    if spec in ("picamera2", "picam", "pi"):
        return Picamera2Source(lores=lores)
    if spec.isdigit():
        return OpenCVCameraSource(int(spec), size=lores)
    if spec.startswith("sample:"):
        from scopesr.sdk import sample_path

        spec = str(sample_path(spec.split(":", 1)[1]))
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path, loop=loop)
    if not path.exists():
        raise SourceError(
            f"{spec}: no such file, folder or camera; give picamera2, a camera index, "
            "sample:napari-timelapse, a video, a TIFF stack or a folder of images"
        )
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return TiffStackSource(path, loop=loop)
    if suffix in VIDEO_SUFFIXES:
        return VideoFileSource(path, loop=loop)
    if suffix in IMAGE_SUFFIXES:  # one still image: a one-frame "folder"
        src = FolderSource.__new__(FolderSource)
        src.loop, src.name, src.files, src.skipped = loop, f"image:{path.name}", [path], {}
        return src
    raise SourceError(
        f"{path}: unknown source type {suffix!r}; use a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}), a TIFF stack or a folder of images"
    )
