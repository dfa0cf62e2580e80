"""The Beam path of ingest against the single-process path on the same data (in-process FnApiRunner).

Exact: row counts, splits, reject reasons and rows, the Parquet rows of every split, moments,
min/max, value counts. Quantiles: within the KLL sketch's stated rank error of the exact ones.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlengine import synthetic
from mlengine.cli import main
from mlengine.components.ingest.executor import run
from mlengine.components.shared import beam_runner
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.sketches import kll_rank_error
from mlengine.constants import REJECTS_FILE, SPLITS, STATISTICS_FILE
from mlengine.errors import DataError, MlengineError

ROWS = 3000  # per shard: the "all" scope (about 5,900 ok rows) is past the sketch's exact size (k=2000)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two dirty shards of the taxi data, columns in a different order in the second."""
    folder = tmp_path_factory.mktemp("shards")
    synthetic.write_csv(folder / "a.csv", ROWS, seed=3, dirty_fraction=0.03)
    synthetic.write_csv(folder / "b.csv", ROWS, seed=4, dirty_fraction=0.03)
    lines = (folder / "b.csv").read_text(encoding="utf-8").splitlines()
    # move the first column last: a header in another order is still the same dataset
    reordered = [",".join([*line.split(",")[1:], line.split(",")[0]]) if line.count(",") == lines[0].count(",")
                 else line for line in lines]
    (folder / "b.csv").write_text("\n".join(reordered) + "\n", encoding="utf-8")
    return folder


def _run(runner, data, out, **kwargs):
    spec = load_spec(None)
    result = run(str(data), spec, {split: str(out / split) for split in SPLITS},
                 str(out / "rejects" / REJECTS_FILE), str(out / "statistics"), runner=runner, **kwargs)
    stats = json.loads((out / "statistics" / STATISTICS_FILE).read_text(encoding="utf-8"))
    return result, stats


