"""mlengine upload / submit / schedule / runs against a fake KFP v2beta1 API on 127.0.0.1.

The fake (tests/kfp_fake.py) validates every request body against kfp-server-api's models and
records it; the tests assert on those bodies: the spec is ours, the cron, concurrency, catch-up,
parameters, experiment and version are what the command line said.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlengine.cli import main
from mlengine.version import __version__
from tests.helpers import free_port
from tests.kfp_fake import FakeKfp, check_package, start

MINIO_KEY = "test-access-key-3fa9c1"
MINIO_SECRET = "test-secret-key-7b2e94d0"
API_TOKEN = "test-bearer-token-51c8aa"
API_COOKIE = "authservice_session=test-session-cookie-90de"


@pytest.fixture
def kfp(monkeypatch):
    """A fresh fake KFP API (no auth) and an environment with MinIO test credentials set."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MINIO_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MINIO_SECRET)
    for name in ("MLENGINE_KFP_TOKEN", "MLENGINE_KFP_COOKIES", "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_ENDPOINT",
                 "MLENGINE_IMAGE_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    server = start(FakeKfp())
    try:
        yield server.fake
    finally:
        server.stop()


def cli(capsys, caplog, *args: str) -> tuple[int, str]:
    """Run ``mlengine ARGS`` in-process; (exit code, everything it printed or logged)."""
    caplog.clear()
    with caplog.at_level("INFO", logger="mlengine"):
        code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err + caplog.text


def upload(capsys, caplog, fake, tmp_path, *extra: str) -> tuple[int, str]:
    return cli(capsys, caplog, "upload", "--host", fake.url, "--out", str(tmp_path / "pipelines"), *extra)


def test_upload_twice_one_pipeline_two_versions_and_an_unchanged_spec_reuses_its_version(kfp, tmp_path, capsys,
                                                                                        caplog):
    code, out = upload(capsys, caplog, kfp, tmp_path)
    assert code == 0, out
    training_yaml = tmp_path / "pipelines" / "training_pipeline.cluster.yaml"
    digest = hashlib.sha256(training_yaml.read_bytes()).hexdigest()[:10]
    assert f"version {__version__}-{digest}" in out and "created pipeline" in out
    # the package sent is our compiled YAML, byte for byte, and a strict PipelineSpec + PlatformSpec
    packages = kfp.bodies("POST", "/pipelines/upload_version")
    assert len(packages) == 2 and packages[0] == training_yaml.read_text(encoding="utf-8")
    spec, platform = check_package(packages[0])
    assert spec["pipelineInfo"]["name"] == "mlengine-training" and platform is not None
    created = kfp.bodies("POST", "/apis/v2beta1/pipelines")
    assert [body["display_name"] for body in created] == ["mlengine-training", "mlengine-skew-monitor"]

    code, out = upload(capsys, caplog, kfp, tmp_path)  # same spec: nothing new
    assert code == 0 and out.count("unchanged") >= 2
    assert len(kfp.bodies("POST", "/pipelines/upload_version")) == 2

    code, out = upload(capsys, caplog, kfp, tmp_path, "--image-registry", "registry.example.com:5000/ml")
    assert code == 0 and "new version" in out
    assert len(kfp.pipelines) == 2  # still one training and one monitoring pipeline ...
    training_id = next(pid for pid, p in kfp.pipelines.items() if p["display_name"] == "mlengine-training")
    versions = kfp.versions[training_id]
    assert len(versions) == 2 and versions[0]["display_name"] != versions[1]["display_name"]  # ... two versions
    new_spec = versions[1]["pipeline_spec"]["pipeline_spec"]
    images = {e["container"]["image"] for e in new_spec["deploymentSpec"]["executors"].values()
              if not e["container"]["image"].startswith("argostub/")}
    assert images == {f"registry.example.com:5000/ml/mlengine-pipeline:{__version__}"}
    assert kfp.errors == []


def test_a_given_version_name_that_exists_with_another_spec_is_refused_never_overwritten(kfp, tmp_path, capsys,
                                                                                         caplog):
    assert upload(capsys, caplog, kfp, tmp_path, "--version", "v1")[0] == 0
    before = [dict(v) for vs in kfp.versions.values() for v in vs]
    code, out = upload(capsys, caplog, kfp, tmp_path, "--version", "v1")  # the same spec: compared, re-used
    assert code == 0 and out.count("unchanged") >= 2
    code, out = upload(capsys, caplog, kfp, tmp_path, "--version", "v1", "--shared-volume-size", "50Gi")
    assert code == 2
    assert "version 'v1' exists with a different spec" in out and "never overwritten" in out
    assert [dict(v) for vs in kfp.versions.values() for v in vs] == before
    assert kfp.errors == []


def _uploaded(capsys, caplog, kfp, tmp_path) -> None:
    code, out = upload(capsys, caplog, kfp, tmp_path)
    assert code == 0, out
    kfp.requests.clear()


def test_submit_creates_one_run_with_the_typed_parameters_in_the_named_experiment(kfp, tmp_path, capsys, caplog):
    _uploaded(capsys, caplog, kfp, tmp_path)
    code, out = cli(capsys, caplog, "submit", "--host", kfp.url, "--experiment", "nightly",
                    "--param", "data_uri=s3://mlpipeline/taxi/", "--param", "workers=3",
                    "--param", 'hyperparameters={"nbuckets": 8}', "--param", "keep_serving=false")
    assert code == 0, out
    runs = kfp.bodies("POST", "/apis/v2beta1/runs")
    assert len(runs) == 1
    body = runs[0]
    assert body["runtime_config"]["parameters"] == {"data_uri": "s3://mlpipeline/taxi/", "workers": 3,
                                                    "hyperparameters": {"nbuckets": 8}, "keep_serving": False}
    assert [e["display_name"] for e in kfp.bodies("POST", "/apis/v2beta1/experiments")] == ["nightly"]
    assert body["experiment_id"] == next(iter(kfp.experiments))
    training_id = next(pid for pid, p in kfp.pipelines.items() if p["display_name"] == "mlengine-training")
    assert body["pipeline_version_reference"] == {
        "pipeline_id": training_id, "pipeline_version_id": kfp.versions[training_id][-1]["pipeline_version_id"]}
    assert "pipeline_spec" not in body  # the uploaded version runs, not a copy of the YAML
    assert kfp.errors == []

    # a second run re-uses the experiment
    assert cli(capsys, caplog, "submit", "--host", kfp.url, "--experiment", "nightly",
               "--param", "data_uri=s3://x/")[0] == 0
    assert len(kfp.bodies("POST", "/apis/v2beta1/experiments")) == 1


@pytest.mark.parametrize(("outcome", "exit_code"), [("SUCCEEDED", 0), ("FAILED", 1)])
def test_submit_wait_follows_every_task_and_exits_with_the_run_outcome(kfp, tmp_path, capsys, caplog, outcome,
                                                                       exit_code):
    _uploaded(capsys, caplog, kfp, tmp_path)
    kfp.run_script = [("PENDING", {}), ("RUNNING", {"ingest raw CSV": "RUNNING"}),
                      (outcome, {"ingest raw CSV": "SUCCEEDED", "train wide-and-deep (TFJob)": outcome})]
    code, out = cli(capsys, caplog, "submit", "--host", kfp.url, "--param", "data_uri=s3://b/taxi/", "--wait",
                    "--poll-interval", "0.01")
    assert code == exit_code, out
    assert "task ingest raw CSV RUNNING" in out and "task ingest raw CSV SUCCEEDED" in out
    assert f"task train wide-and-deep (TFJob) {outcome}" in out and f"finished {outcome}" in out
    assert len(kfp.bodies("GET", "/runs/" + next(iter(kfp.runs)))) == 3


@pytest.mark.parametrize(("params", "expected"), [
    (["data_uri=s3://b/", "wokers=2"], "mlengine-training has no input 'wokers'"),
    (["data_uri=s3://b/", "workers=two"], "workers takes an integer"),
    (["data_uri=s3://b/", "keep_serving=maybe"], "keep_serving takes true or false"),
    (["data_uri=s3://b/", "hyperparameters=[8]"], "hyperparameters takes a JSON object"),
    (["data_uri=s3://b/", 'hyperparameters={"nbucket": 8}'], "unknown hyperparameter 'nbucket'"),
    (["workers=2"], "--param data_uri=...: required"),
    (["data_uri"], "expected name=value"),
])
def test_bad_parameters_fail_in_one_line_before_any_request(kfp, capsys, caplog, params, expected):
    args = [arg for param in params for arg in ("--param", param)]
    code, out = cli(capsys, caplog, "submit", "--host", kfp.url, *args)
    assert code == 2
    assert expected in out and len(out.strip().splitlines()) == 1, out
    assert kfp.requests == []


def test_schedule_sends_the_translated_cron_concurrency_catch_up_and_parameters(kfp, tmp_path, capsys, caplog):
    _uploaded(capsys, caplog, kfp, tmp_path)
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--cron", "0 3 * * *", "--max-concurrency", "2",
                    "--no-catchup", "--param", "data_uri=s3://mlpipeline/taxi/", "--param", "trials=6")
    assert code == 0, out
    assert 'cron "0 3 * * *" (minute hour day-of-month month day-of-week) is sent to KFP as "0 0 3 * * *"' in out
    bodies = kfp.bodies("POST", "/apis/v2beta1/recurringruns")
    assert len(bodies) == 1
    body = bodies[0]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert int(body["max_concurrency"]) == 2 and body["no_catchup"] is True and body["mode"] == "ENABLE"
    assert body["runtime_config"]["parameters"] == {"data_uri": "s3://mlpipeline/taxi/", "trials": 6}
    assert body["display_name"] == "mlengine-training-schedule"
    assert kfp.errors == []

    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--list")
    assert code == 0 and "mlengine-training-schedule" in out and "0 0 3 * * *" in out and "ENABLE" in out
    # the same name again is refused (no second schedule)
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--cron", "0 3 * * *",
                    "--param", "data_uri=s3://mlpipeline/taxi/")
    assert code == 2 and "exists" in out and len(kfp.recurring_runs) == 1
    assert cli(capsys, caplog, "schedule", "--host", kfp.url, "--disable", "mlengine-training-schedule")[0] == 0
    assert next(iter(kfp.recurring_runs.values()))["mode"] == "DISABLE"
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--delete", "mlengine-training-schedule")
    assert code == 0 and "deleted" in out and kfp.recurring_runs == {}
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--delete", "mlengine-training-schedule")
    assert code == 2 and "no recurring run named" in out


