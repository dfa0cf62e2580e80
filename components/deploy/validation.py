"""Check prediction requests against the feature spec before they reach the model.

Every problem is a :class:`RequestError` whose message is one line naming the field and the
instance (row) index, e.g. ``instances[3].pickup_latitude: 95.0 is outside the range [40.5, 41.0]``;
the server answers it with HTTP 400 and keeps serving. Checks: the body shape, missing and
unknown features, value types (bool is not a number, "1.5" is not a float), NaN/inf, the spec's
ranges, empty and oversized instance lists.

The common case is vectorized: one list per column, one ``np.array`` conversion, a min/max
range check. Only when that fast path finds a problem does a per-value scan look for the first
offending row, so a good batch of 256 rows costs well under a millisecond. The server's bulk
path goes further for v1 bodies (:meth:`RequestValidator.v1_from_json`): msgspec decodes the
bytes straight into typed rows or columns, checking types and ranges as it parses, with no
dict per row; whatever it refuses goes through the checks above, which name the problem.

Accepted layouts (documented in the README of the deploy component):

- v1 (KServe / TF Serving row format): ``{"instances": [{"<column>": value, ...}, ...]}``, or
  TF Serving's columnar format ``{"inputs": {"<column>": [value, ...], ...}}`` (smaller and
  cheaper to check for big batches), optionally with ``"signature_name": "serving_default"``.
- v2 (Open Inference Protocol): one input per raw column, ``name`` = the column, ``shape``
  ``[N]`` (or ``[N, 1]``), ``datatype`` FP32/FP64 for float columns, INT64/INT32 for int columns,
  BYTES for string columns, ``data`` a flat list of N values.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from mlengine.components.shared.featurespec import DTYPES
from mlengine.errors import MlengineError

DEFAULT_MAX_INSTANCES = 10_000
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_STRING_CHARS = 4096
V1_OPTIONAL_KEYS = frozenset({"signature_name"})
SIGNATURE_NAME = "serving_default"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the model takes float32: larger values would become inf
EXACT_INT_MAX = 2.0**53  # ints up to this survive the float64 fast path unchanged


class RequestError(MlengineError, ValueError):
    """A prediction request the client must fix: HTTP 400 with ``{"error", "field", "index"}``."""

    def __init__(self, message: str, field: str | None = None, index: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "index": self.index}


@dataclass(frozen=True)
class ColumnRule:
    name: str
    type: str  # float | int | string
    low: float | None = None
    high: float | None = None


class RequestValidator:
    """Turns request bodies into validated numpy columns (float32 / int64 / object)."""

    def __init__(self, spec, max_instances: int = DEFAULT_MAX_INSTANCES):
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        self.rules = tuple(
            ColumnRule(c.name, c.type, *(c.range if c.range is not None else (None, None))) for c in spec.columns
        )
        self.names = tuple(rule.name for rule in self.rules)
        self._name_set = frozenset(self.names)
        self.max_instances = max_instances
        # fast path for the numeric columns of v1 rows: one (rows x columns) float64 matrix
        self._numeric = tuple(rule for rule in self.rules if rule.type != "string")
        self._strings = tuple(rule for rule in self.rules if rule.type == "string")
        numeric_names = [rule.name for rule in self._numeric]
        self._numeric_getter = operator.itemgetter(*numeric_names) if len(numeric_names) > 1 else (
            (lambda row, name=numeric_names[0]: (row[name],)) if numeric_names else None)
        limits = [_limits(rule) for rule in self._numeric]
        self._lows = np.array([low for low, _ in limits], dtype=np.float64)
        self._highs = np.array([high for _, high in limits], dtype=np.float64)
        self._int_positions = [i for i, rule in enumerate(self._numeric) if rule.type == "int"]
        self._rows_decoder, self._columns_decoder = _typed_v1_decoders(self.rules, max_instances)

    # --- v1 bytes, decoded and checked in one pass (the server's bulk path) -----------------------
    def v1_from_json(self, body: bytes) -> tuple[dict[str, np.ndarray], int, bool] | None:
        """``(columns, rows, columnar)`` for a v1 body that is valid as it stands, else None.

        Accepts exactly what :meth:`v1_columns` accepts without conversion (an integral float in
        an int column, say, is left to it); None for anything else, and :meth:`v1_columns` on the
        decoded body then names the problem or converts the value.
        """
        try:
            decoded = self._rows_decoder.decode(body)
            columnar = False
        except msgspec.ValidationError:
            try:
                decoded = self._columns_decoder.decode(body)
                columnar = True
            except msgspec.MsgspecError:
                return None
        except msgspec.DecodeError:
            return None
        if columnar:
            lists = msgspec.structs.astuple(decoded.inputs)  # fields in rule order
            rows = len(lists[0])
            if any(len(values) != rows for values in lists):
                return None
        else:
            instances = decoded.instances
            rows = len(instances)
            lists = list(zip(*map(msgspec.structs.astuple, instances), strict=True))  # fields in rule order
        columns = {rule.name: np.array(values, dtype=DTYPES[rule.type].numpy)  # object for strings
                   for rule, values in zip(self.rules, lists, strict=True)}
        return columns, rows, columnar

    # --- v1: {"instances": [{...}, ...]} -------------------------------------------------------
    def v1_columns(self, body: Any) -> tuple[dict[str, np.ndarray], int]:
        """Validate a decoded v1 body (row ``instances`` or columnar ``inputs``); return ``(columns, rows)``."""
        if not isinstance(body, dict):
            raise RequestError(f"the body must be a JSON object with 'instances', got {_kind(body)}", "instances")
        if ("instances" in body) == ("inputs" in body):
            raise RequestError("the body needs exactly one of 'instances' (rows) or 'inputs' (columns)", "instances")
        layout = "instances" if "instances" in body else "inputs"
        unknown = sorted(str(k) for k in body if k != layout and k not in V1_OPTIONAL_KEYS)
        if unknown:
            raise RequestError(f"unknown top-level field {unknown[0]!r}; allowed: {layout}, signature_name",
                               unknown[0])
        signature = body.get("signature_name", SIGNATURE_NAME)
        if signature != SIGNATURE_NAME:
            raise RequestError(f"signature_name {signature!r} is not served; only {SIGNATURE_NAME!r}", "signature_name")
        if layout == "inputs":
            return self._v1_columnar(body["inputs"])
        instances = body["instances"]
        if not isinstance(instances, list):
            raise RequestError(f"'instances' must be a list of objects, got {_kind(instances)}", "instances")
        rows = self._check_count(len(instances), "instances")
        shapes_ok = set(map(type, instances)) == {dict} and set(map(len, instances)) == {len(self.names)}
        columns = self._v1_fast(instances) if shapes_ok else None
        if columns is not None:
            return columns, rows
        expected = self._name_set
        for index, instance in enumerate(instances):
            if type(instance) is not dict or instance.keys() != expected:
                self._instance_shape_error(instance, index)
        columns = {}
        for rule in self.rules:
            values = [instance[rule.name] for instance in instances]
            columns[rule.name] = self._column(rule, values, lambda i, name=rule.name: f"instances[{i}].{name}")
        return columns, rows

    def _v1_fast(self, instances: list[dict]) -> dict[str, np.ndarray] | None:
        """All numeric columns at once; None when anything is off (the slow path then names the problem)."""
        columns: dict[str, np.ndarray] = {}
        try:
            if self._numeric_getter is not None:
                table = list(map(self._numeric_getter, instances))
                if not set(map(type, itertools.chain.from_iterable(table))) <= {int, float}:
                    return None
                width = len(self._numeric)
                matrix = np.fromiter(itertools.chain.from_iterable(table), dtype=np.float64,
                                     count=len(table) * width).reshape(len(table), width)
                if not (np.isfinite(matrix).all() and (matrix >= self._lows).all() and (matrix <= self._highs).all()):
                    return None
                if self._int_positions:
                    ints = matrix[:, self._int_positions]
                    if not (ints == np.trunc(ints)).all():
                        return None
                for position, rule in enumerate(self._numeric):
                    columns[rule.name] = matrix[:, position].astype(DTYPES[rule.type].numpy)
            for rule in self._strings:
                values = [instance[rule.name] for instance in instances]
                if set(map(type, values)) != {str} or max(map(len, values)) > MAX_STRING_CHARS:
                    return None
                columns[rule.name] = np.array(values, dtype=object)
        except (KeyError, OverflowError, ValueError, TypeError):
            return None
        return {name: columns[name] for name in self.names}

    def _v1_columnar(self, inputs: Any) -> tuple[dict[str, np.ndarray], int]:
        """TF Serving's columnar layout: ``{"inputs": {"<column>": [values...], ...}}``."""
        if not isinstance(inputs, dict):
            raise RequestError(f"'inputs' must be an object of columns, got {_kind(inputs)}", "inputs")
        for name in self.names:
            if name not in inputs:
                raise RequestError(f"inputs.{name}: missing feature", name)
        extra = sorted(str(k) for k in inputs if k not in self._name_set)
        if extra:
            raise RequestError(f"inputs.{extra[0]}: unknown feature; expected {', '.join(self.names)}", extra[0])
        rows: int | None = None
        columns = {}
        for rule in self.rules:
            values = inputs[rule.name]
            if not isinstance(values, list):
                raise RequestError(f"inputs.{rule.name}: expected a list of values, got {_kind(values)}", rule.name)
            if rows is None:
                rows = self._check_count(len(values), f"inputs.{rule.name}", rule.name)
            elif len(values) != rows:
                raise RequestError(f"inputs.{rule.name}: {len(values)} values, but other features have {rows}",
                                   rule.name)
            columns[rule.name] = self._column(rule, values, lambda i, name=rule.name: f"inputs.{name}[{i}]")
        return columns, int(rows or 0)

    def _instance_shape_error(self, instance: Any, index: int):
        if not isinstance(instance, dict):
            raise RequestError(f"instances[{index}]: expected an object of features, got {_kind(instance)}",
                               None, index)
        for name in self.names:
            if name not in instance:
                raise RequestError(f"instances[{index}].{name}: missing feature", name, index)
        extra = sorted(str(k) for k in instance if k not in self._name_set)
        raise RequestError(f"instances[{index}].{extra[0]}: unknown feature; expected {', '.join(self.names)}",
                           extra[0], index)

    # --- v2: one input per column -------------------------------------------------------------
    def v2_columns(self, inputs: Sequence[Any]) -> tuple[dict[str, np.ndarray], int]:
        """Validate v2 inputs (objects with name/shape/datatype/data); return ``(columns, rows)``."""
        by_name: dict[str, Any] = {}
        for position, item in enumerate(inputs):
            name = getattr(item, "name", None)
            if name in by_name:
                raise RequestError(f"inputs[{position}]: feature {name!r} is given twice", name)
            if name not in self._name_set:
                raise RequestError(f"inputs[{position}]: unknown feature {name!r}; expected {', '.join(self.names)}",
                                   name if isinstance(name, str) else None)
            by_name[name] = item
        for name in self.names:
            if name not in by_name:
                raise RequestError(f"inputs: feature {name!r} is missing (one input per feature)", name)
        rows: int | None = None
        columns = {}
        for rule in self.rules:
            item = by_name[rule.name]
            datatype = str(getattr(item, "datatype", "")).upper()
            if datatype not in DTYPES[rule.type].v2:
                raise RequestError(f"inputs.{rule.name}.datatype: {datatype or None!r} does not fit a {rule.type} "
                                   f"feature; use {' or '.join(DTYPES[rule.type].v2)}", rule.name)
            values = _v2_values(item, rule.name)
            shape = list(getattr(item, "shape", None) or [])
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] != len(values):
                raise RequestError(f"inputs.{rule.name}.shape: {shape} does not match {len(values)} values; "
                                   f"use [N] or [N, 1]", rule.name)
            if rows is None:
                rows = self._check_count(len(values), f"inputs.{rule.name}", rule.name)
            elif len(values) != rows:
                raise RequestError(f"inputs.{rule.name}: {len(values)} values, but other features have {rows}",
                                   rule.name)
            if datatype == "BYTES":
                values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
            columns[rule.name] = self._column(rule, values, lambda i, name=rule.name: f"inputs.{name}[{i}]")
        return columns, int(rows or 0)

    def v2_arrays(self, inputs: Sequence[tuple[str, str, list, np.ndarray]]
                  ) -> tuple[dict[str, np.ndarray], int] | None:
        """Numeric v2 tensors already decoded into numpy (``(name, datatype, shape, array)``): validated columns.

        The bulk path of the binary tensor extension: no per-value Python objects. None when any
        check fails, or for anything but the spec's numeric columns; :meth:`v2_columns` on the same
        request then names the problem with the usual message.
        """
        if len(inputs) != len(self.rules) or self._strings:
            return None
        by_name = {name: (datatype, shape, array) for name, datatype, shape, array in inputs}
        if by_name.keys() != self._name_set:
            return None
        rows: int | None = None
        columns = {}
        for rule in self.rules:
            datatype, shape, array = by_name[rule.name]
            if datatype not in DTYPES[rule.type].v2 or array.ndim != 1:
                return None
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] != len(array):
                return None
            if rows is None:
                if not 0 < len(array) <= self.max_instances:
                    return None
                rows = len(array)
            elif len(array) != rows:
                return None
            if rule.type == "float":
                if not np.isfinite(array).all():
                    return None
                if rule.low is None and np.abs(array).max() > FLOAT32_MAX:
                    return None
            if rule.low is not None and not (array.min() >= rule.low and array.max() <= rule.high):
                return None
            columns[rule.name] = array.astype(DTYPES[rule.type].numpy, copy=False)
        return columns, int(rows or 0)

    # --- shared ---------------------------------------------------------------------------------
    def _check_count(self, count: int, where: str, field: str | None = None) -> int:
        field = field or where
        if count == 0:
            raise RequestError(f"{where}: empty; send at least one instance", field)
        if count > self.max_instances:
            raise RequestError(f"{where}: {count} instances, more than the limit of {self.max_instances} per request",
                               field)
        return count

    def _column(self, rule: ColumnRule, values: list, where) -> np.ndarray:
        """Fast vectorized conversion and checks; on any problem, locate the first bad value."""
        types = set(map(type, values))
        array = None
        try:
            if rule.type == "float" and types <= {float, int}:
                array = np.array(values, dtype=np.float64)
                if not np.isfinite(array).all() or (rule.low is None and np.abs(array).max() > FLOAT32_MAX):
                    array = None
            elif rule.type == "int" and types == {int}:
                array = np.array(values, dtype=np.int64)
            elif rule.type == "string" and types == {str} and max(map(len, values)) <= MAX_STRING_CHARS:
                return np.array(values, dtype=object)
        except (OverflowError, ValueError, TypeError):
            array = None
        if array is not None and (rule.low is None or (array.min() >= rule.low and array.max() <= rule.high)):
            return array.astype(DTYPES[rule.type].numpy, copy=False)
        return self._slow_column(rule, values, where)

    def _slow_column(self, rule: ColumnRule, values: list, where) -> np.ndarray:
        for index, value in enumerate(values):
            problem = _value_problem(rule, value)
            if problem:
                raise RequestError(f"{where(index)}: {problem}", rule.name, index)
        # every value passed on its own (e.g. integral floats in an int column): convert them
        if rule.type == "int":
            return np.array([int(v) for v in values], dtype=np.int64)
        return np.array(values, dtype=DTYPES[rule.type].numpy)


