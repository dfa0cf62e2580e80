"""Skew monitor: training statistics from the real ingest vs serving rows from the same generator.

No ``from __future__ import annotations``: kfp reads the in-test pipeline's annotations as types.
"""

import json
import logging
import math

import numpy as np
import pytest

from mlengine import cli as mlengine_cli
from mlengine.components.monitor.executor import (
    DEFAULT_THRESHOLDS,
    STATUS_DRIFT,
    STATUS_NOT_ENOUGH_DATA,
    STATUS_OK,
    compare,
    load_statistics,
    metrics_summary,
    parse_thresholds,
    run,
)
from mlengine.components.shared.featurespec import load_spec, spec_from_dict
from mlengine.components.shared.serving_log import ServingInputLog
from mlengine.errors import MlengineError
from mlengine.synthetic import generate_columns, write_csv
from tests.ingest_fixtures import ingest

SPEC = load_spec()
TRAIN_ROWS = 3000
SERVING_ROWS = 2000
SHIFTED_COLUMNS = {"pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude", "hourofday"}
STABLE_COLUMNS = {"passenger_count", "dayofweek"}  # the generator's shift leaves them alone


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory):
    """The statistics artifact of a real ingest run over a generated CSV."""
    root = tmp_path_factory.mktemp("monitor")
    write_csv(root / "train.csv", TRAIN_ROWS, seed=11)
    run = ingest(root / "train.csv", root / "ingest")
    return run.out / "stats"


@pytest.fixture(scope="module")
def stats(stats_dir):
    doc, _ = load_statistics(stats_dir)
    return doc


def serving(rows: int, shift: float, seed: int) -> dict[str, np.ndarray]:
    columns = generate_columns(rows, seed=seed, shift=shift)
    return {name: columns[name] for name in SPEC.column_names}


def test_same_population_is_not_drift(stats):
    result = compare(stats, serving(SERVING_ROWS, 0.0, seed=101), SPEC)
    assert result["status"] == STATUS_OK, result["message"]
    assert result["drift_detected"] is False
    assert result["columns_drifted"] == []
    assert result["training_scope"] == "train"
    assert result["serving_rows"] == SERVING_ROWS
    for name, entry in result["columns"].items():
        assert entry["status"] == STATUS_OK and entry["flags"] == [], name
        assert entry["psi"] < 0.05, (name, entry["psi"])
        assert entry["mean_shift"] < 0.1, (name, entry["mean_shift"])
        assert 0.8 < entry["variance_ratio"] < 1.25, (name, entry["variance_ratio"])
        assert entry["js_distance"] < 0.1, (name, entry["js_distance"])
    assert result["max_psi"] < 0.05


def test_shifted_population_is_drift_on_the_shifted_columns(stats):
    result = compare(stats, serving(SERVING_ROWS, 1.0, seed=102), SPEC)
    assert result["status"] == STATUS_DRIFT
    assert result["drift_detected"] is True
    assert set(result["columns_drifted"]) == SHIFTED_COLUMNS
    columns = result["columns"]
    for name in SHIFTED_COLUMNS:
        assert columns[name]["psi"] > DEFAULT_THRESHOLDS["psi"], (name, columns[name]["psi"])
        assert "psi" in columns[name]["flags"]
    # trips start further out: the pickup longitude moves by more than a quarter std and spreads
    assert columns["pickup_longitude"]["mean_shift"] > DEFAULT_THRESHOLDS["mean_shift"]
    assert "mean_shift" in columns["pickup_longitude"]["flags"]
    assert columns["pickup_latitude"]["variance_ratio"] > DEFAULT_THRESHOLDS["variance_ratio_high"]
    # more night rides: hourofday is compared as categories
    assert columns["hourofday"]["distribution"]["kind"] == "categories"
    assert columns["pickup_longitude"]["distribution"]["kind"] == "histogram"
    for name in STABLE_COLUMNS:
        assert columns[name]["status"] == STATUS_OK, (name, columns[name]["flags"])
    assert result["max_psi"] == max(columns[name]["psi"] for name in columns)


def test_too_few_serving_rows_is_not_enough_data_not_an_alarm(stats):
    result = compare(stats, serving(60, 1.0, seed=103), SPEC)
    assert result["status"] == STATUS_NOT_ENOUGH_DATA
    assert result["drift_detected"] is False
    assert result["columns_drifted"] == []
    assert "not enough serving data: 60 rows, at least 100" in result["message"]
    assert {entry["status"] for entry in result["columns"].values()} == {STATUS_NOT_ENOUGH_DATA}
    assert metrics_summary(result)["enough_data"] == 0
    empty = compare(stats, {name: np.zeros(0) for name in SPEC.column_names}, SPEC)
    assert empty["status"] == STATUS_NOT_ENOUGH_DATA and empty["max_psi"] is None


