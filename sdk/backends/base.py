"""One small interface over every runtime, and the helpers the backends share.

Which backend opens which artifact is decided in ``registry.py`` (``open_backend``).

``Backend.run`` always takes float32 NCHW ``(N, Cin, h, w)`` and returns float32 NCHW
``(N, Cout, s*h, s*w)``, whatever the artifact's own layout, and checks the output shape:
a resized or mis-exported artifact (measured: resized TFLite models silently return the
conversion-time size) must fail loudly, never return a wrong picture.

Runtimes are imported lazily inside each backend; a missing one raises BackendUnavailable
naming the pip package to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..cpu import ThreadPolicy, thread_policy
from ..errors import BackendUnavailable, InputError, ModelError, ModelIOError
from ..tiles import tile_entry, tile_label, tile_shapes

log = logging.getLogger(__name__)


class Backend(ABC):
    """A loaded artifact that maps normalised LR tiles to normalised HR tiles."""

    name: str = "?"
    dynamic: bool = True  # accepts any H, W
    _tile_sizes: tuple[Any, ...] = ()  # see the tile_sizes property
    _tile_shapes: tuple[tuple[int, int], ...] = ()
    default_batch: int = 1  # tiles stacked per call when the caller does not say

    def __init__(self, artifact: Path, card: ModelCard) -> None:
        self.artifact = Path(artifact)
        self.card = card
        self.scale = card.scale
        self.in_channels = card.in_channels
        self.out_channels = card.out_channels
        self.nhwc = card.layout == "NHWC"
        self.size_multiple = card.size_multiple

    @property
    def tile_sizes(self) -> tuple[Any, ...]:
        """The fixed LR input sizes when not dynamic, in the card's form: N or (H, W), sorted."""
        return self._tile_sizes

    @tile_sizes.setter
    def tile_sizes(self, sizes: Any) -> None:
        # validated and converted once here: run() checks every tile against the shapes
        self._tile_shapes = tuple(tile_shapes(list(sizes or ())))
        self._tile_sizes = tuple(tile_entry(t) for t in self._tile_shapes)

    @property
    def tile_shapes(self) -> list[tuple[int, int]]:
        """The fixed input sizes as sorted ``(H, W)`` pairs (empty when dynamic)."""
        return list(self._tile_shapes)

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Run on the artifact's own layout (NCHW or NHWC), float32 in, float32 out."""

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW (N, Cin, h, w) -> float32 NCHW (N, Cout, s*h, s*w)."""
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ModelIOError(
                f"{self.artifact.name}: expected input (N, {self.in_channels}, h, w), got {tuple(x.shape)}"
            )
        n, _, h, w = x.shape
        if not self.dynamic and (h, w) not in self._tile_shapes:
            raise ModelIOError(
                f"{self.artifact.name}: this fixed-size artifact takes tiles of "
                f"{', '.join(tile_label(t) for t in self.tile_shapes)} LR px, got {h}x{w}; use the tiler "
                "(Upscaler.upscale) or re-export with that size (sr-convert --tile-sizes)"
            )
        x = self.padded_input(x)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.nhwc:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        y = np.asarray(self._run(x))
        if self.nhwc and y.ndim == 4:
            y = y.transpose(0, 3, 1, 2)
        ph, pw = x.shape[-3:-1] if self.nhwc else x.shape[-2:]
        expect = (n, self.out_channels, ph * self.scale, pw * self.scale)
        if tuple(y.shape) != expect:
            raise ModelError(
                f"{self.artifact}: the {self.name} runtime returned shape {tuple(y.shape)} for input "
                f"{(n, self.in_channels, ph, pw)}, expected {expect} (scale {self.scale}). The artifact does "
                "not match its card (e.g. a fixed-size model fed another size); re-export it."
            )
        if (ph, pw) != (h, w):
            y = y[:, :, : h * self.scale, : w * self.scale]
        return np.ascontiguousarray(y, dtype=np.float32)

    def padded_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` (NCHW) with its far edges mirrored up to multiples of the card's size_multiple
        (a space-to-depth network's cells); ``run`` crops the output back. The tiler's reads are
        aligned already, so this only serves direct calls with other sizes."""
        m = self.size_multiple
        h, w = x.shape[-2:]
        if m == 1 or not self.dynamic or (h % m == 0 and w % m == 0):
            return x
        return np.pad(x, ((0, 0), (0, 0), (0, -h % m), (0, -w % m)), mode="symmetric")

    def run_many(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``run`` over a sequence of batches, results in order.

        The tiler hands a band's batches over together so a backend may overlap them (the
        torch backend uploads batch i+1 while batch i computes on a GPU); this default
        simply runs them one after another.
        """
        for x in batches:
            yield self.run(x)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "artifact": str(self.artifact),
            "layout": self.card.layout,
            "precision": self.card.precision,
            "dynamic": self.dynamic,
            "tile_sizes": list(self.tile_sizes) if not self.dynamic else None,
        }


def import_runtime(module: str, install: str, what: str) -> Any:
    """Import a runtime module or raise BackendUnavailable saying what to pip install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(
            f"{what} needs the Python package providing {module!r}, which is not installed "
            f"({exc}). Install it with: {install}"
        ) from None


def has_module(module: str) -> bool:
    """True when ``module`` can be imported (honours a sys.modules entry of None)."""
    import sys

    top = module.split(".")[0]
    if top in sys.modules and sys.modules[top] is None:
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_opts(name: str, opts: dict[str, Any], allowed: tuple[str, ...]) -> None:
    bad = sorted(set(opts) - set(allowed))
    if bad:
        raise InputError(f"the {name} backend does not take option(s) {bad}; it takes {list(allowed)}")


def thread_settings(opts: dict[str, Any]) -> ThreadPolicy:
    """The CPU threading a backend opens its runtime with: ``opts["num_threads"]`` (None or 0:
    one per available core) and ``opts["spin"]`` (None: off on machines of at most
    ``scopesr.sdk.cpu.SPIN_MAX_CORES`` cores), by :func:`scopesr.sdk.cpu.thread_policy`."""
    return thread_policy(opts.get("num_threads"), opts.get("spin"))
