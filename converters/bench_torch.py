"""The fast torch path for sr-bench: one runner for CPU and CUDA, and an SDK Backend over it.

What makes the GPU path fast (the issue's "GPU path" section), each switchable so the bench
can show what it buys:

* ``dtype="bf16"`` / ``"fp16"``: autocast, so convolutions run on tensor cores while the
  weights stay fp32 (no accuracy cliff from casting BN/PReLU parameters);
* ``channels_last``: NHWC memory format, the layout cuDNN's tensor-core kernels want;
* ``compile``: ``torch.compile`` (inductor) of the module;
* ``cuda_graphs``: for each fixed input shape (tile batches are fixed-shape) the forward is
  captured once into a CUDA graph and replayed: no per-layer launch overhead, which is what
  dominates small 64x64 tiles;
* ``pinned``: host staging buffers in page-locked memory so host->device copies are
  asynchronous; ``run_many`` uploads batch i+1 on a copy stream while batch i computes.

On a CPU the CUDA-only switches are turned off (and ``describe()`` says so), so the same
call works everywhere and the CPU-testable parts are tested on CPU.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scopesr.sdk.backends.base import Backend
from scopesr.sdk.card import ModelCard
from scopesr.sdk.errors import BackendUnavailable, ScopesrError

log = logging.getLogger(__name__)

DTYPES = ("fp32", "bf16", "fp16")


class TorchRunner:
    """``runner(x)``: float32 NCHW numpy in, float32 NCHW numpy out, through an ``nn.Module``."""

    def __init__(self, module: Any, device: str = "auto", dtype: str = "fp32", channels_last: bool = False,
                 compile: bool = False, cuda_graphs: bool = False, pinned: bool = True,
                 num_threads: int | None = None) -> None:
        import torch

        self._torch = torch
        if dtype not in DTYPES:
            raise ScopesrError(f"torch dtype {dtype!r} is not one of {DTYPES}")
        if device not in ("auto", "cpu", "cuda"):
            raise ScopesrError(f"device {device!r} is not one of auto, cpu, cuda")
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise BackendUnavailable("device='cuda' but torch sees no CUDA GPU; use --device cpu "
                                     "or install a CUDA build of torch")
        self.device = "cuda" if device in ("auto", "cuda") and cuda else "cpu"
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.dtype = dtype
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        if self.autocast_dtype is torch.float16 and self.device == "cpu":
            log.warning("fp16 autocast on the CPU is slow; bf16 is the CPU choice")
        self.channels_last = bool(channels_last)
        self.off: dict[str, str] = {}  # switch -> why it is off on this device
        on_gpu = self.device == "cuda"
        self.cuda_graphs = bool(cuda_graphs) and on_gpu
        self.pinned = bool(pinned) and on_gpu
        for name, want in (("cuda_graphs", cuda_graphs), ("pinned", pinned)):
            if want and not on_gpu:
                self.off[name] = "needs a CUDA device"
        if on_gpu:
            # tile batches have a few fixed shapes: let cuDNN time its algorithms once per shape
            torch.backends.cudnn.benchmark = True
        module = module.eval().to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.compiled = False
        if compile:
            # inductor, default mode: "reduce-overhead" brings its own CUDA graphs (ours are
            # explicit and per tile shape) and "max-autotune" takes minutes per shape
            self.module = torch.compile(module, mode="default", dynamic=False)
            self.compiled = True
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        self._host: dict[tuple[int, ...], Any] = {}  # (shape..., slot) -> pinned buffer
        self._copy_stream = torch.cuda.Stream() if on_gpu else None

    # ------------------------------------------------------------------ pieces
    def _autocast(self):
        torch = self._torch
        if self.autocast_dtype is None:
            import contextlib
            return contextlib.nullcontext()
        # no weight-cast cache: it is for training, and CUDA-graph capture requires it off
        return torch.autocast(device_type=self.device, dtype=self.autocast_dtype, cache_enabled=False)

    def _forward(self, t):
        torch = self._torch
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            y = self.module(t)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y

    def _upload(self, x: np.ndarray, stream=None, slot: int = 0):
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
            buf = self._host[key] = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
        buf.numpy()[...] = x
        with torch.cuda.stream(stream or torch.cuda.current_stream()):
            return buf.to(self.device, non_blocking=True)

    def _graph_for(self, shape: tuple[int, ...]):
        """(graph, static input, static output) for one input shape, captured on first use."""
        torch = self._torch
        g = self._graphs.get(shape)
        if g is not None:
            return g
        static_in = torch.zeros(shape, device=self.device, dtype=torch.float32)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside capture (cuDNN picks its kernels here)
            for _ in range(3):
                self._forward(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        g = self._graphs[shape] = (graph, static_in, static_out)
        log.debug("captured a CUDA graph for input %s", shape)
        return g

    def _compute(self, t):
        """Device tensor in -> device float32 tensor out (graph replay where enabled)."""
        if self.cuda_graphs:
            graph, static_in, static_out = self._graph_for(tuple(t.shape))
            static_in.copy_(t, non_blocking=True)
            graph.replay()
            return static_out.float().clone()  # the next replay overwrites static_out
        return self._forward(t).float()

    # ------------------------------------------------------------------ public
    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self._compute(self._upload(x))
        return y.cpu().numpy() if self.device == "cuda" else y.numpy()

    def run_many(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Run a sequence of batches; on CUDA the upload of batch i+1 overlaps batch i's compute."""
        torch = self._torch
        if self.device == "cpu":
            for x in batches:
                yield self(x)
            return
        it = iter(batches)
        i = 0

        def stage(x: np.ndarray):
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
            y = self._compute(t)
            nxt = next(it, None)
            i += 1
            # staged into the other pinned buffer while the kernels above run; the buffer
            # refilled here was last copied two batches ago, and y.cpu() below (synchronous)
            # has since waited for that copy
            pending = stage(nxt) if nxt is not None else None
            yield y.cpu().numpy()

    def sync(self) -> None:
        """Wait for queued GPU work (for timing); nothing to do on CPU."""
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"runtime": "torch", "torch": self._torch.__version__, "device": self.device,
                             "dtype": self.dtype, "channels_last": self.channels_last,
                             "compile": self.compiled, "cuda_graphs": self.cuda_graphs, "pinned": self.pinned,
                             "threads": self._torch.get_num_threads()}
        if self.device == "cuda":
            d["gpu"] = self._torch.cuda.get_device_name(0)
        if self.off:
            d["off"] = dict(self.off)
        return d


