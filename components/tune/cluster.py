"""Cluster mode: the search space as a Katib ``kubeflow.org/v1beta1`` Experiment whose trials are TFJobs
or Kubeflow Trainer v2 TrainJobs.

``render_experiment`` builds the Experiment as a plain dict (validated in the tests against
Katib's OpenAPI schema, its trial TFJob against the TFJob CRD): objective, algorithm, budget,
parameters (feasible-space numbers as strings), medianstop early stopping, the StdOut metrics
collector (the trial program prints ``rmse=<value>``), and a trial template whose TFJob runs
``python -m mlengine.components.tune.trial`` with ``${trialParameters.<name>}`` in its args:
every replica re-runs the transform with the trial's nbuckets, then trains.

``run_experiment`` creates the Experiment (or re-attaches to the one a previous attempt created),
waits for its Succeeded/Failed condition and returns the optimal trial's parameters, typed back
through the search space.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from typing import Any

from mlengine.components.tune.search_space import Parameter, SearchSpace, katib_string
from mlengine.constants import (
    DEFAULT_TRAINING_OPERATOR,
    K8S_NAMESPACE,
    K8S_SERVICE_ACCOUNT,
    PART_OF_LABEL,
    TRAINER_IMAGE,
)
from mlengine.errors import MlengineError

GROUP = "kubeflow.org"
VERSION = "v1beta1"
EXPERIMENT_PLURAL = "experiments"
TRIAL_PLURAL = "trials"
PRIMARY_CONTAINER = "tensorflow"  # the TFJob container name the Training Operator requires
TRIAL_PROGRAM = ["python", "-m", "mlengine.components.tune.trial"]
TRIAL_NAME_PARAMETER = "trialName"
# the Training Operator labels the chief (worker 0 without one) job-role=master: Katib collects its metrics
PRIMARY_POD_LABELS = {"training.kubeflow.org/job-role": "master"}
TFJOB_SUCCESS = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
TFJOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
# a TrainJob ends Complete or Failed (Katib's own defaults for TrainJob trials, spelled out)
TRAINJOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
TRAINJOB_FAILURE = TFJOB_FAILURE
TRIAL_KINDS = ("TFJob", "TrainJob")
TRIAL_MODULE = "mlengine.components.tune.trial"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # an Indexed Job's pod label (Kubernetes 1.28+)
# Katib's default StdOut filter, spelled out: "<name>=<number>" lines
METRICS_FORMAT = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 40  # trial (name + 9) and pod names derive from it and must stay short
TRIAL_PARAM_PATTERN = re.compile(r"\$\{trialParameters\.([^}]+)\}")
TRIAL_META_REFERENCES = ("${trialSpec.Name}", "${trialSpec.Namespace}", "${trialSpec.Kind}",
                         "${trialSpec.APIVersion}")
ARG_NAMES = {"nbuckets": "--nbuckets", "hidden_units": "--hidden-units", "learning_rate": "--learning-rate",
             "batch_size": "--batch-size", "class_weight": "--class-weight"}
DESCRIPTIONS = {
    "nbuckets": "number of quantile buckets of the transform (a preprocessing hyperparameter)",
    "hidden_units": "sizes of the deep part's hidden layers, comma-separated",
    "learning_rate": "learning rate of the optimizer",
    "batch_size": "training batch size",
    "class_weight": "a class label's class weights in the training loss (none or balanced)",
}

log = logging.getLogger(__name__)


def experiment_name_for(key: str, prefix: str = "mlengine-tune") -> str:
    """A stable, valid Experiment name derived from ``key`` (e.g. the output artifact path)."""
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:10]
    return f"{prefix}-{digest}"


def trial_arguments(space: SearchSpace, *, train_uri: str, eval_uri: str, spec_uri: str, output_uri: str,
                    epochs: int, seed: int = 0, fixed_params: dict[str, Any] | None = None,
                    model_module_uri: str = "") -> list[str]:
    """The trial program's args: data locations, the fixed hyperparameters, and a placeholder per tuned one.

    With a model module (``model_module_uri``: its artifact folder in object storage) every replica
    loads it from there; its hyperparameters go as ``--hp=NAME=VALUE``, placeholders for the searched ones.
    """
    args = [f"--train-dir={train_uri}", f"--eval-dir={eval_uri}", f"--spec={spec_uri}",
            f"--out={output_uri.rstrip('/')}/${{trialParameters.{TRIAL_NAME_PARAMETER}}}",
            f"--epochs={epochs}", f"--seed={seed}"]
    for name, flag in ARG_NAMES.items():
        if name in space.names:
            args.append(f"{flag}=${{trialParameters.{name}}}")
        elif fixed_params and name in fixed_params:
            args.append(f"{flag}={katib_string(fixed_params[name])}")
    if model_module_uri:
        args.append(f"--model-module={model_module_uri}")
        for name, value in (fixed_params or {}).items():
            if name not in ARG_NAMES and name not in space.names:
                args.append(f"--hp={name}={katib_string(value)}")
        args += [f"--hp={name}=${{trialParameters.{name}}}" for name in space.module_names if name in space.names]
    return args


def trial_parameters(space: SearchSpace) -> list[dict[str, str]]:
    params = [{"name": p.name, "reference": p.name, "description": DESCRIPTIONS.get(p.name, p.name)}
              for p in space.parameters]
    params.append({"name": TRIAL_NAME_PARAMETER, "reference": "${trialSpec.Name}",
                   "description": "the trial's name: each trial writes its model under its own prefix"})
    return params


def _trial_tfjob(*, image: str, args: list[str], topology, namespace: str, service_account: str | None,
                 resources: dict | None, shared_claim: str | None) -> dict:
    """The TFJob every trial runs, rendered by the training launcher (same replicas, env, secrets, scratch
    volume), with the trial program as the command and without name and namespace: Katib sets those."""
    from mlengine.components.shared.tfjob import render_tfjob

    extra = {"service_account": service_account} if service_account else {}
    tfjob = render_tfjob("katib-trial", args, topology, namespace=namespace, image=image, resources=resources,
                         shared_claim=shared_claim or None, **extra)
    for replica in tfjob["spec"]["tfReplicaSpecs"].values():
        for container in replica["template"]["spec"]["containers"]:
            if container["name"] == PRIMARY_CONTAINER:
                container["command"] = list(TRIAL_PROGRAM)  # the same flags: --strategy, --scratch-dir included
    metadata = {k: v for k, v in (tfjob.get("metadata") or {}).items() if k not in ("name", "namespace")}
    return {**tfjob, "metadata": metadata}


def _trial_trainjob(*, args: list[str], topology, shared_claim: str | None) -> dict:
    """The TrainJob every trial runs (the project's runtime for ``topology``; Katib sets name and namespace)."""
    from mlengine.components.shared.trainjob import render_trainjob

    return render_trainjob("katib-trial", [TRIAL_MODULE, *args], topology, shared_claim=shared_claim or None,
                           for_trial=True)


def trainjob_trial_collection(topology) -> tuple[str, dict[str, str]]:
    """(primaryContainerName, primaryPodLabels) of a TrainJob trial: the one pod that prints the metric.

    Katib's StdOut collector must watch a pod that exits and prints ``rmse=``: the chief under
    parameter servers (ps and workers only serve and never exit), else worker 0 (JobSet's
    replicatedJob label plus the Indexed Job's completion-index label pick it).
    """
    from mlengine.components.shared.trainjob import REPLICATED_JOB_LABEL, container_name

    if topology.resolved_strategy == "parameter_server":
        return container_name("chief"), {REPLICATED_JOB_LABEL: "chief"}
    return container_name("worker"), {REPLICATED_JOB_LABEL: "worker", COMPLETION_INDEX_LABEL: "0"}


def render_experiment(name: str, space: SearchSpace, *, namespace: str = K8S_NAMESPACE, train_uri: str,
                      eval_uri: str, spec_uri: str, output_uri: str, epochs: int = 2, seed: int = 0,
                      image: str = TRAINER_IMAGE, trial_topology=None, fixed_params: dict[str, Any] | None = None,
                      service_account: str | None = K8S_SERVICE_ACCOUNT, resources: dict | None = None,
                      labels: dict[str, str] | None = None, shared_claim: str | None = None,
                      trial_kind: str = "TFJob", model_module_uri: str = "") -> dict:
    """The Katib Experiment of ``space`` (a dict ready for the custom-objects API).

    ``trial_topology`` (a ``distributed.Topology``; default one worker) is the shape of every trial;
    a parameter-server topology needs ``shared_claim`` (a ReadWriteMany PVC), as in training.
    ``trial_kind`` is TFJob or TrainJob (the project's TrainingRuntime; image, resources and service
    account are the runtime's). The Experiment goes through ``kubeflow-katib-api``'s typed model.
    """
    if trial_kind not in TRIAL_KINDS:
        raise MlengineError(f"trial kind {trial_kind!r}: expected one of {', '.join(TRIAL_KINDS)}")
    if not NAME_PATTERN.match(name) or len(name) > MAX_NAME_LENGTH:
        raise MlengineError(f"experiment name {name!r}: use at most {MAX_NAME_LENGTH} lower-case letters, digits "
                            "and '-', starting with a letter")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise MlengineError(f"epochs must be a positive integer, got {epochs!r}")
    if trial_topology is None:
        from mlengine.components.shared.distributed import Topology

        trial_topology = Topology(workers=1, ps=0)
    args = trial_arguments(space, train_uri=train_uri, eval_uri=eval_uri, spec_uri=spec_uri,
                           output_uri=output_uri, epochs=epochs, seed=seed, fixed_params=fixed_params,
                           model_module_uri=model_module_uri)
    # Katib's grid suggestion refuses a maxTrialCount above the grid size: the budget is the local study's
    budget = space.trial_budget()
    spec: dict[str, Any] = {
        "objective": {**space.to_katib_objective(),
                      # the objective is the last epoch's RMSE (as locally), not the best epoch's
                      "metricStrategies": [{"name": space.metric, "value": "latest"}]},
        "algorithm": space.to_katib_algorithm(),
        "parallelTrialCount": min(space.parallel_trials, budget),
        "maxTrialCount": budget,
        "maxFailedTrialCount": min(space.max_failed_trials, budget),
        "parameters": space.to_katib_parameters(),
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"},
                                 "source": {"filter": {"metricsFormat": [METRICS_FORMAT]}}},
        "trialTemplate": {
            "primaryContainerName": PRIMARY_CONTAINER,
            "primaryPodLabels": dict(PRIMARY_POD_LABELS),
            "successCondition": TFJOB_SUCCESS,
            "failureCondition": TFJOB_FAILURE,
            "trialParameters": trial_parameters(space),
            "trialSpec": _trial_tfjob(image=image, args=args, topology=trial_topology, namespace=namespace,
                                      service_account=service_account, resources=resources,
                                      shared_claim=shared_claim),
        } if trial_kind == "TFJob" else {
            "primaryContainerName": trainjob_trial_collection(trial_topology)[0],
            "primaryPodLabels": trainjob_trial_collection(trial_topology)[1],
            "successCondition": TRAINJOB_SUCCESS,
            "failureCondition": TRAINJOB_FAILURE,
            "trialParameters": trial_parameters(space),
            "trialSpec": _trial_trainjob(args=args, topology=trial_topology, shared_claim=shared_claim),
        },
    }
    early = space.to_katib_early_stopping()
    if early is not None:
        spec["earlyStopping"] = early
    metadata: dict[str, Any] = {"name": name, "namespace": namespace,
                                "labels": {**PART_OF_LABEL, **(labels or {})}}
    from mlengine.components.shared.trainjob import typed

    return typed("V1beta1Experiment", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Experiment",
                                       "metadata": metadata, "spec": spec}, f"Experiment {name}")


