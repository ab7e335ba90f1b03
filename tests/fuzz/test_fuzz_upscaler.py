"""Fuzzing the upscaler's argument checks (scopesr.sdk.load and Upscaler.upscale): any values
for the path, backend, device, threads and flags, and any array (dtype, shape, values) with any
tile, halo, batch, axes and out -> a result of the right shape and dtype, finite for finite
input, or a ScopesrError, within the per-example bound. Torch-free: edge."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fuzzutil import ROOT, bounded, examples
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scopesr.sdk as sr
from scopesr.sdk import ScopesrError

pytestmark = pytest.mark.edge
pytest.importorskip("onnxruntime")

MODEL = ROOT / "tests" / "fixtures" / "tiny_x4.onnx"
_UP: list = []


def _up():
    if not _UP:
        _UP.append(sr.load(MODEL, num_threads=1))
    return _UP[0]


ANY = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["auto", "YX", "yx", "YXC", "CYX", "ZYX", "XY", "YY", "TZCYX", "ZCYX", "64", "", "default"])
    | st.lists(st.integers(-3, 300), max_size=3)
    | st.tuples(st.integers(-3, 300), st.integers(-3, 300))
    | st.just(np.int64(16))
    | st.just(float("nan"))
)
DTYPES = st.sampled_from(
    ["uint8", "uint16", "float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint32", "bool"]
    + ["complex64", "datetime64[s]", "object"]
)


def _finite_input(a: np.ndarray) -> bool:
    return a.dtype.kind not in "fc" or bool(np.isfinite(a).all())


@settings(max_examples=examples(120))
@given(
    image=DTYPES.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9))),
    tile=ANY,
    halo=ANY,
    batch=ANY,
    axes=ANY,
)
def test_upscale_any_arguments(image, tile, halo, batch, axes):
    up = _up()
    with bounded():
        try:
            out = up.upscale(image, tile=tile, halo=halo, batch=batch, axes=axes)
        except ScopesrError:
            return
    assert out.dtype == image.dtype and out.ndim == image.ndim
    assert math.prod(out.shape) == math.prod(image.shape) * up.scale**2
    if _finite_input(image):
        assert _finite_input(out)


@settings(max_examples=examples(40))
@given(
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
    out=st.none() | st.sampled_from(["wrong-shape", "wrong-dtype", "list", "right"]),
    progress=ANY,
)
def test_upscale_out_and_progress(shape, dtype, out, progress):
    up = _up()
    image = (np.arange(math.prod(shape)) % 200).reshape(shape).astype(dtype)
    want = (shape[0] * up.scale, shape[1] * up.scale)
    buf = {
        None: None,
        "wrong-shape": np.empty((want[0] + 1, want[1]), dtype),
        "wrong-dtype": np.empty(want, np.float64),
        "list": [[0]],
        "right": np.empty(want, dtype),
    }[out]
    with bounded():
        try:
            res = up.upscale(image, out=buf, progress=progress)
        except ScopesrError:
            assert out in ("wrong-shape", "wrong-dtype", "list") or not isinstance(progress, bool)
            return
    assert res.shape == want and res.dtype == np.dtype(dtype)


@settings(max_examples=examples(40))
@given(
    path=ANY | st.sampled_from([str(MODEL), MODEL, str(MODEL.with_suffix(".card.json")), "/", "/dev/null", "."]),
    backend=ANY | st.sampled_from(["auto", "onnx", "tflite", "torch", "coreml", "onnxruntime"]),
    device=ANY | st.sampled_from(["auto", "cpu", "cuda", "cuda:7", "mps"]),
    verify=ANY,
    probe=ANY,
    num_threads=ANY,
    spin=ANY,
)
def test_load_any_arguments(path, backend, device, verify, probe, num_threads, spin):
    with bounded():
        try:
            opts = {"num_threads": num_threads, "spin": spin}
            up = sr.load(path, backend=backend, device=device, verify=verify, probe=probe, **opts)
        except ScopesrError:
            return
    assert up.scale >= 1 and up.card.in_channels >= 1


def test_out_that_is_not_an_array_is_an_input_error():
    """Found by test_upscale_out_and_progress: out=[[0]] raised AttributeError ('list' has no 'shape')."""
    with pytest.raises(sr.InputError, match="out must be a numpy array"):
        _up().upscale(np.zeros((4, 4), np.uint8), out=[[0]])
