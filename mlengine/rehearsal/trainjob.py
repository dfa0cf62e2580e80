"""Kubeflow Trainer v2's and JobSet's part: the TrainJob's pods from the runtime it names, as the controllers
would make them.

Trainer merges the TrainJob into the runtime's JobSet (``numNodes`` sizes the ancestor replicatedJob,
``spec.trainer.env`` goes into its ``node`` container, ``runtimePatches`` add env, volume mounts and
volumes per replicatedJob); JobSet makes one Indexed Job per replicatedJob and job index, its pods named
``<jobset>-<replicatedJob>-<jobIndex>-<podIndex>`` and resolvable as ``<pod>.<jobset>`` (the headless
Service), labelled with their replicatedJob and job index. No TF_CONFIG is given: every container builds
its own from those labels (the downward API's env), as on a cluster. The JobSet is done when every pod of
the success policy's replicatedJobs has exited 0; a failed container restarts as its pod's
``restartPolicy`` says, within the Job's ``backoffLimit`` (JobSet's whole-set restarts are not rehearsed).
"""

from __future__ import annotations

import copy
from typing import Any

from mlengine.components.shared.trainjob import (
    ANCESTOR_LABEL,
    COMPLETION_INDEX_ANNOTATION,
    JOB_INDEX_LABEL,
    JOBSET_NAME_LABEL,
    REPLICATED_JOB_LABEL,
    TRAINER_CONTAINER,
)
from mlengine.rehearsal.engine import JOB_TIMEOUT, Engine, RehearsalError, Scrubber
from mlengine.rehearsal.tfjob import Replica, create_replicas, supervise


def _merge_env(base: list[dict], extra: list[dict]) -> list[dict]:
    names = {item["name"] for item in extra}
    return [item for item in base if item["name"] not in names] + list(extra)


def merged_jobset(trainjob: dict, runtime: dict) -> dict:
    """The JobSet spec Trainer makes of ``trainjob`` and its ``runtime`` (a copy; neither is changed)."""
    ref = trainjob["spec"]["runtimeRef"]
    if runtime["metadata"]["name"] != ref["name"] or runtime["kind"] != ref.get("kind", "ClusterTrainingRuntime"):
        raise RehearsalError(f"TrainJob {trainjob['metadata'].get('name')}: runtimeRef {ref.get('kind')}/"
                             f"{ref['name']} is not {runtime['kind']}/{runtime['metadata']['name']}")
    jobset = copy.deepcopy(runtime["spec"]["template"]["spec"])
    trainer = trainjob["spec"].get("trainer") or {}
    jobs = {job["name"]: job for job in jobset["replicatedJobs"]}
    for job in jobs.values():
        labels = (job["template"].get("metadata") or {}).get("labels") or {}
        if labels.get(ANCESTOR_LABEL) != "trainer":
            continue
        spec = job["template"]["spec"]
        if "numNodes" in trainer:
            spec["parallelism"] = spec["completions"] = int(trainer["numNodes"])
        for container in spec["template"]["spec"]["containers"]:
            if container["name"] == TRAINER_CONTAINER:
                container["env"] = _merge_env(container.get("env", []), trainer.get("env") or [])
                for key in ("image", "command", "args"):
                    if key in trainer:
                        container[key] = trainer[key]
    for patch in trainjob["spec"].get("runtimePatches") or []:
        for job_patch in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            if job_patch["name"] not in jobs:
                raise RehearsalError(f"runtimePatches: the runtime has no replicatedJob {job_patch['name']!r}")
            pod = jobs[job_patch["name"]]["template"]["spec"]["template"]["spec"]
            pod_patch = job_patch["template"]["spec"]["template"]["spec"]
            pod["volumes"] = [*pod.get("volumes", []), *pod_patch.get("volumes", [])]
            for container_patch in pod_patch.get("containers", []):
                container = next((c for c in pod["containers"] if c["name"] == container_patch["name"]), None)
                if container is None:
                    raise RehearsalError(f"runtimePatches: replicatedJob {job_patch['name']} has no container "
                                         f"{container_patch['name']!r}")
                container["env"] = _merge_env(container.get("env", []), container_patch.get("env") or [])
                container["volumeMounts"] = [*container.get("volumeMounts", []),
                                             *container_patch.get("volumeMounts", [])]
    return jobset


