"""Class labels: raw label values to class indices (vocabulary order), and the task's objective.

The ingested Parquet keeps the label as the user wrote it (a string or an int of the spec's
vocabulary). Everything that trains on it or scores against it maps it here, once, to the
index of the class in ``spec.classes``: training (components/train/data.py) and evaluation use
the same function, so class ``k`` means the same thing everywhere, and the model's
``probabilities[:, k]`` is the probability of ``spec.classes[k]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlengine.errors import DataError

OBJECTIVE_REGRESSION = "rmse"  # what tuning and early stopping minimise for a regression label
OBJECTIVE_CLASSIFICATION = "log_loss"  # ... and for a class label (the mean cross-entropy, natural log)


def objective_metric(spec) -> str:
    """The eval figure training keeps the best epoch by and tuning minimises: rmse or log_loss."""
    return OBJECTIVE_CLASSIFICATION if spec.is_classification else OBJECTIVE_REGRESSION


def _key(spec, value: Any) -> Any:
    return str(value) if spec.label.type == "string" else int(value)


def class_indices(spec, values: Any, *, source: str = "") -> np.ndarray:
    """Int64 class indices (positions in ``spec.classes``) of raw label values.

    ``values``: a numpy array (str/object or int), a list or a pyarrow array. A value outside
    the vocabulary raises a one-line :class:`DataError` naming it (ingest rejects such rows, so
    it only happens on data that did not come through ingest with this spec).
    """
    if not spec.is_classification:
        raise DataError(f"{spec.source}: label {spec.label.name!r} is a regression label: it has no classes")
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(zero_copy_only=False)
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if spec.label.type == "string":
        array = array.astype(str)
    index = {_key(spec, c): i for i, c in enumerate(spec.classes)}
    uniques, inverse = np.unique(array.reshape(-1), return_inverse=True)
    mapped = np.empty(len(uniques), np.int64)
    for position, value in enumerate(uniques.tolist()):
        found = index.get(_key(spec, value))
        if found is None:
            where = f"{source}: " if source else ""
            raise DataError(f"{where}label {spec.label.name!r}: value {value!r} is not one of the classes "
                            f"{list(spec.classes)} (vocabulary in {spec.source})")
        mapped[position] = found
    return mapped[inverse.reshape(-1)]


def class_counts(spec, values: Any) -> list[int]:
    """Rows per class, in vocabulary order (zeros included)."""
    indices = class_indices(spec, values)
    return [int(c) for c in np.bincount(indices, minlength=spec.num_classes)]


MAX_CLASS_HINT = 10  # an int label without a vocabulary and at most this many values looks like classes


def int_label_hint(spec, values: list) -> str | None:
    """The one-line warning for an int regression label with a handful of distinct values (None otherwise).

    ``values``: the label's distinct values seen in the data (or a sample of it).
    """
    if spec.is_classification or spec.label.type != "int" or not values or len(values) > MAX_CLASS_HINT:
        return None
    shown = sorted(int(v) for v in values)
    vocabulary = ", ".join(str(v) for v in shown)
    return (f"{spec.source}: label {spec.label.name!r} is an int with only {len(shown)} distinct value(s) "
            f"({vocabulary}) and no vocabulary, so it is trained as a REGRESSION label; if these are classes, "
            f"give the label `vocabulary: [{vocabulary}]`")
