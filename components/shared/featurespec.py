"""The feature spec: which raw columns a dataset has, the label, and the engineered features.

A spec is YAML, validated when it is loaded; every problem is reported as one line that names
the file and the field (``spec.yaml: features.crosses[0].inputs: 'pickup_lat' is not ...``).
The taxi spec ships as the default; any tabular CSV works with its own spec.

The task comes from the label: a label with a ``vocabulary`` is a class label (two classes:
``binary``, more: ``multiclass``, in the vocabulary's order everywhere); a float or int label
without one is a ``regression`` label. An optional top-level ``task:`` states it and is checked.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlengine.components.shared.userfiles import read_yaml_file
from mlengine.constants import DEFAULT_SPEC_PATH
from mlengine.errors import MlengineError

COLUMN_TYPES = ("float", "int", "string")


@dataclass(frozen=True)
class ColumnDTypes:
    """How one column type is represented at each boundary of the system."""

    tf: str  # the SavedModel signature's input dtype (and the Keras input's)
    numpy: Any  # the array fed to that signature
    stored: Any  # the numpy dtype of stored values (ingested Parquet, serving log)
    v2: tuple[str, ...]  # Open Inference Protocol datatypes accepted; the first is the one declared


# the one dtype table of the project, keyed by the spec's column type
DTYPES = {
    "float": ColumnDTypes("float32", np.float32, np.float64, ("FP32", "FP64")),
    "int": ColumnDTypes("int64", np.int64, np.int64, ("INT64", "INT32")),
    "string": ColumnDTypes("string", object, object, ("BYTES",)),
}
# op name -> number of inputs; numpy and TensorFlow implementations live in derived.py
DERIVED_OPS = {"haversine_km": 4, "difference": 2, "ratio": 2, "product": 2, "log1p": 1}
DEFAULT_EMBEDDING_DIM = 8
MAX_CROSS_SIZE = 100_000  # larger crosses are hashed into this many bins
# how the label is scaled inside the model (predictions always come back in the label's unit)
LABEL_TRANSFORMS = ("standardize", "log1p", "none")
DEFAULT_LABEL_TRANSFORM = "standardize"
DEFAULT_DELIMITER = ","
DEFAULT_REJECT_WARNING_SHARE = 0.05  # ingest warns above this share of rejected rows
# how ingest splits rows (docs/feature-spec.md, components/ingest/splits.py): identical rows kept
# together (the row-content hash, the leakage-safe default) or split by their position in the file
SPLIT_DUPLICATES = ("together", "by_position")
DEFAULT_SPLIT_MIN_ROWS = 10  # ingest refuses an eval or test split smaller than this
TASKS = ("regression", "binary", "multiclass")
CLASSIFICATION_TASKS = ("binary", "multiclass")
# the spec's JSON Schema (shape, types, enums); cross-references are checked in spec_from_dict
SPEC_SCHEMA_PATH = Path(__file__).with_name("featurespec.schema.json")


class FeatureSpecError(MlengineError, ValueError):
    """A spec that cannot be used; the message is one line naming file and field."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    range: tuple[float, float] | None = None
    vocabulary: tuple[Any, ...] | None = None
    default: Any = None  # used for a missing cell; without it a missing cell rejects the row

    @property
    def is_numeric(self) -> bool:
        return self.type in ("float", "int")

    @property
    def dtypes(self) -> ColumnDTypes:
        return DTYPES[self.type]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.range is not None:
            out["range"] = list(self.range)
        if self.vocabulary is not None:
            out["vocabulary"] = list(self.vocabulary)
        if self.default is not None:
            out["default"] = self.default
        return out


@dataclass(frozen=True)
class Derived:
    name: str
    op: str
    inputs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "inputs": list(self.inputs)}


@dataclass(frozen=True)
class Cross:
    name: str
    inputs: tuple[str, ...]  # bucketized or categorical feature names
    embedding_dim: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "inputs": list(self.inputs)}
        if self.embedding_dim is not None:
            out["embedding_dim"] = self.embedding_dim
        return out


