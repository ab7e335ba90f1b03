"""Fuzzing the model-card parser (ModelCard.read / from_dict, and load() of an artifact by its
card): any JSON, any bytes, and the valid card with hostile values, types, nesting and sizes
-> a valid card or a CardError (a ScopesrError), within the per-example bound. Torch-free: edge."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from fuzzutil import ROOT, bounded, examples, load_fuzz_tool
from hypothesis import given, note, settings
from hypothesis import strategies as st

import scopesr.sdk as sr
from scopesr.sdk import ScopesrError

pytestmark = pytest.mark.edge

FUZZ = load_fuzz_tool()
FIXTURES = ROOT / "tests" / "fixtures"
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", ".", "..", "/etc/passwd", "../x", "sub/m.onnx", "m.onnx\x00", "\ud800", "x" * 4097])
)
JSON = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=25,
)


def _read_text(raw: bytes) -> str:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.card.json"
        p.write_bytes(raw)
        with bounded():
            return FUZZ.check_card_file(p)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@settings(max_examples=examples(60))
@given(value=JSON)
def test_any_json(value):
    _read_text(_dumps(value))


@settings(max_examples=examples(40))
@given(raw=st.binary(max_size=512) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes(raw):
    _read_text(raw)


@settings(max_examples=examples(120))
@given(fields=st.dictionaries(st.sampled_from(sorted(FUZZ.SEED_CARD) + ["unknown"]), JSON, min_size=1, max_size=3))
def test_valid_card_with_hostile_fields(fields):
    """The seed card (valid) with one to three fields replaced by any JSON value."""
    _read_text(_dumps({**FUZZ.SEED_CARD, **fields}))


@settings(max_examples=examples(40))
@given(rng=st.integers(0, 2**32))
def test_hostile_cards_of_the_long_run(rng):
    """tools/fuzz.py's hostile cards: deep nesting, huge numbers, non-UTF-8, path-like artifacts."""
    raw, what = FUZZ.hostile_card(random.Random(rng))
    note(what)
    _read_text(raw)


@pytest.fixture(scope="module")
def model_dir():
    d = Path(tempfile.mkdtemp(prefix="fuzz-card-"))
    shutil.copy(FIXTURES / "tiny_x4.onnx", d / "tiny_x4.onnx")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=examples(40))
@given(
    fields=st.dictionaries(
        st.sampled_from(["scale", "in_channels", "out_channels", "halo", "layout", "tile_sizes", "normalisation"]),
        JSON | st.integers(0, 20),
        min_size=1,
        max_size=2,
    ),
    by_card=st.booleans(),
)
def test_load_with_a_hostile_card(model_dir, fields, by_card):
    """A real artifact beside a card that passes or fails validation: load() and one upscale give a
    result or a ScopesrError (a card that lies about the model must not end in a traceback)."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    card = json.loads((FIXTURES / "tiny_x4.card.json").read_text())
    card.update(fields)
    (model_dir / "tiny_x4.card.json").write_bytes(_dumps(card))
    target = model_dir / ("tiny_x4.card.json" if by_card else "tiny_x4.onnx")
    with bounded():
        try:
            up = sr.load(target, num_threads=1)
        except ScopesrError:
            return
        try:
            out = up.upscale(np.arange(24 * 20, dtype=np.uint16).reshape(24, 20))
        except ScopesrError:
            return
        assert out.shape == (24 * up.scale, 20 * up.scale) and out.dtype == np.uint16
