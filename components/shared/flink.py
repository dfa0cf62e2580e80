"""Render (not apply) what runs the Beam path on Flink in Kubernetes, with the Flink Kubernetes operator.

Three resources, as a portable Beam pipeline on Flink needs them:

- a ``FlinkDeployment`` (``flink.apache.org/v1beta1``) in session mode: a JobManager and
  TaskManagers; each TaskManager pod carries a Beam Python SDK worker pool as a sidecar
  (``worker_pool_main`` on port 50000, our pipeline image, so the workers run the same code) and
  mounts the shared volume the splits are written to;
- the Beam Flink job server (Deployment + Service): it turns the portable pipeline into a Flink
  job and submits it to the session cluster's REST endpoint;
- nothing else: the pipeline is launched by ``mlengine ingest --runner beam`` (or the components
  with ``runner=beam``) from a pod that mounts the same volume, with the options
  :func:`beam_options_for_flink` returns (``PortableRunner``, ``EXTERNAL`` environment).

Validated in the tests against the operator's CRD (tests/schemas/, release-1.15.0).
"""

from __future__ import annotations

from typing import Any

from mlengine.constants import K8S_NAMESPACE, PART_OF_LABEL, image_for

FLINK_VERSION = "1.19"  # a Flink release both the operator (v1_19) and Beam's Flink runner support
FLINK_IMAGE = f"flink:{FLINK_VERSION}"
BEAM_VERSION = "2.77.0"  # the SDK the pipeline image carries ([beam] extra); the job server must match it
BEAM_JOB_SERVER_IMAGE = f"apache/beam_flink{FLINK_VERSION}_job_server:{BEAM_VERSION}"
BEAM_WORKER_POOL_PORT = 50000
JOB_SERVER_PORTS = {"job": 8099, "artifact": 8098, "expansion": 8097}
FLINK_REST_PORT = 8081
SHARED_MOUNT = "/mnt/shared"  # where the splits live for the launcher and every worker
FLINK_SERVICE_ACCOUNT = "flink"  # the account the operator's Helm chart creates in watched namespaces


def beam_options_for_flink(name: str = "mlengine-beam", namespace: str = K8S_NAMESPACE) -> list[str]:
    """The Beam pipeline options that send the pipeline to the rendered job server."""
    host = f"{name}-job-server.{namespace}.svc"
    return [
        "--runner=PortableRunner",
        f"--job_endpoint={host}:{JOB_SERVER_PORTS['job']}",
        f"--artifact_endpoint={host}:{JOB_SERVER_PORTS['artifact']}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{BEAM_WORKER_POOL_PORT}",
    ]


def render_flink_manifests(*, name: str = "mlengine-beam", namespace: str = K8S_NAMESPACE, task_managers: int = 2,
                           task_slots: int = 2, shared_claim: str = "mlengine-shared",
                           image: str | None = None) -> dict[str, dict[str, Any]]:
    """{file name: manifest}: the FlinkDeployment and the Beam job server (a List of Deployment + Service)."""
    if task_managers < 1 or task_slots < 1:
        raise ValueError(f"task_managers and task_slots must be at least 1, got {task_managers}, {task_slots}")
    image = image or image_for("pipeline")
    # fresh dicts per use: shared objects would come out of yaml.safe_dump as anchors and aliases
    def volume():
        return {"name": "shared", "persistentVolumeClaim": {"claimName": shared_claim}}

    def mount():
        return {"name": "shared", "mountPath": SHARED_MOUNT}

    flink = {
        "apiVersion": "flink.apache.org/v1beta1",
        "kind": "FlinkDeployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(PART_OF_LABEL)},
        "spec": {
            "image": FLINK_IMAGE,
            "flinkVersion": "v" + FLINK_VERSION.replace(".", "_"),
            "serviceAccount": FLINK_SERVICE_ACCOUNT,
            "mode": "native",
            "flinkConfiguration": {"taskmanager.numberOfTaskSlots": str(task_slots)},
            "jobManager": {"replicas": 1, "resource": {"cpu": 1.0, "memory": "2048m"}},
            "taskManager": {
                "replicas": task_managers,
                "resource": {"cpu": float(task_slots), "memory": "4096m"},
                "podTemplate": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "spec": {
                        "containers": [
                            # the operator merges this into its Flink container (by this name)
                            {"name": "flink-main-container", "volumeMounts": [mount()]},
                            {
                                "name": "beam-worker-pool",
                                "image": image,
                                "command": ["python", "-m", "apache_beam.runners.worker.worker_pool_main",
                                            f"--service_port={BEAM_WORKER_POOL_PORT}"],
                                "ports": [{"name": "beam-workers", "containerPort": BEAM_WORKER_POOL_PORT}],
                                "volumeMounts": [mount()],
                                "resources": {"requests": {"cpu": "500m", "memory": "2Gi"},
                                              "limits": {"memory": "4Gi"}},
                            },
                        ],
                        "volumes": [volume()],
                    },
                },
            },
        },
    }
    def labels():
        return {**PART_OF_LABEL, "app.kubernetes.io/name": f"{name}-job-server"}

    job_server = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"{name}-job-server", "namespace": namespace, "labels": labels()},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels()},
                    "template": {
                        "metadata": {"labels": labels()},
                        "spec": {"containers": [{
                            "name": "job-server",
                            "image": BEAM_JOB_SERVER_IMAGE,
                            "args": [f"--flink-master={name}-rest:{FLINK_REST_PORT}", "--job-host=0.0.0.0",
                                     f"--job-port={JOB_SERVER_PORTS['job']}",
                                     f"--artifact-port={JOB_SERVER_PORTS['artifact']}",
                                     f"--expansion-port={JOB_SERVER_PORTS['expansion']}",
                                     f"--artifacts-dir={SHARED_MOUNT}/beam-artifacts"],
                            "ports": [{"name": key, "containerPort": port} for key, port in JOB_SERVER_PORTS.items()],
                            "volumeMounts": [mount()],
                        }], "volumes": [volume()]},
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{name}-job-server", "namespace": namespace, "labels": labels()},
                "spec": {"selector": labels(),
                         "ports": [{"name": key, "port": port, "targetPort": port}
                                   for key, port in JOB_SERVER_PORTS.items()]},
            },
        ],
    }
    return {"flink-deployment.yaml": flink, "beam-job-server.yaml": job_server}
