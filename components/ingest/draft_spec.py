"""Draft a feature spec from a sample of a CSV: what `mlengine spec` writes for the user to edit.

From the first file the data URI names: every row up to ``SCAN_ROWS`` for the types and ranges
(a sample of a sorted file would miss its ends), and a uniform sample of ``sample_rows`` of them
for the rest:

- the delimiter (the header is tried with ``,``, ``;``, tab and ``|``: the one giving most columns);
- per column a type: ``int`` when every non-empty cell is an integer, ``float`` when every one is
  a number, else ``string``;
- numeric ranges: the observed [min, max] widened by ``RANGE_MARGIN`` of the span on each side
  (not below 0 for a column never negative) and rounded outward, since ingest rejects and the
  server refuses values outside the range;
- vocabularies for strings with at most ``MAX_VOCABULARY`` distinct values; strings with nearly one
  value per row are treated as identifiers and left out of the features;
- the label: ``--label``, else a column named like a target (``LABEL_WORDS`` with
  ``OUTCOME_WORDS`` after its first two, then ``CLASS_WORDS``; strongest first), else the last
  numeric column (else the last string column with few values). A string label with at most
  ``MAX_VOCABULARY`` values, or an int label with at most ``MAX_INT_CLASSES``, is drafted as a
  class label: its vocabulary is every value of the scanned rows, SORTED (strings alphabetically,
  ints by value), which is the class order of the model's probabilities; the comment says so and
  gives the shares;
- features: floats and wide ints numeric, strings and narrow ints (``MAX_CATEGORICAL_INT``
  values at most) categorical; bucketized and crossed features as commented suggestions;
- ``benchmark_feature``: the numeric column most correlated with the label in the sample (a
  binary label: with its class index; none for a multiclass label, whose benchmark is the prior).

The YAML is checked with the spec loader before it is written, so a drafted spec always loads.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.components.shared import storage
from mlengine.components.shared.featurespec import DEFAULT_DELIMITER, spec_from_dict
from mlengine.components.shared.labels import MAX_CLASS_HINT
from mlengine.components.shared.logs import component_logger
from mlengine.constants import SPEC_SAMPLE_ROWS
from mlengine.errors import DataError, MlengineError

DEFAULT_SAMPLE_ROWS = SPEC_SAMPLE_ROWS
SCAN_ROWS = 1_000_000  # rows of the first file read for types and ranges; the sample is drawn from them
SAMPLE_SEED = 0
RANGE_MARGIN = 0.1  # share of the observed span added on each side of a numeric range
MAX_VOCABULARY = 50  # strings with more distinct values get no declared vocabulary
IDENTIFIER_SHARE = 0.9  # distinct values per row above which a string column looks like an id
MAX_CATEGORICAL_INT = 32  # int columns with at most this many distinct values are categorical
CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
# target-like names, strongest first: a column named "y" next to "x" and "z" is a coordinate before a price is
LABEL_WORDS = ("label", "target", "price", "fare", "amount", "cost", "sales", "revenue", "value", "score", "y")
# names of class labels: unmistakable ones are tried right after "label" and "target", looser ones after LABEL_WORDS
OUTCOME_WORDS = ("outcome", "churn", "churned", "survived", "diagnosis")
CLASS_WORDS = ("class", "species", "category", "default", "status")
MAX_INT_CLASSES = MAX_CLASS_HINT  # an int label with at most this many values is drafted as classes
MAX_BUCKETIZED_SUGGESTIONS = 4
MISSING_VALUE = "missing"  # the drafted default of a string column with empty cells

logger = component_logger("spec")


@dataclass
class ColumnDraft:
    """What the sample says about one column."""

    name: str
    type: str = "string"
    empty: int = 0
    count: int = 0  # non-empty cells
    minimum: float | None = None
    maximum: float | None = None
    distinct: dict[str, int] = field(default_factory=dict)  # value -> count, capped
    distinct_capped: bool = False
    numbers: list[float] = field(default_factory=list)
    non_finite: int = 0  # NaN / inf cells (ingest rejects their rows)

    @property
    def is_numeric(self) -> bool:
        return self.type in ("float", "int")

    @property
    def identifier_like(self) -> bool:
        return (self.type == "string" and self.count > 20
                and (self.distinct_capped or len(self.distinct) > IDENTIFIER_SHARE * self.count))


def _detect_delimiter(header: str) -> str:
    best, best_cells = DEFAULT_DELIMITER, 1
    for delimiter in CANDIDATE_DELIMITERS:
        cells = len(next(csv.reader([header], delimiter=delimiter)))
        if cells > best_cells:
            best, best_cells = delimiter, cells
    return best


def _parse_number(text: str) -> tuple[str, float] | None:
    """('int' | 'float', value) for a finite number, None otherwise."""
    try:
        return "int", float(int(text))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return ("float", value) if math.isfinite(value) else None


def _is_non_finite(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


@dataclass
class Scan:
    """What one pass over the file (up to ``SCAN_ROWS`` rows) says about each column, beyond the sample.

    A sample of a sorted file (by price, by date) misses its ends: the ranges come from every
    scanned row, and a single non-number anywhere makes the column a string.
    """

    rows: int = 0
    minimum: list[float | None] = field(default_factory=list)
    maximum: list[float | None] = field(default_factory=list)
    non_number: list[bool] = field(default_factory=list)
    non_int: list[bool] = field(default_factory=list)
    values: list[set[str] | None] = field(default_factory=list)  # distinct cells, None past MAX_VOCABULARY

    def update(self, row: list[str]) -> None:
        self.rows += 1
        for index, cell in enumerate(row):
            if cell == "":
                continue
            seen = self.values[index]
            if seen is not None and cell not in seen:
                seen.add(cell)
                if len(seen) > MAX_VOCABULARY:
                    self.values[index] = None
            if self.non_number[index]:
                continue
            try:
                value = float(cell)
            except ValueError:
                self.non_number[index] = True
                continue
            if not math.isfinite(value):
                continue
            if not self.non_int[index] and not cell.lstrip("+-").isdigit():
                self.non_int[index] = True
            low, high = self.minimum[index], self.maximum[index]
            if low is None or value < low:
                self.minimum[index] = value
            if high is None or value > high:
                self.maximum[index] = value


def read_sample(data_uri: str, sample_rows: int = DEFAULT_SAMPLE_ROWS
                ) -> tuple[str, str, list[str], list[list[str]], Scan]:
    """(file, delimiter, header, sample, scan) of the first file: a uniform sample of ``sample_rows``
    well-formed rows (reservoir, seeded) out of the first ``SCAN_ROWS``, and the scan of all of them."""
    files = storage.resolve_inputs(data_uri)
    uri = files[0]
    rng = random.Random(SAMPLE_SEED)
    with storage.open_binary(uri) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
        first = text.readline().lstrip("\ufeff").rstrip("\r\n")
        if not first.strip():
            raise DataError(f"{uri}: empty file or empty first line (expected a header)")
        delimiter = _detect_delimiter(first)
        header = [cell.strip() for cell in next(csv.reader([first], delimiter=delimiter))]
        if len(set(header)) != len(header):
            raise DataError(f"{uri}: header has a duplicate column")
        if any(not name for name in header):
            raise DataError(f"{uri}: header has an empty column name")
        width = len(header)
        scan = Scan(minimum=[None] * width, maximum=[None] * width, non_number=[False] * width,
                    non_int=[False] * width, values=[set() for _ in range(width)])
        rows: list[list[str]] = []
        for row in csv.reader(text, delimiter=delimiter):
            if len(row) != width:
                continue
            row = [cell.strip() for cell in row]
            scan.update(row)
            if len(rows) < sample_rows:
                rows.append(row)
            else:
                slot = rng.randrange(scan.rows)
                if slot < sample_rows:
                    rows[slot] = row
            if scan.rows >= SCAN_ROWS:
                break
    if not rows:
        raise DataError(f"{uri}: no data rows after the header to draft a spec from")
    return uri, delimiter, header, rows, scan


def profile(header: list[str], rows: list[list[str]], scan: Scan | None = None) -> list[ColumnDraft]:
    """Type, range and value counts of every column of the sample; types and ranges widened by the scan."""
    drafts = []
    for index, name in enumerate(header):
        draft = ColumnDraft(name)
        kinds: set[str] = set()
        numbers: list[float] = []
        for row in rows:
            cell = row[index]
            if cell == "":
                draft.empty += 1
                continue
            draft.count += 1
            if not draft.distinct_capped:
                draft.distinct[cell] = draft.distinct.get(cell, 0) + 1
                if len(draft.distinct) > max(MAX_VOCABULARY, IDENTIFIER_SHARE * len(rows)):
                    draft.distinct_capped = True
            if "string" in kinds:
                continue
            parsed = _parse_number(cell)
            if parsed is None and _is_non_finite(cell):  # NaN / inf: a broken number, not a string column
                draft.non_finite += 1
                continue
            if parsed is None:
                kinds.add("string")
            else:
                kinds.add(parsed[0])
                numbers.append(parsed[1])
        if scan is not None and scan.non_number[index]:
            kinds.add("string")
        if "string" in kinds:
            draft.type = "string"
        elif not kinds:  # only empty or NaN cells: nothing to learn from (left out as empty)
            draft.type, draft.count = "string", 0
        else:
            draft.type = "float" if "float" in kinds else "int"
            draft.numbers = numbers
            draft.minimum, draft.maximum = min(numbers), max(numbers)
            if scan is not None and scan.minimum[index] is not None:
                draft.minimum = min(draft.minimum, scan.minimum[index])
                draft.maximum = max(draft.maximum, scan.maximum[index])
                if draft.type == "int" and scan.non_int[index]:
                    draft.type = "float"  # a fraction outside the sample
        drafts.append(draft)
    return drafts


def widened_range(draft: ColumnDraft) -> list[float | int]:
    """The observed [min, max] widened by RANGE_MARGIN of the span each side, rounded outward."""
    low, high = float(draft.minimum), float(draft.maximum)
    span = high - low
    margin = RANGE_MARGIN * (span if span > 0 else max(abs(high), 1.0))
    new_low, new_high = low - margin, high + margin
    if low >= 0 > new_low:  # a never-negative column (counts, prices) stays so
        new_low = 0.0
    if draft.type == "int":
        return [math.floor(new_low), math.ceil(new_high)]
    step = 10.0 ** (math.floor(math.log10(new_high - new_low)) - 2)  # 3 significant digits of the span
    rounded_low = math.floor(new_low / step) * step
    rounded_high = math.ceil(new_high / step) * step
    return [_nice(rounded_low, step), _nice(rounded_high, step)]


def _nice(value: float, step: float) -> float | int:
    decimals = max(0, -math.floor(math.log10(step)))
    value = round(value, decimals)
    return int(value) if float(value).is_integer() else value


def _class_like(draft: ColumnDraft, scan: Scan | None, index: int) -> bool:
    """A string column with few values (every one of them known): it can be a class label."""
    every = scan.values[index] if scan is not None else set(draft.distinct)
    return draft.type == "string" and draft.count > 0 and not draft.identifier_like and every is not None \
        and 2 <= len(every) <= MAX_VOCABULARY


def suggest_label(drafts: list[ColumnDraft], scan: Scan | None = None) -> ColumnDraft:
    candidates = [d for i, d in enumerate(drafts) if d.is_numeric or _class_like(d, scan, i)]
    numeric = [d for d in drafts if d.is_numeric]
    for word in (*LABEL_WORDS[:2], *OUTCOME_WORDS, *LABEL_WORDS[2:], *CLASS_WORDS):
        named = [d for d in candidates if re.search(rf"(^|[_\W]){word}($|[_\W])", d.name, re.I)]
        if named:
            return named[-1]
    if numeric:
        return numeric[-1]
    if candidates:
        return candidates[-1]
    raise DataError("no numeric column and no string column with few values in the sample: nothing to predict")


def class_vocabulary(draft: ColumnDraft, every: set[str] | None) -> list | None:
    """The sorted classes of a label column that looks like classes (None: a regression label).

    ``every``: the column's distinct cells in the scanned rows (None when there were too many).
    """
    if every is None or draft.type == "float" or len(every) < 2:
        return None
    if draft.type == "int":
        return sorted(int(float(v)) for v in every) if len(every) <= MAX_INT_CLASSES else None
    return sorted(every)


def _correlation(x: list[float], y: list[float]) -> float:
    n = len(x)
    if n < 3:
        return 0.0
    mean_x, mean_y = sum(x) / n, sum(y) / n
    sxx = sum((a - mean_x) ** 2 for a in x)
    syy = sum((b - mean_y) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return 0.0
    return sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y, strict=True)) / math.sqrt(sxx * syy)


def _paired(rows: list[list[str]], header: list[str], a: str, b: str,
            positive: set[str] | None = None) -> tuple[list[float], list[float]]:
    """Numeric ``a`` against ``b`` (a binary label: 1.0 for a cell in ``positive``, else 0.0)."""
    ia, ib = header.index(a), header.index(b)
    xs, ys = [], []
    for row in rows:
        if row[ia] != "" and row[ib] != "":
            xs.append(float(row[ia]))
            ys.append(float(row[ib] in positive) if positive is not None else float(row[ib]))
    return xs, ys


def _class_note(draft: ColumnDraft, classes: list, note: str) -> str:
    """The label's comment: the task, the class order and the classes' shares in the sample."""
    total = sum(draft.distinct.values()) or 1
    shares = ", ".join(f"{c} {100.0 * draft.distinct.get(str(c), 0) / total:.0f}%" for c in classes[:10])
    more = f" and {len(classes) - 10} more" if len(classes) > 10 else ""
    kind = "binary" if len(classes) == 2 else f"multiclass, {len(classes)} classes"
    return (f"{note}; a class label ({kind}): vocabulary SORTED, the order of the predicted probabilities; "
            f"in the sample {shares}{more}; other labels are rejected")


def _q(value: Any) -> str:
    """A YAML flow scalar: JSON strings and numbers are valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def _names(names: list[str]) -> str:
    return "[" + ", ".join(_field(n) for n in names) + "]"


