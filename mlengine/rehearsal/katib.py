"""Katib's part: one trial of a rendered Experiment (a suggestion substituted into the trial template, the
trial's job run, its metric read the way the metrics collector reads it)."""

from __future__ import annotations

import json
import secrets

from mlengine.rehearsal.engine import Engine, RehearsalError, Scrubber
from mlengine.rehearsal.tfjob import primary_replica, run_tfjob, tfjob_replicas
from mlengine.rehearsal.trainjob import jobset_pods, merged_jobset, primary_pod, run_trainjob


def first_suggestion(experiment: dict) -> dict[str, str]:
    """One assignment per parameter, as strings the way Katib's suggestion services return them.

    The rehearsal has no suggestion service: it takes the first value of each feasible space (a list's
    first entry, a range's minimum), which is inside every space the webhook accepts.
    """
    out = {}
    for param in experiment["spec"]["parameters"]:
        space = param.get("feasibleSpace") or {}
        out[param["name"]] = str(space["list"][0] if space.get("list") else space["min"])
    return out


def trial_job(experiment: dict, assignments: dict[str, str], trial_name: str) -> dict:
    """The trial's job (TFJob or TrainJob): ``${trialParameters.x}`` replaced in the trialSpec text as Katib's
    trial controller does.

    Each trialParameter's ``reference`` is a parameter name (its assignment) or a ``${trialSpec.*}``
    meta reference (the trial's name, namespace, kind, apiVersion).
    """
    template = experiment["spec"]["trialTemplate"]
    namespace = experiment["metadata"]["namespace"]
    text = json.dumps(template["trialSpec"])
    meta = {"${trialSpec.Name}": trial_name, "${trialSpec.Namespace}": namespace,
            "${trialSpec.Kind}": template["trialSpec"]["kind"],
            "${trialSpec.APIVersion}": template["trialSpec"]["apiVersion"]}
    for param in template["trialParameters"]:
        reference = param["reference"]
        if reference in meta:
            value = meta[reference]
        elif reference in assignments:
            value = assignments[reference]
        else:
            raise RehearsalError(f"Katib trial: trialParameter {param['name']} refers to {reference!r}, "
                                 "which is no parameter of the Experiment")
        text = text.replace("${trialParameters." + param["name"] + "}", value)
    if "${trialParameters." in text:
        left = text[text.index("${trialParameters."):].split("}", 1)[0] + "}"
        raise RehearsalError(f"Katib trial: {left} has no trialParameter")
    tfjob = json.loads(text)
    tfjob["metadata"] = {**tfjob.get("metadata", {}), "name": trial_name, "namespace": namespace}
    return tfjob


def collect_metrics(stdout: str, experiment: dict) -> dict[str, float]:
    """The StdOut collector's rule: every ``metricsFormat`` match of the objective's metrics, the latest kept."""
    import re

    spec = experiment["spec"]
    formats = spec["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]
    wanted = {spec["objective"]["objectiveMetricName"], *spec["objective"].get("additionalMetricNames", [])}
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        for pattern in formats:
            for match in re.finditer(pattern, line):
                name, value = match.group(1), match.group(2)
                if name in wanted and value not in ("", "+", "-"):
                    found[name] = float(value)
    return found


def run_trial(engine: Engine, experiment: dict, *, network: str, secret: dict[str, str], secret_name: str,
              scrub: Scrubber, timeout: float, runtimes: dict[str, dict] | None = None) -> dict:
    """One trial of ``experiment``: substitute a suggestion, run its TFJob or TrainJob (``runtimes``: the
    TrainingRuntimes by name), read its metric from the primary pod's stdout as the StdOut collector does."""
    assignments = first_suggestion(experiment)
    trial_name = f"{experiment['metadata']['name']}-{secrets.token_hex(4)}"
    job = trial_job(experiment, assignments, trial_name)
    if job["kind"] == "TrainJob":
        template = experiment["spec"]["trialTemplate"]
        result = run_trainjob(engine, job, runtimes or {}, network=network, secret=secret, secret_name=secret_name,
                              scrub=scrub, timeout=timeout)
        if result.get("passed"):
            pods = jobset_pods(trial_name, merged_jobset(job, runtimes[job["spec"]["runtimeRef"]["name"]]))
            primary = primary_pod(pods, template.get("primaryPodLabels"))
    else:
        result = run_tfjob(engine, job, network=network, secret=secret, secret_name=secret_name, scrub=scrub,
                           timeout=timeout)
        primary = primary_replica(tfjob_replicas(job))
    out = {"name": trial_name, "kind": job["kind"], "assignments": assignments, job["kind"].lower(): result}
    if not result.get("passed"):
        return {**out, "passed": False, "reason": result["reason"]}
    stdout = engine.client.api.logs(engine.name(primary.service), stdout=True, stderr=False).decode("utf-8",
                                                                                                     "replace")
    metrics = collect_metrics(stdout, experiment)
    objective = experiment["spec"]["objective"]["objectiveMetricName"]
    if objective not in metrics:
        return {**out, "passed": False, "reason": f"trial {trial_name}: no {objective}=<value> line in "
                f"{primary.service}'s stdout (the StdOut collector's filter found nothing)",
                "logs": scrub(stdout[-3000:])}
    return {**out, "passed": True, "primary_pod": primary.service, "metrics": metrics}
