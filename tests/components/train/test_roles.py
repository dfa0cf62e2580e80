"""TF_CONFIG parsing and role resolution (no TensorFlow), the task program's config, the train CLI."""

from __future__ import annotations

import argparse
import json

import pytest

from mlengine.components.shared import distributed
from mlengine.components.shared.distributed import TFConfigError, Topology, parse_tf_config, resolve_role
from mlengine.components.shared.processes import EXIT_USER_ERROR
from mlengine.components.train import task
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


def test_task_config_from_file_and_flags(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({
        "train_dir": "/d/train", "eval_dir": "/d/eval", "transform_dir": "/d/tf", "model_dir": "/d/model",
        "hidden_units": [8], "learning_rate": 0.1, "batch_size": 32, "epochs": 1, "strategy": "all_reduce"}))
    args = task.build_parser().parse_args(["--config", str(config_file), "--epochs", "3", "--hidden-units", "16,4"])
    base, strategy = task._load_base(args.config)
    config = task.config_from_args(args, base)
    assert strategy == "all_reduce"
    assert config.epochs == 3 and config.hidden_units == [16, 4] and config.batch_size == 32
    with pytest.raises(MlengineError, match="missing"):
        task.config_from_args(task.build_parser().parse_args(["--epochs", "2"]))
    with pytest.raises(MlengineError, match="config file not found"):
        task._load_base(str(tmp_path / "nope.json"))


def test_task_prints_katib_metric_lines(capsys):
    task.print_metrics({"eval_rmse": 1.02345678, "examples_per_second": 12345.6, "history": {}})
    assert capsys.readouterr().out.splitlines() == ["rmse=1.02346", "eval_rmse=1.02346", "examples_per_second=12345.6"]


@pytest.mark.parametrize("tf_config, args, message", [
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 9}}', [], "task.index 9"),
    ("", ["--config", "/nonexistent/config.json"], "config file not found"),
])
def test_task_program_exits_2_with_one_line_for_a_user_error(tf_config, args, message):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CONFIG": tf_config}
    done = subprocess.run([sys.executable, "-m", "mlengine.components.train.task", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_USER_ERROR
    assert message in done.stderr and "Traceback" not in done.stderr


def test_train_cli_parses_topology_and_hparams():
    from mlengine.components.train import cli

    parser = argparse.ArgumentParser()
    cli.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--train-dir", "t", "--eval-dir", "e", "--transform-dir", "x",
                              "--model-dir", "m", "--workers", "2", "--ps", "1", "--epochs", "1"])
    assert (args.workers, args.ps, args.strategy, args.chief, args.epochs) == (2, 1, "auto", "auto", 1)
    assert args.handler.__name__ == "_train"