def draft_spec(data_uri: str, label: str | None = None, sample_rows: int = DEFAULT_SAMPLE_ROWS,
               name: str | None = None) -> tuple[str, dict[str, Any]]:
    """The drafted spec as commented YAML text, and a summary of what was decided."""
    uri, delimiter, header, rows, scan = read_sample(data_uri, sample_rows)
    drafts = profile(header, rows, scan)
    by_name = {d.name: d for d in drafts}
    if label is not None:
        if label not in by_name:
            raise MlengineError(f"--label {label!r}: not a column of {uri} (columns: {', '.join(header)})")
        label_draft = by_name[label]
        label_note = "the label you chose"
    else:
        label_draft = suggest_label(drafts, scan)
        label_note = "suggested label (pass --label COLUMN to choose another)"
    classes = class_vocabulary(label_draft, scan.values[header.index(label_draft.name)])
    if classes is None and not label_draft.is_numeric:
        raise MlengineError(f"--label {label_draft.name!r}: a string label is a class label, and this one has more "
                            f"than {MAX_VOCABULARY} distinct values (e.g. {next(iter(label_draft.distinct), '')!r}): "
                            "choose a numeric column or one with fewer values")
    spec_name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", Path(storage.display_name(uri)).name.split(".")[0]) or "data"

    inputs = [d for d in drafts if d is not label_draft]
    numeric: list[str] = []
    categorical: list[str] = []
    bucketized: list[str] = []
    skipped: list[tuple[str, str]] = []
    column_lines = []
    for d in inputs:
        entry: dict[str, Any] = {"name": d.name, "type": d.type}
        note = ""
        if d.is_numeric:
            entry["range"] = widened_range(d)
            note = f"observed {d.minimum:g} .. {d.maximum:g}"
            if d.type == "int" and len(d.distinct) <= MAX_CATEGORICAL_INT:
                # a few codes (days, hours, classes): the observed ones, no margin (each is one id)
                entry["range"] = [int(d.minimum), int(d.maximum)]
                categorical.append(d.name)
                note += f", {len(d.distinct)} values: categorical"
            else:
                numeric.append(d.name)
                if d.type == "float" and len(bucketized) < MAX_BUCKETIZED_SUGGESTIONS:
                    bucketized.append(d.name)
        elif d.count == 0:
            skipped.append((d.name, "no usable value in the sample"))
            continue
        elif d.identifier_like:
            # not a column at all: ingest ignores CSV columns the spec does not name, clients need not send it
            skipped.append((d.name, "nearly one value per row: an identifier?"))
            continue
        else:
            every = scan.values[header.index(d.name)]  # every value of the scanned rows, when few
            if every is not None:
                entry["vocabulary"] = sorted(every, key=lambda v: (-d.distinct.get(v, 0), v))
                note = f"{len(every)} values in {scan.rows:,} rows; others are rejected"
            else:
                note = "many values: the vocabulary is learned from the training data"
            categorical.append(d.name)
        if d.non_finite:
            note += f"; {d.non_finite} NaN/inf cells: those rows are rejected"
        if d.empty:
            # without a default an empty cell rejects its row; the draft keeps those rows
            if d.is_numeric:
                median = sorted(d.numbers)[len(d.numbers) // 2]
                entry["default"] = int(median) if d.type == "int" else median
                note += f"; {d.empty} empty cells: default is the sample's median"
            else:
                entry["default"] = MISSING_VALUE
                if "vocabulary" in entry and MISSING_VALUE not in entry["vocabulary"]:
                    entry["vocabulary"].append(MISSING_VALUE)
                note += f"; {d.empty} empty cells: default {MISSING_VALUE!r}"
        column_lines.append(f"  - {{{', '.join(f'{k}: {_field(v)}' for k, v in entry.items())}}}  # {note}")

    best, best_r = None, 0.0
    if classes is None or len(classes) == 2:  # a binary label correlates through its class index
        positive = {str(c) for c in classes[1:]} if classes else set()
        for column in numeric:
            xs, ys = _paired(rows, header, column, label_draft.name, positive if classes else None)
            r = _correlation(xs, ys)
            if abs(r) > abs(best_r):
                best, best_r = column, r

    if classes is None:
        label_entry = {"name": label_draft.name, "type": label_draft.type, "range": widened_range(label_draft)}
        label_note += f"; observed {label_draft.minimum:g} .. {label_draft.maximum:g}"
        if label_draft.type == "int" and len(label_draft.distinct) <= MAX_CATEGORICAL_INT:
            label_note += (f"; {len(label_draft.distinct)} distinct values: a regression label (give it a vocabulary "
                           "of its values to predict classes)")
    else:
        label_entry = {"name": label_draft.name, "type": label_draft.type, "vocabulary": classes}
        label_note = _class_note(label_draft, classes, label_note)
        logger.info("spec: label %r drafted as a %s class label with classes %s (sorted; remove its vocabulary "
                    "to train a regressor)", label_draft.name, "binary" if len(classes) == 2 else "multiclass",
                    classes)
    if label_draft.empty:
        label_note += f"; {label_draft.empty} rows without a label in the sample are rejected"
    lines = [
        f"# Drafted by `mlengine spec` from {scan.rows:,} rows of {uri} (ranges and types; a sample of "
        f"{len(rows):,} for the rest).",
        "# Check every line (types, ranges, vocabularies, which columns are features), then run:",
        f"#   mlengine run --data {data_uri} --spec <this file> --out out/{spec_name}",
        "# Every key is described in docs/feature-spec.md.",
        f"name: {_field(spec_name)}",
        f"label: {{{', '.join(f'{k}: {_field(v)}' for k, v in label_entry.items())}}}  # {label_note}",
        "columns:",
        *column_lines,
    ]
    if delimiter != DEFAULT_DELIMITER:
        lines.append(f"delimiter: {_q(delimiter)}  # detected from the header")
    lines += [
        "# derived features computed inside the model, e.g.",
        "# derived:",
        "#   - {name: ratio_a_b, op: ratio, inputs: [a, b]}  # ops: haversine_km, difference, ratio, product, log1p",
        "features:",
        f"  numeric: {_names(numeric)}",
        f"  categorical: {_names(categorical)}",
    ]
    if bucketized:
        lines += ["  # quantile buckets of numeric columns (how many is the nbuckets hyperparameter), e.g.",
                  f"  # bucketized: {_names(bucketized)}"]
    cross_candidates = (bucketized[:2] if len(bucketized) >= 2 else []) or categorical[:2]
    if len(cross_candidates) >= 2:
        a, b = cross_candidates[:2]
        lines += ["  # crosses of bucketized or categorical features (bucketize numeric inputs first), e.g.",
                  "  # crosses:",
                  f"  #   - {{name: {_field(a + '_x_' + b)}, inputs: {_names([a, b])}}}"]
    if best is not None:
        lines.append(f"benchmark_feature: {_field(best)}  # the most correlated with the label in the sample "
                     f"(r = {best_r:.2f})")
    elif classes is not None:
        lines.append("# benchmark_feature: none; the benchmark predicts the training class prior")
    else:
        lines.append("# benchmark_feature: none numeric; the benchmark predicts the mean label")
    for column, reason in skipped:
        lines.append(f"# left out: {column} ({reason})")
    text = "\n".join(lines) + "\n"
    import yaml

    spec = spec_from_dict(yaml.safe_load(text), source="drafted spec")  # a draft always loads
    summary = {"file": uri, "rows": len(rows), "delimiter": delimiter, "label": label_draft.name, "task": spec.task,
               "classes": list(spec.classes),
               "columns": len(spec.columns), "numeric": numeric, "categorical": categorical,
               "benchmark_feature": best, "left_out": [c for c, _ in skipped]}
    return text, summary


def _field(value: Any) -> str:
    """A flow value: plain identifiers bare (readable), anything YAML could read otherwise quoted."""
    if isinstance(value, list):
        return "[" + ", ".join(_field(v) for v in value) + "]"
    if isinstance(value, str):
        return _q(value) if not _PLAIN.fullmatch(value) or value.lower() in _YAML_WORDS else value
    if isinstance(value, float):
        text = repr(value)
        # PyYAML (YAML 1.1) reads 1e-05 as a string: an exponent needs a dot in the mantissa
        return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text
    return str(value)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}  # YAML 1.1 booleans and null


def write_draft(data_uri: str, out: str | Path, label: str | None = None, sample_rows: int = DEFAULT_SAMPLE_ROWS,
                force: bool = False) -> dict[str, Any]:
    """Draft the spec of ``data_uri`` into ``out`` (refuses to overwrite an edited spec unless ``force``)."""
    path = Path(out)
    if path.exists() and not force:
        raise MlengineError(f"{path}: already exists (your edits?); pass --force to overwrite")
    if sample_rows < 1:
        raise MlengineError(f"--rows {sample_rows}: expected at least 1")
    text, summary = draft_spec(data_uri, label, sample_rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    logger.info("spec: drafted %s from %s rows of %s: label %s, %d columns (%s numeric, %s categorical)%s",
                path, f"{summary['rows']:,}", summary["file"], summary["label"], summary["columns"],
                len(summary["numeric"]), len(summary["categorical"]),
                f", left out {', '.join(summary['left_out'])}" if summary["left_out"] else "")
    summary["out"] = str(path)
    return summary
