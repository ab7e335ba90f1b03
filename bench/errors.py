"""Errors of scopesr.bench: each names what failed and how to fix it."""

from __future__ import annotations

from scopesr.sdk.errors import ScopesrError


class BenchError(ScopesrError):
    """A benchmark or the release step cannot run (a missing model, sample or runtime)."""