def jobset_pods(name: str, jobset: dict) -> list[Replica]:
    """One Replica per pod JobSet would create, with its name, DNS alias and downward-API values."""
    pods = []
    for job in jobset["replicatedJobs"]:
        spec = job["template"]["spec"]
        template = spec["template"]
        container = template["spec"]["containers"][0]
        for job_index in range(int(job.get("replicas", 1))):
            for pod_index in range(int(spec.get("parallelism", 1))):
                pod_name = f"{name}-{job['name']}-{job_index}-{pod_index}"
                labels = {**(template.get("metadata") or {}).get("labels", {}), JOBSET_NAME_LABEL: name,
                          REPLICATED_JOB_LABEL: job["name"], JOB_INDEX_LABEL: str(job_index)}
                annotations = {**(template.get("metadata") or {}).get("annotations", {}),
                               COMPLETION_INDEX_ANNOTATION: str(pod_index)}
                fields = {**{f"metadata.labels['{k}']": v for k, v in labels.items()},
                          **{f"metadata.annotations['{k}']": v for k, v in annotations.items()},
                          "metadata.name": pod_name}
                pods.append(Replica(name, job["name"], job_index * int(spec.get("parallelism", 1)) + pod_index,
                                    template["spec"].get("restartPolicy", "Never"), container, template["spec"],
                                    pod_name=pod_name, aliases=(f"{pod_name}.{name}",), fields=fields))
    return pods


def run_trainjob(engine: Engine, trainjob: dict, runtimes: dict[str, dict], *, network: str,
                 secret: dict[str, str], secret_name: str, scrub: Scrubber,
                 timeout: float = JOB_TIMEOUT, name: str | None = None) -> dict:
    """Run the pods of ``trainjob`` (``runtimes``: runtime name -> runtime); return the result as run_tfjob does."""
    name = name or trainjob["metadata"]["name"]
    ref = trainjob["spec"]["runtimeRef"]["name"]
    if ref not in runtimes:
        raise RehearsalError(f"TrainJob {name}: runtime {ref} is not among the rendered runtimes "
                             f"({', '.join(sorted(runtimes))})")
    jobset = merged_jobset(trainjob, runtimes[ref])
    pods = jobset_pods(name, jobset)
    what = f"TrainJob {name}"
    create_replicas(engine, pods, what=what, network=network, secret=secret, secret_name=secret_name,
                    scrub=scrub)
    targets = set(jobset.get("successPolicy", {}).get("targetReplicatedJobs") or [j["name"] for j in
                                                                                  jobset["replicatedJobs"]])
    primary = primary_pod(pods)
    result: dict[str, Any] = {"runtime": ref, "pods": [p.service for p in pods]}
    backoff = min(int(job["template"]["spec"].get("backoffLimit", 6)) for job in jobset["replicatedJobs"])
    return supervise(engine, pods, what=what, result=result, backoff=backoff, done=lambda pod: pod.kind in targets,
                     primary=primary, scrub=scrub, timeout=timeout)


def primary_pod(pods: list[Replica], labels: dict[str, str] | None = None) -> Replica:
    """The pod Katib's collector watches: the one matching ``labels`` (primaryPodLabels), else the chief or
    worker 0."""
    if labels:
        for pod in pods:
            values = {key[len("metadata.labels['"):-2]: value for key, value in (pod.fields or {}).items()
                      if key.startswith("metadata.labels[")}
            values["batch.kubernetes.io/job-completion-index"] = (pod.fields or {}).get(
                f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']", "")
            if all(values.get(k) == v for k, v in labels.items()):
                return pod
        raise RehearsalError(f"no pod of the trial matches primaryPodLabels {labels}")
    return next((p for p in pods if p.kind == "chief"), None) or next(p for p in pods if p.kind == "worker")