@dataclass(frozen=True)
class SplitSpec:
    """How ingest cuts the rows into train/eval/test: by a key column, or by row content or position."""

    key: str | None = None  # every row of one key value in one split
    duplicates: str = SPLIT_DUPLICATES[0]
    min_rows: int = DEFAULT_SPLIT_MIN_ROWS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key} if self.key is not None else {}
        return {**out, "duplicates": self.duplicates, "min_rows": self.min_rows}


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    label: Column
    columns: tuple[Column, ...]
    derived: tuple[Derived, ...] = ()
    numeric: tuple[str, ...] = ()
    bucketized: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    crosses: tuple[Cross, ...] = ()
    embedding_dim: int = DEFAULT_EMBEDDING_DIM
    benchmark_feature: str | None = None
    label_transform: str = DEFAULT_LABEL_TRANSFORM
    delimiter: str = DEFAULT_DELIMITER
    reject_warning_share: float = DEFAULT_REJECT_WARNING_SHARE
    task: str = "regression"
    split: SplitSpec = SplitSpec()
    source: str = field(default="<dict>", compare=False)

    # --- the task -------------------------------------------------------------------------
    @property
    def is_classification(self) -> bool:
        return self.task in CLASSIFICATION_TASKS

    @property
    def classes(self) -> tuple[Any, ...]:
        """The class labels in vocabulary order (empty for regression)."""
        return tuple(self.label.vocabulary or ()) if self.is_classification else ()

    @property
    def num_classes(self) -> int:
        """Classes of a classification label; 0 for regression."""
        return len(self.classes)

    # --- lookups --------------------------------------------------------------------------
    @property
    def column_names(self) -> list[str]:
        """Raw input columns, in spec order (the label excluded)."""
        return [c.name for c in self.columns]

    @property
    def all_columns(self) -> list[Column]:
        """Raw input columns followed by the label: what a CSV row must carry."""
        return [*self.columns, self.label]

    @property
    def derived_names(self) -> list[str]:
        return [d.name for d in self.derived]

    def column(self, name: str) -> Column:
        for col in self.all_columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def is_derived(self, name: str) -> bool:
        return name in self.derived_names

    def categorical_cardinality(self, name: str, vocabulary: list[Any] | None = None) -> int:
        """Number of ids of a categorical feature, the out-of-vocabulary id 0 included.

        Integer columns with a range use ``value - min + 1`` (0 is out of range); columns with a
        vocabulary (declared, or learned by the analyze pass and passed in) use its length + 1.
        """
        col = self.column(name)
        vocab = col.vocabulary if col.vocabulary is not None else vocabulary
        if vocab is not None:
            return len(vocab) + 1
        if col.type == "int" and col.range is not None:
            return int(col.range[1]) - int(col.range[0]) + 2
        raise FeatureSpecError(f"{self.source}: categorical {name!r} has neither a vocabulary nor an int range")

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label.to_dict(),
            "columns": [c.to_dict() for c in self.columns],
            "derived": [d.to_dict() for d in self.derived],
            "features": {
                "numeric": list(self.numeric),
                "bucketized": list(self.bucketized),
                "categorical": list(self.categorical),
                "crosses": [c.to_dict() for c in self.crosses],
            },
            "embedding_dim": self.embedding_dim,
            "benchmark_feature": self.benchmark_feature,
            "label_transform": self.label_transform,
            "delimiter": self.delimiter,
            "reject_warning_share": self.reject_warning_share,
            "task": self.task,
            **({"split": self.split.to_dict()} if self.split != SplitSpec() else {}),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")


# --- loading and validation ----------------------------------------------------------------------
def load_spec(path: str | Path | None = None) -> FeatureSpec:
    """Load and validate a spec file; ``None`` or ``""`` gives the built-in taxi spec."""
    spec_path = Path(path) if path else DEFAULT_SPEC_PATH
    raw = read_yaml_file(spec_path, FeatureSpecError, "feature spec")
    return spec_from_dict(raw, source=str(spec_path))