# --- the rules Katib's admission webhook enforces (the OpenAPI schema cannot) ----------------------
def webhook_problems(experiment: dict) -> list[str]:
    """What Katib's validating webhook would reject in ``experiment`` (empty when it is acceptable)."""
    import json

    problems = []
    spec = experiment.get("spec", {})
    name = experiment.get("metadata", {}).get("name", "")
    if not NAME_PATTERN.match(name):
        problems.append(f"metadata.name {name!r} is not a DNS-1123 label starting with a letter")
    max_trials = spec.get("maxTrialCount")
    for field in ("parallelTrialCount", "maxFailedTrialCount"):
        value = spec.get(field)
        if value is not None and max_trials is not None and value > max_trials:
            problems.append(f"spec.{field} {value} is more than spec.maxTrialCount {max_trials}")
    if max_trials is not None and max_trials <= 0:
        problems.append("spec.maxTrialCount must be greater than 0")
    objective = spec.get("objective") or {}
    if objective.get("type") not in ("minimize", "maximize"):
        problems.append("spec.objective.type must be minimize or maximize")
    if not objective.get("objectiveMetricName"):
        problems.append("spec.objective.objectiveMetricName must be set")
    if not (spec.get("algorithm") or {}).get("algorithmName"):
        problems.append("spec.algorithm.algorithmName must be set")
    parameters = spec.get("parameters") or []
    if not parameters:
        problems.append("spec.parameters must name at least one parameter")
    for index, param in enumerate(parameters):
        kind, space = param.get("parameterType"), param.get("feasibleSpace") or {}
        where = f"spec.parameters[{index}]"
        if kind not in ("int", "double", "categorical", "discrete"):
            problems.append(f"{where}.parameterType {kind!r} is not supported")
        if kind in ("int", "double") and (space.get("list") or not (space.get("min") or space.get("max"))):
            problems.append(f"{where}.feasibleSpace needs min/max and no list for {kind}")
        if kind in ("categorical", "discrete") and (any(k in space for k in ("min", "max", "step"))
                                                    or not space.get("list")):
            problems.append(f"{where}.feasibleSpace needs a list and no min/max/step for {kind}")
        if space.get("distribution") not in (None, "", "uniform", "logUniform", "normal", "logNormal"):
            problems.append(f"{where}.feasibleSpace.distribution {space['distribution']!r} is not supported")
    if (spec.get("algorithm") or {}).get("algorithmName") == "grid" and parameters and max_trials is not None:
        # checked by Katib's grid suggestion service (ValidateAlgorithmSettings), before any trial runs
        try:
            size = math.prod(len(katib_grid_values(p)) for p in parameters)
        except (KeyError, ValueError):
            problems.append("grid search needs min/max/step (or a list) for every parameter")
        else:
            if max_trials > size:
                problems.append(f"spec.maxTrialCount {max_trials} is more than the {size} grid combinations")
    template = spec.get("trialTemplate") or {}
    if not template.get("primaryContainerName"):
        problems.append("spec.trialTemplate.primaryContainerName must be set")
    if not template.get("successCondition") or not template.get("failureCondition"):
        problems.append("spec.trialTemplate successCondition and failureCondition must be set")
    trial_spec = template.get("trialSpec")
    if not isinstance(trial_spec, dict):
        return [*problems, "spec.trialTemplate.trialSpec must be set"]
    if (trial_spec.get("metadata") or {}).get("name") or (trial_spec.get("metadata") or {}).get("namespace"):
        problems.append("spec.trialTemplate.trialSpec must not set metadata.name or metadata.namespace")
    if not trial_spec.get("apiVersion") or not trial_spec.get("kind"):
        problems.append("spec.trialTemplate.trialSpec needs apiVersion and kind")
    text = json.dumps(trial_spec)
    parameter_names = {p.get("name") for p in parameters}
    seen_names, seen_refs = set(), set()
    for index, item in enumerate(template.get("trialParameters") or []):
        where = f"spec.trialTemplate.trialParameters[{index}]"
        trial_name, reference = item.get("name", ""), item.get("reference", "")
        if not trial_name or not reference or "{" in trial_name or "}" in trial_name:
            problems.append(f"{where}: name and reference must be set and the name must not contain braces")
            continue
        if trial_name in seen_names or reference in seen_refs:
            problems.append(f"{where}: duplicated name or reference")
        seen_names.add(trial_name)
        seen_refs.add(reference)
        if reference not in parameter_names and reference not in TRIAL_META_REFERENCES:
            problems.append(f"{where}.reference {reference!r} is not in spec.parameters")
        if f"${{trialParameters.{trial_name}}}" not in text:
            problems.append(f"{where}.name {trial_name!r} is not used in the trial template")
    unknown = sorted(set(TRIAL_PARAM_PATTERN.findall(text)) - seen_names)
    if unknown:
        problems.append(f"spec.trialTemplate uses ${{trialParameters.{unknown[0]}}} that trialParameters lacks")
    return problems


