"""Where a blessed model is served: the local KServe ModelServer, or an InferenceService on a cluster.

The deploy component calls :func:`run`; like training and tuning, the choice is data (`mode`),
so the pipeline DAG is the same on a laptop and on Kubeflow. ``run`` writes its own Markdown
report (rendered by ``report.py``) and logs its progress through ``logging``.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlengine.constants import RUN_MODES, SPEC_FILE
from mlengine.errors import MlengineError

TF_SERVING_SUBDIR = "tfserving"  # <model artifact URI>/tfserving/1/saved_model.pb, TF Serving's layout
SMOKE_TIMEOUT_S = 30.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployResult:
    """What one deploy run did.

    Attributes:
        url: the prediction URL ("" when nothing is served).
        mode: local or cluster.
        name: the served model's name.
        report_path: where the Markdown report was written.
    """

    url: str
    mode: str
    name: str
    report_path: str


def example_instance(spec) -> dict[str, Any]:
    """One valid raw instance built from the spec alone: the middle of every range, the first vocabulary entry."""
    instance: dict[str, Any] = {}
    for column in spec.columns:
        if column.vocabulary:
            instance[column.name] = column.vocabulary[0]
        elif column.range is not None:
            middle = (column.range[0] + column.range[1]) / 2
            # at the range's own precision plus one digit: -73.95, not -73.94999999999999
            digits = max(_decimals(column.range[0]), _decimals(column.range[1])) + 1
            instance[column.name] = round(middle) if column.type == "int" else round(float(middle), digits)
        elif column.default is not None:
            instance[column.name] = column.default
        else:
            instance[column.name] = "" if column.type == "string" else 0
    return instance


def _decimals(value: float) -> int:
    """Digits after the decimal point in the shortest repr of ``value`` (0 for integers)."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        mantissa, exponent = text.lower().split("e")
        return max(0, len(mantissa.partition(".")[2].rstrip("0")) - int(exponent))
    return len(text.partition(".")[2].rstrip("0"))


def smoke_test(predict_url: str, instance: dict[str, Any]) -> float | dict[str, Any]:
    """POST one instance over the v1 protocol and return its prediction (a classifier's: ``{"label",
    "probabilities"}``); MlengineError if it fails."""
    import requests

    try:
        response = requests.post(predict_url, json={"instances": [instance]}, timeout=SMOKE_TIMEOUT_S)
    except requests.RequestException as err:
        raise MlengineError(f"{predict_url}: no answer to a test prediction: {err}") from None
    if response.status_code != 200:
        raise MlengineError(f"{predict_url}: test prediction answered {response.status_code}: {response.text[:300]}")
    answer = response.json()["predictions"][0]
    if isinstance(answer, dict):  # a classifier: its class and one finite probability per class
        probabilities = answer.get("probabilities")
        if "label" not in answer or not isinstance(probabilities, list) or not probabilities or not all(
                isinstance(p, int | float) and math.isfinite(p) for p in probabilities):
            raise MlengineError(f"{predict_url}: test prediction is not a class with probabilities: "
                                f"{json.dumps(answer)[:300]}")
        return answer
    prediction = float(answer)
    if not math.isfinite(prediction):
        raise MlengineError(f"{predict_url}: test prediction is not a finite number: {prediction}")
    return prediction