def _typed_v1_decoders(rules: Sequence[ColumnRule], max_instances: int
                       ) -> tuple[msgspec.json.Decoder, msgspec.json.Decoder]:
    """msgspec decoders of v1 ``instances`` (rows) and ``inputs`` (columns) bodies, typed by the spec.

    Each value's type and bounds are those :meth:`RequestValidator.v1_columns` accepts as they
    are: a number (not a bool) inside the spec range, else inside what float32 or int64 holds;
    a string of at most MAX_STRING_CHARS characters. Unknown fields are refused, as there.
    """
    def value_type(rule: ColumnRule):
        if rule.type == "string":
            return Annotated[str, msgspec.Meta(max_length=MAX_STRING_CHARS)]
        if rule.type == "int":
            low, high = (INT64_MIN, INT64_MAX) if rule.low is None else (math.ceil(rule.low), math.floor(rule.high))
            return Annotated[int, msgspec.Meta(ge=low, le=high)]
        low, high = _limits(rule)
        return Annotated[float, msgspec.Meta(ge=low, le=high)]

    count = msgspec.Meta(min_length=1, max_length=max_instances)
    signature = ("signature_name", Literal[SIGNATURE_NAME], SIGNATURE_NAME)
    options = {"forbid_unknown_fields": True, "gc": False}
    # fields c0, c1, ... in rule order, named in JSON as the columns are (any text, not only identifiers)
    names = {f"c{position}": rule.name for position, rule in enumerate(rules)}
    row = msgspec.defstruct("Instance", [(field, value_type(rule)) for field, rule in zip(names, rules, strict=True)],
                            rename=names, **options)
    rows_body = msgspec.defstruct("V1Rows", [("instances", Annotated[list[row], count]), signature], **options)
    columns = msgspec.defstruct("Columns", [(field, Annotated[list[value_type(rule)], count])
                                            for field, rule in zip(names, rules, strict=True)], rename=names, **options)
    columns_body = msgspec.defstruct("V1Columns", [("inputs", columns), signature], **options)
    return msgspec.json.Decoder(rows_body), msgspec.json.Decoder(columns_body)


