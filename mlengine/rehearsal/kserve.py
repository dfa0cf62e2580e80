"""KServe's part: the storage initializer (kserve-storage's download of ``storageUri``), then the predictor
container from the ServingRuntime; its answers compared with ``mlengine serve`` on the same model."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from mlengine.constants import (
    IMAGE_MODEL_DIR,
    IMAGE_SERVER_PORT,
    K8S_S3_SECRET,
)
from mlengine.errors import MlengineError
from mlengine.rehearsal import log
from mlengine.rehearsal.engine import (
    Engine,
    RehearsalError,
    Scrubber,
    check_port_free,
    last_error_line,
    require_image,
    resolve_env,
    tail_logs,
)
from mlengine.rehearsal.s3stage import S3Stage

READY_TIMEOUT = 180.0


def run_inference_service(engine: Engine, isvc: dict, runtimes: dict[str, dict], *, network: str,
                          secret: dict[str, str], s3: S3Stage, scrub: Scrubber,
                          port: int) -> tuple[dict, str | None]:
    """Storage initializer, then the predictor container; returns (result, the predictor's host URL).

    The container comes from the ServingRuntime the predictor's model names (``runtimes``: name ->
    ServingRuntime), with ``{{.Name}}`` filled as KServe fills it.
    """
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model") or {}
    runtime = runtimes.get(model.get("runtime"))
    if runtime is None:
        return ({"passed": False, "reason": f"predictor runtime {model.get('runtime')!r}: only the rendered "
                 "ServingRuntime (runtime=ours) is rehearsed; TF Serving's image cannot be pulled here"}, None)
    name = isvc["metadata"]["name"]
    container = json.loads(json.dumps(runtime["spec"]["containers"][0]).replace("{{.Name}}", name))
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    # KServe merges the predictor model's own env (the serving log, S3 via secretKeyRef) into the container
    env.update(resolve_env(model.get("env") or [], secret, K8S_S3_SECRET,
                           f"InferenceService {name} predictor"))
    storage_uri = model["storageUri"]
    image = container["image"]
    require_image(engine.client, image, f"InferenceService {isvc['metadata']['name']}")
    models = engine.volume("kserve-provision-location")
    # the S3 settings KServe's webhook puts into the storage-initializer container from the Secret
    init_env = {**secret, "AWS_ENDPOINT_URL": f"http://{s3.cluster_endpoint}", "S3_USE_HTTPS": "0",
                "S3_VERIFY_SSL": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    init = engine.create(s3.image, name="storage-initializer", network=network, user="0",
                         entrypoint=["python", "-c"], command=[STORAGE_INITIALIZER, storage_uri, IMAGE_MODEL_DIR],
                         environment=init_env, binds={models: IMAGE_MODEL_DIR})
    engine.client.api.start(init)
    code = engine.client.api.wait(init, timeout=300)["StatusCode"]
    if code != 0:
        logs = tail_logs(engine, init, scrub)
        return {"passed": False, "reason": f"storage-initializer exited {code}: {last_error_line(logs)}",
                "logs": logs}, None
    log.info(f"storage-initializer: {storage_uri} -> {IMAGE_MODEL_DIR}")
    http_port = IMAGE_SERVER_PORT
    args = container.get("args", [])
    for arg in args:
        if arg.startswith("--http_port="):
            http_port = int(arg.split("=", 1)[1])
    cid = engine.create(image, name="predictor", network=network, alias=isvc["metadata"]["name"] + "-predictor",
                        entrypoint=container.get("command"), command=args,
                        environment=env,
                        binds={models: IMAGE_MODEL_DIR}, ports={http_port: port})
    engine.client.api.start(cid)
    url = f"http://127.0.0.1:{port}"
    probe = (container.get("readinessProbe") or {}).get("httpGet", {}).get("path", "/v2/health/ready")
    deadline = time.monotonic() + READY_TIMEOUT
    import urllib.error
    import urllib.request

    while time.monotonic() < deadline:
        if not engine.client.api.inspect_container(cid)["State"]["Running"]:
            logs = tail_logs(engine, cid, scrub)
            return {"passed": False, "reason": f"predictor exited: {last_error_line(logs)}", "logs": logs}, None
        try:
            with urllib.request.urlopen(url + probe, timeout=2) as response:
                if response.status == 200:
                    return {"passed": True, "storage_uri": storage_uri, "readiness": probe, "image": image,
                            "command": [*(container.get("command") or ["(image entrypoint)"]), *args]}, url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    return {"passed": False, "reason": f"predictor not ready on {probe} after {READY_TIMEOUT:.0f} s",
            "logs": tail_logs(engine, cid, scrub)}, None


# KServe's storage initializer: kserve-storage's own Storage.download of the storageUri into the model
# mount (what its storage-initializer image runs), then readable by the predictor's non-root user
STORAGE_INITIALIZER = (
    "import os, sys; from kserve_storage import Storage; Storage.download(sys.argv[1], sys.argv[2]); "
    "[os.chmod(os.path.join(d, x), 0o755 if x in ds else 0o644) "
    "for d, ds, fs in os.walk(sys.argv[2]) for x in ds + fs]; "
    "print(f'downloaded {sum(len(fs) for _, _, fs in os.walk(sys.argv[2]))} files')")


def compare_predictions(url: str, model_dir: Path, rows: list[dict]) -> dict:
    """v1 and v2 answers of the predictor against ``mlengine serve`` on the same model (a local process)."""
    from mlengine.components.deploy.client import PredictionClient
    from mlengine.components.deploy.local import start_server_process, stop_process_group, wait_until_ready

    local_port = check_port_free(0, "mlengine serve")
    log_path = model_dir.parent / "mlengine-serve.log"
    server = start_server_process([sys.executable, "-m", "mlengine.cli", "serve", "--model", str(model_dir),
                                   "--port", str(local_port)], log_path)
    local_url = f"http://127.0.0.1:{local_port}"
    try:
        try:
            wait_until_ready(local_url, None, server, log_path, timeout=READY_TIMEOUT)
        except MlengineError as err:
            raise RehearsalError(f"mlengine serve on the same model: {err}") from None
        out: dict[str, Any] = {}
        for protocol in ("v1", "v2"):
            with PredictionClient(url, protocol=protocol) as client:
                remote = client.predict(rows)
            with PredictionClient(local_url, protocol=protocol) as client:
                local = client.predict(rows)
            diff = max(abs(a - b) for a, b in zip(remote, local, strict=True))
            out[protocol] = {"rows": len(rows), "max_abs_difference": diff, "equal": diff <= 1e-5}
        return out
    finally:
        stop_process_group(server.pid)


# the monitoring pipeline's monitor step in the pipeline image: KFP's launcher downloads the
