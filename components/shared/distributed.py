"""TF_CONFIG: parse it, validate it, decide this process's role, and build its strategy.

The Kubeflow Training Operator injects into every TFJob pod a ``TF_CONFIG`` like

    {"cluster": {"chief": ["job-chief-0.ns.svc:2222"], "ps": [...], "worker": [...]},
     "task": {"type": "worker", "index": 1}}

and the local cluster (components/train/local.py) writes the same shape with 127.0.0.1 ports, so one
training program serves both. Roles:

- no TF_CONFIG, or a cluster of one task        -> ``single``: plain ``trainer.train``;
- a cluster with ``ps`` (parameter servers)       -> ``parameter_server``: the chief is the
  coordinator that runs ``fit``; every ps and worker only serves (``tf.distribute.Server``);
- several workers (and maybe a chief), no ps      -> ``all_reduce``: every task trains under
  ``MultiWorkerMirroredStrategy``; the chief, or worker 0 without one, checkpoints and exports.

The parsing and role logic import nothing heavy; TensorFlow is imported only to build a strategy
or start a server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mlengine.components.shared.userfiles import parse_json_object
from mlengine.constants import ENV_TF_CONFIG
from mlengine.errors import MlengineError

TASK_TYPES = ("chief", "worker", "ps")
STRATEGIES = ("auto", "parameter_server", "all_reduce", "none")


def auto_strategy(ps: int, tasks: int) -> str:
    """What "auto" means for a cluster: parameter servers -> parameter_server, several tasks -> all_reduce."""
    if ps > 0:
        return "parameter_server"
    return "all_reduce" if tasks > 1 else "none"
# the coordinator spreads variables bigger than this over the parameter servers (embeddings of crosses)
MIN_SHARD_BYTES = 256 << 10


class TFConfigError(MlengineError, ValueError):
    """A TF_CONFIG that cannot describe a cluster; the message names the field."""


@dataclass
class Topology:
    """The shape of a training job: the same on local processes and in a TFJob.

    ``chief`` None means automatic: a chief (the coordinator) under parameter_server, none under
    all_reduce (worker 0 leads). ``strategy`` "auto" is parameter_server when ps > 0, all_reduce
    when there is more than one worker, and none (one process) otherwise.
    """

    workers: int = 1
    ps: int = 0
    chief: bool | None = None
    strategy: str = "auto"

    @property
    def resolved_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return auto_strategy(self.ps, self.workers + (1 if self.chief else 0))

    @property
    def has_chief(self) -> bool:
        if self.chief is not None:
            return self.chief
        return self.resolved_strategy == "parameter_server"

    @property
    def is_single_process(self) -> bool:
        return self.resolved_strategy == "none"

    def task_counts(self) -> dict[str, int]:
        """Task type -> count, in TF_CONFIG's lower-case names (chief, worker, ps); zeros left out."""
        counts = {"chief": 1 if self.has_chief else 0, "worker": self.workers, "ps": self.ps}
        return {k: v for k, v in counts.items() if v > 0}

    def validate(self) -> None:
        for name in ("workers", "ps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise MlengineError(f"topology: {name} must be an integer, got {value!r}")
        if self.workers < 1:
            raise MlengineError(f"topology: workers must be at least 1, got {self.workers}")
        if self.ps < 0:
            raise MlengineError(f"topology: ps cannot be negative, got {self.ps}")
        if self.chief is not None and not isinstance(self.chief, bool):
            raise MlengineError(f"topology: chief must be true, false or null (auto), got {self.chief!r}")
        if self.strategy not in STRATEGIES:
            raise MlengineError(f"topology: strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        strategy = self.resolved_strategy
        if strategy == "parameter_server":
            if self.ps < 1:
                raise MlengineError("topology: strategy parameter_server needs at least 1 ps")
            if self.chief is False:
                raise MlengineError("topology: strategy parameter_server needs a chief (it is the coordinator)")
        elif self.ps > 0:
            raise MlengineError(f"topology: strategy {strategy} does not use parameter servers, but ps={self.ps}; "
                                "use strategy parameter_server or ps=0")
        if strategy == "none" and (self.workers > 1 or self.chief):
            raise MlengineError(f"topology: strategy none runs one process, but workers={self.workers}"
                                f"{' plus a chief' if self.chief else ''}; use all_reduce or parameter_server")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "resolved_strategy": self.resolved_strategy, "chief": self.has_chief}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Topology:
        known = {"workers", "ps", "chief", "strategy"}
        return cls(**{k: v for k, v in raw.items() if k in known})



@dataclass(frozen=True)
class Role:
    """What this process does in the cluster."""

    strategy: str  # "none" | "parameter_server" | "all_reduce"
    task_type: str | None = None  # None when single
    task_index: int = 0
    cluster: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_chief(self) -> bool:
        """The task that checkpoints, exports and reports (chief; worker 0 when there is no chief)."""
        if self.strategy == "none":
            return True
        if self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.task_index == 0 and "chief" not in self.cluster

    @property
    def trains(self) -> bool:
        """True when this process runs ``trainer.train`` (False: it only serves the cluster)."""
        if self.strategy == "parameter_server":
            return self.task_type == "chief"
        return True

    @property
    def name(self) -> str:
        return "single" if self.task_type is None else f"{self.task_type}-{self.task_index}"

    @property
    def address(self) -> str | None:
        if self.task_type is None:
            return None
        return self.cluster[self.task_type][self.task_index]

    def count(self, task_type: str) -> int:
        return len(self.cluster.get(task_type, []))


def parse_tf_config(raw: str | None) -> dict | None:
    """Decode and check a TF_CONFIG string; None/empty -> None (no cluster)."""
    if raw is None or not raw.strip():
        return None
    config = parse_json_object(raw, ENV_TF_CONFIG, TFConfigError)
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise TFConfigError(f"{ENV_TF_CONFIG}: 'cluster' must be a non-empty object of task type -> addresses")
    for task_type, addresses in cluster.items():
        if task_type not in TASK_TYPES:
            raise TFConfigError(f"{ENV_TF_CONFIG}: cluster.{task_type}: unsupported task type; "
                                f"expected some of {', '.join(TASK_TYPES)}")
        if not isinstance(addresses, list) or not addresses:
            raise TFConfigError(f"{ENV_TF_CONFIG}: cluster.{task_type}: expected a non-empty list of 'host:port'")
        for i, address in enumerate(addresses):
            if not isinstance(address, str) or not _is_host_port(address):
                raise TFConfigError(f"{ENV_TF_CONFIG}: cluster.{task_type}[{i}]: expected 'host:port', got {address!r}")
    task = config.get("task")
    if not isinstance(task, dict):
        raise TFConfigError(f"{ENV_TF_CONFIG}: 'task' must be an object with 'type' and 'index'")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise TFConfigError(f"{ENV_TF_CONFIG}: task.type {task_type!r} is not a task type of the cluster "
                            f"({', '.join(cluster)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise TFConfigError(f"{ENV_TF_CONFIG}: task.index {index!r} is out of range for "
                            f"{len(cluster[task_type])} {task_type} task(s)")
    if len(cluster.get("chief", [])) > 1:
        raise TFConfigError(f"{ENV_TF_CONFIG}: cluster.chief: at most one chief, got {len(cluster['chief'])}")
    everything = [a for addresses in cluster.values() for a in addresses]
    if len(set(everything)) != len(everything):
        raise TFConfigError(f"{ENV_TF_CONFIG}: cluster: the same address appears twice")
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def _is_host_port(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def resolve_role(tf_config: dict | None, strategy: str = "auto") -> Role:
    """The role of this process from a parsed TF_CONFIG and the requested strategy.

    ``strategy`` "auto" follows the cluster (ps present -> parameter_server, several tasks ->
    all_reduce); an explicit strategy must agree with the cluster.
    """
    if strategy not in STRATEGIES:
        raise MlengineError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if tf_config is None:
        if strategy in ("parameter_server", "all_reduce"):
            raise TFConfigError(f"strategy {strategy} needs a cluster, but {ENV_TF_CONFIG} is not set")
        return Role("none")
    cluster = {k: list(v) for k, v in tf_config["cluster"].items()}
    task_type, index = tf_config["task"]["type"], tf_config["task"]["index"]
    tasks = sum(len(v) for v in cluster.values())
    auto = auto_strategy(len(cluster.get("ps", [])), tasks)
    if auto == "parameter_server":
        if strategy in ("all_reduce", "none"):
            raise TFConfigError(f"strategy {strategy} cannot use parameter servers, but {ENV_TF_CONFIG} lists "
                                f"{len(cluster['ps'])} ps task(s)")
        if not cluster.get("chief"):
            raise TFConfigError(f"{ENV_TF_CONFIG}: parameter_server training needs a chief (the coordinator)")
        if not cluster.get("worker"):
            raise TFConfigError(f"{ENV_TF_CONFIG}: parameter_server training needs at least one worker")
        return Role("parameter_server", task_type, index, cluster)
    if strategy == "parameter_server":
        raise TFConfigError(f"strategy parameter_server needs ps tasks, but {ENV_TF_CONFIG} lists none")
    if auto == "none":
        if strategy == "all_reduce":  # one task: MultiWorkerMirroredStrategy would be a mirror of one
            return Role("all_reduce", task_type, index, cluster)
        return Role("none", task_type, index, cluster)
    if strategy == "none":
        raise TFConfigError(f"strategy none runs one process, but {ENV_TF_CONFIG} lists {tasks} tasks")
    return Role("all_reduce", task_type, index, cluster)


def role_from_env(strategy: str = "auto", environ: dict[str, str] | None = None) -> Role:
    """The role from TF_CONFIG; in a TrainJob's pod (no TF_CONFIG: Trainer v2 writes none) it is built from
    JobSet's labels first and put into the environment, where TensorFlow's cluster resolver reads it."""
    environ = os.environ if environ is None else environ
    if not environ.get(ENV_TF_CONFIG):
        from mlengine.components.shared.trainjob import tf_config_from_jobset_env

        built = tf_config_from_jobset_env(environ)
        if built is not None:
            environ[ENV_TF_CONFIG] = json.dumps(built)
    return resolve_role(parse_tf_config(environ.get(ENV_TF_CONFIG)), strategy)


def cluster_addresses(counts: dict[str, int], address: Callable[[str, int], str]) -> dict[str, list[str]]:
    """TF_CONFIG's ``cluster`` for task counts (chief, ps, worker), each task's ``host:port`` from ``address``.

    The one builder of both cluster paths: a TFJob's (the Training Operator's Service names) and a
    TrainJob's (JobSet's stable pod host names); they differ only in ``address``.
    """
    return {task_type: [address(task_type, index) for index in range(counts[task_type])]
            for task_type in ("chief", "ps", "worker") if counts.get(task_type)}


def tf_config(cluster: dict[str, list[str]], task_type: str, index: int) -> dict:
    """The TF_CONFIG object of one task, shaped exactly like the Training Operator's."""
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def tf_config_json(cluster: dict[str, list[str]], task_type: str, index: int) -> str:
    """The TF_CONFIG of one task, shaped exactly like the Training Operator's."""
    return json.dumps(tf_config(cluster, task_type, index))


# --- TensorFlow side (imports inside) ---------------------------------------------------------
def _import_tf():
    from mlengine.components.shared.tf import import_tf

    return import_tf()


def build_strategy(role: Role) -> Any:
    """The ``tf.distribute`` strategy of a training role (None for a single process).

    Under parameter_server the chief gets a ``ParameterServerStrategy`` whose variables larger
    than MIN_SHARD_BYTES are split over the ps tasks; under all_reduce every task gets a
    ``MultiWorkerMirroredStrategy``. Both read the cluster from TF_CONFIG through
    ``TFConfigClusterResolver`` (the environment must carry the same TF_CONFIG as ``role``).
    """
    if role.strategy == "none":
        return None
    tf, _ = _import_tf()
    _check_env_matches(role)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if role.strategy == "parameter_server":
        if role.task_type != "chief":
            raise MlengineError(f"{role.name}: only the chief builds a ParameterServerStrategy; ps and workers serve")
        partitioner = None
        if role.count("ps") > 1:
            partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
                min_shard_bytes=MIN_SHARD_BYTES, max_shards=role.count("ps"))
        return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)


def start_server(role: Role):
    """Start the ``tf.distribute.Server`` of a ps or worker task (parameter_server); returns it started."""
    tf, _ = _import_tf()
    _check_env_matches(role)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc", start=True)


def _check_env_matches(role: Role) -> None:
    current = parse_tf_config(os.environ.get(ENV_TF_CONFIG))
    if current is None or current["task"] != {"type": role.task_type, "index": role.task_index}:
        raise MlengineError(f"{ENV_TF_CONFIG} in the environment does not describe {role.name}")
