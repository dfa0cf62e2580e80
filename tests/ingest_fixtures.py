"""Helpers shared by the ingest and storage tests (plain functions, no pytest fixtures)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mlengine.components.ingest.executor import IngestResult, run
from mlengine.components.shared.featurespec import FeatureSpec, SplitSpec, load_spec
from mlengine.constants import REJECTS_FILE, SPLITS, STATISTICS_FILE


@dataclass
class IngestRun:
    result: IngestResult
    out: Path

    def split_dir(self, split: str) -> Path:
        return self.out / split

    def split_table(self, split: str) -> pa.Table:
        parts = sorted(self.split_dir(split).glob("part-*.parquet"))
        return pa.concat_tables([pq.read_table(p) for p in parts])

    def split_rows(self, split: str) -> set[tuple]:
        table = self.split_table(split)
        return set(zip(*(table.column(i).to_pylist() for i in range(table.num_columns)), strict=True))

    def rejects(self) -> list[dict]:
        text = (self.out / "rejects" / REJECTS_FILE).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    def statistics(self) -> dict:
        return json.loads((self.out / "stats" / STATISTICS_FILE).read_text(encoding="utf-8"))


def ingest(data_uri: str | Path, out: Path, spec: FeatureSpec | None = None, *, min_split_rows: int = 0,
           **kwargs) -> IngestRun:
    """The ingest executor's ``run`` with every output under ``out`` (splits, rejects/, stats/).

    The validation tests read files of a few rows: the spec's ``split.min_rows`` is
    ``min_split_rows`` (0: none) unless the spec sets its own.
    """
    spec = spec or load_spec()
    if spec.split.min_rows == SplitSpec().min_rows:
        spec = replace(spec, split=replace(spec.split, min_rows=min_split_rows))
    result = run(str(data_uri), spec, {name: str(out / name) for name in SPLITS}, str(out / "rejects"),
                 str(out / "stats"), **kwargs)
    return IngestRun(result=result, out=out)


def write_csv_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]
