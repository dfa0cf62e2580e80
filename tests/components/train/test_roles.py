"""The task program's config, its metric lines and exit codes, the train CLI (TF_CONFIG parsing:
tests/components/shared/test_distributed.py)."""

from __future__ import annotations

import argparse
import json

import pytest

from mlengine.components.shared.processes import EXIT_USER_ERROR
from mlengine.components.train import task
from mlengine.errors import MlengineError


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