def run(model_dir: str, *, model_uri: str, blessed: bool = True, mode: str, name: str,
        canary_traffic_percent: int, keep_serving: bool, state_dir: str, report_path: str,
        deployment_mode: str = "Knative") -> DeployResult:
    """Serve ``model_dir`` and write the Markdown report of what was done to ``report_path``.

    This run's evaluation is the verdict on a canary already in flight: a blessed run promotes
    it (and its own model starts the next canary), an unblessed run rolls it back. An unblessed
    model itself never receives traffic.

    Args:
        model_dir: the trained model directory (local path).
        model_uri: the same directory's URI (what a cluster's storageUri is made from).
        blessed: the evaluation's verdict.
        mode: local or cluster.
        name: the served model's name ("" = from the feature spec, as ``mlengine serve`` does).
        canary_traffic_percent: traffic share of a new model while it is a canary (cluster).
        deployment_mode: cluster: KServe's Knative (default) or Standard mode of a new InferenceService (an
            existing one keeps its own).
        keep_serving: locally, leave the server running afterwards.
        state_dir: where the local server records its pid, port and URL.
        report_path: the Markdown report to write.

    Returns:
        DeployResult with the prediction URL.
    """
    from mlengine.components.deploy.report import render_not_blessed

    if mode not in RUN_MODES:
        raise MlengineError(f"mode {mode!r}: expected one of {list(RUN_MODES)}")
    if not name:  # the same default as `mlengine serve`: from the feature spec's name
        from mlengine.components.deploy.http.limits import default_model_name
        from mlengine.components.shared.featurespec import load_spec

        name = default_model_name(load_spec(Path(model_dir) / SPEC_FILE).name)
    if mode == "cluster":
        url, markdown = _deploy_to_cluster(model_dir, model_uri=model_uri, blessed=blessed, name=name,
                                           canary_traffic_percent=canary_traffic_percent,
                                           deployment_mode=deployment_mode)
    elif not blessed:
        logger.info("deploy: the model is not blessed: nothing is served")
        url, markdown = "", render_not_blessed(name)
    else:
        url, markdown = _deploy_locally(model_dir, name=name, keep_serving=keep_serving, state_dir=state_dir)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(markdown, encoding="utf-8")
    return DeployResult(url=url, mode=mode, name=name, report_path=str(report_path))


def _deploy_locally(model_dir: str, *, name: str, keep_serving: bool, state_dir: str) -> tuple[str, str]:
    from mlengine.components.deploy.local import deploy_local, stop_local
    from mlengine.components.deploy.report import prediction_text, render_local_report
    from mlengine.components.shared.featurespec import load_spec

    instance = example_instance(load_spec(Path(model_dir) / SPEC_FILE))
    state = deploy_local(model_dir, name=name, state_dir=state_dir)
    logger.info("deploy: KServe ModelServer ready at %s (pid %s)", state["url"], state["pid"])
    try:
        prediction = smoke_test(state["predict_url"], instance)
        logger.info("deploy: test prediction %s for %s", prediction_text(prediction), instance)
    finally:
        if not keep_serving:
            stop_local(state_dir)
            logger.info("deploy: server stopped (pass keep_serving / --keep-serving to leave it running)")
    markdown = render_local_report(name=name, predict_url=state["predict_url"], url=state["url"], pid=state["pid"],
                                   kept=keep_serving, model_dir=model_dir, instance=instance, prediction=prediction)
    return state["predict_url"], markdown


def _deploy_to_cluster(model_dir: str, *, model_uri: str, blessed: bool, name: str,
                       canary_traffic_percent: int, deployment_mode: str = "Knative") -> tuple[str, str]:
    from mlengine.components.deploy.cluster import DEFAULT_RUNTIME, deploy_to_cluster, stage_for_tf_serving
    from mlengine.components.deploy.report import render_deploy_markdown, render_serving_log_note
    from mlengine.components.shared.staging import normalize_uri, upload_dir

    if DEFAULT_RUNTIME == "ours":  # the server image loads the model directory as it is
        storage_uri = normalize_uri(model_uri).rstrip("/")
    else:
        storage_uri = normalize_uri(model_uri).rstrip("/") + "/" + TF_SERVING_SUBDIR
    if blessed and DEFAULT_RUNTIME == "tfserving":
        with tempfile.TemporaryDirectory(prefix="mlengine-tfserving-") as staging:
            upload_dir(stage_for_tf_serving(model_dir, staging), storage_uri)
        logger.info("deploy: model staged for TF Serving at %s", storage_uri)
    decision, result = deploy_to_cluster(storage_uri, name=name, blessed=blessed, canary_percent=canary_traffic_percent,
                                         previous_canary_ok=blessed, deployment_mode=deployment_mode)
    url = (result or {}).get("url") or f"http://{name}/v1/models/{name}:predict"
    markdown = render_deploy_markdown(decision, result)
    if DEFAULT_RUNTIME == "ours":
        from mlengine.components.deploy.cluster import serving_log_uri_for

        serving_log = serving_log_uri_for(storage_uri, name)
        if serving_log:  # what the monitoring pipeline's serving_log_uri is for this InferenceService
            logger.info("deploy: serving log at %s", serving_log)
            markdown += render_serving_log_note(serving_log)
    return url, markdown
