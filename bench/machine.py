"""Where the benchmark runs: the machine, the versions installed, and whether tfmot is there."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform


def utc_now() -> str:
    """The current date and time in UTC, to the minute."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def tfmot_available() -> bool:
    """Whether tensorflow-model-optimization and tf_keras can be imported (checked by metadata)."""
    try:
        importlib.metadata.version("tensorflow-model-optimization")
        importlib.metadata.version("tf-keras")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def machine() -> dict:
    """Where and with what the benchmark ran."""
    versions = {}
    for name in (
        "tensorflow",
        "keras",
        "tf-keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "gensim",
        "numpy",
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date_utc": utc_now(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": _cpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg()[0],
        "versions": versions,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