def test_small_samples_widen_the_limits_instead_of_raising_false_alarms(stats):
    alarms = 0
    for seed in range(20):
        result = compare(stats, serving(120, 0.0, seed=200 + seed), SPEC)
        alarms += result["drift_detected"]
        entry = result["columns"]["hourofday"]
        # 21 categories over 120 rows: the noise floor lies above the plain threshold
        assert entry["psi_limit"] > DEFAULT_THRESHOLDS["psi"]
    assert alarms <= 1
    assert compare(stats, serving(120, 1.0, seed=300), SPEC)["drift_detected"] is True


def test_stricter_thresholds_flag_more(stats):
    rows = serving(SERVING_ROWS, 0.5, seed=104)
    default = compare(stats, rows, SPEC)
    strict = compare(stats, rows, SPEC, "psi=0.02,mean_shift=0.05,variance_ratio_high=1.1")
    assert len(strict["columns_drifted"]) > len(default["columns_drifted"])
    assert strict["thresholds"]["psi"] == 0.02


def test_categorical_string_column_with_unseen_values():
    spec = spec_from_dict({
        "name": "cities", "label": {"name": "y", "type": "float"},
        "columns": [{"name": "city", "type": "string"}, {"name": "x", "type": "float"}],
        "features": {"categorical": ["city"], "numeric": ["x"]},
    })
    train = {"rows": 1000, "columns": {
        "city": {"type": "string", "count": 1000, "missing": 0, "distinct": 3, "counts_approximate": False,
                 "top_values": [{"value": "a", "count": 500}, {"value": "b", "count": 300},
                                {"value": "c", "count": 200}]},
        "x": {"type": "float", "count": 1000, "missing": 0, "mean": 0.0, "std": 1.0, "min": -4.0, "max": 4.0,
              "histogram": {"edges": list(np.linspace(-4, 4, 21)),
                            "counts": [int(c) for c in np.diff(1000 * _normal_cdf(np.linspace(-4, 4, 21)))],
                            "source": "sample"}},
    }}
    rng = np.random.default_rng(5)
    same = {"city": rng.choice(["a", "b", "c"], size=800, p=[0.5, 0.3, 0.2]).astype(object),
            "x": rng.normal(size=800)}
    result = compare(train, same, spec)
    assert result["status"] == STATUS_OK, result["columns"]
    assert result["columns"]["city"]["out_of_range_fraction"] == 0.0
    assert "mean_shift" not in result["columns"]["city"]  # no moments for strings
    moved = {"city": rng.choice(["a", "b", "z"], size=800, p=[0.4, 0.3, 0.3]).astype(object),
             "x": rng.normal(loc=1.0, size=800)}
    result = compare(train, moved, spec)
    city, x = result["columns"]["city"], result["columns"]["x"]
    assert set(city["flags"]) == {"psi", "out_of_range"}
    assert city["out_of_range_fraction"] == pytest.approx(city["distribution"]["serving_counts"][-1] / 800)
    assert 0.25 < city["out_of_range_fraction"] < 0.35
    assert {"mean_shift", "psi"} <= set(x["flags"])
    assert x["mean_shift"] == pytest.approx(1.0, abs=0.15)


def _normal_cdf(points: np.ndarray) -> np.ndarray:
    return np.array([0.5 * (1 + math.erf(p / math.sqrt(2))) for p in points])


def test_parse_thresholds():
    assert parse_thresholds(None) == DEFAULT_THRESHOLDS
    parsed = parse_thresholds("psi=0.3, mean_shift=none,min_rows=500")
    assert (parsed["psi"], parsed["mean_shift"], parsed["min_rows"]) == (0.3, None, 500)
    assert parse_thresholds('{"js_distance": 0.15}')["js_distance"] == 0.15
    for bad, message in (("psi=high", "not a number"), ("wobble=1", "unknown key 'wobble'"), ("psi", "KEY=VALUE"),
                         ("psi=-1", "positive"), ("significance=2", "below 1"), ("min_rows=none", "cannot be disabled"),
                         ("variance_ratio_low=2", "must be below"), ("{bad", "not valid JSON")):
        with pytest.raises(MlengineError, match=message):
            parse_thresholds(bad)


