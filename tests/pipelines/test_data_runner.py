"""The ``runner`` (local | beam) of ingest and the analyze pass, from `mlengine run` to the components."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlengine.constants import STATISTICS_FILE, TRANSFORM_FILE
from mlengine.pipelines.local_run import compile_pipelines, run_training_locally
from mlengine.pipelines.training import PIPELINE_NAME

ROWS = 1200  # under the KLL sketch's exact size (k=2000): Beam's quantiles equal the local ones


def test_the_pipeline_has_runner_and_beam_options_and_passes_them_to_ingest_and_transform(tmp_path):
    with open(compile_pipelines(tmp_path)[PIPELINE_NAME]) as handle:
        doc = yaml.safe_load(handle)
    root = doc["root"]["inputDefinitions"]["parameters"]
    assert root["runner"]["defaultValue"] == "local" and root["runner"]["description"]
    assert root["beam_options"]["defaultValue"] == "" and root["beam_options"]["description"]
    tasks = doc["root"]["dag"]["tasks"]
    for task in ("ingest", "transform"):
        inputs = tasks[task]["inputs"]["parameters"]
        assert inputs["runner"]["componentInputParameter"] == "runner", task
        assert inputs["beam_options"]["componentInputParameter"] == "beam_options", task


def test_mlengine_run_flags_reach_the_pipeline_parameters():
    from mlengine.cli import build_parser
    from mlengine.pipelines.cli import _run_params

    args = build_parser().parse_args(["run", "--data-runner", "beam", "--beam-option=--direct_num_workers=1",
                                      "--beam-option=--direct_running_mode=in_memory"])
    params = _run_params(args)
    assert params["runner"] == "beam"
    assert params["beam_options"] == "--direct_num_workers=1 --direct_running_mode=in_memory"
    default = _run_params(build_parser().parse_args(["run"]))
    assert "runner" not in default and "beam_options" not in default


@pytest.mark.parametrize(("argv", "expected"), [
    (["--data-runner", "spark"], "the runners that exist: local, beam"),
    (["--beam-option=--direct_num_workers=2"], "--beam-option needs --data-runner beam"),
])
def test_bad_runner_is_one_line_and_exit_2_before_the_pipeline_starts(tmp_path, argv, expected):
    proc = subprocess.run([sys.executable, "-m", "mlengine.cli", "run", "--out", str(tmp_path / "o"), *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "pipeline-root").exists()


def test_beam_missing_names_the_extra(monkeypatch):
    import builtins

    from mlengine.components.shared.beam_runner import import_beam
    from mlengine.errors import MlengineError

    real_import = builtins.__import__

    def no_beam(name, *args, **kwargs):
        if name == "apache_beam" or name.startswith("apache_beam."):
            raise ImportError("No module named 'apache_beam'", name="apache_beam")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "apache_beam", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_beam)
    with pytest.raises(MlengineError, match=r"kfp-mlengine\[beam\]"):
        import_beam()


def _close(got, expected, path="") -> list[str]:
    """Where two JSON documents differ: exact for ints/strings/bools, floats to rounding."""
    if isinstance(expected, dict):
        diffs = [f"{path}: keys {sorted(set(got) ^ set(expected))}"] if set(got) != set(expected) else []
        return diffs + [d for key in expected if key in got for d in _close(got[key], expected[key], f"{path}.{key}")]
    if isinstance(expected, list):
        if len(got) != len(expected):
            return [f"{path}: length {len(got)} != {len(expected)}"]
        return [d for i, (g, e) in enumerate(zip(got, expected, strict=True)) for d in _close(g, e, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        ok = math.isclose(got, expected, rel_tol=1e-7, abs_tol=1e-9) or (math.isnan(got) and math.isnan(expected))
        return [] if ok else [f"{path}: {got} != {expected}"]
    return [] if got == expected else [f"{path}: {got!r} != {expected!r}"]


def _artifacts(out: Path, summary: dict) -> tuple[dict, dict]:
    stats = json.loads((Path(summary["statistics_uri"]) / STATISTICS_FILE).read_text(encoding="utf-8"))
    (transform,) = (out / "pipeline-root").glob(f"*/transform/**/{TRANSFORM_FILE}")
    return stats, json.loads(transform.read_text(encoding="utf-8"))


def _check_statistics(beam: dict, local: dict, csv_files: list[Path]) -> None:
    """Exact counts and moments; quantiles within the KLL sketch's rank error of the exact data (the
    Beam path keeps a sketch instead of the single-process bottom-k sample: sample fields differ)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from mlengine.components.shared.sketches import kll_rank_error

    # the same generated CSV, in each run's own folder: equal but for the folder
    ingest_beam, ingest_local = dict(beam["ingest"]), dict(local["ingest"])
    assert [Path(f).name for f in ingest_beam.pop("files")] == [Path(f).name for f in ingest_local.pop("files")]
    assert ingest_beam == ingest_local and beam["columns"] == local["columns"]
    error = kll_rank_error()
    for scope in ("all", "train"):
        assert beam[scope]["rows"] == local[scope]["rows"]
        for name, expected in local[scope]["columns"].items():
            got = beam[scope]["columns"][name]
            for key in ("type", "count", "missing", "min", "max", "top_values", "distinct", "counts_approximate"):
                assert got.get(key) == expected.get(key), (scope, name, key)
            if expected["type"] != "string":
                assert got["mean"] == pytest.approx(expected["mean"], rel=1e-12, abs=1e-12), (scope, name)
                assert got["std"] == pytest.approx(expected["std"], rel=1e-9), (scope, name)
    table = pa.concat_tables([pacsv.read_csv(str(path)) for path in csv_files])
    for name, got in beam["all"]["columns"].items():
        if got["type"] == "string" or name not in table.column_names:
            continue
        values = np.sort(table.column(name).to_numpy().astype(np.float64))
        for level_name, level in local["quantile_levels"].items():
            below = np.searchsorted(values, got["quantiles"][level_name], side="left") / len(values)
            at_or_below = np.searchsorted(values, got["quantiles"][level_name], side="right") / len(values)
            assert below - error <= level <= at_or_below + error, (name, level_name)


