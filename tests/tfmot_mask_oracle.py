"""Prints tfmot's block and N:M masks for given weights; run with TF_USE_LEGACY_KERAS=1.

`python tfmot_mask_oracle.py IN.npz OUT.npz CASES_JSON`: each case names a weight in IN.npz and
either `block` + `pooling` + `sparsity` or `m_by_n`; OUT.npz gets the mask tfmot's own pruning
code computes for it under the case's index.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl, pruning_schedule


def mask(weight: np.ndarray, case: dict) -> np.ndarray:
    variable = tf.Variable(weight)
    pruning = pruning_impl.Pruning(
        training_step_fn=lambda: tf.constant(1, tf.int64),
        pruning_vars=[(variable, tf.Variable(tf.ones_like(weight)), tf.Variable(0.0))],
        pruning_schedule=pruning_schedule.ConstantSparsity(case.get("sparsity", 0.5), 0),
        block_size=tuple(case.get("block", (1, 1))),
        block_pooling_type=case.get("pooling", "AVG"),
        sparsity_m_by_n=tuple(case["m_by_n"]) if case.get("m_by_n") else None,
    )
    # The same method tfmot's wrapper calls at a mask update.
    _, new = pruning._maybe_update_block_mask(variable)
    return np.asarray(new)


def main(source: str, out: str, cases: list[dict]) -> None:
    with np.load(source) as data:
        weights = dict(data)
    np.savez(out, **{str(i): mask(weights[c["weight"]], c) for i, c in enumerate(cases)})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
