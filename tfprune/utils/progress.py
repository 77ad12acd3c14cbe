"""One line per finished stage of a long run, on stderr, with the time it took."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Stages"]


class Stages:
    """Reports the stages of a long run: `stages("converted")` prints a line such as
    `export model.tflite: converted (12.3 s; 14.0 s in all)`. Silent when not `enabled`.

    Example:

    >>> import io
    >>> out = io.StringIO()
    >>> stages = Stages("export", enabled=True, stream=out)
    >>> stages("converted")
    >>> out.getvalue().startswith("export: converted (")
    True
    >>> Stages("export", enabled=False, stream=out)("converted")
    >>> out.getvalue().count("converted")
    1
    """

    def __init__(self, label: str, *, enabled: bool = True, stream: TextIO | None = None):
        self.label = label
        self.enabled = enabled
        self.stream = stream
        self._start = self._last = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        print(
            f"{self.label}: {message} ({now - self._last:.1f} s; {now - self._start:.1f} s in all)",
            file=self.stream or sys.stderr,
            flush=True,
        )
        self._last = now
