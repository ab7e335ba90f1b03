"""The fast torch path: one runner for CPU and CUDA, and a ``Backend`` over it.

``TorchRunner`` runs an ``nn.Module`` (a live trainer model, or the module of a ``.pt2``
ExportedProgram) on float32 NCHW numpy batches. What makes the GPU path fast,
each a switch so a bench can show what it buys:

* ``dtype="bf16"`` / ``"fp16"``: autocast, so convolutions run on tensor cores while the
  weights stay fp32 (casting the module would also round BN/PReLU parameters);
* ``channels_last``: NHWC memory format, the layout cuDNN's tensor-core kernels want;
* ``compile``: ``torch.compile`` (inductor by default; a backend name may be given);
* ``cuda_graphs``: per fixed input shape (tile batches come in a few fixed shapes) the forward
  is captured once into a CUDA graph and replayed: no per-layer launch overhead, which is
  what dominates small tiles;
* ``pinned``: host staging buffers in page-locked memory so host->device copies are
  asynchronous; ``run_many`` uploads batch i+1 on a copy stream while batch i computes.

On a CPU the CUDA-only switches turn themselves off and ``describe()["off"]`` says why, so
the same call works everywhere and the CPU-testable parts are tested on CPU.

torch is imported inside functions only: ``import scopesr.sdk`` must work without it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..errors import BackendUnavailable, InputError
from .base import Backend

log = logging.getLogger(__name__)

#: accepted dtype spellings -> the short name used everywhere else
DTYPES = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}
TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: CUDA graphs kept per runner; a new shape beyond this runs eagerly (each graph holds its
#: own activations, and a stream of odd shapes must not fill the GPU)
MAX_GRAPHS = 16
#: pinned staging buffers kept (per shape and slot); past this the cache starts afresh (torch's
#: pinned allocator keeps a freed buffer until its pending copy has finished)
MAX_HOST_BUFFERS = 32
CALL_SLOT = -1  # __call__'s own staging buffers: a run() between run_many's results never
#                 refills a buffer whose copy may still be in flight
OPTIONS = ("dtype", "channels_last", "compile", "cuda_graphs", "pinned", "num_threads")


def parse_dtype(dtype: str | None) -> str:
    """'fp32' | 'bf16' | 'fp16' (long spellings accepted); a clear error otherwise."""
    key = str(dtype or "fp32").lower()
    if key not in DTYPES:
        raise InputError(f"torch dtype {dtype!r} is not one of fp32, bf16, fp16")
    return DTYPES[key]


class TorchRunner:
    """``runner(x)``: float32 NCHW numpy in, float32 NCHW numpy out, through an ``nn.Module``."""

    def __init__(
        self,
        module: Any,
        device: str = "auto",
        dtype: str = "fp32",
        channels_last: bool = False,
        compile: bool | str = False,
        cuda_graphs: bool = False,
        pinned: bool = True,
        num_threads: int | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.dtype = parse_dtype(dtype)
        if device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device {device!r} is not one of auto, cpu, cuda")
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise BackendUnavailable(
                "device='cuda' but torch sees no CUDA GPU; use device='cpu' "
                "(--device cpu) or install a CUDA build of torch"
            )
        self.device = "cuda" if device in ("auto", "cuda") and cuda else "cpu"
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype]
        if self.dtype == "fp16" and self.device == "cpu":
            log.warning("fp16 autocast on the CPU is slow; bf16 is the CPU choice")
        self.channels_last = bool(channels_last)
        self.off: dict[str, str] = {}  # switch -> why it is off on this device
        on_gpu = self.device == "cuda"
        self.cuda_graphs = bool(cuda_graphs) and on_gpu
        self.pinned = bool(pinned) and on_gpu
        for name, want in (("cuda_graphs", cuda_graphs), ("pinned", pinned)):
            if want and not on_gpu:
                self.off[name] = "needs a CUDA device (running on the CPU)"
        if on_gpu:
            # tile batches have a few fixed shapes: let cuDNN time its algorithms once per shape
            torch.backends.cudnn.benchmark = True
        try:
            module = module.eval()
        except NotImplementedError:  # an ExportedProgram's module: its mode was fixed at export
            pass
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.compiled: str | None = None
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            # default mode: "reduce-overhead" brings its own CUDA graphs (ours are explicit
            # and per tile shape) and "max-autotune" takes minutes per shape. dynamic=None: the
            # first shape compiles static, a second one recompiles once with dynamic H/W (tiles
            # at image edges vary) instead of once per shape
            self.module = torch.compile(
                module, backend=backend, mode="default" if backend == "inductor" else None, dynamic=None
            )
            self.compiled = backend
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        # one memory pool for every captured graph: each graph's only live allocation after
        # capture is its static output, which _compute copies before any other replay, so
        # graphs may reuse each other's scratch memory (per-graph pools of a large model at
        # large tile batches would each hold gigabytes)
        self._pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        self._host: dict[tuple[int, ...], Any] = {}  # (shape..., slot) -> pinned buffer
        self._copy_stream = torch.cuda.Stream() if on_gpu else None

    @property
    def overlaps(self) -> bool:
        """True when ``run_many`` overlaps uploads with compute (CUDA with pinned buffers)."""
        return self.device == "cuda" and self.pinned

    # ------------------------------------------------------------------ pieces
    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # no weight-cast cache: it is for training, and CUDA-graph capture requires it off
        return self._torch.autocast(device_type=self.device, dtype=self.autocast_dtype, cache_enabled=False)

    def _forward(self, t: Any) -> Any:
        torch = self._torch
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            y = self.module(t)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y

    def _upload(self, x: np.ndarray, stream: Any = None, slot: int = CALL_SLOT) -> Any:
        """numpy -> device tensor; through a pinned staging buffer on CUDA (async copy).

        ``slot`` picks one of several staging buffers per shape, so a buffer is never
        refilled while its previous copy may still be in flight (``run_many`` alternates two).
        """
        torch = self._torch
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.device == "cpu":
            return torch.from_numpy(x)
        if not self.pinned:
            return torch.from_numpy(x).to(self.device)
        key = (*x.shape, slot)
        buf = self._host.get(key)
        if buf is None:
            if len(self._host) >= MAX_HOST_BUFFERS:  # a stream of odd shapes: do not pin without bound
                self._host.clear()
            buf = self._host[key] = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
        buf.numpy()[...] = x
        with torch.cuda.stream(stream or torch.cuda.current_stream()):
            return buf.to(self.device, non_blocking=True)

    def _graph_for(self, shape: tuple[int, ...]) -> tuple[Any, Any, Any] | None:
        """(graph, static input, static output) for one input shape, captured on first use."""
        torch = self._torch
        g = self._graphs.get(shape)
        if g is not None or len(self._graphs) >= MAX_GRAPHS:
            return g
        static_in = torch.zeros(shape, device=self.device, dtype=torch.float32)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside capture (cuDNN and inductor pick kernels here)
            for _ in range(3):
                self._forward(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_out = self._forward(static_in)
        g = self._graphs[shape] = (graph, static_in, static_out)
        log.debug("captured a CUDA graph for input %s", shape)
        return g

    def _compute(self, t: Any) -> Any:
        """Device tensor in -> device float32 tensor out (graph replay where enabled)."""
        g = self._graph_for(tuple(t.shape)) if self.cuda_graphs else None
        if g is None:
            return self._forward(t).float()
        graph, static_in, static_out = g
        static_in.copy_(t, non_blocking=True)
        graph.replay()
        # the next replay overwrites static_out: hand out a copy (.float() already is one
        # when autocast produced bf16/fp16)
        return static_out.clone() if static_out.dtype == self._torch.float32 else static_out.float()

    def _download(self, y: Any) -> np.ndarray:
        return y.cpu().numpy() if self.device == "cuda" else y.numpy()

    # ------------------------------------------------------------------ public
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._download(self._compute(self._upload(x)))

    def run_many(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Run a sequence of batches in order; on CUDA (pinned) the upload of batch i+1
        overlaps batch i's compute, and the next batch is taken from ``batches`` (e.g. the
        tiler assembling it) while the GPU works."""
        if not self.overlaps:
            for x in batches:
                yield self(x)
            return
        torch = self._torch
        it = iter(batches)
        i = 0

        def stage(x: np.ndarray) -> tuple[Any, Any]:
            t = self._upload(x, self._copy_stream, slot=i % 2)
            ev = torch.cuda.Event()
            ev.record(self._copy_stream)
            return t, ev

        nxt = next(it, None)
        pending = stage(nxt) if nxt is not None else None
        while pending is not None:
            t, ready = pending
            torch.cuda.current_stream().wait_event(ready)
            t.record_stream(torch.cuda.current_stream())  # allocated on the copy stream, used here
            y = self._compute(t)  # queued: the GPU works while the host stages the next batch
            nxt = next(it, None)
            i += 1
            # staged into the other pinned buffer; the buffer refilled here was last copied two
            # batches ago, and the synchronous download of the batch in between waited for it
            pending = stage(nxt) if nxt is not None else None
            yield self._download(y)

    def sync(self) -> None:
        """Wait for queued GPU work (for timing); nothing to do on CPU."""
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        d: dict[str, Any] = {
            "runtime": "torch",
            "torch": torch.__version__,
            "device": self.device,
            "dtype": self.dtype,
            "weights": "float32",
            "channels_last": self.channels_last,
            "compile": self.compiled or False,
            "cuda_graphs": self.cuda_graphs,
            "pinned": self.pinned,
            "overlap": self.overlaps,
            "threads": torch.get_num_threads(),
        }
        if self.device == "cuda":
            d["gpu"] = torch.cuda.get_device_name(0)
            d["graphs_captured"] = len(self._graphs)
        if self.off:
            d["off"] = dict(self.off)
        return d


