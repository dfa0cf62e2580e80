"""Drift statistics: quantiles, PSI, Jensen-Shannon distance, bin merging and the per-column comparison.

Pure functions over numpy arrays and the ingest statistics of one column; no file I/O. The
executor (components/monitor/executor.py) loads the inputs, calls these per column and writes
the reports; its module docstring describes the checks and their noise-aware limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from mlengine.components.shared.featurespec import DTYPES, FeatureSpec

PSEUDOCOUNT = 0.5  # added to every used bin in PSI (Jeffreys), so an empty bin is finite, not ln(0)
MIN_BIN_FRACTION = 0.01  # training histogram bins are merged until each holds this share

STATUS_OK = "ok"
STATUS_DRIFT = "drift"
STATUS_NOT_ENOUGH_DATA = "not_enough_data"
STATUS_NO_DATA = "no_training_data"

# --- small statistics helpers ----------------------------------------------------------------------
CHECKS_PER_COLUMN = 4  # mean shift, variance ratio, distribution distance, out of range


def _normal_quantile(alpha: float) -> float:
    """The two-sided critical z of ``alpha``."""
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def poisson_quantile(alpha: float, mean: float) -> int:
    """The smallest k with P(X > k) <= alpha for X ~ Poisson(mean)."""
    k, term = 0, math.exp(-mean)
    cumulative = term
    while 1.0 - cumulative > alpha and k < 10_000_000:
        k += 1
        term *= mean / k
        cumulative += term
    return k


def chi2_quantile(probability: float, dof: int) -> float:
    """Chi-square quantile by the Wilson-Hilferty cube approximation (scipy is not a dependency)."""
    if dof < 1:
        return 0.0
    z = NormalDist().inv_cdf(probability)
    scale = 2.0 / (9.0 * dof)
    return dof * max(1.0 - scale + z * math.sqrt(scale), 0.0) ** 3


def _normalise(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def population_stability_index(expected: np.ndarray, actual: np.ndarray, pseudocount: float = PSEUDOCOUNT) -> float:
    """PSI of two histograms (counts) over the same bins: sum((a - e) * ln(a / e)) over the bin shares.

    Bins empty on both sides are dropped; the others get ``pseudocount`` added on both sides
    before normalising, so an empty bin is finite and a small sample does not blow up.
    """
    e = np.asarray(expected, np.float64)
    a = np.asarray(actual, np.float64)
    used = (e > 0) | (a > 0)
    if not used.any():
        return 0.0
    e = _normalise(e[used] + pseudocount)
    a = _normalise(a[used] + pseudocount)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """sqrt of the Jensen-Shannon divergence in bits: 0 for equal distributions, 1 for disjoint ones."""
    p, q = _normalise(np.asarray(p, np.float64)), _normalise(np.asarray(q, np.float64))
    m = (p + q) / 2.0

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2.0, 0.0))


def _merge_bins(edges: list[float], counts: list[int], min_fraction: float) -> tuple[list[float], list[list[int]]]:
    """Merge adjacent bins until each holds ``min_fraction`` of the rows; returns (edges, groups of bin indexes)."""
    total = float(sum(counts))
    groups: list[list[int]] = []
    current: list[int] = []
    mass = 0.0
    for index, count in enumerate(counts):
        current.append(index)
        mass += count
        if total > 0 and mass / total >= min_fraction:
            groups.append(current)
            current, mass = [], 0.0
    if current:
        if groups:
            groups[-1].extend(current)  # a light tail joins the last full bin
        else:
            groups.append(current)
    merged_edges = [edges[group[0]] for group in groups] + [edges[-1]]
    return merged_edges, groups


def _finite(value: float | None) -> float | None:
    """JSON-safe: inf / NaN become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _is_categorical(spec: FeatureSpec, name: str) -> bool:
    col = spec.column(name)
    return col.type == "string" or name in spec.categorical


def _compared_dtype(col_type: str) -> Any:
    """The one precision a column is compared in: the dtype the model's signature takes.

    Float columns reach the model (and the serving log) as float32 while the training statistics
    are float64; comparing the two as they are puts a serving value equal to the training
    minimum of a clipped column just outside the range.
    """
    return DTYPES[col_type].numpy if col_type == "float" else np.float64


def _seen(col_type: str, values: Any) -> np.ndarray:
    """Serving values in the compared precision, as float64 for the arithmetic."""
    return np.asarray(values).astype(_compared_dtype(col_type)).astype(np.float64)


