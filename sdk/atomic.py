"""Atomic file writes: a temporary file beside the target, renamed over it only when complete.

A crash, a full disk or Ctrl-C never leaves a half-written result, card or checkpoint under
the real name, and an existing file is replaced in one step. Temporary files get the usual
permissions (0666 minus the umask), not mkstemp's 0600, so shared results stay readable;
the mode is set again after the writer is done, because some writers (safetensors) replace
the file they are given with a new 0600 one.

``overwrite=False`` makes the final step exclusive: the result is hard-linked to its name,
which fails when the name exists, so of two runs writing one name at once exactly one wins
and the other gets an :class:`~scopesr.sdk.errors.OutputError` (where the file system has
no hard links, an ``O_EXCL`` create claims the name first).

A ``kill -9`` still leaves the temporary file (``.NAME.XXXXXXXX.tmp``) behind: the next write
of the same name removes such files once they are older than ``STALE_TEMP_AGE_S``. Every
problem with the place written to (a missing or read-only folder, a file where a folder
should be, a name that is a folder or too long, a full disk, a file-size limit) becomes an
``OutputError`` (also an ``OSError``) that says which.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

log = logging.getLogger(__name__)

#: temporary files of a killed writer older than this are removed by the next write of that name
STALE_TEMP_AGE_S = 6 * 3600
#: the random part mkstemp/mkdtemp put into a name
_RANDOM = r"[a-z0-9_]{8}"
_UMASK: int | None = None
#: errnos that mean "no space" / "too large": reported as such wherever they happen
_SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: errnos of file systems without hard links (the exclusive step then claims the name by O_EXCL)
_NO_LINK_ERRNOS = {
    errno.EPERM,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSYS,
    errno.EOPNOTSUPP,
    getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
    errno.EACCES,
}


def _umask() -> int:
    """The process umask, read once (reading it means setting it, which is not thread-safe)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def temp_prefix(path: str | os.PathLike, suffix: str = ".tmp") -> str:
    """``.NAME.`` for the temporary files of ``path``; NAME is shortened when the temporary name
    (14+ characters longer than NAME) would not fit the file system's name limit."""
    path = Path(path)
    name = path.name
    room = _name_max(path.parent) - len(os.fsencode(suffix)) - 8 - 2
    raw = os.fsencode(name)
    if len(raw) > room:
        name = raw[: max(1, room)].decode(errors="ignore") or "x"
    return f".{name}."


#: per folder, the dot-names in it that look like temporary files, listed once per process: a
#: killed run's leftovers predate this process, so one listing finds them all (and a folder of
#: thousands of results is not listed again for every file written into it)
_LISTED: dict[str, list[str]] = {}
_TEMPLIKE = re.compile(r"\..+\." + _RANDOM + r"(\..+)?")


def _temp_like_names(folder: Path) -> list[str]:
    key = os.path.abspath(folder)
    names = _LISTED.get(key)
    if names is None:
        try:
            with os.scandir(folder) as it:
                names = [e.name for e in it if e.name.startswith(".") and _TEMPLIKE.fullmatch(e.name)]
        except OSError:
            names = []
        if len(_LISTED) > 1024:
            _LISTED.clear()
        _LISTED[key] = names
    return names


