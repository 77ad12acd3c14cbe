"""Atomic file writes: a file appears whole at its path, or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path", "write_atomically"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside `path`; moves it to `path` when the block succeeds.

    The temporary file lives in the target's directory, so the final `os.replace` is atomic.
    If the block raises (or the process is interrupted), the temporary file is removed and
    `path` keeps what it held before.

    Args:
        path: The final location.
        suffix: Suffix of the temporary file name (some writers pick a format by it).
            Defaults to "".

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as temp:
    ...     with open(temp, "w") as f:
    ...         _ = f.write("whole")
    >>> open(target).read()
    'whole'
    """
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    handle, temp = tempfile.mkstemp(prefix=".tfprune-", suffix=suffix, dir=directory)
    os.close(handle)
    try:
        yield temp
        os.replace(temp, os.fspath(path))
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as temp, open(temp, "wb") as f:
        f.write(data)