class ModuleBackend(Backend):
    """An SDK ``Backend`` over a live ``nn.Module``, so the SDK's tiler and ``stream`` run it.

    The bench times models straight from the trainer (random or trained weights) through the
    same ``Upscaler`` code path the exported artifacts use.
    """

    name = "torch"

    def __init__(self, runner: TorchRunner, card: ModelCard, label: str | None = None) -> None:
        super().__init__(Path(label or f"{card.name}.module"), card)
        self.runner = runner
        self.dynamic = True
        self.default_batch = 8 if runner.device == "cuda" else 4

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.runner(x)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(self.runner.describe())
        return d


def card_for_preset(module: Any, name: str, halo: int, normalisation: Any = None) -> ModelCard:
    """A model card for a live preset module (what the SDK needs to tile it)."""
    import dataclasses

    from scopesr.sdk.card import Normalisation

    cfg = getattr(module, "config", None) or getattr(module, "cfg", None)
    args = dataclasses.asdict(cfg) if cfg is not None and dataclasses.is_dataclass(cfg) else {}
    return ModelCard(name=name, architecture=str(getattr(module, "preset_name", name)),
                     scale=int(args.get("scale", 4)), in_channels=int(args.get("in_channels", 3)),
                     out_channels=int(args.get("out_channels", 3)), halo=int(halo), format="safetensors",
                     arch_args=args, normalisation=normalisation or Normalisation())
