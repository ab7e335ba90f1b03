"""scopesr.converters: PyTorch generator -> ONNX / TFLite / Core ML / .pt2 / bioimage.io, each
proven against PyTorch on real image tiles (``sr-convert``).

Each format is an :class:`ExportTarget` registered by name (``targets.py``); ``convert()``
looks the requested one up.
"""

from .api import TARGETS, ConversionResult, card_for_module, check_tile_sizes, convert, parity_check
from .errors import CalibrationError, ConversionError, ParityError
from .parity import DEFAULT_TOLERANCES, ParityReport
from .targets import Exported, ExportJob, ExportTarget, get_target, register_target, target_names

__all__ = [
    "convert",
    "ConversionResult",
    "TARGETS",
    "parity_check",
    "card_for_module",
    "check_tile_sizes",
    "ConversionError",
    "CalibrationError",
    "ParityError",
    "ParityReport",
    "DEFAULT_TOLERANCES",
    "ExportTarget",
    "ExportJob",
    "Exported",
    "register_target",
    "get_target",
    "target_names",
]
