"""The search space: YAML validation, and the same space in optuna and in Katib."""

from __future__ import annotations

import contextlib
import itertools
import math

import numpy as np
import optuna
import pytest
import yaml

from mlengine.components.tune.search_space import (
    DEFAULT_SPACE_PATH,
    SearchSpaceError,
    katib_string,
)
from mlengine.components.tune.space_loader import load_search_space, space_from_dict
from mlengine.errors import MlengineError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def base_space() -> dict:
    return {
        "objective": {"metric": "rmse", "goal": "minimize"},
        "algorithm": "tpe",
        "max_trials": 8,
        "parallel_trials": 2,
        "parameters": {
            "nbuckets": {"type": "int", "min": 4, "max": 20, "step": 2},
            "hidden_units": {"type": "categorical", "values": ["32", "64,32", "128,64"]},
            "learning_rate": {"type": "double", "min": 0.0003, "max": 0.03, "log": True},
            "batch_size": {"type": "categorical", "values": [256, 512, 1024]},
        },
    }


# --- Katib's view, computed from the Katib fields alone (strings), as Katib would ---------------------
def katib_contains(katib_param: dict, value) -> bool:
    space = katib_param["feasibleSpace"]
    kind = katib_param["parameterType"]
    if kind in ("categorical", "discrete"):
        return katib_string(value) in space["list"]
    low, high = float(space["min"]), float(space["max"])
    if not low <= float(value) <= high:
        return False
    if kind == "int":
        if not float(value).is_integer():
            return False
        step = int(space.get("step", "1"))
        return (int(value) - int(space["min"])) % step == 0
    if "step" in space:
        steps = (float(value) - low) / float(space["step"])
        return math.isclose(steps, round(steps), abs_tol=1e-9)
    return True


def katib_grid(katib_param: dict) -> list[str]:
    """Katib's grid (pkg/suggestion/v1beta1/internal/search_space.py convert_to_combinations)."""
    space = katib_param["feasibleSpace"]
    kind = katib_param["parameterType"]
    if kind == "int":
        return [str(v) for v in range(int(space["min"]), int(space["max"]) + 1, int(space.get("step", "1")))]
    if kind == "double":
        values = np.arange(float(space["min"]), float(space["max"]) + float(space["step"]), float(space["step"]))
        if values[-1] > float(space["max"]):
            values = values[:-1]
        return [katib_string(float(v)) for v in values]
    return list(space["list"])


# --- loading and validation -----------------------------------------------------------------------------
def test_default_space_loads_and_covers_the_preprocessing_parameter():
    space = load_search_space()
    assert space.source == str(DEFAULT_SPACE_PATH)
    assert space.names == ["nbuckets", "hidden_units", "learning_rate", "batch_size"]
    nbuckets = space.parameter("nbuckets")
    assert nbuckets.type == "int" and nbuckets.min >= 2
    assert space.parameter("learning_rate").log is True
    assert space.algorithm.katib_name == "tpe"
    assert space.early_stopping is not None and space.early_stopping.algorithm == "hyperband"
    assert 1 <= space.parallel_trials <= space.max_trials


def test_hyperband_locally_medianstop_on_katib_and_startup_sized_to_the_budget():
    import optuna

    from mlengine.components.tune.search_space import startup_trials

    space = load_search_space()
    binding = space.to_optuna(seed=3, max_resource=8)
    assert isinstance(binding.pruner, optuna.pruners.HyperbandPruner)
    assert space.to_katib_early_stopping()["algorithmName"] == "medianstop"
    # a third of the budget, at least 2, never more than configured
    assert [startup_trials(5, budget) for budget in (1, 4, 6, 9, 16, 40)] == [2, 2, 2, 3, 5, 5]
    small = space.with_overrides(max_trials=4).to_optuna(seed=3)
    assert small.sampler._n_startup_trials == 2


