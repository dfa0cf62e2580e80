"""Another dataset with its own spec ingests with no code change (string categoricals included)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlengine.components.shared.featurespec import load_spec, spec_from_dict
from mlengine.constants import SPEC_FILE, SPLITS
from tests.ingest_fixtures import ingest, write_csv_rows

NEIGHBORHOODS = ["downtown", "harbor", "hills", "old town"]
HOUSE_SPEC = {
    "name": "house-prices",
    "label": {"name": "price", "type": "float", "range": [0, 10_000_000]},
    "columns": [
        {"name": "neighborhood", "type": "string", "vocabulary": NEIGHBORHOODS},
        {"name": "sqft", "type": "float", "range": [100, 20_000]},
        {"name": "bedrooms", "type": "int", "range": [0, 12], "default": 2},
        {"name": "year_built", "type": "int"},
        {"name": "agent", "type": "string"},
    ],
    "derived": [{"name": "log_sqft", "op": "log1p", "inputs": ["sqft"]}],
    "features": {"numeric": ["log_sqft", "bedrooms"], "categorical": ["neighborhood", "agent"]},
    "benchmark_feature": "sqft",
}
ROWS = 1200


def _house_rows(rng: np.random.Generator) -> list[list[str]]:
    rows = []
    for i in range(ROWS):
        hood = NEIGHBORHOODS[i % len(NEIGHBORHOODS)]
        sqft = float(rng.uniform(400, 4000))
        bedrooms = "" if i % 100 == 0 else str(int(rng.integers(1, 6)))
        price = 50_000 + 300 * sqft + (80_000 if hood == "hills" else 0)
        # CSV columns in another order than the spec, plus a listing id the spec does not use
        rows.append([f"L{i:05d}", f"{price:.2f}", f"agent-{i % 7}", hood, f"{sqft:.1f}", bedrooms,
                     str(1950 + i % 70)])
    return rows


def test_house_prices_ingest(tmp_path):
    spec = spec_from_dict(HOUSE_SPEC)
    rows = _house_rows(np.random.default_rng(0))
    rows[5][3] = "suburbs"  # not in the vocabulary
    rows[6][4] = "12"  # below the sqft range
    rows[7][6] = "nineteen-ninety"
    rows[8][2] = "Smith, Jones & Co"  # the csv writer quotes it
    path = write_csv_rows(tmp_path / "houses.csv",
                          ["listing_id", "price", "agent", "neighborhood", "sqft", "bedrooms", "year_built"], rows)
    run = ingest(path, tmp_path / "out", spec=spec, min_split_rows=spec.split.min_rows)  # the spec as written
    result = run.result
    assert result.rows_read == ROWS
    assert result.rows_rejected == 3
    reasons = {item["row"]: item["reason"] for item in run.rejects()}
    assert reasons == {
        7: "column 'neighborhood': value 'suburbs' is not in the vocabulary",
        8: "column 'sqft': value 12 outside [100, 20000]",
        9: "column 'year_built': not a number: 'nineteen-ninety'",
    }
    table = pa.concat_tables([run.split_table(split) for split in SPLITS])
    assert table.schema.names == ["neighborhood", "sqft", "bedrooms", "year_built", "agent", "price"]
    assert [field.type for field in table.schema] == [pa.string(), pa.float64(), pa.int64(), pa.int64(),
                                                      pa.string(), pa.float64()]
    assert set(table.column("neighborhood").to_pylist()) <= set(NEIGHBORHOODS)
    assert "Smith, Jones & Co" in table.column("agent").to_pylist()
    stats = run.statistics()
    columns = stats["all"]["columns"]
    assert columns["bedrooms"]["missing"] == 12  # every 100th row took the default 2
    hoods = {item["value"]: item["count"] for item in columns["neighborhood"]["top_values"]}
    assert set(hoods) == set(NEIGHBORHOODS) and sum(hoods.values()) == ROWS - 3
    assert columns["neighborhood"]["distinct"] == 4
    assert len(columns["agent"]["top_values"]) == 8
    # histograms come from the sample (here: every row), over the data's range in integer-wide bins
    year = columns["year_built"]
    assert year["histogram"]["source"] == "sample"
    assert (year["min"], year["max"]) == (1950, 2019)
    assert year["histogram"]["edges"][0] >= 1949.5 and year["histogram"]["edges"][-1] <= 2019.5 + 4
    assert year["histogram"]["integer"] is True
    histogram = year["histogram"]
    assert sum(histogram["counts"]) + histogram["underflow"] + histogram["overflow"] == ROWS - 3
    assert columns["price"]["mean"] == pytest.approx(table.column("price").to_numpy().mean())
    assert load_spec(tmp_path / "out" / "stats" / SPEC_FILE) == spec
