"""bench.growth: one real run, and the growth exponents it reports."""

from __future__ import annotations

import pytest

from bench import growth


def test_one_run_prunes_every_block_and_measures_it():
    row = growth.one("wanda", 2, 128, 256)
    assert row["layers"] == 2 and row["width"] == 128 and row["tokens"] == 256
    assert row["seconds"] > 0 and row["forward_seconds"] > 0
    assert row["peak_mib"] >= row["added_mib"] >= 0


def test_each_size_is_varied_alone_from_the_base():
    found = growth.configs()
    assert found[0] == growth.BASE
    assert len(found) == len({tuple(c.values()) for c in found}) == 7
    for config in found[1:]:
        assert sum(config[k] != growth.BASE[k] for k in growth.BASE) == 1


def test_the_exponent_of_a_linear_and_a_quadratic_growth():
    rows = []
    for method, power in (("wanda", 1.0), ("sparsegpt", 2.0)):
        for config in growth.configs():
            scale = 1.0
            for size, base in growth.BASE.items():
                scale *= (config[size] / base) ** power
            rows.append({"method": method, **config, "seconds": 3.0 * scale})
    found = growth.exponents(rows)
    for size in growth.SIZES:
        assert found["wanda", size] == pytest.approx(1.0)
        assert found["sparsegpt", size] == pytest.approx(2.0)