def _single_process_artifacts(csv_file: Path, statistics_uri: str, nbuckets: int, work: Path) -> tuple[dict, dict]:
    """What `mlengine run`'s local ingest and transform steps write, computed here by the very executors
    those steps call (the pipeline's default split seed 0): no second pipeline run for the comparison."""
    from mlengine.components.ingest.executor import run as run_ingest
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.transform.executor import run as run_transform
    from mlengine.constants import SPEC_FILE, SPLITS

    spec = load_spec(Path(statistics_uri) / SPEC_FILE)
    splits = {name: str(work / name) for name in SPLITS}
    run_ingest(str(csv_file), spec, splits, str(work / "rejects"), str(work / "statistics"))
    run_transform(splits["train"], spec, nbuckets, work / "transform")
    stats = json.loads((work / "statistics" / STATISTICS_FILE).read_text(encoding="utf-8"))
    return stats, json.loads((work / "transform" / TRANSFORM_FILE).read_text(encoding="utf-8"))


@pytest.mark.e2e
def test_mlengine_run_on_beam_gives_the_local_statistics_and_transform_artifact(tmp_path):
    nbuckets = 4
    params = {"epochs": 1, "trials": 0, "hyperparameters": {"batch_size": 256, "nbuckets": nbuckets},
              "runner": "beam", "beam_options": "--direct_num_workers=1"}
    out = tmp_path / "beam"
    summary = run_training_locally(out, rows=ROWS, seed=3, params=params)
    assert summary["rows_read"] == ROWS and summary["rows_rejected"] == 0
    beam_stats, beam_state = _artifacts(out, summary)
    (csv_file,) = sorted((out / "data").rglob("*.csv"))
    local_stats, local_state = _single_process_artifacts(csv_file, summary["statistics_uri"], nbuckets,
                                                         tmp_path / "local")
    assert _close(beam_state, local_state) == []  # under the sketch's exact size: boundaries equal too
    _check_statistics(beam_stats, local_stats, [csv_file])
