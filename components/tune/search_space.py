"""The hyperparameter search space: one YAML definition for the local optuna study and for Katib.

A space names typed parameters (``int``, ``double`` with an optional log scale, ``categorical``),
the objective, the algorithm, the trial budget and the early-stopping rule. ``to_optuna()``
gives the sampler, pruner and a ``suggest(trial)`` for a local study; ``to_katib_parameters()``
and friends give the same space as Katib ``v1beta1`` fields (every feasible-space number a
string, as the Katib API requires). Both sides enumerate identical grids, so a search moves from
one machine to a cluster without changing its meaning.

The YAML file is read and validated by ``space_loader.py`` (``load_search_space``,
``space_from_dict``); every problem is one line naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlengine.components.shared.hyperparameters import HyperParameters
from mlengine.errors import MlengineError

DEFAULT_SPACE_PATH = Path(__file__).resolve().parent / "search_space.yaml"
PARAMETER_TYPES = ("int", "double", "categorical")
TYPE_ALIASES = {"discrete": "categorical", "float": "double", "integer": "int"}
# the hyperparameters a trial knows how to apply (transform + trainer)
TUNABLE = tuple(HyperParameters.names())
METRIC = "rmse"
MIN_NBUCKETS = 2


@dataclass(frozen=True)
class Algorithm:
    """A search algorithm: its Katib ``algorithmName`` and the optuna sampler that plays it locally."""

    name: str
    katib_name: str
    local_sampler: str  # "random" | "grid" | "tpe" | "multivariate-tpe"
    settings: tuple[str, ...]  # Katib algorithmSettings names accepted for it


ALGORITHMS = {
    "random": Algorithm("random", "random", "random", ("random_state",)),
    "grid": Algorithm("grid", "grid", "grid", ("random_state",)),
    "tpe": Algorithm("tpe", "tpe", "tpe", ("random_state", "n_startup_trials", "n_ei_candidates")),
    "multivariate-tpe": Algorithm("multivariate-tpe", "multivariate-tpe", "multivariate-tpe",
                                  ("random_state", "n_startup_trials", "n_ei_candidates")),
    # Katib runs a Gaussian-process optimizer (skopt); locally TPE, optuna's model-based sampler
    # that needs no extra packages, stands in for it
    "bayesianoptimization": Algorithm("bayesianoptimization", "bayesianoptimization", "tpe",
                                      ("random_state", "n_initial_points")),
}
ALGORITHM_ALIASES = {"bayesian": "bayesianoptimization", "bayesian-optimization": "bayesianoptimization",
                     "bayesopt": "bayesianoptimization", "mtpe": "multivariate-tpe"}
# hyperband: optuna's multi-fidelity HyperbandPruner locally (epochs are the resource). Katib's
# early-stopping service has only medianstop (its hyperband is a suggestion algorithm that must
# search the resource itself, which does not combine with TPE): on a cluster both render as medianstop.
EARLY_STOPPING_ALGORITHMS = ("medianstop", "hyperband")
HYPERBAND_REDUCTION_FACTOR = 3
DEFAULT_MIN_TRIALS_REQUIRED = 3  # Katib's medianstop defaults
DEFAULT_START_STEP = 4


class SearchSpaceError(MlengineError, ValueError):
    """A search space that cannot be used; one line naming file and field."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # "int" | "double" | "categorical"
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    log: bool = False
    values: tuple[Any, ...] | None = None  # categorical choices (str, int or float)

    # --- enumeration ------------------------------------------------------------------------
    def grid_values(self) -> list[Any]:
        """The values a grid search visits, computed exactly as Katib's grid suggestion does."""
        if self.type == "categorical":
            return list(self.values)
        if self.type == "int":
            return list(range(int(self.min), int(self.max) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError(f"double parameter {self.name!r} has no step: it cannot be enumerated")
        import numpy as np

        # Katib: np.arange(min, max + step, step), dropping a last value that overshoots max
        values = np.arange(float(self.min), float(self.max) + float(self.step), float(self.step))
        if values[-1] > float(self.max):
            values = values[:-1]
        return [float(v) for v in values]

    def contains(self, value: Any) -> bool:
        """True when ``value`` (typed, as a trial receives it) lies in the feasible space."""
        if self.type == "categorical":
            return any(type(value) is type(v) and value == v for v in self.values)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        if not (self.min <= value <= self.max):
            return False
        if self.step is not None:
            steps = (value - self.min) / self.step
            return math.isclose(steps, round(steps), abs_tol=1e-9)
        return True

    # --- Katib --------------------------------------------------------------------------------
    @property
    def katib_type(self) -> str:
        if self.type == "categorical":
            # numeric choices are Katib "discrete"; strings (layer lists) are "categorical"
            return "discrete" if all(_is_number(v) for v in self.values) else "categorical"
        return self.type

    def katib_feasible_space(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"list": [katib_string(v) for v in self.values]}
        space = {"min": katib_string(self.min), "max": katib_string(self.max)}
        if self.step is not None:
            space["step"] = katib_string(self.step)
        if self.log:
            space["distribution"] = "logUniform"
        return space

    def to_katib(self) -> dict[str, Any]:
        return {"name": self.name, "parameterType": self.katib_type, "feasibleSpace": self.katib_feasible_space()}

    def parse(self, text: str) -> Any:
        """A Katib parameter assignment (always a string) typed back into this parameter's value."""
        if self.type == "categorical":
            for value in self.values:
                if katib_string(value) == text or str(value) == text:
                    return value
            raise MlengineError(f"parameter {self.name!r}: {text!r} is not one of {list(self.values)}")
        try:
            number = float(text)
        except (TypeError, ValueError):
            raise MlengineError(f"parameter {self.name!r}: {text!r} is not a number") from None
        if self.type == "int":
            if not number.is_integer():
                raise MlengineError(f"parameter {self.name!r}: {text!r} is not an integer")
            return int(number)
        return number

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["values"] = list(self.values)
            return out
        out["min"], out["max"] = self.min, self.max
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


@dataclass(frozen=True)
class EarlyStopping:
    algorithm: str = "medianstop"
    min_trials_required: int = DEFAULT_MIN_TRIALS_REQUIRED
    start_step: int = DEFAULT_START_STEP

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "min_trials_required": self.min_trials_required,
                "start_step": self.start_step}


@dataclass(frozen=True)
class OptunaBinding:
    """What a local optuna study needs from a search space."""

    direction: str
    sampler: Any
    pruner: Any
    suggest: Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class SearchSpace:
    parameters: tuple[Parameter, ...]
    algorithm: Algorithm
    max_trials: int
    parallel_trials: int
    max_failed_trials: int
    metric: str = METRIC
    goal: str = "minimize"
    target: float | None = None  # Katib objective.goal: stop once a trial reaches it
    algorithm_settings: tuple[tuple[str, Any], ...] = ()
    early_stopping: EarlyStopping | None = None
    source: str = field(default="<dict>", compare=False)
    # parameters a model module declared (its HYPERPARAMETERS): searched like the built-in ones
    module_names: tuple[str, ...] = ()

    # --- lookups ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def parameter(self, name: str) -> Parameter:
        for param in self.parameters:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.algorithm_settings)

    def grid_size(self) -> int:
        return math.prod(len(p.grid_values()) for p in self.parameters)

    def trial_budget(self) -> int:
        """How many trials a study runs: max_trials, or fewer when a grid is smaller."""
        if self.algorithm.local_sampler == "grid":
            return min(self.max_trials, self.grid_size())
        return self.max_trials

    def with_overrides(self, *, max_trials: int | None = None, parallel_trials: int | None = None,
                       algorithm: str | None = None) -> SearchSpace:
        """The same space with the budget or algorithm changed (command-line flags), re-validated."""
        raw = self.to_dict()
        if max_trials is not None:
            raw["max_trials"] = max_trials
            raw["max_failed_trials"] = min(raw["max_failed_trials"], max_trials)
            raw["parallel_trials"] = min(raw["parallel_trials"], max_trials)
        if parallel_trials is not None:
            raw["parallel_trials"] = parallel_trials
        if algorithm is not None:
            raw["algorithm"] = algorithm
            allowed = ALGORITHMS.get(ALGORITHM_ALIASES.get(algorithm.lower(), algorithm.lower()))
            if allowed is not None:  # settings of the previous algorithm that the new one lacks go
                raw["algorithm_settings"] = {k: v for k, v in raw["algorithm_settings"].items()
                                             if k in allowed.settings}
        from mlengine.components.tune.space_loader import space_from_dict  # it imports this module

        return space_from_dict(raw, source=self.source, module_names=self.module_names)

    def with_module(self, entries: dict[str, dict[str, Any]]) -> SearchSpace:
        """The space with a model module's hyperparameters added (``entries``: name -> space-YAML entry)."""
        if not entries:
            return self
        clash = sorted(set(entries) & set(self.names))
        if clash:
            raise SearchSpaceError(f"{self.source}: the model module's hyperparameter {clash[0]!r} is also a "
                                   "parameter of the search space")
        raw = self.to_dict()
        raw["parameters"] = {**raw["parameters"], **entries}
        from mlengine.components.tune.space_loader import space_from_dict  # it imports this module

        return space_from_dict(raw, source=self.source, module_names=(*self.module_names, *entries))

    def without(self, names) -> SearchSpace:
        """The same space without the parameters in ``names`` (the ones a user fixed for this run)."""
        raw = self.to_dict()
        raw["parameters"] = {name: p for name, p in raw["parameters"].items() if name not in set(names)}
        if not raw["parameters"]:
            raise SearchSpaceError(f"{self.source}: every parameter of the space is fixed: nothing to search")
        from mlengine.components.tune.space_loader import space_from_dict  # it imports this module

        kept = tuple(name for name in self.module_names if name in raw["parameters"])
        return space_from_dict(raw, source=self.source, module_names=kept)

    def complete(self, params: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """A trial's parameters plus the untuned hyperparameters (``defaults`` over the built-in ones).

        Names that are not built-in (a model module's hyperparameters) pass through after the built-in ones.
        """
        untuned = {k: v for k, v in (defaults or {}).items() if k not in self.names}
        merged = {**untuned, **params}
        builtin = {k: v for k, v in merged.items() if k in TUNABLE}
        return {**HyperParameters.from_dict(builtin).to_dict(),
                **{k: v for k, v in merged.items() if k not in TUNABLE}}

    def coerce(self, params: dict[str, Any]) -> dict[str, Any]:
        """Type a parameter dict (e.g. strings from Katib) into this space's value types."""
        out = {}
        for name, value in params.items():
            param = self.parameter(name) if name in self.names else None
            if param is None:
                out[name] = value
            elif isinstance(value, str) and not (param.type == "categorical" and value in param.values):
                out[name] = param.parse(value)
            else:
                out[name] = value
        return out

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "objective": {"metric": self.metric, "goal": self.goal},
            "algorithm": self.algorithm.name,
            "algorithm_settings": dict(self.algorithm_settings),
            "max_trials": self.max_trials,
            "parallel_trials": self.parallel_trials,
            "max_failed_trials": self.max_failed_trials,
            "parameters": {p.name: p.to_dict() for p in self.parameters},
        }
        if self.target is not None:
            out["objective"]["target"] = self.target
        if self.early_stopping is not None:
            out["early_stopping"] = self.early_stopping.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # --- optuna ---------------------------------------------------------------------------------
    def to_optuna(self, seed: int | None = None, max_resource: int | None = None) -> OptunaBinding:
        """Sampler, pruner and ``suggest(trial) -> params`` for a local optuna study.

        Grid search suggests from exactly the values Katib's grid enumerates; the medianstop rule
        becomes optuna's MedianPruner with the same warm-up (intermediate values are reported
        with step = epoch, 1-based).
        """
        import optuna

        settings = self.settings
        if seed is None and "random_state" in settings:
            seed = int(settings["random_state"])
        kind = self.algorithm.local_sampler
        grid = {p.name: p.grid_values() for p in self.parameters} if kind == "grid" else None
        if kind == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        elif kind == "grid":
            sampler = optuna.samplers.GridSampler(grid, seed=seed)
        else:
            startup = startup_trials(int(settings.get("n_startup_trials", settings.get("n_initial_points", 10))),
                                     self.max_trials)
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=int(startup), n_ei_candidates=int(settings.get("n_ei_candidates", 24)),
                multivariate=kind == "multivariate-tpe",
                constant_liar=self.parallel_trials > 1,  # parallel trials do not all pick the same point
            )
        if self.early_stopping is None:
            pruner = optuna.pruners.NopPruner()
        elif self.early_stopping.algorithm == "hyperband":
            # successive halving over epochs: a trial continues past a rung only if it is among the best
            pruner = optuna.pruners.HyperbandPruner(
                min_resource=self.early_stopping.start_step, max_resource=max_resource or "auto",
                reduction_factor=HYPERBAND_REDUCTION_FACTOR)
        else:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=self.early_stopping.min_trials_required,
                                                 n_warmup_steps=self.early_stopping.start_step)
        parameters = self.parameters

        def suggest(trial) -> dict[str, Any]:
            params = {}
            for p in parameters:
                if grid is not None:
                    params[p.name] = trial.suggest_categorical(p.name, grid[p.name])
                elif p.type == "categorical":
                    params[p.name] = trial.suggest_categorical(p.name, list(p.values))
                elif p.type == "int":
                    params[p.name] = trial.suggest_int(p.name, int(p.min), int(p.max), step=int(p.step or 1),
                                                       log=p.log)
                else:
                    params[p.name] = trial.suggest_float(p.name, float(p.min), float(p.max),
                                                         step=None if p.step is None else float(p.step), log=p.log)
            return params

        direction = "minimize" if self.goal == "minimize" else "maximize"
        return OptunaBinding(direction=direction, sampler=sampler, pruner=pruner, suggest=suggest)

    # --- Katib ----------------------------------------------------------------------------------
    def to_katib_parameters(self) -> list[dict[str, Any]]:
        return [p.to_katib() for p in self.parameters]

    def to_katib_objective(self) -> dict[str, Any]:
        objective: dict[str, Any] = {"type": self.goal, "objectiveMetricName": self.metric}
        if self.target is not None:
            objective["goal"] = float(self.target)
        return objective

    def to_katib_algorithm(self) -> dict[str, Any]:
        algorithm: dict[str, Any] = {"algorithmName": self.algorithm.katib_name}
        if self.algorithm_settings:
            algorithm["algorithmSettings"] = [{"name": k, "value": katib_string(v)} for k, v in self.algorithm_settings]
        return algorithm

    def to_katib_early_stopping(self) -> dict[str, Any] | None:
        if self.early_stopping is None:
            return None
        return {
            "algorithmName": "medianstop",  # Katib's only early-stopping service (see EARLY_STOPPING_ALGORITHMS)
            "algorithmSettings": [
                {"name": "min_trials_required", "value": str(self.early_stopping.min_trials_required)},
                {"name": "start_step", "value": str(self.early_stopping.start_step)},
            ],
        }

    def parse_katib_assignments(self, assignments: list[dict[str, Any]]) -> dict[str, Any]:
        """``[{"name", "value"}]`` from a Katib Trial/Experiment status, typed via this space."""
        out = {}
        for item in assignments or []:
            name, value = item.get("name"), item.get("value")
            if name in self.names:
                out[name] = self.parameter(name).parse(str(value))
        return out


# --- helpers ----------------------------------------------------------------------------------------
def startup_trials(configured: int, budget: int) -> int:
    """Random start-up trials of TPE sized to the budget: a third of it (at least 2, at most the
    configured number), so a small budget still gets model-based trials after the start-up."""
    return max(1, min(configured, max(2, budget // 3)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def katib_string(value: Any) -> str:
    """A number or choice as the string Katib carries: ints without '.0', floats round-tripping exactly."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)
