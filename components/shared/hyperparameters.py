"""The hyperparameters of one training run, as one typed value with its defaults in one place.

A ``HyperParameters`` travels as one artifact (``hyperparameters.json``) from tune to transform
and train. The values a user sets explicitly (a command-line flag, or a key of the pipeline's
``hyperparameters`` parameter) are FIXED: tuning removes them from its search space. Adding a
tunable is a field here and an entry in the search-space YAML.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from mlengine.components.shared.userfiles import read_json_object
from mlengine.constants import CLASS_WEIGHTS
from mlengine.errors import MlengineError

HYPERPARAMETERS_FILE = "hyperparameters.json"


class HyperParameterError(MlengineError, ValueError):
    """A hyperparameter value that cannot be used; one line naming it."""


def parse_hidden_units(value: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"64,32"`` or ``[64, 32]`` -> ``[64, 32]``; every entry a positive integer."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not all(p.isdigit() for p in parts):
            raise HyperParameterError(
                f"hidden_units: expected comma-separated positive layer sizes like '64,32', got {value!r}")
        units = [int(p) for p in parts]
    elif isinstance(value, list | tuple) and value and all(
            isinstance(u, numbers.Integral) and not isinstance(u, bool) for u in value):
        units = [int(u) for u in value]
    else:
        raise HyperParameterError(f"hidden_units: expected a string like '64,32' or a list of integers, got {value!r}")
    if any(u < 1 for u in units):
        raise HyperParameterError(f"hidden_units: every layer needs at least 1 unit, got {value!r}")
    return units


@dataclass(frozen=True)
class HyperParameters:
    """What training needs to know beyond the data: one preprocessing choice and four of the model.

    Attributes:
        nbuckets: quantile buckets per bucketized feature (the transform's analyze pass).
        hidden_units: the deep part's layer sizes, comma-separated ("64,32").
        learning_rate: Adam's learning rate.
        batch_size: examples per training step.
        class_weight: a class label only: "balanced" weighs each class's rows by
            ``rows / (classes * rows of the class)`` in the training loss; "none" (the default) does not.
    """

    nbuckets: int = 16
    hidden_units: str = "64,32"
    learning_rate: float = 0.003
    batch_size: int = 512
    class_weight: str = "none"

    def __post_init__(self) -> None:
        for name in ("nbuckets", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise HyperParameterError(f"{name} must be an integer, got {value!r}")
        if self.nbuckets < 2:
            raise HyperParameterError(f"nbuckets must be at least 2, got {self.nbuckets}")
        if self.batch_size < 1:
            raise HyperParameterError(f"batch_size must be at least 1, got {self.batch_size}")
        units = parse_hidden_units(self.hidden_units)
        object.__setattr__(self, "hidden_units", ",".join(str(u) for u in units))
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise HyperParameterError(f"learning_rate must be a positive number, got {rate!r}")
        object.__setattr__(self, "learning_rate", float(rate))
        if self.class_weight not in CLASS_WEIGHTS:
            raise HyperParameterError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, "
                                      f"got {self.class_weight!r}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @property
    def layers(self) -> list[int]:
        return parse_hidden_units(self.hidden_units)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_values(self, values: dict[str, Any] | None) -> HyperParameters:
        """A copy with some values replaced (unknown names are an error naming them)."""
        values = dict(values or {})
        check_names(values)
        return replace(self, **{name: _as_declared_type(name, value) for name, value in values.items()})

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> HyperParameters:
        """The defaults with ``values`` applied."""
        return cls().with_values(values)

    # --- the artifact -----------------------------------------------------------------------
    def save(self, path: str | Path, *, fixed: list[str] | tuple[str, ...] = (), source: str = "",
             module: dict[str, Any] | None = None) -> Path:
        """Write the artifact file: the values, which of them were fixed by the user, where they came from,
        and (``module``) the values of a model module's own hyperparameters."""
        target = Path(path)
        if target.is_dir():
            target = target / HYPERPARAMETERS_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {"values": self.to_dict(), "fixed": sorted(fixed), "source": source}
        if module:
            payload["module"] = dict(module)
        target.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> HyperParameters:
        """Read an artifact file (or a directory holding ``hyperparameters.json``)."""
        payload = read_json_object(path, HyperParameterError, "hyperparameters", HYPERPARAMETERS_FILE)
        if not isinstance(payload.get("values"), dict):
            raise HyperParameterError(f"{path}: expected an object with a 'values' mapping")
        return cls.from_dict(payload["values"])


def module_values_of(path: str | Path) -> dict[str, Any]:
    """The model module's hyperparameter values in an artifact file ({} for a run without a module)."""
    payload = read_json_object(path, HyperParameterError, "hyperparameters", HYPERPARAMETERS_FILE)
    module = payload.get("module") or {}
    if not isinstance(module, dict):
        raise HyperParameterError(f"{path}: 'module' must be a mapping of name -> value")
    return module


def _as_declared_type(name: str, value: Any) -> Any:
    """A whole float for an int field becomes an int: KFP passes a dict parameter as a protobuf Struct,
    whose numbers are all doubles ({"nbuckets": 8} arrives as 8.0)."""
    if name in ("nbuckets", "batch_size") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_names(values: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(HyperParameters.names()))
    if unknown:
        raise HyperParameterError(f"unknown hyperparameter {unknown[0]!r}; the hyperparameters are "
                                  f"{', '.join(HyperParameters.names())}")


def explicit_values(values: dict[str, Any] | None) -> dict[str, Any]:
    """The hyperparameters a user set (None values dropped), checked: these are fixed for the run."""
    given = {k: v for k, v in (values or {}).items() if v is not None}
    check_names(given)
    HyperParameters.from_dict(given)  # type and range errors now, not in a later step
    return given


def add_hyperparameter_flags(parser) -> None:
    """``--nbuckets``, ``--hidden-units``, ``--learning-rate``, ``--batch-size``, ``--class-weight``: default
    None = not given.

    What a user passes is fixed for the run (see ``explicit_values``); what is left out is tuned
    (with trials) or takes the default shown in the help.
    """
    defaults = HyperParameters()
    helps = {"nbuckets": "quantile buckets per bucketized feature", "hidden_units": "deep layer sizes, e.g. 64,32",
             "learning_rate": "Adam learning rate", "batch_size": "examples per step",
             "class_weight": "a class label's class weights in the loss: balanced or none"}
    for item in fields(HyperParameters):
        parser.add_argument("--" + item.name.replace("_", "-"), dest=item.name, default=None,
                            choices=CLASS_WEIGHTS if item.name == "class_weight" else None,
                            type=str if item.name == "hidden_units" else type(getattr(defaults, item.name)),
                            help=f"{helps[item.name]} (default {getattr(defaults, item.name)}; "
                                 "given: fixed, not tuned)")