def katib_grid_values(param: dict) -> list[str]:
    """The grid Katib enumerates for one rendered Experiment parameter (its suggestion service's rule)."""
    kind, space = param.get("parameterType"), param.get("feasibleSpace") or {}
    if kind in ("categorical", "discrete"):
        return list(space["list"])
    number = int if kind == "int" else float
    step = space.get("step")
    parsed = Parameter(name=str(param.get("name")), type="int" if kind == "int" else "double",
                       min=number(space["min"]), max=number(space["max"]), step=number(step) if step else None)
    return [katib_string(v) for v in parsed.grid_values()]


# --- running it ------------------------------------------------------------------------------------
def experiment_done(obj: dict) -> tuple[bool, bool, str]:
    """``(finished, succeeded, reason)`` of an Experiment from its status conditions."""
    from mlengine.components.shared.k8s import find_condition

    status = obj.get("status") or {}
    for condition_type, succeeded in (("Succeeded", True), ("Failed", False)):
        condition = find_condition(obj, condition_type)
        if condition is not None and condition.get("status") == "True":
            message = condition.get("message") or condition.get("reason") or condition_type
            return True, succeeded, f"{condition_type}: {message}"
    counts = ", ".join(f"{status.get(key, 0)} {word}" for key, word in
                       (("trialsSucceeded", "succeeded"), ("trialsRunning", "running"), ("trialsFailed", "failed"),
                        ("trialsEarlyStopped", "stopped early")))
    best = _optimal_rmse(status)
    return False, False, f"trials: {counts}" + (f"; best rmse so far {best:.4g}" if best is not None else "")