def stale_temps(path: str | os.PathLike, suffix: str = ".tmp", max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Temporary files (or folders) of ``path`` left by an interrupted writer, older than
    ``max_age_s``: ``.NAME.XXXXXXXX<suffix>`` (atomic_path) and ``.NAME.XXXXXXXX``
    (a temporary folder, e.g. sr-convert's)."""
    path = Path(path)
    prefix = temp_prefix(path, suffix)
    pattern = re.compile(re.escape(prefix) + _RANDOM + "(" + re.escape(suffix) + ")?")
    now = time.time()
    found = []
    for name in _temp_like_names(path.parent):
        if not name.startswith(prefix) or not pattern.fullmatch(name):
            continue
        p = path.parent / name
        try:
            st = p.lstat()
        except OSError:
            continue
        if (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and now - st.st_mtime >= max_age_s:
            found.append(p)
    return found


def remove_stale_temps(
    path: str | os.PathLike, suffix: str = ".tmp", max_age_s: float = STALE_TEMP_AGE_S
) -> list[Path]:
    """Remove what :func:`stale_temps` finds (saying so in the log); returns the paths removed.
    A temporary file of a run still going is younger than ``max_age_s`` and is left alone."""
    removed = []
    for p in stale_temps(path, suffix, max_age_s):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError as exc:
            log.warning("%s: stale temporary file of an interrupted run; cannot remove it (%s)", p, exc.strerror)
            continue
        log.warning("removed %s: a temporary file left by an interrupted run", p)
        removed.append(p)
    return removed


def output_error(exc: OSError, path: Path, action: str = "write") -> OutputError:
    """A clear OutputError for an OSError met while writing ``path``."""
    folder = path.parent
    e = exc.errno
    if e in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        msg = (
            f"{path}: disk full (no space left on the device holding {folder}, or the disk quota is "
            "used up); free some space or write elsewhere"
        )
    elif e == errno.EFBIG:
        msg = (
            f"{path}: file too large (larger than this file system or the file-size limit, "
            "ulimit -f, allows); raise the limit or write to another file system"
        )
    elif e == errno.ENAMETOOLONG:
        msg = (
            f"{path}: file name too long ({len(os.fsencode(path.name))} bytes; this file system allows "
            f"{_name_max(folder) if folder.is_dir() else 255}); rename the input or choose a shorter name"
        )
    elif e in (errno.EACCES, errno.EPERM):
        msg = f"{path}: cannot {action} here: permission denied for the folder {folder}; choose a writable folder"
    elif e == errno.EROFS:
        msg = f"{path}: cannot {action} here: {folder} is on a read-only file system; choose a writable folder"
    elif e == errno.EISDIR:
        msg = f"{path}: is a folder; cannot write a file of that name"
    elif e in (errno.ENOTDIR, errno.EEXIST) and not folder.is_dir():
        bad = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        msg = f"{path}: cannot {action} here: {bad} is a file, not a folder"
    elif e == errno.ENOENT:
        msg = f"{path}: cannot {action} here: the folder {folder} does not exist"
    else:
        msg = f"{path}: cannot {action} ({exc.strerror or exc})"
    err = OutputError(msg)
    err.errno = e
    return err


def _short_write_error(exc: OSError, path: Path, tmp: Path) -> OutputError:
    """tifffile reports a short write as ``OSError("N requested and M written")`` without an
    errno; tell a file-size limit from a full disk by what is left of each."""
    try:
        written = os.stat(tmp).st_size
    except OSError:
        written = 0
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and written >= soft - (1 << 16):
            return output_error(OSError(errno.EFBIG, str(exc)), path)
    except (ImportError, OSError, ValueError):
        pass
    try:
        st = os.statvfs(path.parent)
        if st.f_bavail * st.f_frsize < (1 << 20):
            return output_error(OSError(errno.ENOSPC, str(exc)), path)
    except (OSError, AttributeError):
        pass
    err = OutputError(
        f"{path}: disk full or file too large: the write stopped short ({exc}); free some "
        "space, or raise the file-size limit (ulimit -f)"
    )
    err.errno = errno.ENOSPC
    return err


def check_name(path: str | os.PathLike) -> Path:
    """OutputError when ``path``'s name is longer than its file system allows (said before any
    work is done, instead of an OSError on the first look at the name)."""
    path = Path(path)
    folder = path.parent
    limit = _name_max(folder) if folder.is_dir() else 255
    if len(os.fsencode(path.name)) > limit:
        raise output_error(OSError(errno.ENAMETOOLONG, "File name too long"), path)
    return path


def _exclusive_place(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` only if ``path`` does not exist (one winner among racing writers)."""
    exists = OutputError(
        f"{path}: already exists (another run may have written it meanwhile); "
        "not replaced. Pass --overwrite (overwrite=True) to replace it"
    )
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise exists from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        # no hard links on this file system (FAT, some network mounts): claim the name first
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            raise exists from None
        os.close(fd)
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


def prepare_folder(path: str | os.PathLike) -> Path:
    """Create ``path``'s folder if needed; OutputError when that cannot be done (a file in the
    way, no permission, read-only) or when ``path`` itself is a folder."""
    path = check_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path) from None
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; cannot write a file of that name")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was. ``suffix`` lets writers that look at the name (tifffile,
    Pillow) see the right extension. ``overwrite=False``: refuse (OutputError) when ``path``
    exists at the end, atomically with the placing. A full disk, a file-size limit and an
    unusable folder are reported as an OutputError saying so.
    """
    path = prepare_folder(path)
    if not overwrite and os.path.lexists(path):
        raise OutputError(f"{path}: exists; pass --overwrite (overwrite=True) to replace it")
    remove_stale_temps(path, suffix)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path, suffix), suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    os.close(fd)
    mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)
    try:
        try:
            yield Path(tmp)
        except OSError as exc:
            if isinstance(exc, OutputError):
                raise
            if exc.errno in _SPACE_ERRNOS:
                raise output_error(exc, path) from None
            if exc.errno is None and "written" in str(exc):  # a short write (tifffile's words)
                raise _short_write_error(exc, path, Path(tmp)) from None
            raise
        try:
            st = os.stat(tmp)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
                os.chmod(tmp, mode)  # the writer made a new file (safetensors: 0600)
            if overwrite:
                os.replace(tmp, path)
            else:
                _exclusive_place(Path(tmp), path)
        except OutputError:
            raise
        except OSError as exc:
            raise output_error(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