def _reference(col_type: str, value: Any) -> Any:
    """A training number (min, max, bin edge) rounded to the compared precision."""
    if value is None:
        return None
    return float(np.asarray(value, np.float64).astype(_compared_dtype(col_type)))


# --- per-column comparison ---------------------------------------------------------------------------
def _moments(train: Mapping[str, Any], values: np.ndarray, thresholds: Mapping[str, Any],
             alpha: float) -> dict[str, Any]:
    """Mean shift and variance ratio of one numeric column, with their noise-aware limits."""
    as_float = values.astype(np.float64)
    n_s, n_t = len(as_float), int(train.get("count") or 0)
    mean_s, std_s = float(as_float.mean()), float(as_float.std())
    mean_t, std_t = train.get("mean"), train.get("std")
    out: dict[str, Any] = {"serving_mean": mean_s, "serving_std": std_s, "train_mean": mean_t, "train_std": std_t,
                           "serving_min": float(as_float.min()), "serving_max": float(as_float.max())}
    if mean_t is None or std_t is None or n_t < 2:
        return out
    if std_t > 0:
        shift = abs(mean_s - mean_t) / std_t
        ratio = (std_s / std_t) ** 2
    else:  # a constant training column: any change is infinitely many std away
        shift = 0.0 if mean_s == mean_t else math.inf
        ratio = 1.0 if std_s == 0 else math.inf
    z = _normal_quantile(alpha)
    shift_noise = z * math.sqrt(min(ratio, 1e6) / n_s + 1.0 / n_t)
    # the sampling variance of ln(s^2) is about (kurtosis - 1) / n; the serving kurtosis estimates it
    centred = as_float - mean_s
    kurtosis = float(np.mean(centred**4) / std_s**4) if std_s > 0 else 3.0
    log_ratio_noise = z * math.sqrt(max(kurtosis - 1.0, 0.5) / n_s + 2.0 / n_t)
    out.update({"mean_shift": shift, "variance_ratio": ratio})
    if thresholds["mean_shift"] is not None:
        out["mean_shift_limit"] = max(thresholds["mean_shift"], shift_noise)
    low, high = thresholds["variance_ratio_low"], thresholds["variance_ratio_high"]
    out["variance_ratio_limits"] = [
        min(low, math.exp(-log_ratio_noise)) if low is not None else None,
        max(high, math.exp(log_ratio_noise)) if high is not None else None,
    ]
    return out


def _histogram_distribution(train: Mapping[str, Any], values: np.ndarray, col_type: str = "float"
                            ) -> dict[str, Any] | None:
    """Training vs serving counts over the training histogram's (merged) bins plus one bin each side.

    ``values`` are already in the compared precision; the edges are rounded to it, so a value
    equal to a training edge falls in the same bin as the training rows there.
    """
    histogram = train.get("histogram") or {}
    edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
    if len(edges) < 2 or len(counts) != len(edges) - 1 or sum(counts) <= 0:
        return None
    edges = [_reference(col_type, e) for e in edges]
    merged_edges, groups = _merge_bins(list(edges), list(counts), MIN_BIN_FRACTION)
    as_float = values.astype(np.float64)
    below = int(np.count_nonzero(as_float < edges[0]))
    above = int(np.count_nonzero(as_float > edges[-1]))
    serving_fine, _ = np.histogram(as_float, bins=np.asarray(edges, np.float64))
    # training rows outside the histogram's edges (statistics over the data's central range)
    train_below, train_above = int(histogram.get("underflow") or 0), int(histogram.get("overflow") or 0)
    train_bins = [train_below] + [sum(counts[i] for i in group) for group in groups] + [train_above]
    serving_bins = [below] + [int(sum(serving_fine[i] for i in group)) for group in groups] + [above]
    if histogram.get("integer"):  # integer bins hold whole numbers: label them so (7, 7-9), no fractions
        spans = [(math.ceil(merged_edges[i]), math.floor(merged_edges[i + 1])) for i in range(len(groups))]
        labels = ([f"< {math.ceil(edges[0])}"] + [str(a) if a == b else f"{a}-{b}" for a, b in spans]
                  + [f"> {math.floor(edges[-1])}"])
    else:
        labels = ([f"< {edges[0]:.6g}"]
                  + [f"[{merged_edges[i]:.6g}, {merged_edges[i + 1]:.6g}" + ("]" if i == len(groups) - 1 else ")")
                     for i in range(len(groups))]
                  + [f"> {edges[-1]:.6g}"])
    return {"kind": "histogram", "source": histogram.get("source"), "edges": [float(e) for e in merged_edges],
            "labels": labels, "train_counts": train_bins, "serving_counts": serving_bins,
            "train_rows": int(sum(counts)) + train_below + train_above}