@pytest.mark.parametrize(("cron", "field"), [
    ("0 25 * * *", "hour field: 25 is out of range 0-23"),
    ("61 3 * * *", "minute field: 61 is out of range 0-59"),
    ("0 3 * * MOON", "day-of-week field: 'MOON' is not a number"),
    ("0 3 * *", "4 fields"),
])
def test_a_bad_cron_is_rejected_before_any_request_naming_the_field(kfp, capsys, caplog, cron, field):
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--cron", cron, "--param", "data_uri=s3://b/")
    assert code == 2 and field in out and len(out.strip().splitlines()) == 1, out
    assert kfp.requests == []


def test_max_concurrency_outside_kfps_range_is_rejected_before_any_request(kfp, capsys, caplog):
    for value in ("0", "11"):
        code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--cron", "0 3 * * *", "--max-concurrency",
                        value, "--param", "data_uri=s3://b/")
        assert code == 2 and "--max-concurrency" in out and "1 to 10" in out
    assert kfp.requests == []


def test_schedule_monitoring_takes_the_uris_of_the_last_training_run_from_its_summary(kfp, tmp_path, capsys,
                                                                                      caplog):
    _uploaded(capsys, caplog, kfp, tmp_path)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"rmse": 1.04, "statistics_uri": "s3://mlpipeline/v2/artifacts/run-1/statistics",
                                   "serving_log_uri": "s3://mlpipeline/serving-log/taxi-fare/"}))
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--monitoring", "--summary", str(summary),
                    "--cron", "0 * * * *")
    assert code == 0, out
    body = kfp.bodies("POST", "/apis/v2beta1/recurringruns")[0]
    assert body["runtime_config"]["parameters"] == {
        "statistics_uri": "s3://mlpipeline/v2/artifacts/run-1/statistics",
        "serving_log_uri": "s3://mlpipeline/serving-log/taxi-fare/"}
    monitor_id = next(pid for pid, p in kfp.pipelines.items() if p["display_name"] == "mlengine-skew-monitor")
    assert body["pipeline_version_reference"]["pipeline_id"] == monitor_id
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 * * * *"
    assert body["display_name"] == "mlengine-skew-monitor-schedule" and kfp.errors == []
    # URIs on this machine's disk are sent as given, with a warning: a cluster pod cannot read them
    summary.write_text(json.dumps({"statistics_uri": "/home/me/out/run/statistics",
                                   "serving_log_uri": "/home/me/out/run/serving-log"}))
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--monitoring", "--summary", str(summary),
                    "--cron", "0 * * * *", "--run-name", "local-paths")
    assert code == 0 and "statistics_uri /home/me/out/run/statistics is a path on this machine" in out
    # a summary without the URIs: one line naming the key, no request
    (tmp_path / "old.json").write_text(json.dumps({"rmse": 1.0}))
    kfp.requests.clear()
    code, out = cli(capsys, caplog, "schedule", "--host", kfp.url, "--monitoring", "--summary",
                    str(tmp_path / "old.json"), "--cron", "0 * * * *")
    assert code == 2 and "no 'statistics_uri'" in out and kfp.requests == []


