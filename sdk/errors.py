"""Exceptions raised by the scopesr runtime.

Every error names the file (when there is one) and says how to fix the problem, so the
CLI can print ``str(err)`` and exit non-zero without a traceback. Catch ``ScopesrError``
for all of them; the classes below say which kind of problem it is.

Classes that report a bad argument also subclass ``ValueError``, so code written against
a plain ``ValueError`` keeps catching them.
"""

from __future__ import annotations


class ScopesrError(Exception):
    """Base class of all scopesr errors: the message is meant for the user."""


class InputError(ScopesrError, ValueError):
    """An argument of a public call is invalid: an option value (tile, halo, batch, device,
    backend, dtype, sample name) or an array that does not match the axes given with it."""


class CardError(ScopesrError):
    """A model card is missing, unreadable or has an invalid field."""


class IntegrityError(CardError):
    """An artifact's sha256 does not match the one recorded in its card."""


class ImageError(ScopesrError):
    """An input image cannot be read or cannot be processed (names the file and why)."""


class OutputError(ScopesrError, OSError):
    """A result cannot be written: it exists (and overwriting was not asked for), its folder
    is missing, a file or not writable, the name is too long, or the disk is full / the file
    is larger than the file system or ``ulimit -f`` allows. Also an ``OSError``, so code that
    caught the raw error keeps catching it."""


class ModelError(ScopesrError):
    """A model artifact is missing, of a kind the runtime does not run, refused by its runtime,
    or does not behave as its card says (wrong output shape, missing signature)."""


class BackendUnavailable(ScopesrError):
    """The runtime needed for an artifact is not installed or not usable here."""


class DependencyError(ScopesrError):
    """An optional package that a call needs (not a model runtime) is not installed; the
    message names the pip package."""


class ModelIOError(ScopesrError):
    """An image does not fit the model (channel count, size, dtype)."""


class InternalError(ScopesrError):
    """A consistency check inside scopesr failed: a bug, not a problem with the input."""