def spec_from_dict(raw: Any, source: str = "<dict>") -> FeatureSpec:
    """Build a spec from parsed YAML: the JSON Schema first, then every cross-reference."""
    check = _Checker(source)
    _check_schema(check, raw)
    label = _column(check, "label", raw["label"])
    task = _task(check, label, raw.get("task"))
    columns = tuple(_column(check, f"columns[{i}]", c) for i, c in enumerate(raw["columns"]))
    names = [c.name for c in columns] + [label.name]
    _no_duplicates(check, "columns", names)

    derived: list[Derived] = []
    for i, item in enumerate(raw.get("derived") or []):
        where = f"derived[{i}]"
        op, inputs = item["op"], item["inputs"]
        if len(inputs) != DERIVED_OPS[op]:
            check.fail(f"{where}.inputs", f"{op} takes {DERIVED_OPS[op]} inputs, got {len(inputs)}")
        known_numeric = [c.name for c in columns if c.is_numeric] + [d.name for d in derived]
        for name in inputs:
            if name not in known_numeric:
                check.fail(f"{where}.inputs", f"{name!r} is not a numeric column or earlier derived feature")
        derived.append(Derived(item["name"], op, tuple(inputs)))
    _no_duplicates(check, "derived", names + [d.name for d in derived])

    features = raw.get("features") or {}
    numeric_sources = {c.name for c in columns if c.is_numeric} | {d.name for d in derived}
    numeric = list(features.get("numeric") or [])
    bucketized = list(features.get("bucketized") or [])
    categorical = list(features.get("categorical") or [])
    for where, group in (("features.numeric", numeric), ("features.bucketized", bucketized)):
        for name in group:
            if name not in numeric_sources:
                check.fail(where, f"{name!r} is not a numeric column or derived feature")
    columns_by_name = {c.name: c for c in columns}
    for name in categorical:
        col = columns_by_name.get(name)
        if col is None:
            check.fail("features.categorical", f"{name!r} is not a raw column")
        if col.vocabulary is None and not (col.type == "int" and col.range is not None) and col.type != "string":
            check.fail("features.categorical", f"{name!r} needs a vocabulary, an int range, or type string")
    crosses: list[Cross] = []
    crossable = set(bucketized) | set(categorical)
    for i, item in enumerate(features.get("crosses") or []):
        where = f"features.crosses[{i}]"
        for name in item["inputs"]:
            if name not in crossable:
                check.fail(f"{where}.inputs", f"{name!r} is not a bucketized or categorical feature")
        crosses.append(Cross(item["name"], tuple(item["inputs"]), item.get("embedding_dim")))
    _no_duplicates(check, "features.crosses", [c.name for c in crosses])
    if not (numeric or bucketized or categorical):
        check.fail("features", "declares no feature at all")

    benchmark = raw.get("benchmark_feature")
    if benchmark is not None and benchmark not in numeric_sources:
        check.fail("benchmark_feature", f"{benchmark!r} is not a numeric column or derived feature")
    delimiter = raw.get("delimiter", DEFAULT_DELIMITER)
    if delimiter in ('"', "\n", "\r"):
        check.fail("delimiter", f"{delimiter!r} cannot be a delimiter")
    split = _split(check, raw.get("split") or {}, columns)
    return FeatureSpec(
        name=raw["name"],
        label=label,
        columns=columns,
        derived=tuple(derived),
        numeric=tuple(numeric),
        bucketized=tuple(bucketized),
        categorical=tuple(categorical),
        crosses=tuple(crosses),
        embedding_dim=int(raw.get("embedding_dim", DEFAULT_EMBEDDING_DIM)),
        benchmark_feature=benchmark,
        label_transform=raw.get("label_transform", DEFAULT_LABEL_TRANSFORM),
        delimiter=delimiter,
        reject_warning_share=float(raw.get("reject_warning_share", DEFAULT_REJECT_WARNING_SHARE)),
        task=task,
        split=split,
        source=source,
    )


def _split(check: _Checker, raw: dict[str, Any], columns: tuple[Column, ...]) -> SplitSpec:
    key = raw.get("key")
    if key is not None and key not in [c.name for c in columns]:
        check.fail("split.key", f"{key!r} is not a raw column (the label cannot be the key)")
    duplicates = raw.get("duplicates", SPLIT_DUPLICATES[0])
    if key is not None and duplicates != SPLIT_DUPLICATES[0]:
        check.fail("split.duplicates", f"{duplicates!r} does nothing with split.key: the key decides every row's split")
    return SplitSpec(key=key, duplicates=duplicates, min_rows=int(raw.get("min_rows", DEFAULT_SPLIT_MIN_ROWS)))


