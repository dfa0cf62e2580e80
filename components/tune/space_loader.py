"""Reading a search space: the YAML file (or a parsed dict) validated into a ``SearchSpace``.

The space model and its optuna / Katib bindings live in ``search_space.py``; this module is the
file format: the fields allowed, their types and ranges, what each hyperparameter may take, and
the one-line errors naming the file and the field
(``space.yaml: parameters.nbuckets.min: must be at least 2, got 1``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlengine.components.shared.hyperparameters import HyperParameterError, parse_hidden_units
from mlengine.components.shared.userfiles import read_yaml_file
from mlengine.components.tune.search_space import (
    ALGORITHM_ALIASES,
    ALGORITHMS,
    DEFAULT_MIN_TRIALS_REQUIRED,
    DEFAULT_SPACE_PATH,
    DEFAULT_START_STEP,
    EARLY_STOPPING_ALGORITHMS,
    METRIC,
    MIN_NBUCKETS,
    PARAMETER_TYPES,
    TUNABLE,
    TYPE_ALIASES,
    EarlyStopping,
    Parameter,
    SearchSpace,
    SearchSpaceError,
    _is_number,
    katib_string,
)
from mlengine.constants import PARAM_BATCH_SIZE, PARAM_HIDDEN_UNITS, PARAM_LEARNING_RATE, PARAM_NBUCKETS


def load_search_space(path: str | Path | None = None) -> SearchSpace:
    """Load and validate a search-space YAML; ``None`` or ``""`` gives the built-in default."""
    space_path = Path(path) if path else DEFAULT_SPACE_PATH
    raw = read_yaml_file(space_path, SearchSpaceError, "search space")
    return space_from_dict(raw, source=str(space_path))


TOP_LEVEL_FIELDS = {"objective", "algorithm", "algorithm_settings", "max_trials", "parallel_trials",
                    "max_failed_trials", "early_stopping", "parameters"}


def space_from_dict(raw: Any, source: str = "<dict>", module_names: tuple[str, ...] = ()) -> SearchSpace:
    """Build and validate a search space from parsed YAML; ``module_names``: parameters a model module declared."""
    check = _Checker(source)
    if not isinstance(raw, dict):
        check.fail("", "the search space must be a mapping")
    unknown = sorted(set(raw) - TOP_LEVEL_FIELDS)
    if unknown:
        check.fail(unknown[0], f"unknown field; allowed: {sorted(TOP_LEVEL_FIELDS)}")

    objective = raw.get("objective") or {"metric": METRIC, "goal": "minimize"}
    check.mapping("objective", objective, {"metric", "goal", "target"})
    metric = objective.get("metric", METRIC)
    if metric != METRIC:
        check.fail("objective.metric", f"trials report only {METRIC!r}, got {metric!r}")
    goal = objective.get("goal", "minimize")
    if goal != "minimize":
        check.fail("objective.goal", f"{METRIC} is an error: the goal must be 'minimize', got {goal!r}")
    target = objective.get("target")
    if target is not None and not (_is_number(target) and math.isfinite(target)):
        check.fail("objective.target", f"must be a number, got {target!r}")

    algorithm_name = raw.get("algorithm", "tpe")
    if not isinstance(algorithm_name, str):
        check.fail("algorithm", f"must be a string, got {algorithm_name!r}")
    algorithm_name = ALGORITHM_ALIASES.get(algorithm_name.lower(), algorithm_name.lower())
    if algorithm_name not in ALGORITHMS:
        check.fail("algorithm", f"unknown algorithm {raw.get('algorithm')!r}; "
                                f"expected one of {sorted(ALGORITHMS) + sorted(ALGORITHM_ALIASES)}")
    algorithm = ALGORITHMS[algorithm_name]
    settings_raw = raw.get("algorithm_settings") or {}
    check.mapping("algorithm_settings", settings_raw, set(algorithm.settings),
                  what=f"setting for {algorithm.name}")
    settings = []
    for key, value in settings_raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "random_state" else 1):
            kind = "non-negative" if key == "random_state" else "positive"
            check.fail(f"algorithm_settings.{key}", f"must be a {kind} integer, got {value!r}")
        settings.append((key, value))

    max_trials = check.integer("max_trials", raw.get("max_trials", 12), minimum=1)
    parallel = check.integer("parallel_trials", raw.get("parallel_trials", 1), minimum=1)
    if parallel > max_trials:
        check.fail("parallel_trials", f"{parallel} is more than max_trials {max_trials}")
    max_failed = check.integer("max_failed_trials", raw.get("max_failed_trials", max_trials), minimum=0)
    if max_failed > max_trials:
        check.fail("max_failed_trials", f"{max_failed} is more than max_trials {max_trials}")

    early = None
    if raw.get("early_stopping") is not None:
        es = raw["early_stopping"]
        check.mapping("early_stopping", es, {"algorithm", "min_trials_required", "start_step"})
        es_algorithm = es.get("algorithm", "medianstop")
        if es_algorithm not in EARLY_STOPPING_ALGORITHMS:
            check.fail("early_stopping.algorithm", f"unknown algorithm {es_algorithm!r}; "
                                                   f"expected one of {list(EARLY_STOPPING_ALGORITHMS)}")
        early = EarlyStopping(
            es_algorithm,
            check.integer("early_stopping.min_trials_required",
                          es.get("min_trials_required", DEFAULT_MIN_TRIALS_REQUIRED), minimum=1),
            check.integer("early_stopping.start_step", es.get("start_step", DEFAULT_START_STEP), minimum=1),
        )

    params_raw = raw.get("parameters")
    if not params_raw:
        check.fail("parameters", "the search space is empty: name at least one parameter to tune")
    if not isinstance(params_raw, dict):
        check.fail("parameters", "must be a mapping of parameter name -> definition")
    parameters = tuple(_parameter(check, name, item, module_names) for name, item in params_raw.items())
    space = SearchSpace(parameters=parameters, algorithm=algorithm, max_trials=max_trials,
                        parallel_trials=parallel, max_failed_trials=max_failed, metric=metric, goal=goal,
                        target=target, algorithm_settings=tuple(settings), early_stopping=early, source=source,
                        module_names=tuple(module_names))
    if algorithm.local_sampler == "grid":
        for param in parameters:
            if param.type == "double" and param.step is None:
                check.fail(f"parameters.{param.name}.step", "grid search needs a step for every double parameter")
    return space


def _parameter(check: _Checker, name: Any, item: Any, module_names: tuple[str, ...] = ()) -> Parameter:
    where = f"parameters.{name}"
    if name not in TUNABLE and name not in module_names:
        check.fail(where, f"unknown parameter {name!r}; a trial can tune {list(TUNABLE)} (and a model module's "
                          "own hyperparameters)")
    check.mapping(where, item, {"type", "min", "max", "step", "log", "values"})
    ptype = item.get("type")
    ptype = TYPE_ALIASES.get(ptype, ptype)
    if ptype not in PARAMETER_TYPES:
        check.fail(f"{where}.type",
                   f"unknown parameter type {item.get('type')!r}; expected one of {list(PARAMETER_TYPES)}")
    log = item.get("log", False)
    if not isinstance(log, bool):
        check.fail(f"{where}.log", f"must be true or false, got {log!r}")

    if ptype == "categorical":
        for key in ("min", "max", "step", "log"):
            if key in item:
                check.fail(f"{where}.{key}", "a categorical parameter takes only 'values'")
        values = item.get("values")
        if not isinstance(values, list) or not values:
            check.fail(f"{where}.values", "must be a non-empty list")
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                check.fail(f"{where}.values[{i}]", f"must be a string or a number, got {value!r}")
        if name == PARAM_HIDDEN_UNITS:  # YAML reads `32` as a number: a layer list is a string
            values = [str(v) for v in values]
        if len({katib_string(v) for v in values}) != len(values):
            check.fail(f"{where}.values", "has duplicate entries")
        param = Parameter(name, "categorical", values=tuple(values))
    else:
        if "values" in item:
            check.fail(f"{where}.values", f"an {ptype} parameter takes min/max[/step], not values")
        for key in ("min", "max"):
            if key not in item:
                check.fail(where, f"missing field {key!r}")
        low, high, step = item["min"], item["max"], item.get("step")
        number_check = check.int_value if ptype == "int" else check.number
        low, high = number_check(f"{where}.min", low), number_check(f"{where}.max", high)
        if low > high:
            check.fail(f"{where}.min", f"min {low} is greater than max {high}")
        if step is not None:
            step = number_check(f"{where}.step", step)
            if step <= 0:
                check.fail(f"{where}.step", f"must be positive, got {step}")
            if log:
                check.fail(f"{where}.step", "a log-scale parameter cannot have a step")
            if ptype == "int" and (high - low) % step:
                check.fail(f"{where}.step", f"max - min ({high - low}) must be a multiple of step {step}")
        if log and low <= 0:
            check.fail(f"{where}.min", f"a log-scale parameter needs min > 0, got {low}")
        param = Parameter(name, ptype, low, high, step, log)

    _check_meaning(check, where, param)
    return param


def _check_meaning(check: _Checker, where: str, param: Parameter) -> None:
    """Rules each tunable hyperparameter imposes on its values."""
    values = list(param.values) if param.type == "categorical" else [param.min, param.max]
    field_name = f"{where}.values" if param.type == "categorical" else f"{where}.min"
    if param.name == PARAM_NBUCKETS:
        if param.type == "double" or any(not isinstance(v, int) or isinstance(v, bool) for v in values):
            check.fail(f"{where}.type", "nbuckets is a whole number of buckets: use type int")
        if min(values) < MIN_NBUCKETS:
            check.fail(field_name, f"nbuckets must be at least {MIN_NBUCKETS}, got {min(values)}")
    elif param.name == PARAM_BATCH_SIZE:
        if param.type == "double" or any(not isinstance(v, int) or isinstance(v, bool) for v in values):
            check.fail(f"{where}.type", "batch_size is a whole number: use type int or integer values")
        if min(values) < 1:
            check.fail(field_name, f"batch_size must be at least 1, got {min(values)}")
    elif param.name == PARAM_LEARNING_RATE:
        if any(not _is_number(v) for v in values) or min(values) <= 0:
            check.fail(field_name, f"learning_rate must be positive numbers, got {values}")
    elif param.name == PARAM_HIDDEN_UNITS:
        if param.type != "categorical":
            check.fail(f"{where}.type", "hidden_units is a layer list: use type categorical with values like \"64,32\"")
        for i, value in enumerate(param.values):
            try:
                parse_hidden_units(value if isinstance(value, str) else str(value))
            except HyperParameterError as err:
                check.fail(f"{where}.values[{i}]", str(err))


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str):
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        raise SearchSpaceError(prefix + message)

    def mapping(self, where: str, item: Any, allowed: set[str], what: str = "field") -> None:
        if not isinstance(item, dict):
            self.fail(where, "must be a mapping")
        unknown = sorted(str(k) for k in set(item) - allowed)
        if unknown:
            self.fail(f"{where}.{unknown[0]}", f"unknown {what}; allowed: {sorted(allowed)}")

    def integer(self, where: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, got {value!r}")
        if value < minimum:
            self.fail(where, f"must be at least {minimum}, got {value}")
        return value

    def int_value(self, where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, got {value!r}")
        return value

    def number(self, where: str, value: Any) -> float:
        if not _is_number(value) or not math.isfinite(value):
            self.fail(where, f"must be a finite number, got {value!r}")
        return float(value)
