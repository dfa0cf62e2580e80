"""Where a blessed model is served: the local KServe ModelServer, or an InferenceService on a cluster.

The deploy component calls `deploy_model`; like training and tuning, the choice is data (`mode`),
so the pipeline DAG is the same on a laptop and on Kubeflow.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlengine.constants import RUN_MODES, SPEC_FILE
from mlengine.errors import MlengineError

TF_SERVING_SUBDIR = "tfserving"  # <model artifact URI>/tfserving/1/saved_model.pb, TF Serving's layout
SMOKE_TIMEOUT_S = 30.0


def example_instance(spec) -> dict[str, Any]:
    """One valid raw instance built from the spec alone: the middle of every range, the first vocabulary entry."""
    instance: dict[str, Any] = {}
    for column in spec.columns:
        if column.vocabulary:
            instance[column.name] = column.vocabulary[0]
        elif column.range is not None:
            middle = (column.range[0] + column.range[1]) / 2
            instance[column.name] = round(middle) if column.type == "int" else float(middle)
        elif column.default is not None:
            instance[column.name] = column.default
        else:
            instance[column.name] = "" if column.type == "string" else 0
    return instance


def smoke_test(predict_url: str, instance: dict[str, Any]) -> float:
    """POST one instance over the v1 protocol and return its prediction; MlengineError if it fails."""
    import requests

    try:
        response = requests.post(predict_url, json={"instances": [instance]}, timeout=SMOKE_TIMEOUT_S)
    except requests.RequestException as err:
        raise MlengineError(f"{predict_url}: no answer to a test prediction: {err}") from None
    if response.status_code != 200:
        raise MlengineError(f"{predict_url}: test prediction answered {response.status_code}: {response.text[:300]}")
    prediction = float(response.json()["predictions"][0])
    if not math.isfinite(prediction):
        raise MlengineError(f"{predict_url}: test prediction is not a finite number: {prediction}")
    return prediction


def deploy_model(model_dir: str, *, model_uri: str, blessed: bool = True, mode: str, name: str,
                 canary_traffic_percent: int, keep_serving: bool, state_dir: str,
                 log: Callable[[str], None] = print) -> tuple[str, str]:
    """Serve ``model_dir``; returns (prediction URL, Markdown report of what was done).

    This run's evaluation is the verdict on a canary already in flight: a blessed run promotes
    it (and its own model starts the next canary), an unblessed run rolls it back. An unblessed
    model itself never receives traffic.
    """
    if mode not in RUN_MODES:
        raise MlengineError(f"mode {mode!r}: expected one of {list(RUN_MODES)}")
    if not name:  # the same default as `mlengine serve`: from the feature spec's name
        from mlengine.components.deploy.http.server import default_model_name
        from mlengine.components.shared.featurespec import load_spec

        name = default_model_name(load_spec(Path(model_dir) / SPEC_FILE).name)
    if mode == "cluster":
        return _deploy_to_cluster(model_dir, model_uri=model_uri, blessed=blessed, name=name,
                                  canary_traffic_percent=canary_traffic_percent, log=log)
    if not blessed:
        log("deploy: the model is not blessed: nothing is served")
        return "", (f"# Deployment of `{name}`\n\n"
                    "The model is not blessed (it does not beat the benchmark): not served.\n")
    return _deploy_locally(model_dir, name=name, keep_serving=keep_serving, state_dir=state_dir, log=log)


def _deploy_locally(model_dir: str, *, name: str, keep_serving: bool, state_dir: str, log) -> tuple[str, str]:
    from mlengine.components.deploy.local import deploy_local, stop_local
    from mlengine.components.shared.featurespec import load_spec

    instance = example_instance(load_spec(Path(model_dir) / SPEC_FILE))
    state = deploy_local(model_dir, name=name, state_dir=state_dir)
    log(f"deploy: KServe ModelServer ready at {state['url']} (pid {state['pid']})")
    try:
        prediction = smoke_test(state["predict_url"], instance)
        log(f"deploy: test prediction {prediction:.3f} for {json.dumps(instance)}")
    finally:
        if not keep_serving:
            stop_local(state_dir)
            log("deploy: server stopped (pass keep_serving / --keep-serving to leave it running)")
    status = "running" if keep_serving else "checked, then stopped"
    markdown = "\n".join([
        f"# Deployment of `{name}` (local KServe ModelServer)",
        "",
        "| field | value |",
        "|---|---|",
        f"| predict URL (v1) | `{state['predict_url']}` |",
        f"| server | `{state['url']}`, pid {state['pid']}, {status} |",
        f"| model | `{model_dir}` |",
        f"| test instance | `{json.dumps(instance)}` |",
        f"| test prediction | {prediction:.4f} |",
        "",
        f"Serve it again with `mlengine serve --model {model_dir} --name {name}`.",
    ])
    return state["predict_url"], markdown


def _deploy_to_cluster(model_dir: str, *, model_uri: str, blessed: bool, name: str, canary_traffic_percent: int,
                       log) -> tuple[str, str]:
    from mlengine.components.deploy.cluster import DEFAULT_RUNTIME, deploy_to_cluster, stage_for_tf_serving
    from mlengine.components.deploy.local import render_deploy_markdown
    from mlengine.components.shared.staging import normalize_uri, upload_dir

    if DEFAULT_RUNTIME == "ours":  # the server image loads the model directory as it is
        storage_uri = normalize_uri(model_uri).rstrip("/")
    else:
        storage_uri = normalize_uri(model_uri).rstrip("/") + "/" + TF_SERVING_SUBDIR
    if blessed and DEFAULT_RUNTIME == "tfserving":
        with tempfile.TemporaryDirectory(prefix="mlengine-tfserving-") as staging:
            upload_dir(stage_for_tf_serving(model_dir, staging), storage_uri)
        log(f"deploy: model staged for TF Serving at {storage_uri}")
    decision, result = deploy_to_cluster(storage_uri, name=name, blessed=blessed, canary_percent=canary_traffic_percent,
                                         previous_canary_ok=blessed, progress=log)
    url = (result or {}).get("url") or f"http://{name}/v1/models/{name}:predict"
    markdown = render_deploy_markdown(decision, result)
    if DEFAULT_RUNTIME == "ours":
        from mlengine.components.deploy.cluster import serving_log_uri_for

        serving_log = serving_log_uri_for(storage_uri, name)
        if serving_log:  # what the monitoring pipeline's serving_log_uri is for this InferenceService
            log(f"deploy: serving log at {serving_log}")
            markdown += f"\n\nServing log (for the monitoring pipeline's `serving_log_uri`): `{serving_log}`\n"
    return url, markdown
