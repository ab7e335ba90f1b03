"""Which models the edge tests run: the bundled default student when present, else the tiny fixtures.

Not a test module (imported by tests/edge/test_*.py). The default student
(sdk/models/default.onnx, default-fp32.tflite, default-int8.tflite, default-onnx-int8.onnx) is
trained and bundled separately; until it exists the tests run the committed tiny random-weight fixtures, and say so.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ROOT / "sdk" / "models"

# (format, backend) of the bundled default student, fastest Pi path first; the file names
# come from scopesr.sdk.upscaler.DEFAULT_MODELS so that they cannot drift apart.
DEFAULTS = [("tflite-int8", "tflite"), ("tflite", "tflite"), ("onnx", "onnx"), ("onnx-int8", "onnx")]
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


#: artifact format of a bundled model -> the runtime module it needs
BUNDLE_RUNTIMES = {
    "onnx": "onnxruntime",
    "tflite": "ai_edge_litert",
    "tflite-int8": "ai_edge_litert",
    "onnx-int8": "onnxruntime",
}


def bundle_artifact(bundle: str, fmt: str) -> Path:
    """A bundled model's artifact in ``fmt``; the test is skipped (with the reason) when the bundle is
    not in this install or the format's runtime is not."""
    import pytest

    from scopesr.sdk import default_model_path

    p = default_model_path(fmt, bundle=bundle, must_exist=False)
    if not p.exists():
        pytest.skip(f"the {bundle} model is not bundled in this install")
    pytest.importorskip(BUNDLE_RUNTIMES[fmt])
    return p


def gain_over_bicubic(up, lr, target) -> float:
    """PSNR of ``up.upscale(lr)`` minus PIL bicubic's (rounded to the LR dtype), 8-px border cut,
    as the release table scores it."""
    from scopesr.sdk import quality

    return quality.psnr(target, up.upscale(lr), border=8) - quality.psnr(
        target, quality.bicubic_baseline(lr, 4), border=8
    )


def assert_scored_on_held_out_sources(card, heldout: str) -> None:
    """A bundle's card scores every quality row on ``heldout`` among its held-out sources, and
    none of those sources is in its training data."""
    from scopesr.sdk import quality

    held = card.metrics["heldout"]
    assert heldout in held["sources"] and set(quality.EVAL_DEGRADATIONS) <= set(held["summary"])
    trained = {p["source"] for p in card.training["data"]["provenance"]}
    assert not trained & set(held["sources"]), "held-out sources must never be training data"
