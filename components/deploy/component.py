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
) -> str:
    """Serve a blessed model over REST (or, for an unblessed one, roll back a canary); returns the URL."""
    import sys
    from pathlib import Path

    from mlengine.components.deploy.launch import deploy_model

    url, markdown = deploy_model(
        model.path, model_uri=model.uri, blessed=blessed, mode=mode, name=model_name,
        canary_traffic_percent=canary_traffic_percent,
        keep_serving=keep_serving, state_dir=str(Path(deploy_report.path).parent / "serving-state"),
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    Path(deploy_report.path).write_text(markdown, encoding="utf-8")
    deploy_report.metadata.update({"url": url, "mode": mode})
    return url