def test_run_writes_reports_from_a_logged_shifted_population(stats_dir, tmp_path, caplog):
    log_dir = tmp_path / "serving-log"
    with ServingInputLog(log_dir, max_lines_per_file=700) as log:
        shifted = serving(1500, 1.0, seed=105)
        for start in range(0, 1500, 250):
            log.log_columns({name: values[start:start + 250] for name, values in shifted.items()}, 250)
    (log_dir / "serving-99999999999999999999-1-000001.jsonl").write_text("{torn\n", encoding="utf-8")
    caplog.set_level(logging.INFO, logger="mlengine.components.monitor.executor")
    result = run(stats_dir, log_dir, tmp_path / "out", markdown_path=tmp_path / "copy.md")
    assert result.status == STATUS_DRIFT
    assert result.malformed_lines == 1 and result.serving_rows == 1500
    assert result.drift["serving_log"]["malformed"] == 1
    assert any("1,500 serving rows from 4 file(s) (1 malformed" in r.getMessage() for r in caplog.records)
    out = tmp_path / "out"
    saved = json.loads((out / "drift.json").read_text(encoding="utf-8"))
    assert saved["columns_drifted"] == result.columns_drifted
    assert (tmp_path / "copy.md").read_text(encoding="utf-8") == (out / "drift_report.md").read_text(encoding="utf-8")
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == result.metrics
    markdown = (out / "drift_report.md").read_text(encoding="utf-8")
    assert "**DRIFT**" in markdown and "| column | status | flags |" in markdown
    assert markdown.count("\n| ") == len(SPEC.column_names) + 1  # header + one row per column
    html = (out / "drift_report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == len(SPEC.column_names)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["drift_detected"] == 1
    assert metrics["columns_drifted"] == len(SHIFTED_COLUMNS)
    assert metrics["max_psi"] > DEFAULT_THRESHOLDS["psi"]
    assert metrics["serving_rows"] == 1500


def _main_with_monitor(argv, monkeypatch):
    extension = "mlengine.components.monitor.cli"
    if extension not in mlengine_cli.CLI_EXTENSIONS:
        monkeypatch.setattr(mlengine_cli, "CLI_EXTENSIONS", (*mlengine_cli.CLI_EXTENSIONS, extension))
    return mlengine_cli.main(argv)


def test_cli_missing_statistics_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "log").mkdir()
    code = _main_with_monitor(["monitor", "--statistics", str(tmp_path / "nope"), "--serving-log",
                               str(tmp_path / "log"), "--out", str(tmp_path / "out")], monkeypatch)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"mlengine monitor: error: {tmp_path / 'nope'}: statistics not found")
    assert "Traceback" not in captured.err


def test_cli_reports_and_fails_on_drift(stats_dir, tmp_path, monkeypatch, capsys):
    with ServingInputLog(tmp_path / "log") as log:
        log.log_columns(serving(800, 1.0, seed=106), 800)
    argv = ["monitor", "--statistics", str(stats_dir / "statistics.json"), "--serving-log", str(tmp_path / "log"),
            "--out", str(tmp_path / "out"), "--no-html", "--thresholds", "psi=0.25"]
    assert _main_with_monitor(argv, monkeypatch) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["drift_detected"] is True and summary["serving_rows"] == 800
    assert "html" not in summary["outputs"]
    assert _main_with_monitor([*argv, "--fail-on-drift"], monkeypatch) == 1
    capsys.readouterr()
    assert _main_with_monitor([*argv, "--thresholds", "bogus=1"], monkeypatch) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err


def test_component_compiles(tmp_path):
    from kfp import compiler

    from mlengine.components.monitor.component import monitor

    path = tmp_path / "monitor.yaml"
    compiler.Compiler().compile(monitor, str(path))
    text = path.read_text(encoding="utf-8")
    for name in ("serving_log_uri", "thresholds", "drift_report_html", "system.HTML", "system.Metrics"):
        assert name in text, name


@pytest.mark.e2e
def test_monitoring_pipeline_runs_under_kfp_local(kfp_local, stats_dir, tmp_path):
    from mlengine.pipelines.monitoring import monitoring_pipeline

    with ServingInputLog(tmp_path / "log") as log:
        log.log_columns(serving(500, 1.0, seed=107), 500)

    task = monitoring_pipeline(statistics_uri=str(stats_dir), serving_log_uri=str(tmp_path / "log"),
                               thresholds="psi=0.25")
    assert task.output is True
    reports = {path.name: path for path in kfp_local.rglob("*") if path.is_file()}
    assert "**DRIFT**" in reports["drift_report"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in reports["drift_report_html"].read_text(encoding="utf-8")
    assert json.loads(reports["drift.json"].read_text(encoding="utf-8"))["serving_rows"] == 500
