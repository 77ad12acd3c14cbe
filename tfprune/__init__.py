"""tfprune: gradual magnitude pruning for Keras 3, exported to compact LiteRT files.

Importing tfprune loads Keras but not the export stage: `tfprune.export` (TensorFlow Lite
conversion and the LiteRT interpreter) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from tfprune import datasets
from tfprune.callbacks import PruningSummaries, UpdatePruningStep
from tfprune.channels import prune_channels, trim
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.models.registry import PrunableLayer
from tfprune.oneshot import OneShotLayer, prune_one_shot
from tfprune.policy import PruneForLatencyOnXNNPack, PruningPolicy
from tfprune.prune import prune_low_magnitude, prune_scope, strip_pruning
from tfprune.report import check_sparsity_m_by_n, sparsity_report
from tfprune.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule

__version__ = "0.1.0"

__all__ = [
    "ConstantSparsity",
    "OneShotLayer",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruneLowMagnitude",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "check_sparsity_m_by_n",
    "datasets",
    "export",
    "prune_channels",
    "prune_low_magnitude",
    "prune_one_shot",
    "prune_scope",
    "sparsity_report",
    "strip_pruning",
    "trim",
]


def __getattr__(name: str) -> Any:
    if name == "export":
        return importlib.import_module("tfprune.export")
    raise AttributeError(f"module 'tfprune' has no attribute {name!r}")
