"""The rule-based benchmark of a classifier, fitted on the training split in bounded chunks.

Without ``benchmark_feature`` it is the class prior: every row gets the training split's class
shares. With it, a one-feature (multinomial) logistic regression: class k's logit is
``a_k + b_k * z`` with ``z`` the standardised feature and class 0 the reference (binary: the plain
logistic regression). It is fitted by Newton's method, one pass over the split per step, reading
only the columns the feature needs, batch by batch; a step that raises the loss is halved.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from mlengine.components.evaluate.class_metrics import class_ids
from mlengine.components.shared import derived as derived_ops
from mlengine.components.shared.parquet import iter_record_batches, list_parquet_files
from mlengine.errors import DataError

log = logging.getLogger(__name__)
MAX_NEWTON_STEPS = 25
TOLERANCE = 1e-9  # relative change of the mean loss that ends the fit
RIDGE = 1e-6  # per row: keeps the Hessian invertible when a class is (nearly) separable
BATCH_ROWS = 65_536


def _derivation(spec, feature: str) -> list:
    """The derived features ``feature`` is computed through, in the spec's order (empty for a raw column)."""
    needed, pending = set(), [feature]
    while pending:
        name = pending.pop()
        if spec.is_derived(name) and name not in needed:
            needed.add(name)
            pending += list(next(d for d in spec.derived if d.name == name).inputs)
    return [d for d in spec.derived if d.name in needed]


def _feature_inputs(spec, feature: str) -> list[str]:
    """The raw numeric columns a (possibly derived) feature is computed from."""
    if not spec.is_derived(feature):
        return [feature]
    sources = [name for d in _derivation(spec, feature) for name in d.inputs if not spec.is_derived(name)]
    return list(dict.fromkeys(sources))


def feature_values(spec, feature: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The benchmark feature of a batch (a raw numeric column or a derived one), as float64.

    Only the columns the feature needs are read, so only its own derivation is computed.
    """
    from dataclasses import replace

    numeric = {name: np.asarray(columns[name], np.float64) for name in _feature_inputs(spec, feature)}
    chain = replace(spec, derived=tuple(_derivation(spec, feature)))
    return np.asarray(derived_ops.add_derived_np(chain, numeric)[feature], np.float64)


def _batches(files: list[str], spec, feature: str | None, batch_rows: int):
    names = [*(_feature_inputs(spec, feature) if feature else []), spec.label.name]
    for path, columns in iter_record_batches(files, names, batch_rows=batch_rows):
        ids = class_ids(columns[spec.label.name], spec.classes, where=f"{path}: label {spec.label.name!r}")
        yield ids, (feature_values(spec, feature, columns) if feature else None)


def _logits(params: np.ndarray, z: np.ndarray) -> np.ndarray:
    """[rows, C] logits: 0 for the reference class, a_k + b_k z for the others."""
    return np.concatenate([np.zeros((z.size, 1)), params[:, 0][None, :] + np.outer(z, params[:, 1])], axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_class_benchmark(train_dir: str, spec, *, batch_rows: int = BATCH_ROWS) -> dict:
    """The class prior, or the one-feature logistic regression on ``spec.benchmark_feature``."""
    files = list_parquet_files(train_dir)
    classes, feature = list(spec.classes), spec.benchmark_feature
    count = len(classes)
    counts = np.zeros(count, dtype=np.int64)
    total, squares = 0.0, 0.0
    for ids, x in _batches(files, spec, feature, batch_rows):
        counts += np.bincount(ids, minlength=count)
        if x is not None:
            if not np.all(np.isfinite(x)):
                raise DataError(f"{train_dir}: benchmark feature {feature!r} has non-finite values")
            total += float(x.sum())
            squares += float(np.dot(x, x))
    rows = int(counts.sum())
    if rows == 0:
        raise DataError(f"{train_dir}: the training split has no rows")
    prior = counts / rows
    bench = {"kind": "class prior", "feature": None, "classes": classes, "prior": prior.tolist(), "rows": rows}
    if not feature:
        return bench
    mean = total / rows
    std = math.sqrt(max(squares / rows - mean * mean, 0.0)) or 1.0
    params = _newton(files, spec, feature, batch_rows, prior, mean, std, rows)
    return {**bench, "kind": "one-feature logistic regression", "feature": feature, "mean": mean, "std": std,
            "intercepts": params[:, 0].tolist(), "slopes": params[:, 1].tolist()}


def _newton(files, spec, feature, batch_rows, prior, mean, std, rows) -> np.ndarray:
    count = len(prior)
    smoothed = (prior * rows + 0.5) / (rows + 0.5 * count)
    params = np.zeros((count - 1, 2))
    params[:, 0] = np.log(smoothed[1:] / smoothed[0])
    accepted, accepted_loss = params.copy(), math.inf
    for step in range(MAX_NEWTON_STEPS):
        loss, gradient, hessian = _pass(files, spec, feature, batch_rows, params, mean, std, rows)
        if loss > accepted_loss + 1e-12:  # overshoot: half way back to the last accepted point
            params = accepted + 0.5 * (params - accepted)
            continue
        converged = accepted_loss - loss <= TOLERANCE * max(abs(loss), 1.0)
        accepted, accepted_loss = params.copy(), loss
        if converged:
            log.info(f"evaluate: benchmark logistic regression converged after {step + 1} passes, loss {loss:.5f}")
            break
        params = params - np.linalg.solve(hessian, gradient).reshape(params.shape)
    return accepted


def _pass(files, spec, feature, batch_rows, params, mean, std, rows):
    """Mean loss, gradient and Hessian (with the ridge) of the training split at ``params``."""
    others = params.shape[0]
    size = 2 * others
    loss, gradient, hessian = 0.0, np.zeros(size), np.zeros((size, size))
    for ids, x in _batches(files, spec, feature, batch_rows):
        z = (x - mean) / std
        p = softmax(_logits(params, z))
        loss -= float(np.log(np.clip(p[np.arange(z.size), ids], 1e-300, 1.0)).sum())
        design = np.stack([np.ones_like(z), z], axis=1)  # [rows, 2]
        residual = p[:, 1:] - (ids[:, None] == np.arange(1, others + 1)[None, :])  # [rows, C-1]
        gradient += (residual.T @ design).reshape(-1)
        for k in range(others):
            for j in range(others):
                weight = p[:, k + 1] * ((k == j) - p[:, j + 1])
                hessian[2 * k:2 * k + 2, 2 * j:2 * j + 2] += design.T @ (design * weight[:, None])
    ridge = RIDGE * rows
    flat = params.reshape(-1)
    loss += 0.5 * ridge * float(flat @ flat)
    return loss / rows, (gradient + ridge * flat) / rows, (hessian + ridge * np.eye(size)) / rows


def benchmark_probabilities(bench: dict, spec, columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
    """[rows, C] probabilities of the benchmark for a batch of raw columns."""
    if not bench.get("feature"):
        return np.tile(np.asarray(bench["prior"], np.float64), (rows, 1))
    z = (feature_values(spec, bench["feature"], columns) - bench["mean"]) / bench["std"]
    params = np.stack([np.asarray(bench["intercepts"]), np.asarray(bench["slopes"])], axis=1)
    return softmax(_logits(params, z))
