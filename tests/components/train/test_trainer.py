"""The trainer end to end: history, checkpoints and resuming, another data set, the report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from mlengine.components.evaluate.executor import score as evaluate
from mlengine.components.shared import analyze as logic
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.components.train import report, trainer
from mlengine.components.train.trainer import TrainConfig, load_history, train
from mlengine.errors import MlengineError
from tests.model_fixtures import house_columns, house_spec, write_splits, write_taxi_splits

TRAINER_LOGGER = trainer.__name__


@pytest.fixture(scope="module")
def taxi(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trainer")
    splits = write_taxi_splits(workdir, rows=2000)
    state = logic.analyze(str(splits["train"]), load_spec(None), 4)
    state.save(workdir / "transform")
    return workdir, splits


def _config(workdir, splits, model_dir, **overrides) -> TrainConfig:
    values = {"train_dir": str(splits["train"]), "eval_dir": str(splits["eval"]),
              "transform_dir": str(workdir / "transform"), "model_dir": str(model_dir),
              "hidden_units": [8], "learning_rate": 0.02, "batch_size": 64, "epochs": 1, **overrides}
    return TrainConfig(**values)


def test_config_json_round_trip_and_validation(taxi):
    workdir, splits = taxi
    config = _config(workdir, splits, workdir / "m", hidden_units="16,8", steps_per_epoch=5)
    again = TrainConfig.from_json(config.to_json())
    assert again == config and again.hidden_units == [16, 8]
    with pytest.raises(MlengineError, match="unknown field 'epoch'"):
        TrainConfig.from_json(json.dumps({**json.loads(config.to_json()), "epoch": 3}))
    with pytest.raises(MlengineError, match="epochs must be a positive integer"):
        _config(workdir, splits, workdir / "m", epochs=0)


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == TRAINER_LOGGER]


def test_training_resumes_from_checkpoints(taxi, caplog):
    workdir, splits = taxi
    model_dir = workdir / "resume"
    caplog.set_level(logging.INFO, logger=TRAINER_LOGGER)
    reported: list[tuple[int, float]] = []
    first = train(_config(workdir, splits, model_dir, epochs=1), on_epoch=lambda e, v: reported.append((e, v)))
    lines = _lines(caplog)
    assert first["history"]["epoch"] == [1]
    assert (model_dir / "serving" / "saved_model.pb").is_file()
    assert any((model_dir / "checkpoints").rglob("*.index"))
    assert any(line.startswith("train: epoch 1/1 loss=") and "ex/s" in line for line in lines)
    # the data channel a tuning trial reports from: every epoch's eval objective at full precision
    assert reported == [(1, first["history"]["val_rmse"][0])]

    caplog.clear()
    second = train(_config(workdir, splits, model_dir, epochs=3))
    lines = _lines(caplog)
    # only epochs 2 and 3 ran; epoch 1 came from the checkpoint and the saved history
    epoch_lines = [line for line in lines if line.startswith("train: epoch")]
    assert [line.split()[2] for line in epoch_lines] == ["2/3", "3/3"]
    history = load_history(model_dir)
    assert history == second["history"]
    assert history["epoch"] == [1, 2, 3]
    assert history["loss"][0] == first["history"]["loss"][0]
    assert all(v is not None and v > 0 for v in history["examples_per_second"])
    assert second["eval_rmse"] == history["val_rmse"][-1]
    # the training loss keeps falling across the restart instead of starting over
    assert history["loss"][2] < history["loss"][0]

    with pytest.raises(MlengineError, match="checkpoints of a different model"):
        train(_config(workdir, splits, model_dir, epochs=4, hidden_units=[4, 4]))


def test_a_strategy_trains_through_dataset_creators(taxi, caplog):
    """The distributed code path (DatasetCreator inputs, fixed steps) on a one-process strategy."""
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    workdir, splits = taxi
    caplog.set_level(logging.INFO, logger=TRAINER_LOGGER)
    result = train(_config(workdir, splits, workdir / "mirrored", steps_per_epoch=10), tf.distribute.MirroredStrategy())
    assert result["history"]["epoch"] == [1] and np.isfinite(result["eval_rmse"])
    assert any("epoch 1/1" in line for line in _lines(caplog))
    trip = {"pickup_longitude": -73.98, "pickup_latitude": 40.75, "dropoff_longitude": -73.95,
            "dropoff_latitude": 40.78, "passenger_count": 1, "dayofweek": 3, "hourofday": 9}
    prediction = load_model_dir(str(workdir / "mirrored"))({k: np.asarray([v]) for k, v in trip.items()})
    assert prediction.shape == (1,) and np.isfinite(prediction[0])


def test_another_dataset_trains_end_to_end_without_code_change(tmp_path):
    spec = house_spec()
    splits = write_splits(house_columns(2500), spec, tmp_path / "data")
    state = logic.analyze(str(splits["train"]), spec, 5)
    state.save(tmp_path / "transform")
    config = TrainConfig(str(splits["train"]), str(splits["eval"]), str(tmp_path / "transform"),
                         str(tmp_path / "model"), [16], 0.05, 32, 2)
    result = train(config)
    assert result["eval_rmse"] is not None and np.isfinite(result["eval_rmse"])
    predict = load_model_dir(str(tmp_path / "model"))
    raw = {"sqft": [1500.0, 1500.0], "rooms": [3, 3], "city": ["north haverbrook", "capital city"],
           "condition": [5, 5], "style": ["modern", "modern"]}
    predictions = predict(raw)
    assert predictions.shape == (2,) and np.all(np.isfinite(predictions))
    result = evaluate(str(tmp_path / "model"), str(splits["test"]))
    # label std is about 100 (prices in thousands); the model must have learned the size effect
    assert result["rmse"] < 0.5 * float(np.std(house_columns(2500)["price"]))


def test_loss_curves_html():
    history = {"epoch": [1, 2], "loss": [3.0, 1.5], "val_loss": [2.0, 1.4], "rmse": [1.7, 1.2],
               "val_rmse": [1.4, 1.18], "examples_per_second": [90000.0, 120000.0], "seconds": [1.0, 0.8]}
    page = report.loss_curves_html(history)
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert "<td>120,000</td>" in page and "<td>1.18</td>" in page
    assert "No epoch" in report.loss_curves_html({})


def test_early_stopping_restores_the_best_epoch_and_the_rate_halves(taxi, tmp_path):
    """epochs is a maximum: a stalled eval RMSE stops training; the exported weights are the best epoch's."""
    workdir, splits = taxi
    config = _config(workdir, splits, tmp_path / "model", epochs=40, patience=2, lr_patience=1, learning_rate=0.05)
    result = train(config)
    history = result["history"]
    val = history["val_rmse"]
    assert result["epochs_run"] == len(val) < 40  # stopped before the maximum
    best = int(np.argmin(val))
    assert result["best_epoch"] == history["epoch"][best] and result["eval_rmse"] == pytest.approx(val[best])
    assert result["epochs_run"] - result["best_epoch"] == 2  # the patience
    # the exported model is the best epoch's, not the last one's: its RMSE on the eval split is the best
    exported = evaluate(str(tmp_path / "model"), str(splits["eval"]))
    assert exported["rmse"] == pytest.approx(val[best], rel=1e-3)
    assert exported["rmse"] < val[-1]
    rates = history["lr"]
    assert rates[0] == pytest.approx(0.05) and min(rates) < 0.05  # reduced on a plateau
    assert min(rates) >= 0.05 * 0.01


