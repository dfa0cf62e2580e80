"""The deploy report: pure functions that render what a deploy run did as Markdown (text only)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlengine.components.deploy.rollout import RolloutDecision


def render_deploy_markdown(decision: RolloutDecision, result: dict | None = None) -> str:
    """The rollout as Markdown: action, reason, traffic split, steps and the endpoint."""
    from mlengine.components.shared.reports import markdown_table

    lines = [f"# Deployment of `{decision.name}`", "",
             f"**Action: {decision.action}** ({'blessed' if decision.blessed else 'not blessed'} model)", "",
             decision.reason, ""]
    rows = [("namespace", decision.namespace), ("new model", decision.new_storage_uri),
            ("previously serving", decision.previous_storage_uri or "-")]
    lines += [markdown_table(["", ""], rows), ""]
    if decision.traffic:
        lines += ["## Traffic after this run", "",
                  markdown_table(["model", "role", "traffic %"], [
                      (uri, "canary" if uri == decision.canary_storage_uri and len(decision.traffic) > 1 else "stable",
                       percent) for uri, percent in decision.traffic.items()]), ""]
    if decision.steps:
        lines += ["## Steps", ""] + [f"{i}. **{s.action}**: {s.description}" for i, s in enumerate(decision.steps, 1)]
        lines.append("")
    else:
        lines += ["No change was made to the cluster.", ""]
    if result:
        lines += ["## Result", "", markdown_table(["", ""], [
            ("ready", result.get("ready")), ("url", result.get("url") or "-")]), ""]
    return "\n".join(lines)


def render_not_blessed(name: str) -> str:
    """The report of a local run whose model is not blessed (nothing served)."""
    return f"# Deployment of `{name}`\n\nThe model is not blessed (it does not beat the benchmark): not served.\n"


def prediction_text(prediction: float | dict[str, Any]) -> str:
    """A regression prediction to 4 decimals; a classifier's class and its probability."""
    if isinstance(prediction, dict):
        top = max(prediction.get("probabilities") or [0.0])
        return f"class `{prediction.get('label')}` (probability {top:.3f})"
    return f"{prediction:.4f}"


def display_value(value: Any) -> Any:
    """``value`` for display: floats (also inside lists and dicts) rounded to 6 significant digits.

    A midpoint such as ``(-74.3 + -73.6) / 2`` is ``-73.94999999999999`` in binary; the report
    shows ``-73.95``. Non-finite floats and other values are left as they are.
    """
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {key: display_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [display_value(item) for item in value]
    return value


def render_local_report(*, name: str, predict_url: str, url: str, pid: int, kept: bool, model_dir: str,
                        instance: dict[str, Any], prediction: float | dict[str, Any]) -> str:
    """The report of a local deployment: where it serves, and the test prediction."""
    status = "running" if kept else "checked, then stopped"
    return "\n".join([
        f"# Deployment of `{name}` (local KServe ModelServer)",
        "",
        "| field | value |",
        "|---|---|",
        f"| predict URL (v1) | `{predict_url}` |",
        f"| server | `{url}`, pid {pid}, {status} |",
        f"| model | `{model_dir}` |",
        f"| test instance | `{json.dumps(display_value(instance))}` |",
        f"| test prediction | {prediction_text(prediction)} |",
        "",
        f"Serve it again with `mlengine serve --model {model_dir} --name {name}`.",
    ])


def render_serving_log_note(serving_log_uri: str) -> str:
    """The line appended to a cluster report naming the serving log the monitoring pipeline reads."""
    return f"\n\nServing log (for the monitoring pipeline's `serving_log_uri`): `{serving_log_uri}`\n"