def _limits(rule: ColumnRule) -> tuple[float, float]:
    """Bounds of the float64 fast path: the spec range, else what float32 / exact ints can hold."""
    if rule.low is not None:
        return float(rule.low), float(rule.high)
    bound = EXACT_INT_MAX if rule.type == "int" else FLOAT32_MAX
    return -bound, bound


def _value_problem(rule: ColumnRule, value: Any) -> str | None:
    """Why one value does not fit its column, or None."""
    if rule.type == "string":
        if not isinstance(value, str):
            return f"expected a string, got {_kind(value)}"
        if len(value) > MAX_STRING_CHARS:
            return f"string of {len(value)} characters, more than {MAX_STRING_CHARS}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number ({rule.type}), got {_kind(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if rule.type == "int":
        if isinstance(value, float) and not value.is_integer():
            return f"expected an integer, got {value!r}"
        if not INT64_MIN <= value <= INT64_MAX:
            return f"{value} does not fit in int64"
    elif abs(value) > FLOAT32_MAX:
        return f"{_short(value)} is too large for float32"
    if rule.low is not None and not rule.low <= value <= rule.high:
        return f"{_short(value)} is outside the range [{rule.low}, {rule.high}]"
    return None


def _v2_values(item: Any, name: str) -> list:
    data = getattr(item, "data", None)
    if isinstance(data, np.ndarray):
        data = data.tolist()
    if not isinstance(data, list):
        raise RequestError(f"inputs.{name}.data: expected a list of values, got {_kind(data)}", name)
    if data and all(isinstance(v, list) and len(v) == 1 for v in data):  # [[v], [v], ...] for shape [N, 1]
        data = [v[0] for v in data]
    return data


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {_short(value)}"
    if isinstance(value, int | float):
        return f"number {_short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
