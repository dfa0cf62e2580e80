"""The Training Operator's part: one container per TFJob replica from its pod template, ``TF_CONFIG`` as
the operator builds it, restartPolicy and backoffLimit honoured."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mlengine.constants import (
    ENV_TF_CONFIG,
    IMAGE_DEFAULT_UID,
    REHEARSAL_TFJOB_PORT,
)
from mlengine.rehearsal import log
from mlengine.rehearsal.engine import (
    JOB_TIMEOUT,
    Engine,
    RehearsalError,
    Scrubber,
    last_error_line,
    require_image,
    resolve_env,
    tail_logs,
)

RETRYABLE_EXIT_CODES = range(128, 256)  # restartPolicy ExitCode: signals (OOM, eviction) are retried, 1-127 not


@dataclass
class Replica:
    job: str
    kind: str  # Chief | PS | Worker (a TFJob's); chief | ps | worker (a JobSet's replicatedJob)
    index: int
    restart_policy: str
    container: dict
    pod_spec: dict
    cid: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    pod_name: str | None = None  # a JobSet pod's own name (default: the TFJob replica's Service name)
    aliases: tuple[str, ...] = ()  # more names the pod answers to (JobSet: <pod>.<subdomain>)
    fields: dict[str, str] | None = None  # the downward API's values (fieldRef env): labels, annotations

    @property
    def service(self) -> str:
        """The replica's Service name as the Training Operator names it (or the JobSet pod's name)."""
        return self.pod_name or f"{self.job}-{self.kind.lower()}-{self.index}"


def tfjob_replicas(tfjob: dict) -> list[Replica]:
    name = tfjob["metadata"]["name"]
    replicas = []
    for kind, spec in tfjob["spec"]["tfReplicaSpecs"].items():
        pod = spec["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "tensorflow")
        for index in range(int(spec.get("replicas", 1))):
            replicas.append(Replica(name, kind, index, spec.get("restartPolicy", "Never"), container, pod))
    return replicas


def primary_replica(replicas: list[Replica]) -> Replica:
    """The replica the operator labels job-role=master (Katib's primary pod): the Chief, else Worker 0."""
    return next((r for r in replicas if r.kind == "Chief"), None) or next(
        r for r in replicas if r.kind == "Worker" and r.index == 0)


def tfjob_cluster(replicas: list[Replica]) -> dict[str, list[str]]:
    """TF_CONFIG's cluster as the Training Operator writes it (no namespace), from the shared builder."""
    from mlengine.components.shared.distributed import cluster_addresses
    from mlengine.components.shared.tfjob import tfjob_address

    counts: dict[str, int] = {}
    for replica in replicas:
        counts[replica.kind.lower()] = counts.get(replica.kind.lower(), 0) + 1
    port = next((p["containerPort"] for p in replicas[0].container.get("ports", []) if p.get("name") == "tfjob-port"),
                REHEARSAL_TFJOB_PORT)
    return cluster_addresses(counts, lambda kind, index: tfjob_address(replicas[0].job, kind, index, port))


def prepare_volumes(engine: Engine, replicas: list[Replica], image: str) -> dict[tuple, str]:
    """Docker volumes for the pod volumes: an emptyDir per replica, one volume per claim (shared by all).

    Kubernetes applies ``fsGroup`` to the volumes; here one short root container gives them to
    ``runAsUser:fsGroup`` with group write, which is what the pods see.
    """
    volumes: dict[tuple, str] = {}
    for replica in replicas:
        for vol in replica.pod_spec.get("volumes", []):
            if "emptyDir" in vol:
                volumes[(replica.service, vol["name"])] = engine.volume(f"{replica.service}-{vol['name']}")
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                key = ("claim", claim)
                if key not in volumes:
                    volumes[key] = engine.volume(f"pvc-{claim}")
                volumes[(replica.service, vol["name"])] = volumes[key]
            else:
                raise RehearsalError(f"{replica.service}: volume {vol['name']}: only emptyDir and "
                                     "persistentVolumeClaim are rehearsed")
    security = replicas[0].pod_spec.get("securityContext", {})
    owner = f"{security.get('runAsUser', IMAGE_DEFAULT_UID)}:{security.get('fsGroup', 0)}"
    names = sorted(set(volumes.values()))
    binds = {name: f"/v/{i}" for i, name in enumerate(names)}
    network = engine.networks[0]
    cid = engine.create(image, name="fsgroup", network=network, entrypoint=["sh", "-c"],
                        command=[f"chown -R {owner} /v && chmod -R g+rwX /v"], binds=binds, user="0")
    engine.client.api.start(cid)
    code = engine.client.api.wait(cid, timeout=120)["StatusCode"]
    engine.client.api.remove_container(cid, force=True)
    engine.containers.remove(cid)
    if code != 0:
        raise RehearsalError("could not prepare the pod volumes (chown for fsGroup failed)")
    return volumes


def run_tfjob(engine: Engine, tfjob: dict, *, network: str, secret: dict[str, str], secret_name: str,
              scrub: Scrubber, crash_worker: bool = False, timeout: float = JOB_TIMEOUT) -> dict:
    """Run every replica of ``tfjob`` as a container; return the result (``passed``, restarts, logs)."""
    replicas = tfjob_replicas(tfjob)
    what = f"TFJob {tfjob['metadata']['name']}"
    cluster = tfjob_cluster(replicas)
    tf_configs = {r.service: json.dumps({"cluster": cluster, "task": {"type": r.kind.lower(), "index": r.index}})
                  for r in replicas}
    create_replicas(engine, replicas, what=what, network=network, secret=secret, secret_name=secret_name,
                    scrub=scrub, extra_env=lambda r: {ENV_TF_CONFIG: tf_configs[r.service]})
    chief = primary_replica(replicas)
    result: dict[str, Any] = {"replicas": [r.service for r in replicas], "tf_config_cluster": cluster}
    return supervise(engine, replicas, what=what, result=result,
                     backoff=int(tfjob["spec"].get("runPolicy", {}).get("backoffLimit", 6)),
                     done=lambda replica: replica is chief, primary=chief, scrub=scrub,
                     crash_kind="Worker" if crash_worker else None, timeout=timeout)


def create_replicas(engine: Engine, replicas: list[Replica], *, what: str, network: str, secret: dict[str, str],
                    secret_name: str, scrub: Scrubber, extra_env=None) -> None:
    """Create and start one container per replica from its pod template (env, volumes, user, names)."""
    for image in {r.container["image"] for r in replicas}:
        require_image(engine.client, image, what)
    volumes = prepare_volumes(engine, replicas, replicas[0].container["image"])
    for replica in replicas:
        env = resolve_env(replica.container.get("env", []), secret, secret_name, replica.service,
                          fields=replica.fields)
        env.update(extra_env(replica) if extra_env else {})
        security = replica.pod_spec.get("securityContext", {})
        binds = {volumes[(replica.service, m["name"])]: m["mountPath"]
                 for m in replica.container.get("volumeMounts", [])}
        replica.cid = engine.create(
            replica.container["image"], name=replica.service, network=network, alias=replica.service,
            extra_aliases=list(replica.aliases), entrypoint=replica.container.get("command"),
            command=replica.container.get("args"), environment=env, binds=binds,
            user=f"{security.get('runAsUser', IMAGE_DEFAULT_UID)}:0",
            group_add=[str(security["fsGroup"])] if "fsGroup" in security else None)
    for replica in replicas:
        _start(engine, replica, scrub)
    log.info(f"{what}: {len(replicas)} replicas started ({', '.join(r.service for r in replicas)})")


def supervise(engine: Engine, replicas: list[Replica], *, what: str, result: dict, backoff: int, done,
              primary: Replica, scrub: Scrubber, crash_kind: str | None = None,
              timeout: float = JOB_TIMEOUT) -> dict:
    """Watch the replicas as the controller does: restart per restartPolicy within ``backoff``; passed when
    every replica ``done(replica)`` selects has exited 0 (the success policy), failed at a final failure."""
    import docker

    result["commands"] = {r.service: [*(r.container.get("command") or []), *(r.container.get("args") or [])]
                          for r in replicas}
    crashed = crash_kind is None
    total_restarts = 0
    deadline = time.monotonic() + timeout
    while True:
        for replica in replicas:
            state = engine.client.api.inspect_container(replica.cid)["State"]
            if not crashed and replica.kind == crash_kind and state["Running"]:
                engine.client.api.kill(replica.cid)  # the injected crash: SIGKILL, exit 137
                crashed = True
                log.info(f"{replica.service}: injected crash (SIGKILL)")
                continue
            if state["Running"] or state["Status"] == "created":
                continue
            code = state["ExitCode"]
            if code == 0:
                replica.exit_code = 0
                targets = [r for r in replicas if done(r)]
                if all(r.exit_code == 0 for r in targets):
                    result.update(passed=True, restarts={r.service: r.restarts for r in replicas},
                                  succeeded=[r.service for r in targets])
                    if primary in targets:
                        result["chief_exit_code"] = 0
                    return result
                continue  # a worker that finished waits for the others the success policy names
            policy = replica.restart_policy
            retry = policy in ("Always", "OnFailure") or (policy == "ExitCode" and code in RETRYABLE_EXIT_CODES)
            if retry and total_restarts < backoff:
                replica.restarts += 1
                total_restarts += 1
                log.info(f"{replica.service} exited {code}: restarted ({policy}, {total_restarts}/{backoff})")
                try:
                    engine.client.api.start(replica.cid)
                except docker.errors.APIError as err:
                    raise RehearsalError(f"{replica.service} could not restart: {err.explanation}") from None
                continue
            logs = tail_logs(engine, replica.cid, scrub)
            why = "backoffLimit reached" if retry else f"restartPolicy {policy}"
            result.update(passed=False, failed_replica=replica.service, exit_code=code, logs=logs,
                          restarts={r.service: r.restarts for r in replicas},
                          reason=f"{replica.service} exited {code} ({why}): {last_error_line(logs)}")
            return result
        if time.monotonic() > deadline:
            result.update(passed=False, reason=f"{what} not finished after {timeout:.0f} s",
                          logs=tail_logs(engine, primary.cid, scrub))
            return result
        time.sleep(1.0)


def _start(engine: Engine, replica: Replica, scrub: Scrubber) -> None:
    import docker

    try:
        engine.client.api.start(replica.cid)
    except docker.errors.APIError as err:
        raise RehearsalError(f"{replica.service} never started: {scrub(str(err.explanation))}") from None