def test_runs_lists_state_start_and_duration(kfp, tmp_path, capsys, caplog):
    _uploaded(capsys, caplog, kfp, tmp_path)
    for name in ("first", "second"):
        assert cli(capsys, caplog, "submit", "--host", kfp.url, "--run-name", name,
                   "--param", "data_uri=s3://b/")[0] == 0
    kfp.run_script = [("SUCCEEDED", {})]
    first = next(run_id for run_id, run in kfp.runs.items() if run["display_name"] == "first")
    assert cli(capsys, caplog, "submit", "--host", kfp.url, "--run-name", "third", "--param", "data_uri=s3://b/",
               "--wait", "--poll-interval", "0.01")[0] == 0
    kfp.runs[first]["state"] = "FAILED"
    third = next(run_id for run_id, run in kfp.runs.items() if run["display_name"] == "third")
    kfp.runs[third]["plugins_output"] = {"metrics": {"entries": {"rmse": {"value": 1.0413}, "note": {"value": "x"}},
                                                     "state": "PLUGIN_SUCCEEDED"}}
    code, out = cli(capsys, caplog, "runs", "--host", kfp.url, "--experiment", "mlengine")
    assert code == 0, out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    table = lines[header:header + 4]
    assert "STATE" in table[0] and "DURATION" in table[0] and "METRICS" in table[0]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"first", "second", "third"}
    assert "FAILED" in rows["first"] and "PENDING" in rows["second"] and "SUCCEEDED" in rows["third"]
    assert "running" in rows["second"] and "0m0" in rows["third"]
    assert "rmse=1.041" in rows["third"] and "note=" not in rows["third"]  # numeric entries only
    assert kfp.errors == []
    code, out = cli(capsys, caplog, "runs", "--host", kfp.url, "--experiment", "nope")
    assert code == 2 and "no experiment named 'nope'" in out


