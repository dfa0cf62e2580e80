"""The bounds bench_batch_predict draws from one-core stage costs."""

import pytest

from bench.bench_batch_predict import stage_bounds


def test_stage_bounds_are_the_models_share_of_the_cpu_per_row():
    stages = {"read": 0.1, "validate": 0.1, "model": 0.25, "write": 0.05, "parse_doubles": 0.15}
    bounds = stage_bounds(stages)
    assert bounds["stages_ratio"] == pytest.approx(0.25 / 0.5)
    assert bounds["floor_ratio"] == pytest.approx(0.25 / 0.4)
