"""Resolving and opening local data URIs."""

from __future__ import annotations

import gzip
import re

import pytest

from mlengine.components.shared import storage
from mlengine.errors import DataError


@pytest.fixture
def shards(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for name in ("b.csv", "a.csv", "c.CSV"):
        (folder / name).write_text(f"x\n{name}\n")
    with gzip.open(folder / "d.csv.gz", "wt") as handle:
        handle.write("x\nzipped\n")
    (folder / "notes.txt").write_text("no")
    (folder / "nested").mkdir()
    (folder / "nested" / "e.csv").write_text("x\n1\n")
    return folder


def test_folder_lists_csv_shards_sorted(shards):
    assert storage.resolve_inputs(str(shards)) == [str(shards / n) for n in ("a.csv", "b.csv", "c.CSV", "d.csv.gz")]


def test_single_file_glob_and_file_scheme(shards):
    assert storage.resolve_inputs(str(shards / "b.csv")) == [str(shards / "b.csv")]
    assert storage.resolve_inputs(f"{shards}/[ab].csv") == [str(shards / "a.csv"), str(shards / "b.csv")]
    assert storage.resolve_inputs(f"{shards}/*") == [str(shards / n) for n in
                                                      ("a.csv", "b.csv", "c.CSV", "d.csv.gz", "notes.txt")]
    assert storage.resolve_inputs(f"file://{shards}/a.csv") == [str(shards / "a.csv")]


@pytest.mark.parametrize(("suffix", "message"), [
    ("missing.csv", "no such file"),
    ("nested/*.txt", "glob matched nothing"),
])
def test_resolution_errors_name_the_uri(shards, suffix, message):
    uri = f"{shards}/{suffix}"
    with pytest.raises(DataError) as info:
        storage.resolve_inputs(uri)
    assert str(info.value) == f"{uri}: {message}"


def test_empty_uri_and_folder_without_csv(tmp_path):
    with pytest.raises(DataError, match="data URI is empty"):
        storage.resolve_inputs("  ")
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path))}: folder has no CSV files"):
        storage.resolve_inputs(str(tmp_path))


def test_open_binary_and_text_stream_gzip_transparently(shards):
    with storage.open_binary(str(shards / "d.csv.gz")) as stream:
        assert stream.read() == b"x\nzipped\n"
    with storage.open_text(str(shards / "b.csv")) as stream:
        assert list(stream) == ["x\n", "b.csv\n"]
    with pytest.raises(DataError, match="no such file"), storage.open_binary(str(shards / "zz.csv")):
        pass


def test_s3_uri_parsing_and_settings(monkeypatch):
    assert storage.split_s3_uri("s3://bucket/some/key.csv") == ("bucket", "some/key.csv")
    with pytest.raises(DataError, match="needs a bucket"):
        storage.split_s3_uri("s3:///key")
    monkeypatch.setenv("MLENGINE_S3_ENDPOINT", "https://minio.example:9000/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    settings = storage.s3_settings_from_env()
    assert (settings.endpoint, settings.secure) == ("minio.example:9000", True)
    assert "very-secret-value" not in repr(settings)
    monkeypatch.setenv("MLENGINE_S3_ENDPOINT", "minio:9000")
    monkeypatch.setenv("MLENGINE_S3_SECURE", "true")
    assert storage.s3_settings_from_env().secure is True
    monkeypatch.setenv("MLENGINE_S3_ENDPOINT", "http://minio:9000")
    assert storage.s3_settings_from_env().secure is False
    monkeypatch.delenv("MLENGINE_S3_ENDPOINT")
    with pytest.raises(DataError, match=r"^s3://b/k: MLENGINE_S3_ENDPOINT is not set"):
        storage.resolve_inputs("s3://b/k")