def test_auth_passes_through_token_cookie_token_file_and_namespace(monkeypatch, tmp_path, capsys, caplog):
    for name in ("MLENGINE_KFP_TOKEN", "MLENGINE_KFP_COOKIES", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    server = start(FakeKfp(token=API_TOKEN, cookie=API_COOKIE))
    fake = server.fake
    try:
        assert cli(capsys, caplog, "runs", "--host", fake.url, "--existing-token", API_TOKEN)[0] == 0
        assert fake.requests[-1].headers["authorization"] == f"Bearer {API_TOKEN}"
        monkeypatch.setenv("MLENGINE_KFP_COOKIES", API_COOKIE)
        assert cli(capsys, caplog, "runs", "--host", fake.url)[0] == 0
        assert fake.requests[-1].headers["cookie"] == API_COOKIE
        monkeypatch.delenv("MLENGINE_KFP_COOKIES")
        token_file = tmp_path / "token"
        token_file.write_text(API_TOKEN + "\n")
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
        fake.requests.clear()
        code, out = cli(capsys, caplog, "runs", "--host", fake.url, "--namespace", "team-a")
        assert code == 0, out
        assert {r.headers["authorization"] for r in fake.requests} == {f"Bearer {API_TOKEN}"}
        assert fake.requests[-1].query.get("namespace") == ["team-a"]
        # namespaced experiment and pipeline creation carry the namespace in their bodies
        code, out = cli(capsys, caplog, "upload", "--host", fake.url, "--namespace", "team-a", "--out",
                        str(tmp_path / "p"))
        assert code == 0, out
        assert {b["namespace"] for b in fake.bodies("POST", "/apis/v2beta1/pipelines")} == {"team-a"}
        code, out = cli(capsys, caplog, "submit", "--host", fake.url, "--namespace", "team-a",
                        "--param", "data_uri=s3://b/")
        assert code == 0, out
        assert fake.bodies("POST", "/apis/v2beta1/experiments")[0]["namespace"] == "team-a"
        assert fake.errors == []
        assert API_TOKEN not in out and API_COOKIE not in out
    finally:
        server.stop()


def test_401_and_403_are_named_with_the_auth_options_that_exist(monkeypatch, capsys, caplog):
    for name in ("MLENGINE_KFP_TOKEN", "MLENGINE_KFP_COOKIES", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    server = start(FakeKfp(token=API_TOKEN))
    try:
        code, out = cli(capsys, caplog, "runs", "--host", server.url, "--existing-token", "wrong-token-value")
        assert code == 2 and len(out.strip().splitlines()) == 1
        assert "401 Unauthorized" in out and server.url in out
        for option in ("--existing-token", "KF_PIPELINES_SA_TOKEN_PATH", "--cookies", "--namespace"):
            assert option in out
        assert "wrong-token-value" not in out
        server.fake.forbidden = True
        code, out = cli(capsys, caplog, "runs", "--host", server.url, "--existing-token", API_TOKEN)
        assert code == 2 and "403 Forbidden" in out and "--namespace" in out and API_TOKEN not in out
    finally:
        server.stop()


def test_a_login_page_in_front_of_the_api_is_named_and_the_session_cookie_gets_through(monkeypatch, capsys,
                                                                                     caplog):
    monkeypatch.delenv("MLENGINE_KFP_COOKIES", raising=False)
    server = start(FakeKfp(cookie=API_COOKIE, login_redirect=True))
    try:
        code, out = cli(capsys, caplog, "runs", "--host", server.url)
        assert code == 2 and len(out.strip().splitlines()) == 1, out
        assert "not the KFP API (a login page?)" in out and "--cookies" in out and "text/html" in out
        assert server.fake.requests[-1].path == "/dex/auth"  # it was redirected there
        code, out = cli(capsys, caplog, "runs", "--host", server.url, "--cookies", API_COOKIE)
        assert code == 0 and "no runs" in out and API_COOKIE not in out
    finally:
        server.stop()


def test_unreachable_host_is_one_line_with_the_url_and_no_traceback(tmp_path):
    port = free_port()  # nobody listens on it
    url = f"http://127.0.0.1:{port}"
    for args in (["runs", "--host", url], ["submit", "--host", url, "--param", "data_uri=s3://b/"]):
        proc = subprocess.run([sys.executable, "-m", "mlengine.cli", *args], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and url in lines[0] and "no KFP API answers" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    proc = subprocess.run([sys.executable, "-m", "mlengine.cli", "runs", "--host", "localhost:8080"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "give the scheme" in proc.stderr


def test_no_credential_in_compiled_yaml_request_log_or_console(kfp, tmp_path, capsys, caplog, monkeypatch):
    """The MinIO test credentials are in the environment of every command; the API token too."""
    monkeypatch.setenv("MLENGINE_KFP_TOKEN", API_TOKEN)
    console = []
    for args in (["compile", "--out", str(tmp_path / "c")],
                 ["compile", "--out", str(tmp_path / "c"), "--target", "local"],
                 ["upload", "--host", kfp.url, "--out", str(tmp_path / "pipelines")],
                 ["submit", "--host", kfp.url, "--param", "data_uri=s3://b/", "--wait", "--poll-interval", "0.01"],
                 ["schedule", "--host", kfp.url, "--cron", "*/30 * * * *", "--param", "data_uri=s3://b/"],
                 ["schedule", "--host", kfp.url, "--list"],
                 ["runs", "--host", kfp.url]):
        code, out = cli(capsys, caplog, *args)
        assert code == 0, (args, out)
        console.append(out)
    yamls = [p.read_text(encoding="utf-8") for p in [*tmp_path.glob("c/*.yaml"), *tmp_path.glob("pipelines/*.yaml")]]
    assert len(yamls) == 6
    bodies = "\n".join(json.dumps(r.body) for r in kfp.requests)
    for secret in (MINIO_KEY, MINIO_SECRET):
        for text in (*yamls, kfp.raw_log(), *console):
            assert secret not in text
    for text in (*yamls, bodies, *console):  # the token goes in the Authorization header only
        assert API_TOKEN not in text
    assert {r.headers.get("authorization") for r in kfp.requests} == {f"Bearer {API_TOKEN}"}
    # the Secret is referenced by name
    platform = list(yaml.safe_load_all(Path(tmp_path / "c" / "training_pipeline.cluster.yaml").read_text()))[1]
    assert "mlengine-minio-credentials" in json.dumps(platform)


def test_the_fake_rejects_bodies_that_do_not_match_the_kfp_server_api_models(kfp):
    """The validation the other tests rely on is real: unknown fields, wrong types and bad enums fail."""
    import requests

    bad = [
        ("/apis/v2beta1/experiments", {"display_name": "x", "nmespace": "typo"}, "has no field 'nmespace'"),
        ("/apis/v2beta1/experiments", {"display_name": 7}, "expected str"),
        ("/apis/v2beta1/recurringruns", {"display_name": "x", "mode": "ON"}, "'ON' is not one of"),
        ("/apis/v2beta1/runs", {"display_name": "x", "runtime_config": {"parameters": []}}, "expected an object"),
        ("/apis/v2beta1/recurringruns", {"trigger": {"cron_schedule": {"start_time": "yesterday"}}},
         "not RFC 3339"),
    ]
    for path, body, expected in bad:
        response = requests.post(kfp.url + path, json=body, timeout=10)
        assert response.status_code == 400, (path, body)
        assert expected in kfp.errors[-1]
    assert len(kfp.errors) == len(bad)


def test_compile_writes_the_cluster_yaml_by_default_and_the_local_one_on_request(tmp_path, capsys, caplog):
    code, out = cli(capsys, caplog, "compile", "--out", str(tmp_path))
    assert code == 0 and json.loads(out[:out.rindex("}") + 1]) == {
        "mlengine-training": str(tmp_path / "training_pipeline.cluster.yaml"),
        "mlengine-skew-monitor": str(tmp_path / "monitoring_pipeline.cluster.yaml")}
    assert cli(capsys, caplog, "compile", "--out", str(tmp_path), "--target", "local")[0] == 0
    modes = {path.name: next(yaml.safe_load_all(path.read_text()))["root"]["inputDefinitions"]["parameters"]
             ["mode"]["defaultValue"] for path in tmp_path.glob("training_pipeline.*.yaml")}
    assert modes == {"training_pipeline.cluster.yaml": "cluster", "training_pipeline.local.yaml": "local"}
    code, out = cli(capsys, caplog, "compile", "--out", str(tmp_path), "--s3-secret", "Not_A_Name")
    assert code == 2 and "--s3-secret" in out


def test_upload_of_your_own_compiled_pipeline_file_names_it_and_versions_it(kfp, tmp_path, capsys, caplog):
    from mlengine.cli import main as mlengine_main

    assert mlengine_main(["compile", "--out", str(tmp_path / "compiled")]) == 0
    own = tmp_path / "compiled" / "training_pipeline.cluster.yaml"  # any compiled pipeline will do
    code, out = cli(capsys, caplog, "upload", "--host", kfp.url, "--pipeline-file", str(own), "--name", "my-dag")
    assert code == 0, out
    assert [body["display_name"] for body in kfp.bodies("POST", "/apis/v2beta1/pipelines")] == ["my-dag"]
    assert kfp.bodies("POST", "/pipelines/upload_version") == [own.read_text(encoding="utf-8")]
    code, out = cli(capsys, caplog, "upload", "--host", kfp.url, "--pipeline-file", str(own), "--name", "my-dag")
    assert code == 0 and "unchanged" in out  # the same file again: its version is re-used
    not_a_pipeline = tmp_path / "spec.yaml"
    not_a_pipeline.write_text("name: x\n", encoding="utf-8")
    code, out = cli(capsys, caplog, "upload", "--host", kfp.url, "--pipeline-file", str(not_a_pipeline))
    assert code == 2 and "not a compiled KFP pipeline" in out
    assert kfp.errors == []
