"""The bounds bench_batch_predict draws from one-core stage costs."""

import pytest

from bench.bench_batch_predict import STAGES, stage_bounds


def test_stage_bounds_are_the_cores_over_the_summed_costs():
    stages = {"read": 0.1, "validate": 0.1, "model": 0.25, "write": 0.05, "parse_doubles": 0.15}
    bounds = stage_bounds(stages, cores=2, in_process=5_000_000)
    assert sum(stages[name] for name in STAGES) == pytest.approx(0.5)
    assert bounds["stages_rows_per_second"] == pytest.approx(4_000_000)  # 2 cores / 0.5 core-s per 1M rows
    assert bounds["stages_ratio"] == pytest.approx(0.8)
    assert bounds["floor_rows_per_second"] == pytest.approx(5_000_000)  # 2 / (0.15 + 0.25)
    assert bounds["floor_ratio"] == pytest.approx(1.0)
