"""Cell typing: the vectorised fast path and the per-cell reference path always agree."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from mlengine.components.ingest.convert import parse_column, row_hashes, unit_interval
from mlengine.components.ingest.report import histogram_rows
from mlengine.components.ingest.statistics import histogram
from mlengine.components.shared.featurespec import Column

CELL_TEXT = st.text(alphabet="0123456789.-+eExXnaif_ ", max_size=8)
COLUMNS = [Column("f", "float"), Column("i", "int"), Column("r", "float", range=(-5, 5)),
           Column("v", "int", vocabulary=(1, 2, 30))]


def _outcome(col: Column, cells: list[str], index: int):
    parsed = parse_column(col, pa.array(cells, pa.string()), None)
    if parsed.bad[index]:
        return ("bad", parsed.reasons[index])
    return ("ok", parsed.values[index].item())


def _python_reference(col: Column, text: str):
    """What Python itself makes of a cell: the number, or None when the row must be rejected."""
    stripped = text.strip()
    try:
        if col.type == "float":
            number = float(stripped)
        else:
            try:
                number = int(stripped)
            except ValueError:
                as_float = float(stripped)
                if not math.isfinite(as_float) or as_float != int(as_float):
                    return None
                number = int(as_float)
    except ValueError:
        return None
    if not math.isfinite(number) or (col.type == "int" and not -2**63 <= number < 2**63):
        return None
    if col.range is not None and not col.range[0] <= number <= col.range[1]:
        return None
    if col.vocabulary is not None and number not in col.vocabulary:
        return None
    return number


@settings(max_examples=300, deadline=None)
@given(text=CELL_TEXT, col_index=st.integers(0, len(COLUMNS) - 1))
def test_a_cell_is_typed_the_same_alone_or_next_to_a_bad_cell(text, col_index):
    col = COLUMNS[col_index]
    alone = _outcome(col, [text], 0)
    # an empty cell beside it forces the per-cell path for the whole column
    beside_bad = _outcome(col, ["", text], 1)
    assert alone == beside_bad
    expected = _python_reference(col, text)
    if expected is None:
        assert alone[0] == "bad"
    else:
        assert alone == ("ok", expected)


def test_row_hash_is_stable_and_value_based():
    floats = np.array([1.5, -0.0, 2.0])
    ints = np.array([3, 4, 5], dtype=np.int64)
    strings = pa.array(["a", "b", "a"])
    first = row_hashes([floats, ints, strings], seed=0)
    # same values, other order and other chunk: same per-row hashes
    reordered = row_hashes([floats[::-1].copy(), ints[::-1].copy(), pa.array(["a", "b", "a"][::-1])], seed=0)
    assert list(first) == list(reordered[::-1])
    assert row_hashes([np.array([0.0]), ints[:1], strings[:1]], 0)[0] == \
        row_hashes([np.array([-0.0]), ints[:1], strings[:1]], 0)[0]
    assert list(row_hashes([floats, ints, strings], seed=1)) != list(first)
    # a pinned value: if the hash function changes, every row moves to another split
    assert int(row_hashes([np.array([1.0]), np.array([1], np.int64), pa.array(["x"])], 0)[0]) == 8911883640791054582
    positions = unit_interval(row_hashes([np.arange(20000, dtype=np.float64)], seed=0))
    assert positions.min() >= 0.0 and positions.max() < 1.0
    assert abs((positions < 0.8).mean() - 0.8) < 0.02


def test_histograms_span_the_data_not_the_declared_range():
    # a long-tailed fare declared as [0, 1000] put 199,911 of 200,000 rows in one bin
    rng = np.random.default_rng(0)
    fares = np.concatenate([rng.gamma(2.0, 6.0, 20_000), [950.0, 990.0]])
    entry = histogram(fares, integer=False)
    counts = entry["counts"]
    assert entry["edges"][-1] < 100  # the central range, the two outliers in the overflow bin
    assert entry["overflow"] >= 2 and entry["underflow"] >= 1
    assert sum(counts) + entry["underflow"] + entry["overflow"] == len(fares)
    assert max(counts) < 0.25 * len(fares) and sum(c == 0 for c in counts) <= 2


def test_integer_columns_get_integer_bins_and_labels():
    hours = np.random.default_rng(1).integers(0, 24, 5000)
    entry = histogram(hours, integer=True)
    assert entry["integer"] is True and entry["underflow"] == entry["overflow"] == 0
    assert all(float(e) + 0.5 == int(e + 0.5) for e in entry["edges"])  # edges at k - 0.5
    labels = [label for label, _ in histogram_rows(entry)]
    assert labels[:3] == ["0-1", "2-3", "4-5"] and labels[-1] == "22-23"  # 24 values in 12 bins of 2
    days = histogram(np.arange(1, 8).repeat(10), integer=True)
    assert [label for label, _ in histogram_rows(days)] == ["1", "2", "3", "4", "5", "6", "7"]
    assert days["counts"] == [10] * 7
    wide = histogram(np.arange(0, 1000), integer=True)
    assert len(wide["counts"]) <= 20
    assert all(label.replace("-", "").replace("<", "").replace(">", "").strip().isdigit()
               for label, _ in histogram_rows(wide))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-6, 6), min_size=1, max_size=300), st.booleans())
def test_histogram_by_binary_search_counts_exactly_as_np_histogram(cells, integer):
    # values on the edges themselves (quarter steps hit linspace's edges) test [a, b) and the closed last bin
    values = np.asarray(cells, np.float64) if integer else np.asarray(cells, np.float64) / 4.0
    entry = histogram(values, integer)
    edges = np.asarray(entry["edges"])
    reference, _ = np.histogram(values, bins=edges)
    assert entry["counts"] == reference.tolist()
    assert entry["underflow"] == int(np.count_nonzero(values < edges[0]))
    assert entry["overflow"] == int(np.count_nonzero(values > edges[-1]))
