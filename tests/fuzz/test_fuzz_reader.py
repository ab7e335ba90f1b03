"""Fuzzing the image reader (scopesr.sdk.read_image): any bytes, and valid TIFF / PNG / JPEG /
stack files mutated byte-wise and structurally (tags, IFD links, header fields, frame sizes),
must give a valid Image or an ImageError, within the per-example time and memory bound.
Torch-free: edge."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from fuzzutil import bounded, examples, load_fuzz_tool
from hypothesis import given, note, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.edge

FUZZ = load_fuzz_tool()
SEEDS = FUZZ.seed_images()
MAGIC = [b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b""]


def _read(name: str, data: bytes, memmap: bool | None = None) -> str:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        with bounded():
            return FUZZ.check_image_file(p, memmap)


def test_seeds_are_valid_images():
    """The mutation seeds themselves read back (else a mutation says nothing)."""
    assert len(SEEDS) >= 20 and {Path(n).suffix for n, _ in SEEDS} == {".tif", ".png", ".jpg"}
    for name, data in SEEDS:
        assert _read(name, data) == "ok", name


@settings(max_examples=examples(60))
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=2048), suffix=st.sampled_from([".tif", ".png", ".jpg"]))
def test_any_bytes(magic, body, suffix):
    """Any bytes behind an image signature (or none) -> an Image or a ScopesrError."""
    _read("x" + suffix, magic + body)


@settings(max_examples=examples(150))
@given(seed=st.sampled_from(range(len(SEEDS))), rng=st.integers(0, 2**32), memmap=st.sampled_from([None, True]))
def test_mutated_valid_files(seed, rng, memmap):
    """1-3 mutations of a valid file (flipped bits, truncation, changed tags, dimensions, ...)."""
    name, data = SEEDS[seed]
    blob, what = FUZZ.mutate_image(name, data, random.Random(rng))
    note(f"{name}: {what}")
    _read(name, blob, memmap)
