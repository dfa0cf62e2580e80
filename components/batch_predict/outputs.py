"""The prediction columns batch prediction writes, by task.

- regression: ``prediction`` (float32, the label's unit);
- classification: ``prediction`` (the predicted class, in the vocabulary's type: string or int64)
  and ``probabilities`` (``list<float32>``, one entry per class in the vocabulary's order; the
  class with the highest probability is ``prediction``).

CSV has no list type: the CSV output writes the probabilities as one column per class,
``probability_<class>``, in the vocabulary's order (``csv_table``).
"""

from __future__ import annotations

import numpy as np

from mlengine.constants import OUTPUT_CLASS, OUTPUT_PROBABILITIES

PREDICTION_COLUMN = "prediction"
PROBABILITIES_COLUMN = "probabilities"
CSV_PROBABILITY_PREFIX = "probability_"


def output_names(spec) -> tuple[str, ...]:
    """The columns the model's predictions add to the output (no kept column may take these names)."""
    return (PREDICTION_COLUMN, PROBABILITIES_COLUMN) if spec.is_classification else (PREDICTION_COLUMN,)


def predict(model, spec, columns: dict[str, np.ndarray]) -> dict:
    """The prediction columns (Arrow arrays) of valid, typed feature columns."""
    import pyarrow as pa

    if not spec.is_classification:
        return {PREDICTION_COLUMN: pa.array(np.asarray(model(columns), np.float32))}
    result = model.outputs(columns)
    labels = result[OUTPUT_CLASS]
    label_type = pa.string() if spec.label.type == "string" else pa.int64()
    probabilities = np.ascontiguousarray(result[OUTPUT_PROBABILITIES], dtype=np.float32)
    rows, classes = probabilities.shape
    offsets = pa.array(np.arange(0, (rows + 1) * classes, classes, dtype=np.int32))
    return {PREDICTION_COLUMN: pa.array(labels, type=label_type),
            PROBABILITIES_COLUMN: pa.ListArray.from_arrays(offsets, pa.array(probabilities.reshape(-1)))}


def csv_table(table, spec):
    """``table`` with its ``probabilities`` list column as one ``probability_<class>`` column per class."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if PROBABILITIES_COLUMN not in table.column_names:
        return table
    index = table.column_names.index(PROBABILITIES_COLUMN)
    flat = pc.list_flatten(table.column(PROBABILITIES_COLUMN)).to_numpy().reshape(table.num_rows, len(spec.classes))
    table = table.remove_column(index)
    for offset, name in enumerate(spec.classes):
        table = table.add_column(index + offset, f"{CSV_PROBABILITY_PREFIX}{name}", pa.array(flat[:, offset]))
    return table