def _task(check: _Checker, label: Column, declared: str | None) -> str:
    """The task the label implies, checked against a declared ``task:``."""
    if label.vocabulary is None:
        if declared in CLASSIFICATION_TASKS:
            check.fail("label.vocabulary", f"task {declared!r} needs the label's classes as a vocabulary "
                                           f"(for example vocabulary: [0, 1])")
        if not label.is_numeric:
            check.fail("label.type", "a regression label must be float or int; a class label needs a vocabulary")
        return "regression"
    classes = label.vocabulary
    if label.type == "float":
        check.fail("label.type", "a class label (one with a vocabulary) must be string or int")
    if len(classes) < 2:
        check.fail("label.vocabulary", f"a class label needs at least 2 classes, got {len(classes)}")
    _no_duplicates(check, "label.vocabulary", [str(c) for c in classes])
    implied = "binary" if len(classes) == 2 else "multiclass"
    if declared == "regression":
        check.fail("task", f"'regression' contradicts the label's vocabulary of {len(classes)} classes "
                           f"(remove the vocabulary, or say task: {implied})")
    if declared is not None and declared != implied:
        check.fail("task", f"{declared!r} contradicts the label's vocabulary of {len(classes)} classes "
                           f"(that is {implied!r})")
    return implied


def _column(check: _Checker, where: str, item: dict[str, Any]) -> Column:
    """One column whose shape the schema checked: the checks that depend on its type."""
    col_type = item["type"]
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in item["name"]):
        # any other name is served under a safe signature name (savedmodel.signature_input_names)
        check.fail(f"{where}.name", f"{item['name']!r} cannot be served: a column name cannot hold a control "
                                    "character (tab, newline...)")
    value_range = None
    if item.get("range") is not None:
        rng = item["range"]
        if col_type == "string":
            check.fail(f"{where}.range", "a string column cannot have a range")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in rng):
            check.fail(f"{where}.range", "must be [min, max] with two finite numbers")
        if rng[0] > rng[1]:
            check.fail(f"{where}.range", f"min {rng[0]} is greater than max {rng[1]}")
        value_range = (rng[0], rng[1])
    vocabulary = None
    if item.get("vocabulary") is not None:
        vocab = item["vocabulary"]
        expected = str if col_type == "string" else int
        if not all(isinstance(v, expected) and not isinstance(v, bool) for v in vocab):
            check.fail(f"{where}.vocabulary", f"every entry must be a {col_type}")
        vocabulary = tuple(vocab)
    return Column(item["name"], col_type, value_range, vocabulary, item.get("default"))


def _no_duplicates(check: _Checker, where: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            check.fail(where, f"name {name!r} is used twice")
        seen.add(name)


# --- the JSON Schema ------------------------------------------------------------------------------
@functools.cache
def spec_schema() -> dict[str, Any]:
    """The feature spec's JSON Schema (featurespec.schema.json next to this module)."""
    return json.loads(SPEC_SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _schema_validator():
    import jsonschema

    schema = spec_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _check_schema(check: _Checker, raw: Any) -> None:
    """The first schema violation as 'source: field.path: message', worded like the hand checks were."""
    # the shallowest problem first: a missing section says more than the errors inside another one
    errors = sorted(_schema_validator().iter_errors(raw),
                    key=lambda e: (len(e.absolute_path), [str(part) for part in e.absolute_path]))
    if not errors:
        return
    error = errors[0]
    path = list(error.absolute_path)
    if isinstance(error.schema, dict) and error.schema.get("x-at-parent"):  # e.g. range[0]: the range is wrong
        path = path[:-1]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    check.fail(where, _schema_message(error))


def _schema_message(error) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind == "required":
        missing = sorted(set(error.validator_value) - set(error.instance))
        return f"missing field {missing[0]!r}"
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"unknown field {unknown[0]!r}; allowed: {allowed}"
    if kind == "enum":
        noun = schema.get("x-noun", "value")
        return f"unknown {noun} {error.instance!r}; expected one of {list(error.validator_value)}"
    message = (schema.get("x-messages") or {}).get(kind) or schema.get("x-message")
    if message is None:
        return error.message
    if kind in ("type", "minimum") and "integer" in message:
        return f"{message}, got {error.instance!r}"
    return message


class _Checker:
    """Raises FeatureSpecError with 'source: field.path: message'."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str):
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        raise FeatureSpecError(prefix + message)
