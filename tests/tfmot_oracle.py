"""Prints tfmot's schedule decisions as JSON; run in a child process with TF_USE_LEGACY_KERAS=1.

`python tfmot_oracle.py CASES_JSON`: each case names a schedule class and its arguments and a
number of steps; the output holds `[should_update, sparsity]` for every step of every case.
"""

from __future__ import annotations

import json
import sys

import tensorflow_model_optimization as tfmot


def main(cases: list[dict]) -> None:
    results = []
    for case in cases:
        cls = getattr(tfmot.sparsity.keras, case["class"])
        schedule = cls(**case["args"])
        rows = []
        for step in range(case["steps"]):
            update, sparsity = schedule(step)
            rows.append([bool(update.numpy()), float(sparsity.numpy())])
        results.append(rows)
    print(json.dumps(results))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
