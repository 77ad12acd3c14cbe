"""The `tfprune` console script, outside the `tfprune` package so that it starts first.

TensorFlow's C++ start-up logging ("All log messages before absl::InitializeLog() ...", oneDNN,
CUDA), the TFLite converter's and LiteRT's own lines are written by native code straight to the
process's stderr, whatever `TF_CPP_MIN_LOG_LEVEL` says, and `import tfprune` loads TensorFlow.
A newcomer reads them as errors. So before anything of tfprune is imported, the process's
stderr (file descriptor 2) is pointed to the null device, and Python's `sys.stderr` (warnings,
progress lines, errors, tracebacks) to the real one; then `tfprune.cli.main` runs. Nothing in
the user's environment is changed; `TFPRUNE_NATIVE_LOGS=1` keeps the native lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["native_stderr_dropped", "run"]


@contextlib.contextmanager
def native_stderr_dropped() -> Iterator[None]:
    """Inside, native code's writes to stderr are dropped and Python's still reach it."""
    try:
        real = not os.environ.get("TFPRUNE_NATIVE_LOGS") and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):  # no real stderr (a notebook, a capture)
        real = False
    if not real:
        yield
        return
    sys.stderr.flush()
    kept = os.dup(2)
    python_stderr, sys.stderr = sys.stderr, os.fdopen(kept, "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(kept, 2)
        sys.stderr.close()
        sys.stderr = python_stderr


def run() -> None:
    """The console script: `tfprune.cli.main.main(sys.argv)`, native stderr lines dropped."""
    with native_stderr_dropped():
        from tfprune.cli.main import main  # loads TensorFlow: only once stderr is redirected

        status = main(sys.argv)
    sys.exit(status)
