"""The serving input log: rotation, disk bounds, threads, sampling, never raising, reading back."""

from __future__ import annotations

import json
import logging
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.serving_log import (
    ENV_SERVING_LOG_DIR,
    ENV_SERVING_LOG_MAX_FILES,
    ENV_SERVING_LOG_SAMPLE_RATE,
    ServingInputLog,
    read_serving_log,
    resolve_log_files,
    serving_log_from_env,
)
from mlengine.components.shared.serving_log import format as log_format
from mlengine.errors import DataError
from mlengine.synthetic import generate_columns

SPEC = load_spec()


def _instances(rows: int, seed: int = 0, start_id: int = 0) -> list[dict]:
    columns = generate_columns(rows, seed=seed)
    names = SPEC.column_names
    out = []
    for i in range(rows):
        instance = {name: columns[name][i].item() for name in names}
        instance["id"] = start_id + i  # extra keys are kept in the log and ignored by the reader
        out.append(instance)
    return out


def _log_lines(folder) -> list[dict]:
    return [json.loads(line) for path in resolve_log_files(folder)
            for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_rotates_by_lines_and_reads_back_in_order(tmp_path):
    instances = _instances(35)
    with ServingInputLog(tmp_path / "log", max_lines_per_file=10, max_files=100) as log:
        for start in range(0, 35, 7):
            assert log.log_instances(instances[start:start + 7]) == 7
        assert log.current_file is not None
    files = resolve_log_files(tmp_path / "log")
    line_counts = [len(Path(p).read_text(encoding="utf-8").splitlines()) for p in files]
    assert line_counts == [10, 10, 10, 5]
    assert [line["instance"]["id"] for line in _log_lines(tmp_path / "log")] == list(range(35))
    assert all(isinstance(line["ts"], float) for line in _log_lines(tmp_path / "log"))
    data = read_serving_log(tmp_path / "log", SPEC)
    assert (data.rows, data.malformed, data.incomplete, len(data.files)) == (35, 0, 0, 4)
    expected = np.array([instance["pickup_latitude"] for instance in instances])
    np.testing.assert_array_equal(data.columns["pickup_latitude"], expected)
    assert data.columns["hourofday"].dtype == np.int64
    assert data.columns["pickup_latitude"].dtype == np.float64
    assert data.first_ts <= data.last_ts


def test_byte_bound_and_file_count_bound_the_disk(tmp_path):
    folder = tmp_path / "log"
    max_bytes, max_files = 3000, 3
    instances = _instances(400)
    log = ServingInputLog(folder, max_bytes_per_file=max_bytes, max_files=max_files)
    for start in range(0, 400, 16):  # batches larger than what one file can hold are split
        log.log_instances(instances[start:start + 16])
    log.close()
    files = resolve_log_files(folder)
    assert len(files) == max_files
    sizes = [Path(p).stat().st_size for p in files]
    assert all(0 < size <= max_bytes for size in sizes), sizes
    stats = log.stats()
    assert stats["rows_written"] == 400 and stats["errors"] == 0
    assert stats["files_deleted"] == stats["files_opened"] - max_files > 0
    # what is left is the most recent, contiguous tail of what was logged
    ids = [line["instance"]["id"] for line in _log_lines(folder)]
    assert ids == list(range(400 - len(ids), 400))


def test_a_line_larger_than_the_byte_bound_still_gets_written(tmp_path):
    log = ServingInputLog(tmp_path / "log", max_bytes_per_file=50, max_files=10)
    assert log.log_instances(_instances(3)) == 3
    log.close()
    assert len(resolve_log_files(tmp_path / "log")) == 3  # one line per file, none lost
    assert read_serving_log(tmp_path / "log", SPEC).rows == 3


def test_concurrent_threads_lose_and_tear_nothing(tmp_path):
    folder = tmp_path / "log"
    log = ServingInputLog(folder, max_lines_per_file=37, max_files=10_000)
    threads_count, batches, batch_rows = 8, 40, 5
    template = _instances(1)[0]
    barrier = threading.Barrier(threads_count)

    def worker(thread_index: int) -> None:
        barrier.wait()
        for batch in range(batches):
            start = (thread_index * batches + batch) * batch_rows
            log.log_instances([{**template, "id": start + i} for i in range(batch_rows)])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    total = threads_count * batches * batch_rows
    ids = sorted(line["instance"]["id"] for line in _log_lines(folder))
    assert ids == list(range(total))
    data = read_serving_log(folder, SPEC)
    assert (data.rows, data.malformed, data.incomplete) == (total, 0, 0)
    assert all(len(Path(p).read_text(encoding="utf-8").splitlines()) <= 37 for p in resolve_log_files(folder))
    assert log.stats()["batches"] == threads_count * batches


def test_sampling_keeps_about_the_rate(tmp_path):
    rows, rate = 4000, 0.25
    columns = generate_columns(rows, seed=3)
    log = ServingInputLog(tmp_path / "log", sample_rate=rate, seed=7)
    written = sum(log.log_columns({n: columns[n][i:i + 100] for n in SPEC.column_names}, 100)
                  for i in range(0, rows, 100))
    log.close()
    stats = log.stats()
    assert stats["rows_seen"] == rows
    assert stats["rows_written"] == written == read_serving_log(tmp_path / "log", SPEC).rows
    assert stats["rows_written"] + stats["rows_sampled_out"] == rows
    spread = 5 * (rows * rate * (1 - rate)) ** 0.5
    assert abs(written - rows * rate) < spread, written
    with pytest.raises(ValueError, match="sample_rate"):
        ServingInputLog(tmp_path / "x", sample_rate=0.0)


def test_log_columns_takes_the_validators_numpy_columns(tmp_path):
    columns = generate_columns(50, seed=4)
    typed = {name: (columns[name].astype(np.float32) if SPEC.column(name).type == "float" else columns[name])
             for name in SPEC.column_names}  # float32 / int64, as RequestValidator hands them over
    with ServingInputLog(tmp_path / "log") as log:
        assert log.log_columns(typed, 50) == 50
    data = read_serving_log(tmp_path / "log", SPEC)
    assert data.rows == 50
    for name in SPEC.column_names:
        np.testing.assert_array_equal(data.columns[name], typed[name].astype(data.columns[name].dtype))


def test_failures_are_counted_and_logged_once_never_raised(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    log = ServingInputLog(blocker / "log")
    with caplog.at_level(logging.WARNING, logger="mlengine.components.shared.serving_log"):
        for _ in range(5):
            assert log.log_instances(_instances(2)) == 0
        assert log.log_instances([{"x": object()}]) == 0  # not serialisable
        assert log.log_columns({"a": [1, 2], "b": [1]}, 2) == 0  # ragged columns
    assert log.stats()["errors"] == 7
    assert log.stats()["rows_written"] == 0
    assert len(caplog.records) == 1
    assert "not-a-folder" in caplog.records[0].getMessage()


def test_recovers_after_a_write_failure(tmp_path):
    log = ServingInputLog(tmp_path / "log")
    log.log_instances(_instances(2))
    log._handle.close()  # simulate the file going away under the writer
    assert log.log_instances(_instances(2)) == 0
    assert log.log_instances(_instances(3)) == 3  # a fresh file
    log.close()
    assert log.stats()["errors"] == 1
    assert read_serving_log(tmp_path / "log", SPEC).rows == 5


def test_pickles_into_worker_processes(tmp_path):
    log = ServingInputLog(tmp_path / "log", sample_rate=0.5, max_files=4)
    # 64 rows at rate 0.5: the chance that either log samples none (and opens no file) is 2**-63
    log.log_instances(_instances(64))
    copy = pickle.loads(pickle.dumps(log))
    assert (copy.sample_rate, copy.max_files, copy.stats()["rows_seen"]) == (0.5, 4, 0)
    copy.log_instances(_instances(64))
    assert None not in (copy.current_file, log.current_file)
    assert copy.current_file != log.current_file
    log.close()
    copy.close()


def test_reader_skips_and_counts_malformed_lines(tmp_path):
    good = _instances(3)
    bad_type = {**good[0], "pickup_latitude": "40.7"}
    missing = {k: v for k, v in good[0].items() if k != "hourofday"}
    lines = [
        json.dumps({"ts": 1.0, "instance": good[0]}),
        "{not json",
        json.dumps([1, 2, 3]),
        json.dumps({"ts": 2.0, "instance": missing}),
        json.dumps({"ts": 3.0, "instance": bad_type}),
        json.dumps({"ts": 4.0, "instance": {**good[0], "passenger_count": True}}),
        json.dumps({"ts": 5.0, "instance": {**good[0], "pickup_longitude": None}}),
        json.dumps({"ts": 6.0, "instance": {**good[0], "hourofday": 3.5}}),
        "",
        json.dumps({"ts": 7.0, "instance": good[1]}),
    ]
    path = tmp_path / "serving.jsonl"
    path.write_text("\n".join(lines) + "\n" + json.dumps({"ts": 8.0, "instance": good[2]})[:40], encoding="utf-8")
    data = read_serving_log(path, SPEC)
    assert data.rows == 2
    assert data.malformed == 7
    assert data.incomplete == 1  # the torn last line of a file being written
    assert data.lines == 10
    assert data.reasons["invalid JSON"] == 1
    assert data.reasons["no 'instance' object"] == 1
    assert data.reasons["column 'hourofday' missing"] == 1
    assert data.reasons["column 'pickup_latitude': not a number"] == 1
    assert data.reasons["column 'passenger_count': not a number"] == 1
    assert data.reasons["column 'pickup_longitude': not a number"] == 1
    assert data.reasons["column 'hourofday': not an integer"] == 1
    assert data.first_problem == f"{path}:2: invalid JSON"
    assert data.columns["pickup_latitude"].tolist() == [good[0]["pickup_latitude"], good[1]["pickup_latitude"]]
    assert (data.first_ts, data.last_ts) == (1.0, 7.0)


def test_reader_limit_keeps_the_most_recent_rows(tmp_path):
    instances = _instances(30)
    with ServingInputLog(tmp_path / "log", max_lines_per_file=8, max_files=100) as log:
        log.log_instances(instances)
    data = read_serving_log(tmp_path / "log", SPEC, limit=11)
    assert data.rows == 11
    expected = [instance["dayofweek"] for instance in instances[-11:]]
    assert data.columns["dayofweek"].tolist() == expected


def test_reader_errors_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="serving log not found"):
        read_serving_log(tmp_path / "nowhere", SPEC)
    (tmp_path / "empty").mkdir()
    data = read_serving_log(tmp_path / "empty", SPEC)
    assert data.rows == 0 and data.columns["pickup_latitude"].shape == (0,)


def test_serving_log_from_env(tmp_path):
    assert serving_log_from_env({}) is None
    log = serving_log_from_env({ENV_SERVING_LOG_DIR: str(tmp_path / "log"), ENV_SERVING_LOG_SAMPLE_RATE: "0.1",
                                ENV_SERVING_LOG_MAX_FILES: "5"})
    assert (log.folder, log.sample_rate, log.max_files) == (tmp_path / "log", 0.1, 5)
    with pytest.raises(ValueError, match=ENV_SERVING_LOG_SAMPLE_RATE):
        serving_log_from_env({ENV_SERVING_LOG_DIR: str(tmp_path), ENV_SERVING_LOG_SAMPLE_RATE: "often"})
    with pytest.raises(ValueError, match="sample_rate"):
        serving_log_from_env({ENV_SERVING_LOG_DIR: str(tmp_path), ENV_SERVING_LOG_SAMPLE_RATE: "2"})


@pytest.mark.parametrize("backend", ["orjson", "json"])
def test_both_json_backends_round_trip(tmp_path, monkeypatch, backend):
    if backend == "json":
        monkeypatch.setattr(log_format, "_orjson", None)
    else:
        assert log_format._orjson is not None  # kserve installs orjson; the fast path is real
    instances = _instances(20)
    broken = {**instances[0], "pickup_latitude": float("nan")}
    with ServingInputLog(tmp_path / "log") as log:
        assert log.log_instances([*instances, broken]) == 21
        odd_columns = {"pickup_latitude": np.array([40.7], np.float32), "city": np.array([b"nyc"], object)}
        assert log.log_columns(odd_columns) == 1
    data = read_serving_log(tmp_path / "log", SPEC)
    assert data.rows == 20 and data.malformed == 2
    # NaN: orjson writes null, json writes NaN; either way the reader refuses it
    expected_reason = "not a number" if backend == "orjson" else "not finite"
    assert data.reasons[f"column 'pickup_latitude': {expected_reason}"] == 1
    assert data.reasons["column 'pickup_longitude' missing"] == 1
    assert data.columns["hourofday"].tolist() == [instance["hourofday"] for instance in instances]
    last = _log_lines(tmp_path / "log")[-1]["instance"]
    assert last == {"pickup_latitude": pytest.approx(40.7, abs=1e-5), "city": "nyc"}


def test_format_round_trips_a_record_and_names_files_in_order():
    [line] = log_format.encode_lines([{"x": np.float32(1.5), "city": b"nyc", "n": np.int64(3)}], 1718000000.12345)
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    instance, ts = log_format.decode_record(line)
    assert instance == {"x": 1.5, "city": "nyc", "n": 3} and ts == 1718000000.123
    with pytest.raises(ValueError, match="no 'instance' object"):
        log_format.decode_record(b'{"ts": 1}\n')
    first, second = log_format.log_file_name(7, 1), log_format.log_file_name(7, 2)
    assert first < second and log_format.is_log_file_name(first)
    assert first.startswith("serving-") and first.endswith("-7-000001.jsonl")
    assert not log_format.is_log_file_name("serving-1.jsonl.gz") and not log_format.is_log_file_name("other.jsonl")
    assert log_format.s3_prefix("s3://bucket/some/prefix") == "s3://bucket/some/prefix/"
