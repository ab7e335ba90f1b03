"""Where an artifact came from: the software versions that made it and its sha256.

Cards record both (``versions``, ``sha256``); the runtime checks the hash before it runs
an artifact. Only the standard library: it runs on a Raspberry Pi without torch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Python's and each installed package's version (missing ones left out), for a card."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder (e.g. ``.mlpackage``: relative names + contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            _hash_file_into(f, h)
        return h.hexdigest()
    _hash_file_into(path, h)
    return h.hexdigest()


def _hash_file_into(path: Path, h: Any) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
