"""A deterministic synthetic NYC taxi-fare data set with a known noise floor.

The fare formula (all amounts in dollars), applied to each generated trip:

    fare = 2.50                                  flag drop
         + 1.56 * distance_km                    metered rate (haversine distance)
         + 0.25 * (passenger_count - 1)          extra passengers
         + 1.00 if weekday (dayofweek 2-6) and 16 <= hourofday <= 19   rush hour (day x hour cross)
         + 0.50 if hourofday >= 20 or hourofday <= 5                   night surcharge
         + 4.50 if the pickup or the dropoff is in the JFK zone         airport surcharge (location cells)
         + Normal(0, noise_std)                  what no model can explain

so the best possible RMSE (the noise floor) is ``noise_std`` (1.0 by default). ``dayofweek``
is 1-7 with 1 = Sunday, as in the lecture's BigQuery table.

It can also add dirty rows (for the ingest tests; each kind is listed in DIRTY_KINDS) and
shift the population (longer trips, more night rides) to exercise the skew monitor.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from mlengine.components.shared.derived import haversine_km_np
from mlengine.constants import TAXI_NOISE_STD

log = logging.getLogger("mlengine.generate")

COLUMNS = (
    "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
    "passenger_count", "dayofweek", "hourofday", "fare_amount",
)
LABEL = "fare_amount"
MANHATTAN = {"lat": (40.70, 40.80), "lon": (-74.02, -73.93)}
OUTER = {"lat": (40.60, 40.85), "lon": (-74.05, -73.80)}
JFK = {"lat": (40.635, 40.655), "lon": (-73.795, -73.765)}
DIRTY_KINDS = ("non_numeric", "empty_cell", "zero_coordinates", "nan", "inf", "ragged", "passengers_zero")
CHUNK_ROWS = 100_000


def fare_formula(columns: dict[str, np.ndarray]) -> np.ndarray:
    """The noiseless fare of each trip (see the module docstring)."""
    distance = haversine_km_np(columns["pickup_latitude"], columns["pickup_longitude"],
                               columns["dropoff_latitude"], columns["dropoff_longitude"])
    day, hour = columns["dayofweek"], columns["hourofday"]
    rush = ((day >= 2) & (day <= 6) & (hour >= 16) & (hour <= 19)).astype(np.float64)
    night = ((hour >= 20) | (hour <= 5)).astype(np.float64)
    airport = (_in_zone(columns["pickup_latitude"], columns["pickup_longitude"], JFK)
               | _in_zone(columns["dropoff_latitude"], columns["dropoff_longitude"], JFK)).astype(np.float64)
    return (2.50 + 1.56 * distance + 0.25 * (columns["passenger_count"] - 1)
            + 1.00 * rush + 0.50 * night + 4.50 * airport)


def _in_zone(lat, lon, zone) -> np.ndarray:
    return (lat >= zone["lat"][0]) & (lat <= zone["lat"][1]) & (lon >= zone["lon"][0]) & (lon <= zone["lon"][1])


def generate_columns(rows: int, seed: int, noise_std: float = TAXI_NOISE_STD,
                     shift: float = 0.0) -> dict[str, np.ndarray]:
    """Generate ``rows`` clean trips as numpy columns.

    ``shift`` in [0, 1] moves the population: trips start further from Manhattan and more of
    them happen at night (0 is the training population).
    """
    rng = np.random.default_rng(seed)
    # where trips start: mostly Manhattan, some from the outer boroughs, some at JFK
    where = rng.choice(3, size=rows, p=_mix(shift))
    lat = np.empty(rows)
    lon = np.empty(rows)
    for zone_index, zone in enumerate((MANHATTAN, OUTER, JFK)):
        mask = where == zone_index
        lat[mask] = rng.uniform(*zone["lat"], size=mask.sum())
        lon[mask] = rng.uniform(*zone["lon"], size=mask.sum())
    # where they end: a random direction and a lognormal trip length (longer under shift)
    trip_km = np.clip(rng.lognormal(mean=1.0 + 0.6 * shift, sigma=0.6, size=rows), 1.0, 40.0)
    heading = rng.uniform(0, 2 * math.pi, size=rows)
    dlat = trip_km * np.cos(heading) / 111.0
    dlon = trip_km * np.sin(heading) / (111.0 * np.cos(np.radians(lat)))
    to_jfk = rng.random(rows) < 0.05
    dropoff_lat = np.where(to_jfk, rng.uniform(*JFK["lat"], size=rows), np.clip(lat + dlat, 40.52, 40.98))
    dropoff_lon = np.where(to_jfk, rng.uniform(*JFK["lon"], size=rows), np.clip(lon + dlon, -74.28, -73.62))
    hour_p = _hour_profile(shift)
    columns = {
        "pickup_longitude": lon,
        "pickup_latitude": lat,
        "dropoff_longitude": dropoff_lon,
        "dropoff_latitude": dropoff_lat,
        "passenger_count": rng.choice(np.arange(1, 7), size=rows, p=[0.70, 0.14, 0.06, 0.04, 0.04, 0.02]),
        "dayofweek": rng.integers(1, 8, size=rows),
        "hourofday": rng.choice(24, size=rows, p=hour_p),
    }
    columns[LABEL] = fare_formula(columns) + rng.normal(0.0, noise_std, size=rows)
    return columns


def _mix(shift: float) -> list[float]:
    manhattan = 0.80 - 0.4 * shift
    return [manhattan, 0.95 - manhattan, 0.05]


def _hour_profile(shift: float) -> np.ndarray:
    base = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 5, 5, 5, 5, 5, 6, 7, 7, 7, 6, 5, 4, 3, 3], dtype=np.float64)
    night = np.array([h >= 20 or h <= 5 for h in range(24)], dtype=np.float64)
    weights = base * (1.0 + 3.0 * shift * night)
    return weights / weights.sum()


def _format_rows(columns: dict[str, np.ndarray]) -> list[list[str]]:
    out = []
    for i in range(len(columns[LABEL])):
        out.append([
            f"{columns['pickup_longitude'][i]:.6f}", f"{columns['pickup_latitude'][i]:.6f}",
            f"{columns['dropoff_longitude'][i]:.6f}", f"{columns['dropoff_latitude'][i]:.6f}",
            str(int(columns["passenger_count"][i])), str(int(columns["dayofweek"][i])),
            str(int(columns["hourofday"][i])), f"{columns[LABEL][i]:.4f}",
        ])
    return out


def _dirty(row: list[str], kind: str) -> list[str]:
    row = list(row)
    if kind == "non_numeric":
        row[0] = "not-a-number"
    elif kind == "empty_cell":
        row[4] = ""
    elif kind == "zero_coordinates":  # the classic broken GPS fix in the real taxi data
        row[0] = row[1] = "0.0"
    elif kind == "nan":
        row[2] = "nan"
    elif kind == "inf":
        row[7] = "inf"
    elif kind == "ragged":
        row = row[:5]
    elif kind == "passengers_zero":
        row[4] = "0"
    return row


def write_csv(out: str | Path, rows: int, seed: int, noise_std: float = TAXI_NOISE_STD,
              dirty_fraction: float = 0.0, shift: float = 0.0) -> dict[str, int]:
    """Write ``rows`` generated rows (clean + dirty) to a CSV with a header; returns counts.

    Generation is chunked, so any size fits in memory; the same seed gives the same file. Each
    chunk is a progress line on the ``mlengine.generate`` logger.
    """
    if rows < 1:
        raise ValueError(f"--rows must be at least 1, got {rows}")
    if not 0.0 <= dirty_fraction < 1.0:
        raise ValueError(f"--dirty-fraction must be in [0, 1), got {dirty_fraction}")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"rows": 0, "dirty_rows": 0}
    dirty_rng = np.random.default_rng(seed + 1)
    with out_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for chunk_index, start in enumerate(range(0, rows, CHUNK_ROWS)):
            size = min(CHUNK_ROWS, rows - start)
            columns = generate_columns(size, seed * 1_000_003 + chunk_index, noise_std, shift)
            formatted = _format_rows(columns)
            if dirty_fraction > 0:
                dirty_mask = dirty_rng.random(size) < dirty_fraction
                kinds = dirty_rng.integers(0, len(DIRTY_KINDS), size=size)
                for i in np.flatnonzero(dirty_mask):
                    formatted[i] = _dirty(formatted[i], DIRTY_KINDS[kinds[i]])
                counts["dirty_rows"] += int(dirty_mask.sum())
            writer.writerows(formatted)
            counts["rows"] += size
            log.info("generate: %s/%s rows", f"{counts['rows']:,}", f"{rows:,}")
    return counts
