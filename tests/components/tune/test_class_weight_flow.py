"""Class weights are a built-in hyperparameter: ``mlengine run --class-weight balanced`` fixes it for
every tuning trial (local and Katib) and for the final model; a regression label refuses it."""

from __future__ import annotations

import pytest

from mlengine import cli as mlengine_cli
from mlengine.components.shared.hyperparameters import HyperParameterError, HyperParameters
from mlengine.components.tune import trial
from mlengine.components.tune.cluster import trial_arguments
from mlengine.components.tune.space_loader import load_search_space
from mlengine.errors import MlengineError
from mlengine.pipelines.cli import _run_params


def test_run_fixes_the_class_weight_for_the_whole_pipeline():
    args = mlengine_cli.build_parser().parse_args(["run", "--class-weight", "balanced"])
    assert _run_params(args)["hyperparameters"] == {"class_weight": "balanced"}
    args = mlengine_cli.build_parser().parse_args(["run", "--hp", "class_weight=balanced"])
    assert _run_params(args)["hyperparameters"] == {"class_weight": "balanced"}
    with pytest.raises(SystemExit):  # argparse's choices: one line and exit 2
        mlengine_cli.build_parser().parse_args(["run", "--class-weight", "heavy"])
    with pytest.raises(HyperParameterError, match="class_weight must be one of none, balanced"):
        HyperParameters.from_dict({"class_weight": "heavy"})


def test_every_katib_trial_gets_the_fixed_class_weight_and_the_trial_program_reads_it():
    space = load_search_space(None)
    args = trial_arguments(space, train_uri="s3://b/train", eval_uri="s3://b/eval", spec_uri="s3://b/spec",
                           output_uri="s3://b/out", epochs=1, fixed_params={"class_weight": "balanced"})
    assert "--class-weight=balanced" in args
    placeholders = [a for a in args if "${trialParameters." in a]  # what Katib substitutes per trial
    parsed = trial.build_parser().parse_args([a for a in args if a not in placeholders] + ["--out", "x"])
    assert parsed.class_weight == "balanced" and placeholders
    assert trial.build_parser().parse_args(["--train-dir", "a", "--eval-dir", "b", "--out", "c"]).class_weight == "none"


def test_a_regression_label_refuses_class_weights_before_training(tmp_path):
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.train.trainer import TrainConfig, train
    from tests.model_fixtures import write_taxi_splits

    splits = write_taxi_splits(tmp_path, rows=300)
    analyze(str(splits["train"]), load_spec(None), 4).save(tmp_path / "transform")
    config = TrainConfig(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                         transform_dir=str(tmp_path / "transform"), model_dir=str(tmp_path / "model"),
                         hidden_units=[4], learning_rate=0.02, batch_size=32, epochs=1, class_weight="balanced")
    with pytest.raises(MlengineError, match=r"class_weight 'balanced' weighs the classes of a class label; "
                                            r"the label 'fare_amount' .* is a regression label"):
        train(config)
    assert not (tmp_path / "model" / "serving").exists()
