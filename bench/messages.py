"""How the benchmark's child processes answer the driver, and how failures become report cells.

A worker or a measuring child prints one line `@@bench@@ {json}` on stdout (TensorFlow's and
anything else's output around it is ignored); `answer` writes it, `read_answer` finds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["MARK", "answer", "error_summary", "read_answer"]

MARK = "@@bench@@ "


def answer(result: Any) -> None:
    """Prints the answer line for `result` (JSON; numpy numbers as floats)."""
    print(MARK + json.dumps(result, default=float), flush=True)


def read_answer(lines: Iterable[str]) -> Any | None:
    """The JSON of the first answer line among `lines`, or None when there is none."""
    for line in lines:
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    return None


def error_summary(error: Exception) -> str:
    """The error's class and its last non-empty line, at most 300 characters: a report cell."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]
