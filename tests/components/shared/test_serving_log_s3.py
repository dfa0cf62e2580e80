"""The serving input log with an s3:// destination (moto's server in-process): batched, rotated,
bounded objects, pickling for ``--workers``, a failing bucket counted not raised, read back."""

from __future__ import annotations

import json
import pickle
import time

import pytest

from mlengine.components.shared import storage
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.serving_log import (
    ENV_SERVING_LOG_DIR,
    ENV_SERVING_LOG_FLUSH_SECONDS,
    ENV_SERVING_LOG_URI,
    ServingInputLog,
    read_serving_log,
    resolve_log_files,
    serving_log_from_env,
)
from mlengine.errors import DataError
from mlengine.synthetic import generate_columns

from .conftest import SECRET

SPEC = load_spec()


def _instances(rows: int, seed: int = 0) -> list[dict]:
    columns = generate_columns(rows, seed=seed)
    return [{name: columns[name][i].item() for name in SPEC.column_names} for i in range(rows)]


@pytest.fixture
def bucket(s3_env):
    client = storage.s3_client(storage.s3_settings_from_env())
    name = f"logs-{time.time_ns()}"
    client.make_bucket(name)
    return client, name


def _keys(client, bucket_name: str, prefix: str) -> list[str]:
    # pyarrow may leave a folder marker ("prefix/") after deletes: only the log objects count
    return sorted(o.object_name for o in client.list_objects(bucket_name, prefix=prefix, recursive=True)
                  if o.object_name.endswith(".jsonl"))


def test_rotates_into_objects_and_reads_back(bucket):
    client, name = bucket
    uri = f"s3://{name}/run/serving-log/"
    log = ServingInputLog(uri, max_lines_per_file=40, max_files=100, max_pending=10)
    rows = _instances(250)
    for start in range(0, 250, 25):
        log.log_instances(rows[start:start + 25])
    log.close()
    keys = _keys(client, name, "run/serving-log/")
    assert len(keys) == 7  # 6 full objects of 40 lines, the rest at close
    assert all(k.rpartition("/")[2].startswith("serving-") and k.endswith(".jsonl") for k in keys)
    stats = log.stats()
    assert stats["rows_written"] == stats["rows_uploaded"] == 250 and stats["errors"] == 0
    assert stats["objects_uploaded"] == 7 and stats["rows_dropped"] == 0
    assert resolve_log_files(uri) == [f"s3://{name}/{k}" for k in keys]
    data = read_serving_log(uri.rstrip("/"), SPEC)  # with or without the trailing slash
    assert data.rows == 250 and data.malformed == 0 and data.files == resolve_log_files(uri)
    first = SPEC.column_names[0]
    assert data.columns[first].tolist() == pytest.approx([r[first] for r in rows], rel=1e-6)


def test_max_files_bounds_the_prefix(bucket):
    client, name = bucket
    log = ServingInputLog(f"s3://{name}/p", max_lines_per_file=10, max_files=3)
    for _ in range(8):
        log.log_instances(_instances(10))
        log.flush()
    log.close()
    keys = _keys(client, name, "p/")
    assert len(keys) == 3
    assert log.stats()["files_deleted"] == 5
    assert read_serving_log(f"s3://{name}/p/", SPEC).rows == 30


def test_time_interval_uploads_without_more_traffic(bucket):
    client, name = bucket
    log = ServingInputLog(f"s3://{name}/t/", flush_interval_s=0.3)
    log.log_instances(_instances(5))
    deadline = time.monotonic() + 10
    while not _keys(client, name, "t/") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_keys(client, name, "t/")) == 1
    log.close()


def test_byte_bound(bucket):
    client, name = bucket
    log = ServingInputLog(f"s3://{name}/b/", max_bytes_per_file=2_000, max_pending=100)
    log.log_instances(_instances(100))
    log.close()
    sizes = [client.stat_object(name, k).size for k in _keys(client, name, "b/")]
    assert len(sizes) > 1 and max(sizes) <= 2_000


def test_pickles_for_workers_and_each_process_writes_its_own_objects(bucket):
    client, name = bucket
    log = ServingInputLog(f"s3://{name}/w/", max_lines_per_file=50)
    log.log_instances(_instances(3))
    clone = pickle.loads(pickle.dumps(log))
    assert clone.uri == log.uri and clone.stats()["rows_written"] == 0
    clone.log_instances(_instances(4))
    clone.close()
    log.close()
    assert len(_keys(client, name, "w/")) == 2
    assert read_serving_log(f"s3://{name}/w/", SPEC).rows == 7


def test_a_failing_bucket_is_counted_never_raised(s3_env):
    log = ServingInputLog("s3://no-such-bucket-here/x/", max_lines_per_file=5, max_pending=2)
    for _ in range(10):
        assert log.log_instances(_instances(5)) in (0, 5)  # never raises into the request path
    log.close(timeout=30)
    stats = log.stats()
    assert stats["errors"] >= 1 and stats["objects_uploaded"] == 0
    assert stats["rows_dropped"] + stats["rows_uploaded"] == 50 and stats["rows_dropped"] == 50


def test_unreachable_endpoint_bounded_memory(monkeypatch, s3_env):
    from mlengine.constants import ENV_S3_ENDPOINT

    monkeypatch.setenv(ENV_S3_ENDPOINT, "http://127.0.0.1:1")
    log = ServingInputLog("s3://b/x/", max_lines_per_file=5, max_pending=1)
    for _ in range(20):
        log.log_instances(_instances(5))
    with log._lock:
        assert len(log._s3.pending) <= 1 and len(log._s3.buffer) <= 5
    log.close(timeout=20)
    assert log.stats()["errors"] >= 1


def test_env_switch_and_reader_errors(bucket, tmp_path):
    _client, name = bucket
    log = serving_log_from_env({ENV_SERVING_LOG_URI: f"s3://{name}/e", ENV_SERVING_LOG_DIR: str(tmp_path),
                                ENV_SERVING_LOG_FLUSH_SECONDS: "2"})
    assert log.uri == f"s3://{name}/e/" and log.flush_interval_s == 2.0
    local = serving_log_from_env({ENV_SERVING_LOG_DIR: str(tmp_path)})
    assert local.uri is None  # backward compatible
    via_dir = serving_log_from_env({ENV_SERVING_LOG_DIR: f"s3://{name}/d/"})
    assert via_dir.uri == f"s3://{name}/d/"
    with pytest.raises(ValueError, match=ENV_SERVING_LOG_FLUSH_SECONDS):
        serving_log_from_env({ENV_SERVING_LOG_URI: f"s3://{name}/e", ENV_SERVING_LOG_FLUSH_SECONDS: "soon"})
    with pytest.raises(DataError, match="bucket not found"):
        resolve_log_files("s3://missing-bucket-x/serving-log/")
    assert resolve_log_files(f"s3://{name}/empty/") == []


def test_malformed_object_lines_are_counted_and_no_secret_in_errors(bucket, caplog):
    client, name = bucket
    import io

    body = b'{"ts": 1, "instance": {}}\nnot json\n'
    client.put_object(name, "m/serving-00000000000000000001-1-000001.jsonl", io.BytesIO(body), len(body))
    good = ServingInputLog(f"s3://{name}/m/")
    good.log_instances(_instances(3))
    good.close()
    data = read_serving_log(f"s3://{name}/m/", SPEC)
    assert data.rows == 3 and data.malformed == 2
    bad = ServingInputLog("s3://no-such-bucket-y/")
    bad.log_instances(_instances(1))
    bad.close()
    assert SECRET not in caplog.text and SECRET not in json.dumps(bad.stats())
