"""KFP wrapper of deployment: the local KServe ModelServer, or an InferenceService with a canary split."""

from kfp import dsl
from kfp.dsl import Input, Markdown, Model, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def deploy(
    model: Input[Model],
    blessed: bool,
    mode: str,
    model_name: str,
    canary_traffic_percent: int,
    keep_serving: bool,
    deploy_report: Output[Markdown],
    deployment_mode: str = "Knative",
) -> str:
    """Serve a blessed model over REST (or, for an unblessed one, roll back a canary); returns the URL.

    Args:
        model: the trained model directory (SavedModel over raw features, its spec and transform).
        blessed: the evaluation's verdict; False rolls back a canary in flight instead of deploying.
        mode: local (the KServe ModelServer on 127.0.0.1: a test prediction, then stopped unless
            keep_serving) or cluster (an InferenceService, rolled out as a canary).
        model_name: the served model's name (the InferenceService name on a cluster).
        canary_traffic_percent: traffic share of the new version while it is a canary (cluster).
        keep_serving: locally, leave the server running after the step.
        deploy_report: what was deployed, where, and the test prediction.
        deployment_mode: cluster: KServe's Knative (scale to zero, canaryTrafficPercent; the default) or
            Standard (no Knative: HPA autoscaling, the canary in spec.canary[]).
    """
    from pathlib import Path

    from mlengine.components.deploy.executor import run
    from mlengine.components.shared.logs import setup_logging

    setup_logging()
    result = run(
        model.path, model_uri=model.uri, blessed=blessed, mode=mode, name=model_name,
        canary_traffic_percent=canary_traffic_percent, keep_serving=keep_serving, deployment_mode=deployment_mode,
        state_dir=str(Path(deploy_report.path).parent / "serving-state"), report_path=deploy_report.path,
    )
    deploy_report.metadata.update({"url": result.url, "mode": result.mode})
    return result.url
