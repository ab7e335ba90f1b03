"""Atomic writes: complete file or the old one, never a torn file; normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from scopesr.sdk import atomic_path, atomic_write_text

pytestmark = pytest.mark.edge


def test_replaces_only_when_complete(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]  # temp file removed
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_interrupt_leaves_no_temp(tmp_path):
    target = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target, suffix=".tmp.pt") as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".tmp.pt")
            raise KeyboardInterrupt
    assert not any(tmp_path.iterdir())


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        import scopesr.sdk.atomic as atomic

        atomic._UMASK = None  # re-read under this umask
        p = atomic_write_text(tmp_path / "sub" / "card.json", "{}")  # parent folder created
    finally:
        os.umask(old)
        atomic._UMASK = None
    assert stat.S_IMODE(p.stat().st_mode) == 0o644  # not mkstemp's 0600