@pytest.mark.parametrize(("mutate", "field", "words"), [
    (lambda raw: raw.update(parameters={}), "parameters", "empty"),
    (lambda raw: raw["parameters"]["nbuckets"].update(min=30, max=10, step=2), "parameters.nbuckets.min",
     "greater than max"),
    (lambda raw: raw.update(algorithm="hyperdrive"), "algorithm", "unknown algorithm"),
    (lambda raw: raw["parameters"]["batch_size"].update(type="lognormal"), "parameters.batch_size.type",
     "unknown parameter type"),
    (lambda raw: raw["parameters"]["nbuckets"].update(min=1, step=1), "parameters.nbuckets.min", "at least 2"),
    (lambda raw: raw.update(max_trials=0, parallel_trials=1), "max_trials", "at least 1"),
    (lambda raw: raw.update(max_trials=3, parallel_trials=4), "parallel_trials", "more than max_trials"),
    (lambda raw: raw["parameters"].update(dropout={"type": "double", "min": 0.1, "max": 0.5}),
     "parameters.dropout", "unknown parameter"),
    (lambda raw: raw["parameters"]["learning_rate"].update(min=0.0), "parameters.learning_rate.min", "min > 0"),
    (lambda raw: raw["parameters"]["hidden_units"].update(values=["64,x"]), "parameters.hidden_units.values[0]",
     "layer sizes"),
    (lambda raw: raw["parameters"]["nbuckets"].update(step=3), "parameters.nbuckets.step", "multiple of step"),
    (lambda raw: raw.update(algorithm="grid"), "parameters.learning_rate.step", "grid search needs a step"),
    (lambda raw: raw.update(early_stopping={"algorithm": "asha"}), "early_stopping.algorithm",
     "unknown algorithm"),
    (lambda raw: raw.update(max_failed_trials=9), "max_failed_trials", "more than max_trials"),
    (lambda raw: raw.update(objective={"metric": "accuracy"}), "objective.metric", "rmse"),
    (lambda raw: raw.update(algorithm_settings={"n_startup_trials": 0}), "algorithm_settings.n_startup_trials",
     "positive"),
])
def test_bad_space_fails_with_one_line_naming_file_and_field(tmp_path, mutate, field, words):
    raw = base_space()
    mutate(raw)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {field}:"), message
    assert words in message
    assert isinstance(info.value, MlengineError)


