"""Structured pruning: whole channels removed, for a smaller dense model.

`graph` reads which channels must go together (with the per-layer `rules` and the
`positions` they join), `prune` masks them (`prune_channels`), `plan` says what survives,
`trim` builds the smaller model and `refit` is its least-squares update step.
"""

from tfprune.channels.prune import prune_channels
from tfprune.channels.trim import trim

__all__ = ["prune_channels", "trim"]
