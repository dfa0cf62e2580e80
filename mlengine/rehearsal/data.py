"""The rehearsal's input: small synthetic taxi splits, their transform and statistics, as ingest writes them."""

from __future__ import annotations

import json
from pathlib import Path


def prepare_data(workdir: Path, rows: int, seed: int = 5) -> Path:
    """Small synthetic taxi splits (Parquet, as ingest writes them) and their transform, under workdir."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.constants import PARQUET_PART_PATTERN, SPLIT_FRACTIONS, SPLITS
    from mlengine.synthetic import generate_columns

    spec = load_spec(None)
    columns = generate_columns(rows, seed)
    types = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
    bounds, start = {}, 0
    for split in SPLITS:
        stop = rows if split == SPLITS[-1] else start + int(rows * SPLIT_FRACTIONS[split])
        bounds[split], start = (start, stop), stop
    for split, (begin, end) in bounds.items():
        target = workdir / split
        target.mkdir(parents=True, exist_ok=True)
        table = pa.table({col.name: pa.array(list(columns[col.name][begin:end]) if col.type == "string"
                                             else columns[col.name][begin:end], type=types[col.type])
                          for col in spec.all_columns})
        pq.write_table(table, target / PARQUET_PART_PATTERN.format(index=0))
    analyze(str(workdir / "train"), spec, 4).save(workdir / "transform")
    # the statistics artifact holds the feature spec the tuning trials read (--spec)
    import yaml

    from mlengine.constants import SPEC_FILE

    (workdir / "statistics").mkdir(exist_ok=True)
    (workdir / "statistics" / SPEC_FILE).write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False), encoding="utf-8")
    write_statistics(workdir / "statistics", spec, columns, bounds, seed)
    return workdir


def write_statistics(folder: Path, spec, columns: dict, bounds: dict, seed: int) -> None:
    """statistics.json of the splits as ingest computes it (train and all scopes): what the monitor reads."""
    import numpy as np

    from mlengine.components.ingest.statistics import StatisticsAccumulator, build_statistics
    from mlengine.constants import STATISTICS_FILE

    rng = np.random.default_rng(seed)
    scopes = {}
    for scope, (begin, end) in (("all", (0, max(stop for _, stop in bounds.values()))), ("train", bounds["train"])):
        accumulator = StatisticsAccumulator(spec)
        values = {col.name: np.asarray(columns[col.name][begin:end]) for col in spec.all_columns}
        missing = {name: np.zeros(end - begin, dtype=bool) for name in values}
        accumulator.update(values, missing, rng.integers(0, 2**63, end - begin, dtype=np.uint64))
        scopes[scope] = accumulator
    stats = build_statistics(spec, scopes, {"rows_ok": bounds["train"][1] - bounds["train"][0], "synthetic": True})
    (folder / STATISTICS_FILE).write_text(json.dumps(stats, indent=1), encoding="utf-8")


def sample_rows(count: int = 8, seed: int = 11) -> list[dict]:
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.synthetic import generate_columns

    spec = load_spec(None)
    columns = generate_columns(count, seed)
    feature_names = [c.name for c in spec.all_columns if c.name != spec.label.name]
    rows = []
    for i in range(count):
        row = {}
        for name in feature_names:
            value = columns[name][i]
            row[name] = value.item() if hasattr(value, "item") else value
        rows.append(row)
    return rows