def _metric_value(metrics: list[dict], name: str) -> float | None:
    for metric in metrics or []:
        if metric.get("name") == name:
            for key in ("latest", "min", "max"):
                try:
                    return float(metric[key])
                except (KeyError, TypeError, ValueError):
                    continue
    return None


def _optimal_rmse(status: dict, metric: str = "rmse") -> float | None:
    optimal = status.get("currentOptimalTrial") or {}
    return _metric_value((optimal.get("observation") or {}).get("metrics"), metric)


def experiment_result(obj: dict, space: SearchSpace, *, fixed_params: dict[str, Any] | None = None,
                      trials: list[dict] | None = None) -> dict:
    """The local study's result shape from a finished Experiment (and its Trial objects when listed)."""
    status = obj.get("status") or {}
    optimal = status.get("currentOptimalTrial") or {}
    assignments = optimal.get("parameterAssignments") or []
    if not assignments:
        name = (obj.get("metadata") or {}).get("name")
        raise MlengineError(f"Experiment {name}: finished without an optimal trial (status.currentOptimalTrial)")
    best = space.complete(space.parse_katib_assignments(assignments), fixed_params)
    rows = sorted((_trial_row(trial, space, fixed_params) for trial in trials or []),
                  key=lambda row: (row.pop("created"), row["name"] or ""))
    for number, row in enumerate(rows):  # Katib trials have names, not numbers: number them by creation
        row["number"] = number
    return {
        "algorithm": space.algorithm.name,
        "katib_algorithm": space.algorithm.katib_name,
        "experiment": (obj.get("metadata") or {}).get("name"),
        "trials": rows,
        "best_trial": optimal.get("bestTrialName"),
        "best_params": best,
        "best_rmse": _optimal_rmse(status, space.metric),
        "trial_counts": {key: status.get(key, 0) for key in ("trials", "trialsSucceeded", "trialsFailed",
                                                              "trialsEarlyStopped", "trialsKilled")},
    }


