"""tfmot as the oracle: our schedules give its values wherever both update.

tfmot runs in a child process with TF_USE_LEGACY_KERAS=1 and tf_keras; the library never
imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import tfprune

ORACLE = os.path.join(os.path.dirname(__file__), "tfmot_oracle.py")
pytestmark = pytest.mark.slow

POLYNOMIAL = [
    dict(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=1000, frequency=100),
    dict(initial_sparsity=0.1, final_sparsity=0.9, begin_step=10, end_step=95, frequency=20),
    dict(initial_sparsity=0.2, final_sparsity=0.8, begin_step=3, end_step=50, power=1, frequency=7),
    dict(
        initial_sparsity=0.0, final_sparsity=0.95, begin_step=5, end_step=64, power=2, frequency=3
    ),
]
CONSTANT = [
    dict(target_sparsity=0.5, begin_step=0, end_step=-1, frequency=10),
    dict(target_sparsity=0.7, begin_step=4, end_step=33, frequency=6),
]


def cases():
    out = []
    for args in POLYNOMIAL:
        out.append(("PolynomialDecay", args, args["end_step"] + 3 * args["frequency"]))
    for args in CONSTANT:
        out.append(("ConstantSparsity", args, 120))
    return out


@pytest.fixture(scope="module")
def oracle():
    payload = [dict(zip(("class", "args", "steps"), case, strict=True)) for case in cases()]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, ORACLE, json.dumps(payload)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(len(cases())))
def test_same_values_where_both_update_and_we_also_update_at_end_step(oracle, index):
    name, args, steps = cases()[index]
    ours = getattr(tfprune, name)(**args)
    theirs = oracle[index]
    for step in range(steps):
        their_update, their_sparsity = theirs[step]
        our_update, our_sparsity = ours(step)
        if their_update:
            assert our_update, f"tfmot updates at step {step}, we do not"
            assert our_sparsity == pytest.approx(their_sparsity, abs=1e-6)
        elif our_update:
            assert step == args["end_step"], f"extra update at step {step}"
    end = args["end_step"]
    if end >= 0:
        assert ours(end)[0]
        target = args.get("final_sparsity", args.get("target_sparsity"))
        assert ours(end)[1] == target