class RunnerBackend(Backend):
    """A ``Backend`` whose ``_run`` is a ``TorchRunner``; ``run_many`` uses the runner's
    overlapped pipeline and still passes every batch through ``Backend.run``'s checks."""

    name = "torch"
    runner: TorchRunner

    def __init__(self, artifact: Path, card: ModelCard) -> None:
        super().__init__(artifact, card)
        self._computed: np.ndarray | None = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        y, self._computed = self._computed, None
        if y is not None:  # computed ahead by run_many's pipeline for exactly this batch
            return y
        return self.runner(x)

    def run_many(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        if not self.runner.overlaps:
            yield from super().run_many(batches)
            return
        inputs: deque[np.ndarray] = deque()
        bad: list[np.ndarray] = []

        def feed() -> Iterator[np.ndarray]:
            for x in batches:
                x = np.asarray(x)
                if x.ndim != 4 or x.shape[1] != self.in_channels:
                    bad.append(x)  # stop here: Backend.run below raises its error for it
                    return
                inputs.append(x)
                yield self.padded_input(x)  # as Backend.run will hand it to _run

        for y in self.runner.run_many(feed()):
            # Backend.run checks the input and the output shape; _run hands over y
            self._computed = y
            try:
                out = self.run(inputs.popleft())
            finally:
                self._computed = None
            yield out
        if bad:
            self.run(bad[0])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(self.runner.describe())
        return d