def _trial_row(trial: dict, space: SearchSpace, fixed_params: dict[str, Any] | None) -> dict:
    from mlengine.components.shared.k8s import find_condition

    metadata = trial.get("metadata") or {}
    status = trial.get("status") or {}
    state = "RUNNING"
    for condition_type, label in (("Succeeded", "COMPLETE"), ("EarlyStopped", "PRUNED"), ("Failed", "FAIL"),
                                  ("MetricsUnavailable", "FAIL"), ("Killed", "FAIL")):
        condition = find_condition(trial, condition_type)
        if condition is not None and condition.get("status") == "True":
            state = label
            break
    error = None
    if state == "FAIL":
        failed = next((c for c in status.get("conditions") or [] if c.get("status") == "True"
                       and c.get("type") in ("Failed", "MetricsUnavailable", "Killed")), {})
        error = failed.get("message") or failed.get("reason") or failed.get("type")
    return {
        "created": metadata.get("creationTimestamp") or "",
        "name": metadata.get("name"),
        "params": space.complete(space.parse_katib_assignments((trial.get("spec") or {}).get("parameterAssignments")),
                                 fixed_params),
        "rmse": _metric_value((status.get("observation") or {}).get("metrics"), space.metric),
        "state": state,
        "error": error,
    }


def list_trials(api, namespace: str, experiment: str) -> list[dict]:
    """The Trial objects of an Experiment (empty when they cannot be listed: the best is still known)."""
    try:
        listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, TRIAL_PLURAL,
                                                   label_selector=f"katib.kubeflow.org/experiment={experiment}")
    except Exception:  # trial listing is a report detail, never a reason to fail the tuning step
        return []
    return [item for item in listed.get("items") or []
            if ((item.get("metadata") or {}).get("labels") or {}).get("katib.kubeflow.org/experiment") == experiment]