def _category_distribution(train: Mapping[str, Any], values: np.ndarray) -> dict[str, Any] | None:
    top = train.get("top_values") or []
    if not top:
        return None
    if all(isinstance(item["value"], int | float) for item in top):  # hours, days: read best in value order
        top = sorted(top, key=lambda item: item["value"])
    categories = [item["value"] for item in top]
    train_counts = [int(item["count"]) for item in top]
    count = int(train.get("count") or sum(train_counts))
    other_train = max(count - sum(train_counts), 0)
    complete = not train.get("counts_approximate") and train.get("distinct") == len(categories)
    index = {value: i for i, value in enumerate(categories)}
    serving_counts = [0] * (len(categories) + 1)
    if len(values):
        keys, frequencies = np.unique(values, return_counts=True)
        for key, frequency in zip(keys.tolist(), frequencies.tolist(), strict=True):
            serving_counts[index.get(key, len(categories))] += int(frequency)
    return {"kind": "categories", "labels": [str(c) for c in categories] + ["(other)"],
            "train_counts": [*train_counts, other_train], "serving_counts": serving_counts,
            "train_rows": count, "train_complete": bool(complete)}


def compare_column(spec: FeatureSpec, name: str, train: Mapping[str, Any] | None, values: np.ndarray | None,
                   thresholds: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """One column's moments, distribution distances, out-of-range share, flags and status.

    ``alpha`` is the per-check significance (the family-wise one split over every check).
    """
    col = spec.column(name)
    categorical = _is_categorical(spec, name)
    entry: dict[str, Any] = {"type": col.type, "categorical": categorical, "flags": [],
                             "serving_count": 0 if values is None else len(values),
                             "training_count": int(train.get("count") or 0) if train else 0}
    if train is None or entry["training_count"] == 0:
        entry["status"] = STATUS_NO_DATA
        return entry
    if values is None or len(values) < thresholds["min_rows"]:
        entry["status"] = STATUS_NOT_ENOUGH_DATA
        return entry
    n_s = len(values)
    if col.is_numeric:
        values = _seen(col.type, values)
        entry.update(_moments(train, values, thresholds, alpha))
        as_float = values
        # values equal to the training extremes (in the compared precision) are inside
        low, high = _reference(col.type, train.get("min")), _reference(col.type, train.get("max"))
        if low is not None and high is not None:
            outside = int(np.count_nonzero((as_float < low) | (as_float > high)))
            entry["out_of_range_fraction"] = outside / n_s
            # a new sample falls outside the range of n_t earlier ones with probability 2 / (n_t + 1)
            allowed = poisson_quantile(alpha, n_s * 2.0 / (entry["training_count"] + 1))
            if thresholds["out_of_range"] is not None:
                entry["out_of_range_limit"] = max(thresholds["out_of_range"], allowed / n_s)
    distribution = _category_distribution(train, values) if categorical else None
    if distribution is None and col.is_numeric:
        distribution = _histogram_distribution(train, values, col.type)
    if distribution is not None:
        entry["distribution"] = distribution
        entry.update(distance_figures(np.asarray(distribution["train_counts"], np.float64),
                                      np.asarray(distribution["serving_counts"], np.float64),
                                      n_s, max(distribution["train_rows"], 1), thresholds, alpha))
        if col.type == "string" and distribution.get("train_complete"):
            entry["out_of_range_fraction"] = distribution["serving_counts"][-1] / n_s
            if thresholds["out_of_range"] is not None:
                entry["out_of_range_limit"] = thresholds["out_of_range"]
    entry["flags"] = _flags(entry)
    entry["status"] = STATUS_DRIFT if entry["flags"] else STATUS_OK
    return entry


def _flags(entry: Mapping[str, Any]) -> list[str]:
    flags = []
    if entry.get("mean_shift_limit") is not None and entry["mean_shift"] > entry["mean_shift_limit"]:
        flags.append("mean_shift")
    low, high = entry.get("variance_ratio_limits") or (None, None)
    ratio = entry.get("variance_ratio")
    if ratio is not None and ((high is not None and ratio > high) or (low is not None and ratio < low)):
        flags.append("variance_ratio")
    if entry.get("psi_limit") is not None and entry["psi"] > entry["psi_limit"]:
        flags.append("psi")
    if entry.get("js_distance_limit") is not None and entry["js_distance"] > entry["js_distance_limit"]:
        flags.append("js_distance")
    if entry.get("out_of_range_limit") is not None and entry["out_of_range_fraction"] > entry["out_of_range_limit"]:
        flags.append("out_of_range")
    return flags


def json_safe(value: Any) -> Any:
    """Nested dicts/lists with numpy scalars as Python numbers and inf / NaN as None."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return _finite(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- predicted classes against the training labels -----------------------------------------------------
def _class_key(value: Any) -> str:
    """A class as the key both sides agree on (JSON object keys are strings: ``1`` and ``"1"`` match)."""
    return str(value)


def compare_classes(train_counts: Mapping[Any, int] | None, serving_counts: Mapping[Any, int],
                    classes: list[Any], thresholds: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """The predicted classes of the serving log against the training label's class counts.

    Both are ``{class: count}``; classes outside the vocabulary go to an "(other)" bucket. PSI and
    the Jensen-Shannon distance over the class shares, with the same noise-aware limits as a
    categorical column (``psi`` and ``js_distance`` thresholds, ``min_rows`` serving rows).
    """
    keys = [_class_key(c) for c in classes]
    serving, other_serving = _bucket_counts(keys, serving_counts)
    n_s = sum(serving.values()) + other_serving
    entry: dict[str, Any] = {"classes": list(classes), "serving_count": n_s, "flags": []}
    if not train_counts:
        entry["status"] = STATUS_NO_DATA
        return entry
    train, other_train = _bucket_counts(keys, train_counts)
    n_t = sum(train.values()) + other_train
    entry["training_count"] = n_t
    labels = [str(c) for c in classes]
    train_list, serving_list = [train[k] for k in keys], [serving[k] for k in keys]
    if other_train or other_serving:
        labels.append("(other)")
        train_list.append(other_train)
        serving_list.append(other_serving)
    entry["distribution"] = {"kind": "classes", "labels": labels, "train_counts": train_list,
                             "serving_counts": serving_list, "train_rows": n_t}
    entry["train_shares"] = (_normalise(np.asarray(train_list, np.float64))).tolist()
    entry["serving_shares"] = (_normalise(np.asarray(serving_list, np.float64))).tolist()
    if n_t == 0:
        entry["status"] = STATUS_NO_DATA
        return entry
    if n_s < thresholds["min_rows"]:
        entry["status"] = STATUS_NOT_ENOUGH_DATA
        return entry
    entry.update(distance_figures(np.asarray(train_list, np.float64), np.asarray(serving_list, np.float64),
                                  n_s, n_t, thresholds, alpha))
    entry["flags"] = _flags(entry)
    entry["status"] = STATUS_DRIFT if entry["flags"] else STATUS_OK
    return entry


def _bucket_counts(keys: list, counts: dict) -> tuple[dict, int]:
    """``counts`` per vocabulary key, and the count of values outside the vocabulary."""
    bucketed = {key: 0 for key in keys}
    other = 0
    for value, count in counts.items():
        if _class_key(value) in bucketed:
            bucketed[_class_key(value)] += int(count)
        else:
            other += int(count)
    return bucketed, other


def distance_figures(train_counts: np.ndarray, serving_counts: np.ndarray, n_serving: int, n_train: int,
                     thresholds: dict, alpha: float) -> dict[str, float]:
    """PSI and Jensen-Shannon distance of two count vectors, with limits that grow with sampling noise.

    The limits add the statistics' expected bias (degrees of freedom / effective sample size) to the
    threshold and never fall below the chi-square noise quantile, so small samples raise no false alarm.
    """
    out = {"psi": population_stability_index(train_counts, serving_counts),
           "js_distance": jensen_shannon_distance(train_counts, serving_counts)}
    dof = max(int(np.count_nonzero((train_counts > 0) | (serving_counts > 0))) - 1, 1)
    n_eff = 1.0 / (1.0 / n_serving + 1.0 / n_train)
    psi_bias, psi_noise = dof / n_eff, chi2_quantile(1.0 - alpha, dof) / n_eff
    out["psi_bias"] = psi_bias
    if thresholds["psi"] is not None:
        out["psi_limit"] = max(thresholds["psi"] + psi_bias, psi_noise)
    if thresholds["js_distance"] is not None:
        # squared JS distance (bits) is about PSI / (8 ln 2) for small differences
        to_js = 8 * math.log(2)
        out["js_distance_limit"] = max(math.sqrt(thresholds["js_distance"] ** 2 + psi_bias / to_js),
                                       math.sqrt(psi_noise / to_js))
    return out