@pytest.fixture(scope="module")
def both(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    local = _run("local", shards, out / "local")
    beam = _run("beam", shards, out / "beam")
    return out, local, beam


def _rows(paths):
    tables = [pq.read_table(path) for path in paths]
    table = pa.concat_tables(tables)
    return sorted(zip(*(table.column(name).to_pylist() for name in table.column_names), strict=True))


def test_same_counts_splits_rejects_and_parquet_rows(both):
    out, (local, _), (beam, _) = both
    assert beam.rows_read == local.rows_read == 2 * ROWS
    assert beam.rows_rejected == local.rows_rejected > 0
    assert beam.rows_per_split == local.rows_per_split
    assert beam.reject_reasons == local.reject_reasons
    assert beam.files == local.files
    for split in SPLITS:
        assert _rows(beam.parts[split]) == _rows(local.parts[split]), split
        assert pq.read_schema(beam.parts[split][0]) == pq.read_schema(local.parts[split][0])
    rejects = {kind: sorted((out / kind / "rejects" / REJECTS_FILE).read_text(encoding="utf-8").splitlines())
               for kind in ("local", "beam")}
    assert rejects["beam"] == rejects["local"]
    assert all(json.loads(line)["row"] >= 2 for line in rejects["beam"])


def test_same_statistics_exact_counts_quantiles_within_the_sketch_error(both, shards):
    _, (_, local), (_, beam) = both
    assert beam["ingest"] == local["ingest"]
    assert beam["columns"] == local["columns"]
    error = kll_rank_error()
    data = {}
    for scope in ("all", "train"):
        assert beam[scope]["rows"] == local[scope]["rows"]
        assert local[scope]["sample_exact"]  # small data: the single-process quantiles are the exact ones
        assert beam[scope]["quantile_sketch"]["rank_error"] == pytest.approx(error)
        for name, expected in local[scope]["columns"].items():
            got = beam[scope]["columns"][name]
            for key in ("type", "count", "missing", "min", "max", "top_values", "distinct", "counts_approximate"):
                assert got.get(key) == expected.get(key), (scope, name, key)
            if expected["type"] == "string":
                continue
            assert got["mean"] == pytest.approx(expected["mean"], rel=1e-12, abs=1e-12)
            assert got["std"] == pytest.approx(expected["std"], rel=1e-9)
            histogram = got["histogram"]
            assert sum(histogram["counts"]) + histogram["underflow"] + histogram["overflow"] == got["count"]
            assert histogram["integer"] == expected["histogram"]["integer"]
            if scope == "all":
                data[name] = expected
    # quantiles: the Beam answer's rank in the exact data is within the stated error of the level
    rows = _ok_rows(both[0] / "local")
    for name in data:
        values = np.sort(np.asarray(rows[name], np.float64))
        got = beam["all"]["columns"][name]["quantiles"]
        for level_name, level in local["quantile_levels"].items():
            below = np.searchsorted(values, got[level_name], side="left") / len(values)
            at_or_below = np.searchsorted(values, got[level_name], side="right") / len(values)
            assert below - error <= level <= at_or_below + error, (name, level_name)


def _ok_rows(out):
    tables = [pq.read_table(path) for split in SPLITS for path in sorted((out / split).glob("*.parquet"))]
    return {name: np.concatenate([t.column(name).to_numpy() for t in tables]) for name in tables[0].column_names}


@pytest.mark.parametrize("runner", ["local", "beam"])
def test_shard_with_a_different_header_is_rejected_naming_it(runner, shards, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(shards, folder)
    (folder / "c.csv").write_text("pickup_longitude,fare\n-73.9,5.0\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        _run(runner, folder, tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"{folder / 'c.csv'}: header is missing columns")
    assert "\n" not in message
    assert not (tmp_path / "out" / "train").exists()  # fatal before any output


def test_unknown_runner_is_one_line_naming_the_runners(tmp_path, shards, capsys):
    with pytest.raises(MlengineError) as err:
        run(str(shards), load_spec(None), {s: str(tmp_path / s) for s in SPLITS}, str(tmp_path / "rejects"),
            str(tmp_path / "statistics"), runner="spark")
    assert "unknown runner 'spark'; the runners that exist: local, beam" in str(err.value)
    assert main(["ingest", "--data", str(shards), "--out", str(tmp_path / "cli"), "--runner", "flink"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "the runners that exist: local, beam" in error[0]
    assert not (tmp_path / "cli").exists()


def test_beam_not_installed_is_one_line_naming_the_extra(monkeypatch, tmp_path, shards):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # what an install without the extra looks like
    with pytest.raises(MlengineError) as err:
        _run("beam", shards, tmp_path / "out")
    message = str(err.value)
    assert message == ("runner 'beam' needs Apache Beam (apache_beam is not importable): "
                       "pip install 'kfp-mlengine[beam]'")
    assert beam_runner.beam_missing_message(ImportError("x", name="apache_beam.io")).endswith("[beam]'")


def test_cli_ingest_on_beam_writes_the_layout(tmp_path, shards, capsys):
    out = tmp_path / "cli"
    assert main(["ingest", "--data", str(shards / "a.csv"), "--out", str(out), "--runner", "beam",
                 "--beam-option=--direct_num_workers=1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_read"] == ROWS
    assert summary["rows_read"] == summary["rows_ok"] + summary["rows_rejected"]
    for split in SPLITS:
        assert sum(pq.ParquetFile(p).metadata.num_rows for p in (out / split).glob("part-*.parquet")) \
            == summary["rows_per_split"][split]
    assert (out / "rejects" / REJECTS_FILE).is_file()
    assert (out / "statistics" / STATISTICS_FILE).is_file()
    assert (out / "statistics" / "feature_spec.yaml").is_file()


def test_ingest_component_with_runner_beam_under_kfp_local(kfp_local, shards):
    from mlengine.components.ingest.component import ingest

    task = ingest(data_uri=str(shards / "a.csv"), spec_uri="", split_seed=0, runner="beam",
                  beam_options="--direct_num_workers=1")
    assert task.outputs["rows_read"] == ROWS
    files = {path.name: path for path in kfp_local.rglob("*") if path.is_file()}
    stats = json.loads(files[STATISTICS_FILE].read_text(encoding="utf-8"))
    assert stats["all"]["quantile_sketch"]["kind"] == "kll"  # the Beam path wrote them
    assert stats["ingest"]["rows_read"] == ROWS
    assert task.outputs["rows_rejected"] == stats["ingest"]["rows_rejected"] > 0
