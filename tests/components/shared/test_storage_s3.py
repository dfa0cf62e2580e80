"""s3:// inputs against a real S3-compatible HTTP server (moto's, in-process on 127.0.0.1)."""

from __future__ import annotations

import gzip
import io

import pytest

from mlengine import synthetic
from mlengine.components.shared import storage
from mlengine.constants import ENV_S3_ENDPOINT, ENV_S3_SECRET_KEY, SPLITS
from mlengine.errors import DataError
from tests.components.shared.conftest import SECRET
from tests.helpers import free_port
from tests.ingest_fixtures import ingest

BUCKET = "mlengine-data"


@pytest.fixture(scope="module")
def taxi_lines(tmp_path_factory):
    path = tmp_path_factory.mktemp("s3data") / "taxi.csv"
    synthetic.write_csv(path, 600, seed=21, dirty_fraction=0.05)
    return path, path.read_bytes().split(b"\r\n")


@pytest.fixture
def bucket(s3_env, taxi_lines):
    client = storage.s3_client(storage.s3_settings_from_env())
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    _, lines = taxi_lines
    header, rows = lines[0], [line for line in lines[1:] if line]

    def put(key: str, body: bytes) -> None:
        client.put_object(BUCKET, key, io.BytesIO(body), len(body))

    put("taxi.csv", b"\n".join([header, *rows]) + b"\n")
    put("shards/part-0.csv", b"\n".join([header, *rows[:250]]) + b"\n")
    put("shards/part-1.csv.gz", gzip.compress(b"\n".join([header, *rows[250:]]) + b"\n"))
    put("shards/readme.md", b"not data")
    put("shards/deeper/part-9.csv", b"\n".join([header, *rows[:5]]) + b"\n")
    put("docs/readme.md", b"no csv here")
    return client


def test_single_object_ingest_matches_local(bucket, taxi_lines, tmp_path):
    local_path, _ = taxi_lines
    remote = ingest(f"s3://{BUCKET}/taxi.csv", tmp_path / "remote")
    local = ingest(local_path, tmp_path / "local")
    assert remote.result.files == [f"s3://{BUCKET}/taxi.csv"]
    assert remote.result.rows_read == 600
    assert (remote.result.rows_ok, remote.result.rows_rejected) == (local.result.rows_ok, local.result.rows_rejected)
    assert remote.result.rows_rejected > 0
    for split in SPLITS:
        assert remote.split_rows(split) == local.split_rows(split)
    assert {item["file"] for item in remote.rejects()} == {f"s3://{BUCKET}/taxi.csv"}
    assert [item["row"] for item in remote.rejects()] == [item["row"] for item in local.rejects()]


def test_prefix_folder_and_glob(bucket, tmp_path):
    folder = ingest(f"s3://{BUCKET}/shards/", tmp_path / "folder")
    assert folder.result.files == [f"s3://{BUCKET}/shards/part-0.csv", f"s3://{BUCKET}/shards/part-1.csv.gz"]
    assert folder.result.rows_read == 600
    whole = ingest(f"s3://{BUCKET}/taxi.csv", tmp_path / "whole")
    for split in SPLITS:
        assert folder.split_rows(split) == whole.split_rows(split)
    assert storage.resolve_inputs(f"s3://{BUCKET}/shards") == folder.result.files  # no trailing slash
    assert storage.resolve_inputs(f"s3://{BUCKET}/shards/*.csv") == [f"s3://{BUCKET}/shards/part-0.csv"]
    assert storage.resolve_inputs(f"s3://{BUCKET}/shards/*/*.csv") == [f"s3://{BUCKET}/shards/deeper/part-9.csv"]


def test_open_text_streams_an_object(bucket):
    with storage.open_text(f"s3://{BUCKET}/shards/part-1.csv.gz") as stream:
        assert stream.readline().startswith("pickup_longitude,")
        assert sum(1 for _ in stream) == 350


@pytest.mark.parametrize(("uri", "message"), [
    ("s3://no-such-bucket/taxi.csv", "bucket not found"),
    ("s3://no-such-bucket/", "bucket not found"),
    (f"s3://{BUCKET}/missing.csv", "no such file"),
    (f"s3://{BUCKET}/docs/", "folder has no CSV files (*.csv, *.csv.gz)"),
    (f"s3://{BUCKET}/shards/*.parquet", "glob matched nothing"),
])
def test_s3_errors_name_the_uri(bucket, uri, message):
    with pytest.raises(DataError) as info:
        storage.resolve_inputs(uri)
    assert str(info.value) == f"{uri}: {message}"


def test_missing_credentials_are_named_not_printed(s3_env, monkeypatch):
    monkeypatch.delenv(ENV_S3_SECRET_KEY)
    with pytest.raises(DataError) as info:
        storage.resolve_inputs(f"s3://{BUCKET}/taxi.csv")
    assert str(info.value) == f"s3://{BUCKET}/taxi.csv: missing S3 credentials: set {ENV_S3_SECRET_KEY}"


def test_connection_refused_names_the_endpoint(s3_env, monkeypatch):
    port = free_port()  # nobody listens on it
    monkeypatch.setenv(ENV_S3_ENDPOINT, f"127.0.0.1:{port}")
    with pytest.raises(DataError) as info:
        storage.resolve_inputs(f"s3://{BUCKET}/taxi.csv")
    message = str(info.value)
    assert message == f"s3://{BUCKET}/taxi.csv: cannot reach S3 endpoint 127.0.0.1:{port}: connection refused"
    assert SECRET not in message
