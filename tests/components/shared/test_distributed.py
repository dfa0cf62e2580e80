"""TF_CONFIG parsing and role resolution (no TensorFlow), as the operator and the local supervisor give it."""

from __future__ import annotations

import json

import pytest

from mlengine.components.shared import distributed
from mlengine.components.shared.distributed import TFConfigError, Topology, parse_tf_config, resolve_role
from mlengine.errors import MlengineError

PS_CLUSTER = {"chief": ["job-chief-0.ns.svc:2222"], "ps": ["job-ps-0.ns.svc:2222"],
              "worker": ["job-worker-0.ns.svc:2222", "job-worker-1.ns.svc:2222"]}


def tf_config(cluster: dict, task_type: str, index: int) -> dict:
    return parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))


def test_no_tf_config_is_a_single_process():
    role = resolve_role(parse_tf_config(None))
    assert (role.strategy, role.trains, role.is_chief, role.name) == ("none", True, True, "single")
    assert parse_tf_config("  ") is None


def test_operator_single_worker_is_a_single_process():
    role = resolve_role(tf_config({"worker": ["job-worker-0.ns.svc:2222"]}, "worker", 0))
    assert role.strategy == "none" and role.is_chief and role.trains


@pytest.mark.parametrize("task_type, index, trains, is_chief", [
    ("chief", 0, True, True), ("worker", 0, False, False), ("worker", 1, False, False), ("ps", 0, False, False),
])
def test_parameter_server_roles(task_type, index, trains, is_chief):
    role = resolve_role(tf_config(PS_CLUSTER, task_type, index))
    assert role.strategy == "parameter_server"
    assert (role.trains, role.is_chief) == (trains, is_chief)
    assert role.address == PS_CLUSTER[task_type][index]


def test_all_reduce_roles_worker_zero_leads_without_a_chief():
    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    roles = [resolve_role(tf_config(cluster, "worker", i)) for i in range(3)]
    assert [r.strategy for r in roles] == ["all_reduce"] * 3
    assert [r.is_chief for r in roles] == [True, False, False]
    assert all(r.trains for r in roles)
    with_chief = {"chief": ["c:1"], "worker": ["a:1", "b:2"]}
    assert resolve_role(tf_config(with_chief, "chief", 0)).is_chief
    assert not resolve_role(tf_config(with_chief, "worker", 0)).is_chief


@pytest.mark.parametrize("raw, message", [
    ("{not json", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "'cluster' must be"),
    ('{"cluster": {"evaluator": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', "cluster.evaluator"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', r"cluster.worker\[0\]"),
    ('{"cluster": {"worker": ["a:1"]}}', "'task' must be"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task.type 'ps'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "task.index 3"),
    ('{"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', "at most one chief"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "appears twice"),
])
def test_bad_tf_config_names_the_field(raw, message):
    with pytest.raises(TFConfigError, match=message):
        parse_tf_config(raw)


@pytest.mark.parametrize("cluster, task_type, strategy, message", [
    (PS_CLUSTER, "chief", "all_reduce", "cannot use parameter servers"),
    ({"ps": ["p:1"], "worker": ["w:1"]}, "worker", "auto", "needs a chief"),
    ({"ps": ["p:1"], "chief": ["c:1"]}, "chief", "auto", "at least one worker"),
    ({"worker": ["a:1", "b:2"]}, "worker", "parameter_server", "needs ps tasks"),
    ({"worker": ["a:1", "b:2"]}, "worker", "none", "runs one process"),
])
def test_strategy_must_agree_with_the_cluster(cluster, task_type, strategy, message):
    with pytest.raises(TFConfigError, match=message):
        resolve_role(tf_config(cluster, task_type, 0), strategy)
    with pytest.raises(MlengineError, match="strategy: expected one of"):
        resolve_role(None, "ring")


def test_supervisor_tf_config_is_what_the_operator_injects():
    """local_cluster builds each task's TF_CONFIG with the operator's shape: every task parses and resolves."""
    counts = Topology(workers=2, ps=1).task_counts()
    cluster = {t: [f"127.0.0.1:{2000 + 10 * i + n}" for n in range(c)] for i, (t, c) in enumerate(counts.items())}
    for task_type, addresses in cluster.items():
        for index in range(len(addresses)):
            raw = distributed.tf_config_json(cluster, task_type, index)
            role = resolve_role(parse_tf_config(raw))
            assert role.strategy == "parameter_server" and role.name == f"{task_type}-{index}"