def test_label_is_standardised_inside_the_model_for_a_large_unit(taxi, tmp_path):
    """Fares times 1000: the same small network still fits (the loss is on the z-scored label) and predicts in the
    original unit."""
    import pyarrow.parquet as pq

    from mlengine.synthetic import generate_columns

    spec = load_spec(None)
    columns = generate_columns(2000, seed=4)
    columns["fare_amount"] = columns["fare_amount"] * 1000.0
    big = write_splits(columns, spec, tmp_path / "data")
    logic.analyze(str(big["train"]), spec, 4).save(tmp_path / "transform")
    config = TrainConfig(str(big["train"]), str(big["eval"]), str(tmp_path / "transform"), str(tmp_path / "model"),
                         [8], 0.02, 64, 6)
    result = train(config)
    fares = pq.read_table(big["eval"]).column("fare_amount").to_numpy()
    assert result["eval_rmse"] < 0.5 * float(np.std(fares))  # learned, in the label's unit
    predictions = load_model_dir(str(tmp_path / "model"))(
        {c.name: pq.read_table(big["eval"]).column(c.name).to_numpy() for c in spec.columns})
    assert abs(float(np.mean(predictions)) - float(np.mean(fares))) < 0.2 * float(np.std(fares))


def test_a_tuned_model_worse_than_the_default_trial_is_replaced_by_the_default(taxi, tmp_path):
    """The final (tuned) model is compared with the default configuration's trial; the better one is kept."""
    import json as json_lib

    from mlengine.components.train.executor import default_trial_of, guard_against_default

    workdir, splits = taxi
    tuned = _config(workdir, splits, tmp_path / "model", learning_rate=1e-5, epochs=1)  # barely trained
    tuned_result = train(tuned)
    study = {"default_trial": 0, "default_rmse": 1.0, "trials": [],
             "default_params": {"nbuckets": 4, "hidden_units": "8", "learning_rate": 0.02, "batch_size": 64}}
    (tmp_path / "trials.json").write_text(json_lib.dumps(study))
    default = default_trial_of(tmp_path / "trials.json")
    assert default == {"params": study["default_params"], "rmse": 1.0, "number": 0}
    chosen = {"nbuckets": 4, "hidden_units": "8", "learning_rate": 1e-5, "batch_size": 64}
    guard = guard_against_default(tuned, tuned_result, chosen, default)
    assert guard["kept"] == "default" and guard["default_final_rmse"] < guard["final_rmse"]
    assert "the default model is kept" in guard["reason"]
    kept = evaluate(str(tmp_path / "model"), str(splits["eval"]))
    assert kept["rmse"] == pytest.approx(guard["default_final_rmse"], rel=1e-3)
    assert not (tmp_path / "model-default").exists()

    # a tuned model at least as good as the default trial is kept without retraining
    good = guard_against_default(tuned, {"eval_rmse": 0.5}, chosen, default)
    assert good["kept"] == "tuned" and "not worse than the default" in good["reason"]
    assert guard_against_default(tuned, tuned_result, study["default_params"], default)["kept"] == "default"
    assert guard_against_default(tuned, tuned_result, chosen, None)["kept"] == "trained"
