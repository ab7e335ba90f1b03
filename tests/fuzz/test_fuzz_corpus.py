"""The fuzz corpus (tests/fuzz_corpus/): every input that once broke the reader or the card
parser, replayed: a valid result or a ScopesrError within the bound, and the error each fix
made clear. Every file has its one-line note in tests/fuzz_corpus/NOTES. Torch-free: edge."""

from __future__ import annotations

import importlib.util

import pytest
from fuzzutil import CORPUS, bounded, load_fuzz_tool

from scopesr.sdk import CardError, ImageError, ModelCard, read_image

pytestmark = pytest.mark.edge

FUZZ = load_fuzz_tool()


def _notes() -> dict[str, str]:
    lines = (CORPUS / "NOTES").read_text().splitlines()
    return dict(ln.split(": ", 1) for ln in lines if ln.strip() and not ln.startswith("#"))


def _files() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.name != "NOTES")


def test_every_corpus_file_has_a_note():
    notes = _notes()
    assert _files() and sorted(notes) == _files()
    assert all(len(n) > 20 for n in notes.values())


@pytest.mark.parametrize("name", _files())
def test_corpus_replay(name):
    p = CORPUS / name
    with bounded():
        if name.endswith(".card.json"):
            assert FUZZ.check_card_file(p) in ("ok", "ScopesrError")
        else:
            for memmap in (None, True):
                assert FUZZ.check_image_file(p, memmap) in ("ok", "ScopesrError")


def test_lzw_tiff_names_the_missing_codec_package():
    if importlib.util.find_spec("imagecodecs") is not None:
        assert read_image(CORPUS / "lzw.tif").shape == (16, 24)
        return
    with pytest.raises(ImageError, match="needs the imagecodecs package: pip install imagecodecs"):
        read_image(CORPUS / "lzw.tif")


def test_deeply_nested_card_is_refused_when_read():
    with pytest.raises(CardError, match="nested more than 64 deep"):
        ModelCard.read(CORPUS / "nested_training_600.card.json")
