"""The Flink-on-Kubernetes resources of the Beam path: the FlinkDeployment against the operator's CRD."""

from __future__ import annotations

import functools
import json

import jsonschema
import yaml

from mlengine.cli import main
from mlengine.components.shared.flink import BEAM_WORKER_POOL_PORT, beam_options_for_flink, render_flink_manifests
from tests.schema_utils import crd_schema


@functools.cache
def _schema() -> dict:
    schema = crd_schema("flinkdeployments.flink.apache.org-v1.yml", "v1beta1")
    # the API server itself checks these three (the generated CRD lists only spec and status)
    schema["properties"].update({"apiVersion": {"type": "string", "enum": ["flink.apache.org/v1beta1"]},
                                 "kind": {"type": "string", "enum": ["FlinkDeployment"]},
                                 "metadata": {"type": "object"}})
    return schema


def _errors(manifest: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]


def test_rendered_flink_deployment_validates_against_the_operator_crd(tmp_path, capsys):
    assert main(["flink-manifests", "--out", str(tmp_path), "--task-managers", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    flink = yaml.safe_load((tmp_path / "flink-deployment.yaml").read_text())
    schema = _schema()
    assert _errors(flink, schema) == []
    assert flink["spec"]["taskManager"]["replicas"] == 3
    assert "job" not in flink["spec"]  # a session cluster: the job server submits the Beam pipeline
    sidecar = flink["spec"]["taskManager"]["podTemplate"]["spec"]["containers"][1]
    assert sidecar["image"].split(":")[-1] != "latest"
    assert f"--service_port={BEAM_WORKER_POOL_PORT}" in sidecar["command"]
    assert printed["beam_options"] == beam_options_for_flink()
    assert f"--environment_config=localhost:{BEAM_WORKER_POOL_PORT}" in printed["beam_options"]
    job_server = yaml.safe_load((tmp_path / "beam-job-server.yaml").read_text())
    kinds = [item["kind"] for item in job_server["items"]]
    assert kinds == ["Deployment", "Service"]
    master = next(a for a in job_server["items"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
                  if a.startswith("--flink-master="))
    assert master == "--flink-master=mlengine-beam-rest:8081"  # the operator's REST service of the deployment


def test_a_typo_in_the_flink_deployment_is_caught():
    flink = render_flink_manifests()["flink-deployment.yaml"]
    flink["spec"]["taskManager"]["replica"] = flink["spec"]["taskManager"].pop("replicas")
    flink["spec"]["flinkVersion"] = "v1_9"
    problems = _errors(flink, _schema())
    assert any("replica" in problem for problem in problems)
    assert any("v1_9" in problem for problem in problems)
