"""Classification training: label mapping, the head and its loss, end-to-end binary and multiclass models,
column names that are not identifiers, class weighting."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlengine.components.shared import analyze as logic
from mlengine.components.shared.featurespec import FeatureSpecError, spec_from_dict
from mlengine.components.shared.labels import class_counts, class_indices, objective_metric
from mlengine.components.shared.parquet import list_parquet_files
from mlengine.components.shared.savedmodel import load_model_dir, signature_input_names
from mlengine.components.shared.tf import import_tf
from mlengine.components.train import data, model
from mlengine.components.train.trainer import TrainConfig, train
from mlengine.constants import OUTPUT_CLASS, OUTPUT_PROBABILITIES
from mlengine.errors import DataError, MlengineError
from tests.classifier_fixtures import BINARY_SPEC, IRIS_LIKE_SPEC, classification_columns, train_tiny_classifier
from tests.model_fixtures import write_splits


def _columns_of(split_dir, spec) -> dict[str, np.ndarray]:
    table = pq.read_table(split_dir).to_pydict()
    return {name: np.array(values, dtype=object if isinstance(values[0], str) else None)
            for name, values in table.items() if name in [*spec.column_names, spec.label.name]}


# --- label mapping ------------------------------------------------------------------------------
def test_class_indices_follow_the_vocabulary_order():
    flowers = spec_from_dict(IRIS_LIKE_SPEC)
    values = np.array(["virginica", "setosa", "virginica", "versicolor"], dtype=object)
    assert class_indices(flowers, values).tolist() == [2, 0, 2, 1]
    assert class_counts(flowers, values) == [1, 1, 2]
    assert class_indices(flowers, []).dtype == np.int64
    with pytest.raises(DataError, match="label 'species': value 'rose' is not one of the classes"):
        class_indices(flowers, np.array(["setosa", "rose"], dtype=object), source="x.parquet")
    reversed_ints = spec_from_dict({**BINARY_SPEC, "label": {"name": "sold", "type": "int", "vocabulary": [1, 0]}})
    assert class_indices(reversed_ints, np.array([0, 1, 1])).tolist() == [1, 0, 0]
    with pytest.raises(DataError, match="value 7"):
        class_indices(reversed_ints, np.array([0, 7]))
    assert objective_metric(flowers) == "log_loss" and objective_metric(spec_from_dict(_regression_spec())) == "rmse"


def _regression_spec() -> dict:
    return {**IRIS_LIKE_SPEC, "label": {"name": "y", "type": "float"}}


def test_the_input_pipeline_gives_class_indices(tmp_path):
    spec = spec_from_dict(IRIS_LIKE_SPEC)
    splits = write_splits(classification_columns(IRIS_LIKE_SPEC, 100), spec, tmp_path / "data")
    raw = _columns_of(splits["train"], spec)
    expected = class_indices(spec, raw["species"])
    files = list_parquet_files(str(splits["train"]))
    batches = list(data.make_dataset(files, spec, 16, shuffle=False, repeat=False))
    labels = np.concatenate([target.numpy() for _, target in batches])
    assert labels.dtype == np.int64 and labels.tolist() == expected.tolist()
    graph = data.prepare_graph_input(files, spec, tmp_path / "graph")
    graph_labels = np.concatenate([t.numpy() for _, t in data.make_dataset(graph, spec, 16, shuffle=False,
                                                                           repeat=False)])
    assert graph_labels.dtype == np.int64 and sorted(graph_labels.tolist()) == sorted(expected.tolist())


# --- the head -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flower_state(tmp_path_factory):
    spec = spec_from_dict(IRIS_LIKE_SPEC)
    splits = write_splits(classification_columns(IRIS_LIKE_SPEC, 400), spec, tmp_path_factory.mktemp("head"))
    return logic.analyze(str(splits["train"]), spec, 4)


def test_the_state_holds_class_counts_and_no_label_scaling(flower_state):
    state = flower_state
    assert len(state.class_counts) == 3 and sum(state.class_counts) == state.rows
    assert math.isclose(sum(state.class_prior), 1.0) and state.benchmark["class_prior"] == state.class_prior
    assert state.label_transform == "none"
    tf, _ = import_tf()
    with pytest.raises(MlengineError, match="class label"):
        state.encode_label(tf.constant([1.0]), tf)


def test_the_output_bias_starts_at_the_log_prior_and_the_loss_is_the_cross_entropy(flower_state):
    tf, _ = import_tf()
    state = flower_state
    keras_model = model.build_model(state, [4], 0.01)
    bias = keras_model.get_layer("deep_out").bias.numpy()
    np.testing.assert_allclose(bias, np.log(state.class_prior), rtol=1e-5)
    assert keras_model.output_shape == (None, 3)
    head = model.classification_head(state)
    logits = tf.constant([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = tf.constant([0, 2], tf.int64)
    expected = -np.mean([np.log(np.exp(2) / (np.exp(2) + 1 + np.exp(-1))), np.log(1 / 3)])
    assert math.isclose(float(head.loss(labels, logits)), expected, rel_tol=1e-5)
    # balanced weights: rows / (classes * class rows); the weighted loss weighs each row by its class
    weights = model.class_weights(state, "balanced")
    assert math.isclose(sum(w * c for w, c in zip(weights, state.class_counts, strict=True)), state.rows)
    balanced = model.classification_head(state, "balanced")
    ce = [-math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1))), math.log(3)]
    assert math.isclose(float(balanced.loss(labels, logits)), (weights[0] * ce[0] + weights[2] * ce[1]) / 2,
                        rel_tol=1e-5)


def test_a_binary_head_is_one_logit_at_the_log_odds():
    state = _binary_state(counts=[30, 10])
    assert model.log_prior_bias(state) == pytest.approx([math.log(10 / 30)])
    assert model.class_weights(state, "balanced") == pytest.approx([40 / 60, 40 / 20])
    tf, _ = import_tf()
    head = model.classification_head(state)
    logit = tf.constant([[0.5], [-1.0]])
    labels = tf.constant([1, 0], tf.int64)
    expected = np.mean([math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(-1.0))])
    assert head.units == 1 and math.isclose(float(head.loss(labels, logit)), expected, rel_tol=1e-5)
    probabilities = model.class_probabilities(state, logit, tf).numpy()
    np.testing.assert_allclose(probabilities[:, 1], 1 / (1 + np.exp([-0.5, 1.0])), rtol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def _binary_state(counts):
    from mlengine.components.shared.transform_state import TransformState

    spec = spec_from_dict(BINARY_SPEC)
    return TransformState(spec=spec, nbuckets=4, rows=sum(counts), numeric={"petal_length": {"mean": 5, "std": 3}},
                          boundaries={}, vocabularies={"colour": ["red", "green", "blue"]}, benchmark={},
                          label={"class_counts": counts, "transform": "none"})


# --- end to end -----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw_spec", [BINARY_SPEC, IRIS_LIKE_SPEC], ids=["binary-int", "multiclass-string"])
def test_a_classifier_trains_beats_the_majority_and_serves_classes(tmp_path, raw_spec):
    tf, _ = import_tf()
    spec = spec_from_dict(raw_spec)
    model_dir, result, splits = train_tiny_classifier(tmp_path, raw_spec, rows=600, epochs=3)
    history = result["history"]
    assert result["eval_metric"] == "log_loss" and "eval_rmse" not in result
    assert {"val_log_loss", "val_accuracy", "accuracy", "log_loss"} <= set(history) and "val_rmse" not in history
    assert result["eval_objective"] == min(history["val_log_loss"]) == result["eval_log_loss"]
    assert result["best_epoch"] == history["epoch"][history["val_log_loss"].index(result["eval_log_loss"])]

    test = _columns_of(splits["test"], spec)
    truth = class_indices(spec, test[spec.label.name])
    majority = np.bincount(truth).max() / len(truth)
    runner = load_model_dir(model_dir)
    served = runner.outputs({name: test[name] for name in spec.column_names})
    probabilities, labels = served[OUTPUT_PROBABILITIES], served[OUTPUT_CLASS]
    assert probabilities.shape == (len(truth), spec.num_classes) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert [spec.classes[i] for i in probabilities.argmax(axis=1)] == labels.tolist()
    accuracy = float(np.mean(probabilities.argmax(axis=1) == truth))
    assert accuracy > majority + 0.2, (accuracy, majority)
    assert result["eval_accuracy"] > majority

    # the label comes back in the vocabulary's type; the in-process helpers agree with the SavedModel
    assert all(isinstance(v, str if spec.label.type == "string" else np.integer) for v in labels)
    keras_model = tf.saved_model.load(str(model_dir / "serving"))
    assert set(keras_model.signatures["serving_default"].structured_outputs) == {OUTPUT_CLASS, OUTPUT_PROBABILITIES}
    public = load_model_dir(model_dir, fast_path=False).outputs({name: test[name] for name in spec.column_names})
    np.testing.assert_allclose(public[OUTPUT_PROBABILITIES], probabilities, rtol=1e-6)


def test_training_refuses_a_class_with_no_training_row(tmp_path):
    spec = spec_from_dict(IRIS_LIKE_SPEC)
    columns = classification_columns(IRIS_LIKE_SPEC, 200)
    columns["species"] = np.where(columns["species"] == "setosa", "versicolor", columns["species"]).astype(object)
    splits = write_splits(columns, spec, tmp_path / "data")
    logic.analyze(str(splits["train"]), spec, 4).save(tmp_path / "transform")
    config = TrainConfig(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                         transform_dir=str(tmp_path / "transform"), model_dir=str(tmp_path / "model"),
                         hidden_units=[4], learning_rate=0.01, batch_size=32, epochs=1)
    with pytest.raises(DataError, match="no row of class 'setosa'"):
        train(config)
    assert not (tmp_path / "model" / "serving").exists()


def test_balanced_class_weights_train_an_unbalanced_label(tmp_path):
    with pytest.raises(MlengineError, match="class_weight"):
        TrainConfig(train_dir="a", eval_dir="b", transform_dir="c", model_dir="d", hidden_units=[4],
                    learning_rate=0.1, batch_size=8, epochs=1, class_weight="heavy")
    model_dir, result, _ = train_tiny_classifier(tmp_path, BINARY_SPEC, rows=300, epochs=1, class_weight="balanced")
    assert (model_dir / "serving" / "saved_model.pb").is_file()
    # the training loss is weighted, the log loss metric is not: they differ on an unbalanced split
    assert result["history"]["loss"][0] != pytest.approx(result["history"]["log_loss"][0], rel=1e-6)


# --- column names that are not identifiers ---------------------------------------------------------
AWKWARD_SPEC = {
    "name": "awkward",
    "label": {"name": "ok", "type": "string", "vocabulary": ["no", "yes"]},
    "columns": [
        {"name": "class", "type": "string"},
        {"name": "trip-distance", "type": "float", "range": [0, 10]},
        {"name": "a.b", "type": "int", "range": [0, 3]},
        {"name": "my col", "type": "float", "range": [0, 1]},
        {"name": "a_b", "type": "float", "range": [0, 1]},
    ],
    "derived": [{"name": "log distance", "op": "log1p", "inputs": ["trip-distance"]}],
    "features": {"numeric": ["trip-distance", "my col", "log distance", "a_b"], "bucketized": ["trip-distance"],
                 "categorical": ["class", "a.b"], "crosses": [{"name": "class x a.b", "inputs": ["class", "a.b"]}]},
}


def test_signature_names_are_safe_deterministic_and_keep_plain_names():
    spec = spec_from_dict(AWKWARD_SPEC)
    assert signature_input_names(spec) == {"class": "class_", "trip-distance": "trip_distance", "a.b": "a_b_2",
                                           "my col": "my_col", "a_b": "a_b"}
    odd = spec_from_dict({**IRIS_LIKE_SPEC, "columns": [{"name": "_id", "type": "float"},
                                                        {"name": "1st", "type": "float"},
                                                        {"name": "größe", "type": "float"}],
                          "features": {"numeric": ["_id", "1st", "größe"]}})
    assert signature_input_names(odd) == {"_id": "c_id", "1st": "c1st", "größe": "gr__e"}
    with pytest.raises(FeatureSpecError, match=r"columns\[0\]\.name: 'a\\nb' cannot be served"):
        spec_from_dict({**IRIS_LIKE_SPEC, "columns": [{"name": "a\nb", "type": "float"}],
                        "features": {"numeric": ["a\nb"]}})


def test_columns_named_like_keywords_and_with_punctuation_train_export_and_serve(tmp_path):
    tf, _ = import_tf()
    spec = spec_from_dict(AWKWARD_SPEC)
    rng = np.random.default_rng(0)
    rows = 200
    columns = {"class": np.array(["x", "y", "z"], dtype=object)[rng.integers(0, 3, rows)],
               "trip-distance": rng.uniform(0, 10, rows), "a.b": rng.integers(0, 4, rows),
               "my col": rng.uniform(0, 1, rows), "a_b": rng.uniform(0, 1, rows)}
    columns["ok"] = np.where(columns["trip-distance"] + 3 * columns["my col"] > 6, "yes", "no").astype(object)
    splits = write_splits(columns, spec, tmp_path / "data")
    state = logic.analyze(str(splits["train"]), spec, 3)
    state.save(tmp_path / "transform")
    config = TrainConfig(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                         transform_dir=str(tmp_path / "transform"), model_dir=str(tmp_path / "model"),
                         hidden_units=[8], learning_rate=0.02, batch_size=32, epochs=1)
    train(config)
    runner = load_model_dir(tmp_path / "model")
    assert runner._flat_call is not None  # the fast path works with the mapped names too
    assert runner.input_names["class"] == "class_"
    test = _columns_of(splits["test"], spec)
    served = runner.outputs({name: test[name] for name in spec.column_names})
    keras_model = model.build_model(state, [8], 0.02)
    loaded = tf.saved_model.load(str(tmp_path / "model" / "serving"))
    assert sorted(loaded.signatures["serving_default"].structured_input_signature[1]) == sorted(
        signature_input_names(spec).values())
    # the exported weights in a fresh in-process model give the served answers
    keras_model.set_weights(_trained_weights(tmp_path / "model", state))
    tensors = {col.name: tf.constant(test[col.name], getattr(tf, col.dtypes.tf)) for col in spec.columns}
    in_process = model.predict_outputs(keras_model, state, tensors)
    np.testing.assert_allclose(in_process[OUTPUT_PROBABILITIES].numpy(), served[OUTPUT_PROBABILITIES], rtol=1e-5,
                               atol=1e-6)
    assert [v.decode() for v in in_process[OUTPUT_CLASS].numpy()] == served[OUTPUT_CLASS].tolist()


def _trained_weights(model_dir, state):
    """The best epoch's weights, restored from the exported SavedModel's variables."""
    tf, _ = import_tf()
    loaded = tf.saved_model.load(str(model_dir / "serving"))
    fresh = model.build_model(state, [8], 0.02)
    by_name = {v.name: v.numpy() for v in loaded.variables}
    return [by_name[w.name] for w in fresh.weights]


def test_the_train_cli_and_the_task_program_take_the_class_weight(tmp_path):
    from mlengine import cli as mlengine_cli
    from mlengine.components.train import task
    from mlengine.components.train.cluster import training_args

    args = mlengine_cli.build_parser().parse_args(
        ["train", "--train-dir", "a", "--eval-dir", "b", "--transform-dir", "c", "--model-dir", "d",
         "--class-weight", "balanced"])
    assert args.class_weight == "balanced"
    config = TrainConfig(train_dir="a", eval_dir="b", transform_dir="c", model_dir="d", hidden_units=[4],
                         learning_rate=0.1, batch_size=8, epochs=1, class_weight="balanced")
    # a TFJob replica gets it as a flag of the task program, which rebuilds the same config
    parsed = task.build_parser().parse_args(training_args(config))
    assert task.config_from_args(parsed) == config


def test_the_loss_curves_of_a_classifier_show_log_loss_and_accuracy():
    from mlengine.components.train.report import loss_curves_html

    history = {"epoch": [1, 2], "loss": [0.7, 0.5], "val_loss": [0.6, 0.55], "log_loss": [0.7, 0.5],
               "val_log_loss": [0.6, 0.55], "accuracy": [0.6, 0.8], "val_accuracy": [0.65, 0.75],
               "examples_per_second": [1000.0, 2000.0]}
    page = loss_curves_html(history)
    assert "training and eval log loss per epoch" in page and "val_accuracy" in page and "val_rmse" not in page
    assert "training and eval RMSE per epoch" in loss_curves_html({"epoch": [1], "rmse": [2.0], "val_rmse": [2.5]})
