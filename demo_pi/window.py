"""The live window: frame with its ROI (drag to select a new one) | nearest | SR, FPS overlay.

Tkinter + Pillow: Tk ships with Python (Pi OS: ``sudo apt install python3-tk``), needs no
OpenCV GUI build, and runs under a virtual X server (Xvfb), which is how the test
exercises this window. Inference runs in a worker thread; Tk polls for the newest result,
so a slow screen never slows inference (the window shows the latest frame, skipping the
rest).

Keys: ``f`` full frame / ROI, ``c`` centre the ROI, ``q`` or Esc quit. Drag a rectangle on
the left preview to choose the ROI.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from pipeline import Result, RoiProcessor, Stats, centred_roi, display_range, side_by_side, to_uint8

log = logging.getLogger("demo_pi.window")

PREVIEW_MAX = 320  # px: the width/height the whole-frame preview is scaled to fit
GAP = 4


class NoDisplay(RuntimeError):
    pass


class LiveWindow:
    def __init__(
        self,
        processor: RoiProcessor,
        scale: int,
        title: str,
        stop_event: threading.Event,
        screenshot: Path | None = None,
        status: str = "",
    ) -> None:
        try:
            import tkinter as tk

            from PIL import ImageTk  # noqa: F401 - checked here so the error says what to install
        except ImportError as exc:
            raise NoDisplay(
                f"the window needs Tkinter and Pillow's ImageTk ({exc}); on Pi OS / Debian: "
                "sudo apt install python3-tk python3-pil.imagetk; or use --headless --out DIR"
            ) from None
        try:
            self.root = tk.Tk()
        except tk.TclError as exc:
            raise NoDisplay(
                f"cannot open a window ({exc}); run with --headless --out DIR, or under a "
                "virtual display: xvfb-run python demo_pi/run.py ..."
            ) from None
        self.tk = tk
        self.processor, self.scale, self.stop_event = processor, scale, stop_event
        self.screenshot, self.status_text = screenshot, status
        self.root.title(title)
        self.root.configure(bg="black")
        self.preview = tk.Canvas(
            self.root,
            width=PREVIEW_MAX,
            height=PREVIEW_MAX // 4 * 3,
            bg="black",
            highlightthickness=0,
            cursor="crosshair",
        )
        self.preview.grid(row=0, column=0, padx=(0, GAP), sticky="n")
        self.panes = tk.Canvas(
            self.root, width=2 * 64 * scale + GAP, height=64 * scale, bg="black", highlightthickness=0
        )
        self.panes.grid(row=0, column=1, sticky="n")
        self.status = tk.Label(
            self.root, text="starting...", anchor="w", fg="white", bg="black", font=("TkFixedFont", 10)
        )
        self.status.grid(row=1, column=0, columnspan=2, sticky="we")
        self._lock = threading.Lock()
        self._latest: Result | None = None
        self._shown: Result | None = None
        self._photos: list[Any] = []  # keep references: Tk does not
        self._pane_item = self._prev_item = self._fps_item = None
        self._preview_scale = 1.0
        self._drag: tuple[int, int] | None = None
        self._rect = None
        self.worker_done = threading.Event()
        self.preview.bind("<ButtonPress-1>", self._press)
        self.preview.bind("<B1-Motion>", self._motion)
        self.preview.bind("<ButtonRelease-1>", self._release)
        for key in ("q", "<Escape>"):
            self.root.bind(key, lambda _e: self.stop_event.set())
        self.root.bind("f", lambda _e: setattr(self.processor, "full", not self.processor.full))
        self.root.bind("c", lambda _e: setattr(self.processor, "roi", None))
        self.root.protocol("WM_DELETE_WINDOW", self.stop_event.set)

    # ------------------------------------------------------------------ from the worker thread
    def push(self, result: Result) -> None:
        with self._lock:
            self._latest = result

    # ------------------------------------------------------------------ Tk thread
    def _render(self, r: Result) -> None:
        from PIL import Image, ImageTk

        pair = side_by_side(r, self.scale, gap=GAP, label=False)
        photo = ImageTk.PhotoImage(Image.fromarray(pair))
        h, w = pair.shape[:2]
        if int(self.panes.cget("width")) != w or int(self.panes.cget("height")) != h:
            self.panes.configure(width=w, height=h)
        if self._pane_item is None:
            self._pane_item = self.panes.create_image(0, 0, anchor="nw", image=photo)
            self._fps_item = self.panes.create_text(
                w - 6, 4, anchor="ne", fill="yellow", font=("TkFixedFont", 12, "bold")
            )
            self._lbl_items = [
                self.panes.create_text(4, 4, anchor="nw", fill="yellow", text="nearest"),
                self.panes.create_text(0, 4, anchor="nw", fill="yellow", text="SR"),
            ]
        else:
            self.panes.itemconfigure(self._pane_item, image=photo)
        half = (w - GAP) // 2
        self.panes.coords(self._fps_item, w - 6, 4)
        self.panes.coords(self._lbl_items[1], half + GAP + 4, 4)
        self.panes.itemconfigure(self._fps_item, text=f"{r.fps:6.1f} fps")
        self.panes.tag_raise(self._fps_item)
        photos = [photo]
        if r.frame is not None:
            photos.append(self._render_preview(r))
        self._photos = photos
        x, y, rw, rh = r.roi
        self.status.configure(
            text=f"{self.status_text}  roi {x},{y},{rw}x{rh}  latency {r.latency_s * 1000:5.1f} ms  frame {r.index}"
        )

    def _render_preview(self, r: Result) -> Any:
        from PIL import Image, ImageTk

        frame = r.frame
        fh, fw = frame.shape[:2]
        s = min(PREVIEW_MAX / fw, PREVIEW_MAX / fh)
        self._preview_scale = s
        img = Image.fromarray(to_uint8(frame, display_range(frame)))
        img = img.resize((max(1, round(fw * s)), max(1, round(fh * s))), Image.NEAREST)
        photo = ImageTk.PhotoImage(img)
        if int(self.preview.cget("width")) != img.width or int(self.preview.cget("height")) != img.height:
            self.preview.configure(width=img.width, height=img.height)
        if self._prev_item is None:
            self._prev_item = self.preview.create_image(0, 0, anchor="nw", image=photo)
            self._rect = self.preview.create_rectangle(0, 0, 0, 0, outline="red", width=2)
        else:
            self.preview.itemconfigure(self._prev_item, image=photo)
        if self._drag is None:  # while dragging, the rectangle follows the mouse
            x, y, rw, rh = r.roi
            self.preview.coords(self._rect, x * s, y * s, (x + rw) * s, (y + rh) * s)
        self.preview.tag_raise(self._rect)
        self._frame_hw = (fh, fw)
        return photo

    def _press(self, e: Any) -> None:
        self._drag = (e.x, e.y)

    def _motion(self, e: Any) -> None:
        if self._drag and self._rect is not None:
            self.preview.coords(self._rect, *self._drag, e.x, e.y)

    def _release(self, e: Any) -> None:
        if not self._drag:
            return
        s = self._preview_scale
        x0, y0 = self._drag
        self._drag = None
        fx0, fx1 = sorted((x0 / s, e.x / s))
        fy0, fy1 = sorted((y0 / s, e.y / s))
        w, h = int(round(fx1 - fx0)), int(round(fy1 - fy0))
        if w < 8 or h < 8:  # a click, not a drag: move the current-size ROI there
            hw = getattr(self, "_frame_hw", None)
            cur = self.processor.roi or (centred_roi(hw) if hw else (0, 0, 64, 64))
            w, h = cur[2], cur[3]
            fx0, fy0 = e.x / s - w / 2, e.y / s - h / 2
        self.processor.full = False
        self.processor.roi = (max(0, int(fx0)), max(0, int(fy0)), w, h)
        log.info("ROI set to %s", self.processor.roi)

    def grab(self, path: Path) -> Path:
        """Screenshot of the panes as the X server shows them (not our own buffer)."""
        from PIL import ImageGrab

        self.root.update()
        x, y = self.panes.winfo_rootx(), self.panes.winfo_rooty()
        w, h = self.panes.winfo_width(), self.panes.winfo_height()
        img = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ.get("DISPLAY"))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.part.png")
        img.save(tmp)
        os.replace(tmp, path)
        log.info("screenshot %dx%d of the panes -> %s", w, h, path)
        return path

    def _poll(self) -> None:
        with self._lock:
            r = self._latest
        if r is not None and r is not self._shown:
            self._render(r)
            self._shown = r
        if self.stop_event.is_set() or (self.worker_done.is_set() and r is self._shown):
            if self.screenshot is not None and self._shown is not None:
                self.grab(self.screenshot)
            self.root.quit()
            return
        self.root.after(5, self._poll)

    def run(self, work: Any) -> Stats:
        """Run ``work(sink, stop_event) -> Stats`` in a worker thread while Tk shows results."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["stats"] = work(self.push, self.stop_event)
            except BaseException as exc:
                box["error"] = exc
            finally:
                self.worker_done.set()

        t = threading.Thread(target=target, name="inference", daemon=True)
        t.start()
        self.root.after(5, self._poll)
        try:
            self.root.mainloop()
        finally:
            self.stop_event.set()  # the window closed first: stop the worker (it says "interrupted")
            t.join(timeout=10)
            try:
                self.root.destroy()
            except self.tk.TclError:
                pass
        if "error" in box:
            raise box["error"]
        return box.get("stats", Stats(interrupted=True))
