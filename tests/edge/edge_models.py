"""Which models the edge tests run: the bundled default student when present, else the tiny fixtures.

Not a test module (imported by tests/edge/test_*.py). The default student
(sdk/models/default.onnx, default-fp32.tflite, default-int8.tflite) is trained and bundled separately; until
it exists the tests run the committed tiny random-weight fixtures, and say so.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ROOT / "sdk" / "models"

# (format, backend) of the bundled default student, fastest Pi path first; the file names
# come from scopesr.sdk.upscaler.DEFAULT_MODELS so that they cannot drift apart.
DEFAULTS = [("tflite-int8", "tflite"), ("tflite", "tflite"), ("onnx", "onnx")]
TINY = [("tiny_x4_fixed.tflite", "tflite"), ("tiny_x4.onnx", "onnx")]


def _usable(p: Path) -> bool:
    return p.exists() and p.with_name(p.stem + ".card.json").exists()


def default_models() -> list[tuple[Path, str]]:
    """The bundled default student's artifacts that exist (with their cards)."""
    from scopesr.sdk import DEFAULT_MODELS

    found = [(MODELS / DEFAULT_MODELS[f], b) for f, b in DEFAULTS if f in DEFAULT_MODELS]
    return [(p, b) for p, b in found if _usable(p)]


def tiny_models() -> list[tuple[Path, str]]:
    return [(FIXTURES / n, b) for n, b in TINY if _usable(FIXTURES / n)]


def edge_models() -> list[tuple[Path, str]]:
    """Default student artifacts when bundled, else the tiny fixtures."""
    return default_models() or tiny_models()


def model_for(backend: str) -> Path | None:
    """One model for a backend: the default student's (int8 first for tflite), else the fixture."""
    for p, b in edge_models() + tiny_models():
        if b == backend:
            return p
    return None