def run_experiment(name: str, space: SearchSpace, *, namespace: str = K8S_NAMESPACE, api=None,
                   name_file: str | None = None, timeout: float = 24 * 3600.0, poll_interval: float = 10.0,
                   training_operator: str = DEFAULT_TRAINING_OPERATOR, **render_args) -> dict:
    """Create (or re-attach to) the Experiment, wait for it, return the best parameters and the trials.

    Its trials are TrainJobs or TFJobs as ``training_operator`` says (auto: what the cluster serves).
    """
    from mlengine.components.shared.k8s import CustomResource
    from mlengine.components.shared.trainjob import choose_training_operator, served_group_versions

    operator, why = choose_training_operator(training_operator, lambda: served_group_versions(api))
    log.info("tune: Katib trials run as %s (%s)", "TrainJobs" if operator == "trainjob" else "TFJobs", why)
    render_args["trial_kind"] = "TrainJob" if operator == "trainjob" else "TFJob"
    manifest = render_experiment(name, space, namespace=namespace, **render_args)
    problems = webhook_problems(manifest)
    if problems:
        raise MlengineError(f"Experiment {name} would be rejected by Katib: {problems[0]}")
    experiments = CustomResource(GROUP, VERSION, EXPERIMENT_PLURAL, namespace, api=api)
    created = experiments.create_or_attach(manifest, name_file=name_file)
    actual = (created.get("metadata") or {}).get("name", name)
    log.info("tune: Katib Experiment %s/%s: %s, %d trials, %d in parallel", namespace, actual,
             space.algorithm.katib_name, space.max_trials, space.parallel_trials)
    final = experiments.wait(actual, experiment_done, timeout=timeout, poll_interval=poll_interval,
                             label=f"tune: Experiment {actual}")
    trials = list_trials(experiments.api, namespace, actual)
    result = experiment_result(final, space, fixed_params=render_args.get("fixed_params"), trials=trials)
    log.info("tune: best rmse=%s with %s (trial %s)", result["best_rmse"], result["best_params"], result["best_trial"])
    return result
