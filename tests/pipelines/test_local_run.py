"""The whole training pipeline under kfp.local (SubprocessRunner): the heavy end-to-end case.

One run on small generated data covers ingest -> tune (2 trials) -> transform -> train ->
evaluate -> deploy (local KServe server, checked then stopped) and the summary `mlengine run` writes.
"""

import json
import math
import re
from pathlib import Path

import pytest

from mlengine.constants import SERVING_MODEL_SUBDIR, TAXI_NOISE_STD
from mlengine.pipelines.local_run import SUMMARY_FILE, format_summary_table, run_training_locally

pytestmark = pytest.mark.e2e

ROWS = 6000


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    from kfp import local  # noqa: F401  (run_training_locally initialises kfp.local itself)

    out = tmp_path_factory.mktemp("run")
    # fixed by the user: tuning searches hidden_units and learning_rate only
    params = {"epochs": 3, "trials": 2, "parallel_trials": 1, "tune_epochs": 1,
              "hyperparameters": {"batch_size": 256, "nbuckets": 8}}
    summary = run_training_locally(out, rows=ROWS, seed=5, params=params)
    return out, summary


def test_summary_has_the_promised_fields_and_consistent_counts(local_run):
    out, summary = local_run
    written = json.loads((out / SUMMARY_FILE).read_text())
    assert written == summary
    for key in ("rows_read", "rows_rejected", "rmse", "benchmark_rmse", "noise_floor_rmse", "blessed",
                "model_dir", "pipeline_yaml", "params", "seconds", "tuning"):
        assert key in summary, key
    assert summary["rows_read"] == ROWS
    assert summary["rows_rejected"] == 0
    assert summary["noise_floor_rmse"] == TAXI_NOISE_STD
    assert math.isfinite(summary["rmse"]) and summary["rmse"] > 0.8
    assert Path(summary["pipeline_yaml"]).is_file()
    assert (Path(summary["model_dir"]) / SERVING_MODEL_SUBDIR / "saved_model.pb").is_file()
    # what `mlengine schedule --monitoring` reads: the ingest statistics artifact and the serving-log folder
    assert (Path(summary["statistics_uri"]) / "statistics.json").is_file()
    assert summary["serving_log_uri"]
    table = format_summary_table(summary)
    assert "rows read" in table and f"{ROWS:,}" in table


def test_small_run_still_beats_the_distance_only_benchmark_and_is_deployed(local_run):
    out, summary = local_run
    assert summary["rmse"] < summary["benchmark_rmse"]
    assert summary["blessed"] is True
    deploy_reports = list((out / "pipeline-root").glob("*/deploy/deploy_report"))
    assert len(deploy_reports) == 1
    assert "127.0.0.1" in deploy_reports[0].read_text()
    # one model name everywhere: deploy serves it under the spec's name, as `mlengine serve` does
    assert "/v1/models/nyc-taxi-fare:predict" in deploy_reports[0].read_text()


def test_tuning_ran_the_requested_trials_and_fed_its_best_into_training(local_run):
    _, summary = local_run
    tuning = summary["tuning"]
    assert len(tuning["trials"]) == 2
    transform_files = list(Path(summary["model_dir"]).glob("transform.json"))
    state = json.loads(transform_files[0].read_text())
    assert state["nbuckets"] == tuning["best_params"]["nbuckets"]
    assert summary["hyperparameters"]["values"] == tuning["best_params"]


def test_fixed_hyperparameters_are_never_searched(local_run):
    out, summary = local_run
    tuning = summary["tuning"]
    assert all(t["params"]["nbuckets"] == 8 and t["params"]["batch_size"] == 256 for t in tuning["trials"])
    assert tuning["fixed"] == {"batch_size": 256, "nbuckets": 8}
    assert set(tuning["searched"]) == {"hidden_units", "learning_rate"}
    state = json.loads((Path(summary["model_dir"]) / "transform.json").read_text())
    assert state["nbuckets"] == 8  # the final transform too
    assert sorted(summary["hyperparameters"]["fixed"]) == ["batch_size", "nbuckets"]
    [table] = list((out / "pipeline-root").glob("*/tune/tuning_table"))
    assert "Fixed by you (not searched): `batch_size`=256, `nbuckets`=8." in table.read_text()
    assert "nbuckets=8 (fixed)" in format_summary_table(summary)


def test_another_dataset_runs_through_the_whole_pipeline_with_no_code_change(tmp_path):
    """A house-price CSV in two shards (a glob) with its own spec: string categoricals, a cross."""
    import csv

    import yaml

    from mlengine.components.shared.featurespec import load_spec
    from mlengine.constants import SPEC_FILE
    from tests.model_fixtures import HOUSE_SPEC, house_columns

    columns = house_columns(4000, seed=8)
    names = [c["name"] for c in HOUSE_SPEC["columns"]] + [HOUSE_SPEC["label"]["name"]]
    for shard, rows in (("a", range(0, 2000)), ("b", range(2000, 4000))):
        with (tmp_path / f"house-{shard}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(names)
            writer.writerows([columns[name][i] for name in names] for i in rows)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(HOUSE_SPEC))
    run_args = {"data": str(tmp_path / "house-*.csv"), "rows": 0, "resume": True,
                "params": {"spec_uri": str(tmp_path / "spec.yaml"), "epochs": 10}}
    summary = run_training_locally(tmp_path / "out", **run_args)
    assert summary["rows_read"] == 4000 and summary["rows_rejected"] == 0
    assert summary["noise_floor_rmse"] is None  # not generated data: no known floor
    assert math.isfinite(summary["rmse"]) and math.isfinite(summary["benchmark_rmse"])
    assert load_spec(Path(summary["model_dir"]) / SPEC_FILE).name == "house-prices"
    # --resume: the second run reuses the finished steps (the same trained model), not a new training
    again = run_training_locally(tmp_path / "out", **run_args)
    assert again["model_dir"] == summary["model_dir"]
    assert again["rmse"] == summary["rmse"]
    # a blessed first run deployed its model: the second compares with it (here: the very same model)
    assert summary["baseline_rmse"] is None and summary["blessed"] is True, summary["blessing_reasons"]
    assert summary["served_model_dir"] == summary["model_dir"] == again["baseline_model"]
    assert again["baseline_rmse"] == pytest.approx(again["rmse"], rel=1e-6)
    assert again["blessed"] is True
    assert any("served model" in reason for reason in again["blessing_reasons"])
    log = re.sub(r"\x1b\[[0-9;]*m", "", (tmp_path / "out" / "pipeline.log").read_text())  # kfp colours names
    assert log.count("Executing task 'train'") == 1  # trained once over both runs
    assert log.count("Executing task 'ingest'") == 1
