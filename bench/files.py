"""Data files the benchmarks read from installed packages (never the network)."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable


def installed_file(package: str, wanted: Callable[[str], bool]) -> str | None:
    """The path of the first file of installed `package` whose path inside it (with `/`
    separators) satisfies `wanted` and exists on disk; None when the package is not installed
    or holds no such file."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if wanted(str(file).replace(os.sep, "/")):
            path = str(file.locate())
            if os.path.exists(path):
                return path
    return None
