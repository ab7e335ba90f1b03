"""Export targets are registered classes with one signature; convert() looks them up by name."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scopesr.converters import (  # noqa: E402
    TARGETS,
    ConversionError,
    Exported,
    ExportJob,
    ExportTarget,
    convert,
    get_target,
    register_target,
    target_names,
)
from scopesr.converters import targets as T  # noqa: E402


def test_every_target_is_a_registered_class_with_one_signature():
    assert target_names()[:5] == ["onnx", "tflite", "coreml", "torch", "bioimageio"]

    def params(fn):
        return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]

    export_sig, runners_sig = params(ExportTarget.export), params(ExportTarget.runners)
    for name in target_names():
        t = get_target(name)
        assert isinstance(t, ExportTarget) and t.name == name
        assert params(type(t).export) == export_sig, name
        assert params(type(t).runners) == runners_sig, name
        assert TARGETS[name] == (t.suffix, t.precisions, t.default_precision)
    assert get_target("tflite").uses_fixed_sizes(False) and not get_target("onnx").uses_fixed_sizes(True)
    assert get_target("coreml").uses_fixed_sizes(True) and not get_target("coreml").uses_fixed_sizes(False)


def test_unknown_and_duplicate_targets_are_refused():
    with pytest.raises(ConversionError, match="unknown target 'nope'; choose one of onnx, tflite"):
        get_target("nope")

    class Again(ExportTarget):
        name, suffix = "onnx", ".onnx"

        def export(self, job):  # pragma: no cover - never called
            raise AssertionError

        def runners(self, path, card, sizes):  # pragma: no cover
            raise AssertionError

    with pytest.raises(TypeError, match="already registered"):
        register_target(Again)


def test_convert_runs_a_plugin_target(monkeypatch, trained_student, tmp_path):
    """A new format is one class: convert() exports, checks parity through its runner, writes the card."""
    monkeypatch.setattr(T, "_REGISTRY", dict(T._REGISTRY))

    @register_target
    class NpyTarget(ExportTarget):  # "artifact" = the model's output on one fixed input, plus a runner
        name, suffix = "npy-test", ".onnx"  # reuse a suffix the card knows

        def export(self, job: ExportJob) -> Exported:
            torch.save(job.module, job.path)
            return Exported(job.path, {"made_by": "plugin"})

        def runners(self, path, card, sizes):
            module = torch.load(path, weights_only=False)

            def run(x):
                with torch.no_grad():
                    return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

            return T.dynamic_cases(run), []

    r = convert(trained_student, "npy-test", tmp_path / "m.onnx")
    assert r.passed and r.card.extra["made_by"] == "plugin" and r.card.layout == "NCHW"
    assert [c["case"] for c in r.card.extra["parity"]["cases"]] == ["64x64", "48x80"]
