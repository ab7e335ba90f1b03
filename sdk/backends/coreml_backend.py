"""Core ML backend: ``.mlpackage`` files, macOS only (Core ML prediction does not exist elsewhere).

Options: ``compute_units`` = ALL (default) | CPU_ONLY | CPU_AND_GPU | CPU_AND_NE.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..errors import BackendUnavailable, InputError, ModelError
from .base import Backend, check_opts, import_runtime

log = logging.getLogger(__name__)

INSTALL = "pip install coremltools"


class CoreMLBackend(Backend):
    name = "coreml"
    # declared here: off macOS mypy treats everything after the platform check in __init__ as unreachable
    model: Any  # coremltools.models.MLModel
    input_name: str
    output_name: str
    compute_units: str

    def __init__(self, artifact: Path, card: ModelCard, device: str = "auto", **opts: Any) -> None:
        super().__init__(artifact, card)
        check_opts(self.name, opts, ("compute_units", "num_threads"))
        if sys.platform != "darwin":
            raise BackendUnavailable(
                f"{artifact}: Core ML models run only on macOS/iOS (this is {sys.platform}). "
                "Use the .onnx or .tflite export of the same model here "
                "(sr-convert --target onnx / --target tflite)."
            )
        ct = import_runtime("coremltools", INSTALL, f"{artifact.name} (Core ML)")
        units = str(opts.get("compute_units") or ("CPU_ONLY" if device == "cpu" else "ALL"))
        try:
            self.model = ct.models.MLModel(str(artifact), compute_units=getattr(ct.ComputeUnit, units))
        except AttributeError:
            raise InputError(f"compute_units {units!r} is not a coremltools.ComputeUnit") from None
        except Exception as exc:
            raise ModelError(f"{artifact}: Core ML cannot load this model ({exc})") from None
        spec = self.model.get_spec()
        self.input_name = spec.description.input[0].name
        self.output_name = spec.description.output[0].name
        self.compute_units = units
        self.dynamic = not card.tile_sizes
        self.tile_sizes = card.tile_sizes

    def _run(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(x.shape[0]):  # enumerated/flexible shapes are declared with batch 1
            res = self.model.predict({self.input_name: x[i : i + 1]})
            outs.append(np.asarray(res[self.output_name], dtype=np.float32))
        return np.concatenate(outs, axis=0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(compute_units=self.compute_units, device="apple")
        return d
