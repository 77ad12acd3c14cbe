"""What every command shares: the one-line user error, and reading the files commands take."""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator

import numpy as np

__all__ = [
    "CommandError",
    "check_file",
    "load_calibration",
    "load_keras",
    "m_by_n_flag",
    "reported",
]


class CommandError(Exception):
    """A user error that the command line reports as one line and exit status 1."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its class name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def reported(*errors: type[BaseException]) -> Iterator[None]:
    """Turns the `errors` raised inside into a `CommandError` of their first line.

    Example:

    >>> with reported(ValueError):
    ...     raise ValueError("Argument `sparsity` must be in [0, 1).\\nmore detail")
    Traceback (most recent call last):
    ...
    tfprune.cli.common.CommandError: Argument `sparsity` must be in [0, 1).
    """
    try:
        yield
    except errors as error:
        raise CommandError(first_line(error)) from error


def check_file(path: str, suffixes: tuple[str, ...]) -> None:
    """Raises a `CommandError` unless `path` is an existing file ending in one of `suffixes`."""
    if not os.path.exists(path):
        raise CommandError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CommandError(f"{path}: not a file")
    if not path.endswith(suffixes):
        raise CommandError(f"{path}: expected a file ending in {' or '.join(suffixes)}")


def load_keras(path: str):
    """The model of a `.keras` file; any failure is one line."""
    import keras  # loads TensorFlow: only commands that read a model pay for it

    check_file(path, (".keras",))
    if not zipfile.is_zipfile(path):
        raise CommandError(f"{path}: not a .keras file (not a zip archive; truncated or corrupt?)")
    try:
        return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any loader failure is reported as one line
        raise CommandError(f"{path}: cannot load the model: {first_line(e)}") from e


def load_calibration(path: str | None):
    """`(x, y)` of an `.npz` file with an array `x` (and optionally `y`), or `(None, None)`."""
    if path is None:
        return None, None
    check_file(path, (".npz",))
    try:
        with np.load(path) as data:
            if "x" not in data:
                raise CommandError(f"{path}: the .npz file has no array named `x`")
            return data["x"], (data["y"] if "y" in data else None)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CommandError(f"{path}: cannot read the .npz file: {e}") from e


def m_by_n_flag(values: list[str]) -> tuple[int, int]:
    """The `--m_by_n m,n` flag as two ints.

    Example:

    >>> m_by_n_flag(["2", "4"])
    (2, 4)
    """
    try:
        m, n = (int(v) for v in values)
    except ValueError:
        raise CommandError(f"--m_by_n must be two integers m,n; got {','.join(values)}") from None
    return m, n