def test_missing_and_malformed_files_are_one_line_errors(tmp_path):
    with pytest.raises(SearchSpaceError, match="not found"):
        load_search_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: [unclosed\n")
    with pytest.raises(SearchSpaceError, match=r"bad\.yaml: not valid YAML"):
        load_search_space(bad)


def test_algorithm_aliases_map_to_katib_names():
    raw = base_space()
    raw["algorithm"] = "bayesian"
    space = space_from_dict(raw)
    assert space.to_katib_algorithm()["algorithmName"] == "bayesianoptimization"
    assert space.algorithm.local_sampler == "tpe"
    raw["algorithm"] = "Random"
    assert space_from_dict(raw).to_katib_algorithm() == {"algorithmName": "random"}


# --- one space, two engines -----------------------------------------------------------------------------------
def _suggestions(space, count: int) -> tuple[list[dict], list[dict]]:
    binding = space.to_optuna(seed=3)
    study = optuna.create_study(sampler=binding.sampler, direction=binding.direction)
    suggested, distributions = [], []
    for _ in range(count):
        trial = study.ask()
        params = binding.suggest(trial)
        suggested.append(params)
        distributions.append(dict(trial.distributions))
        study.tell(trial, 1.0 + len(suggested) % 3)
    return suggested, distributions


@pytest.mark.parametrize("algorithm", ["random", "tpe", "multivariate-tpe", "bayesianoptimization"])
def test_every_optuna_suggestion_lies_in_the_katib_feasible_space(algorithm):
    raw = base_space()
    raw["algorithm"] = algorithm
    space = space_from_dict(raw)
    katib = {p["name"]: p for p in space.to_katib_parameters()}
    suggested, distributions = _suggestions(space, 40)
    for params in suggested:
        assert set(params) == set(katib)
        for name, value in params.items():
            assert katib_contains(katib[name], value), (name, value, katib[name])
            assert space.parameter(name).contains(value)
        # and the strings Katib would hand a trial type back to exactly the same values
        assignments = [{"name": n, "value": katib_string(v)} for n, v in params.items()]
        assert space.parse_katib_assignments(assignments) == params
    # categoricals: optuna chooses among exactly Katib's list, and vice versa
    for name, param in katib.items():
        if param["parameterType"] in ("categorical", "discrete"):
            choices = distributions[0][name].choices
            assert sorted(katib_string(c) for c in choices) == sorted(param["feasibleSpace"]["list"])
            seen = {katib_string(p[name]) for p in suggested}
            assert seen <= set(param["feasibleSpace"]["list"])


def test_katib_fields_are_strings_and_types_match():
    space = space_from_dict(base_space())
    params = {p["name"]: p for p in space.to_katib_parameters()}
    assert params["nbuckets"] == {"name": "nbuckets", "parameterType": "int",
                                  "feasibleSpace": {"min": "4", "max": "20", "step": "2"}}
    assert params["learning_rate"]["parameterType"] == "double"
    assert params["learning_rate"]["feasibleSpace"] == {"min": "0.0003", "max": "0.03", "distribution": "logUniform"}
    assert params["hidden_units"] == {"name": "hidden_units", "parameterType": "categorical",
                                      "feasibleSpace": {"list": ["32", "64,32", "128,64"]}}
    assert params["batch_size"]["parameterType"] == "discrete"
    assert params["batch_size"]["feasibleSpace"]["list"] == ["256", "512", "1024"]
    for param in params.values():
        assert all(isinstance(v, str) for k, v in param["feasibleSpace"].items() if k != "list")


def test_grid_values_are_identical_in_optuna_and_katib():
    raw = base_space()
    raw["algorithm"] = "grid"
    raw["parameters"] = {
        "nbuckets": {"type": "int", "min": 4, "max": 10, "step": 3},
        "learning_rate": {"type": "double", "min": 0.001, "max": 0.0035, "step": 0.001},
        "hidden_units": {"type": "categorical", "values": ["32", "64,32"]},
    }
    raw["max_trials"] = 50
    space = space_from_dict(raw)
    katib = {p["name"]: p for p in space.to_katib_parameters()}
    for name in space.names:
        ours = [katib_string(v) for v in space.parameter(name).grid_values()]
        assert ours == katib_grid(katib[name]), name
    assert space.parameter("learning_rate").grid_values() == [0.001, 0.002, 0.003]
    assert space.trial_budget() == 3 * 3 * 2

    # the grid study visits each Katib grid point exactly once
    binding = space.to_optuna(seed=1)
    study = optuna.create_study(sampler=binding.sampler, direction=binding.direction)
    visited = []
    for _ in range(space.trial_budget()):
        trial = study.ask()
        params = binding.suggest(trial)
        visited.append(tuple(katib_string(params[n]) for n in space.names))
        with contextlib.suppress(RuntimeError):  # GridSampler stops the study after the last grid point
            study.tell(trial, 1.0)
    expected = set(itertools.product(*(katib_grid(katib[n]) for n in space.names)))
    assert sorted(visited) == sorted(expected)


def test_overrides_revalidate_and_keep_the_rest():
    space = load_search_space()
    smaller = space.with_overrides(max_trials=3, parallel_trials=1, algorithm="random")
    assert (smaller.max_trials, smaller.parallel_trials, smaller.algorithm.name) == (3, 1, "random")
    assert smaller.max_failed_trials <= 3
    assert "n_startup_trials" not in smaller.settings  # a TPE-only setting does not follow to random
    assert smaller.parameters == space.parameters
    with pytest.raises(SearchSpaceError, match="parallel_trials"):
        space.with_overrides(max_trials=2, parallel_trials=3)


def test_complete_fills_untuned_hyperparameters_with_defaults():
    raw = base_space()
    raw["parameters"] = {"nbuckets": {"type": "int", "min": 2, "max": 8}}
    space = space_from_dict(raw)
    full = space.complete({"nbuckets": 5})
    assert full["nbuckets"] == 5
    assert set(full) == {"nbuckets", "hidden_units", "learning_rate", "batch_size", "class_weight"}
    assert space.coerce({"nbuckets": "6"}) == {"nbuckets": 6}
    with pytest.raises(MlengineError, match="not an integer"):
        space.parse_katib_assignments([{"name": "nbuckets", "value": "6.5"}])
