"""The deploy executor's own report: written by ``run``, numbers at their precision."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlengine.components.deploy import executor
from mlengine.components.deploy.executor import DeployResult, example_instance, run
from mlengine.components.deploy.report import render_local_report
from mlengine.components.shared.featurespec import Column


def _spec(*columns):
    return SimpleNamespace(columns=list(columns))


def test_the_example_instance_has_no_float_noise():
    spec = _spec(Column("pickup_longitude", "float", (-74.3, -73.6)), Column("fare", "float", (2.5, 200.0)),
                 Column("count", "int", (1, 6)), Column("tiny", "float", (1e-7, 3e-7)))
    instance = example_instance(spec)
    assert (-74.3 + -73.6) / 2 == -73.94999999999999  # what was printed before
    assert instance == {"pickup_longitude": -73.95, "fare": 101.25, "count": 4, "tiny": 2e-7}


def test_the_local_report_prints_the_instance_at_its_precision():
    instance = example_instance(_spec(Column("pickup_longitude", "float", (-74.3, -73.6))))
    text = render_local_report(name="taxi", predict_url="http://127.0.0.1:1/v1/models/taxi:predict",
                               url="http://127.0.0.1:1", pid=7, kept=False, model_dir="/m", instance=instance,
                               prediction=12.3456789)
    assert '`{"pickup_longitude": -73.95}`' in text
    assert "-73.9499" not in text
    assert "| test prediction | 12.3457 |" in text and "checked, then stopped" in text


def test_the_local_report_rounds_a_float_noisy_instance_for_display():
    noisy = {"pickup_longitude": (-74.3 + -73.6) / 2, "fare": 1 / 3, "count": 4, "flag": True,
             "name": "x", "many": [0.1 + 0.2], "big": 123456789.0}
    text = render_local_report(name="taxi", predict_url="http://127.0.0.1:1/v1/models/taxi:predict",
                               url="http://127.0.0.1:1", pid=7, kept=True, model_dir="/m", instance=noisy,
                               prediction=1.0)
    line = next(line for line in text.splitlines() if line.startswith("| test instance |"))
    assert "-73.94999999999999" not in line and "0.30000000000000004" not in line
    assert line == ('| test instance | `{"pickup_longitude": -73.95, "fare": 0.333333, "count": 4, "flag": true, '
                    '"name": "x", "many": [0.3], "big": 123457000.0}` |')


def test_run_writes_its_own_report_for_an_unblessed_local_model(tmp_path):
    report = tmp_path / "out" / "deploy.md"
    result = run(str(tmp_path), model_uri=str(tmp_path), blessed=False, mode="local", name="taxi",
                 canary_traffic_percent=10, keep_serving=False, state_dir=str(tmp_path / "state"),
                 report_path=str(report))
    assert result == DeployResult(url="", mode="local", name="taxi", report_path=str(report))
    assert "not blessed" in report.read_text(encoding="utf-8")


def test_run_rejects_an_unknown_mode(tmp_path):
    with pytest.raises(executor.MlengineError, match="mode 'laptop'"):
        run(str(tmp_path), model_uri="", mode="laptop", name="taxi", canary_traffic_percent=10,
            keep_serving=False, state_dir=str(tmp_path), report_path=str(tmp_path / "r.md"))
