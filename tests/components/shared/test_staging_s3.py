"""Staging a pod's inputs and model through s3:// (pyarrow.fs against moto's S3 server on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlengine.components.shared import staging, storage
from mlengine.errors import MlengineError
from tests.components.shared.conftest import SECRET

BUCKET = "mlpipeline"


@pytest.fixture
def bucket(s3_env):
    client = storage.s3_client(storage.s3_settings_from_env())
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    return client


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_model_directory_round_trips_through_a_prefix(bucket, tmp_path):
    model = tmp_path / "model"
    (model / "serving" / "variables").mkdir(parents=True)
    (model / "serving" / "saved_model.pb").write_bytes(b"\x08\x01graph")
    (model / "serving" / "variables" / "variables.index").write_bytes(b"index")
    (model / "history.json").write_text('{"epoch": [1]}')
    uri = f"minio://{BUCKET}/v2/artifacts/run-1/train/model"  # KFP's alias of the same MinIO
    assert staging.upload_dir(model, uri) == 3
    keys = sorted(o.object_name for o in bucket.list_objects(BUCKET, prefix="v2/", recursive=True))
    assert [k for k in keys if not k.endswith("/")] == [
        "v2/artifacts/run-1/train/model/history.json", "v2/artifacts/run-1/train/model/serving/saved_model.pb",
        "v2/artifacts/run-1/train/model/serving/variables/variables.index"]
    copy = tmp_path / "copy"
    assert staging.download_prefix(f"s3://{BUCKET}/v2/artifacts/run-1/train/model/", copy) == 3
    assert _tree(copy) == _tree(model)


def test_a_missing_prefix_is_one_line_unless_optional(bucket, tmp_path):
    with pytest.raises(MlengineError, match=r"s3://mlpipeline/nothing/here: no objects under this prefix"):
        staging.download_prefix(f"s3://{BUCKET}/nothing/here", tmp_path / "x")
    assert staging.download_prefix(f"s3://{BUCKET}/nothing/here", tmp_path / "y", required=False) == 0


def test_a_missing_bucket_names_the_uri_and_no_secret(bucket, tmp_path):
    with pytest.raises(MlengineError) as caught:
        staging.download_prefix("s3://no-such-bucket/model", tmp_path / "z")
    message = str(caught.value)
    assert message.startswith("s3://no-such-bucket/model:") and "\n" not in message
    assert SECRET not in message


@dataclasses.dataclass
class _Config:
    train_dir: str
    eval_dir: str
    transform_dir: str
    model_dir: str


def test_stage_in_copies_remote_inputs_and_stage_out_uploads_the_chiefs_model(bucket, tmp_path):
    for name in ("train", "eval", "transform"):
        (tmp_path / "up" / name).mkdir(parents=True)
        (tmp_path / "up" / name / "part-00000.parquet").write_bytes(name.encode())
        staging.upload_dir(tmp_path / "up" / name, f"s3://{BUCKET}/run/{name}")
    config = _Config(f"s3://{BUCKET}/run/train", f"s3://{BUCKET}/run/eval", f"s3://{BUCKET}/run/transform",
                     f"s3://{BUCKET}/run/model")
    stage = staging.Stage(config, scratch_dir=str(tmp_path / "scratch"), task_name="chief-0", is_chief=True)
    local = stage.stage_in()
    assert Path(local.train_dir, "part-00000.parquet").read_bytes() == b"train"
    assert Path(local.transform_dir, "part-00000.parquet").read_bytes() == b"transform"
    Path(local.model_dir, "history.json").write_text("{}")
    stage.stage_out()
    assert bucket.get_object(BUCKET, "run/model/history.json").read() == b"{}"
    # a restarted container of the same pod keeps its copy instead of downloading again
    bucket.remove_object(BUCKET, "run/train/part-00000.parquet")
    again = staging.Stage(config, scratch_dir=str(tmp_path / "scratch"), task_name="chief-0", is_chief=True)
    assert Path(again.stage_in().train_dir, "part-00000.parquet").read_bytes() == b"train"
