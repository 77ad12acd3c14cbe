"""One-shot pruning of trained models from a little calibration data, with no training.

`prune` (the `prune_one_shot` loop over the layers a forward pass calls), `targets` (the
weights it visits and the layers whose inputs they multiply), `solve` (one weight matrix
pruned from its statistics, and the report row `OneShotLayer`), `experts` (mixture-of-experts
banks pruned expert by expert from the tokens routed to each), and one module per method that
uses the inputs: `wanda` and `sparsegpt`. Magnitude needs no module of its own: it is the
wrappers' mask rule.
"""

from tfprune.oneshot.prune import MAX_HESSIAN_INPUTS, METHODS, OneShotLayer, prune_one_shot

__all__ = ["MAX_HESSIAN_INPUTS", "METHODS", "OneShotLayer", "prune_one_shot"]
