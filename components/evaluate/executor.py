"""Evaluate the exported model on the test split against the benchmark and the served baseline.

The test split is streamed batch by batch through the SavedModel's raw-feature signature (the
same path serving takes). Two comparisons decide the blessing, and both are always written out,
with their reasons in plain words:

- the rule-based benchmark: the least-squares line of the transform (``label ~ slope *
  benchmark_feature + intercept``, fitted on the training split); the model must beat its RMSE
  by ``margin``;
- the baseline: the model in service (locally the one the last run in the same output folder
  deployed, on a cluster the InferenceService's current ``storageUri``), scored on the same
  rows; the model may be at most ``tolerance`` worse. Without a baseline this rule passes, and
  the reasons say so.

Besides the totals: RMSE/MAE sliced per value of each categorical column and per quantile bin of
the benchmark feature, and a predicted-vs-actual and a residual plot in the HTML report.

A classifier (a spec whose label has a vocabulary) is scored by ``classify.py`` on log loss,
against the class prior or a one-feature logistic regression fitted on the training split.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlengine.components.evaluate.report import render_evaluation_html, render_evaluation_markdown, summary_of
from mlengine.components.shared import derived as derived_ops
from mlengine.components.shared.logs import component_logger
from mlengine.components.shared.parquet import iter_record_batches, list_parquet_files
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.components.shared.transform_state import TransformState
from mlengine.constants import DEFAULT_BASELINE_TOLERANCE, DEFAULT_BLESSING_MARGIN
from mlengine.errors import MlengineError

log = component_logger("evaluate")
PLOT_ROWS = 5000  # rows kept for the plots (the first ones: the hash split already shuffles rows)
SLICE_BINS = 4  # quantile bins of the benchmark feature
MAX_SLICE_VALUES = 50  # values of one categorical shown (the most frequent)


class _Errors:
    def __init__(self) -> None:
        self.squared = 0.0
        self.absolute = 0.0
        self.count = 0

    def update(self, predictions: np.ndarray, label: np.ndarray) -> None:
        diff = np.asarray(predictions, np.float64) - label
        self.squared += float(np.dot(diff, diff))
        self.absolute += float(np.abs(diff).sum())
        self.count += diff.size

    @property
    def rmse(self) -> float:
        return math.sqrt(self.squared / self.count) if self.count else math.nan

    @property
    def mae(self) -> float:
        return self.absolute / self.count if self.count else math.nan


class _Slices:
    """RMSE/MAE of the model (and of the baseline) per value of one key."""

    def __init__(self) -> None:
        self.model: dict = {}
        self.baseline: dict = {}

    def update(self, keys: np.ndarray, model_pred: np.ndarray, label: np.ndarray, baseline_pred=None) -> None:
        keys = np.asarray(keys)
        for key in np.unique(keys):
            rows = keys == key
            name = key.item() if hasattr(key, "item") else key
            self.model.setdefault(name, _Errors()).update(model_pred[rows], label[rows])
            if baseline_pred is not None:
                self.baseline.setdefault(name, _Errors()).update(baseline_pred[rows], label[rows])

    def rows(self, labels: dict | None = None) -> list[dict]:
        ranked = sorted(self.model.items(), key=lambda item: -item[1].count)[:MAX_SLICE_VALUES]
        out = []
        for key, errors in ranked:
            row = {"value": (labels or {}).get(key, key), "rows": errors.count, "rmse": errors.rmse, "mae": errors.mae}
            if key in self.baseline:
                row["baseline_rmse"] = self.baseline[key].rmse
            out.append(row)
        if labels:  # bins in their natural order
            order = list(labels.values())
            out.sort(key=lambda r: order.index(r["value"]) if r["value"] in order else len(order))
        return out


def benchmark_predictions(state, spec, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The rule-based benchmark on numpy columns: slope * feature + intercept (or the mean)."""
    bench = state.benchmark
    rows = len(next(iter(columns.values())))
    if not bench.get("feature"):
        return np.full(rows, float(bench["intercept"]))
    return float(bench["slope"]) * benchmark_feature_values(spec, bench["feature"], columns) + float(bench["intercept"])


def benchmark_feature_values(spec, feature: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    numeric = {c.name: np.asarray(columns[c.name], np.float64) for c in spec.columns if c.is_numeric}
    return derived_ops.add_derived_np(spec, numeric)[feature]


def _bin_edges(state: TransformState, feature: str | None, first_values: np.ndarray) -> list[float]:
    """Quantile edges of the benchmark feature: from the training boundaries when it is bucketized,
    else from the first test batch."""
    if not feature:
        return []
    quantiles = np.linspace(0, 1, SLICE_BINS + 1)[1:-1]
    if state.boundaries.get(feature):
        bounds = np.asarray(state.boundaries[feature])
        picks = np.unique(np.round(quantiles * (len(bounds) - 1)).astype(int))
        return [float(v) for v in bounds[picks]]
    return [float(v) for v in np.unique(np.quantile(first_values, quantiles))]


def _bin_labels(feature: str, edges: list[float]) -> dict[int, str]:
    labels = {}
    points = [-math.inf, *edges, math.inf]
    for index in range(len(points) - 1):
        low, high = points[index], points[index + 1]
        if math.isinf(low):
            labels[index] = f"{feature} < {high:.4g}"
        elif math.isinf(high):
            labels[index] = f"{feature} >= {low:.4g}"
        else:
            labels[index] = f"{low:.4g} <= {feature} < {high:.4g}"
    return labels


def load_baseline(baseline_dir: str | None, spec) -> tuple[object | None, str]:
    """The baseline's predict function, or (None, why there is none) in plain words."""
    if not baseline_dir:
        return None, "no model is in service yet"
    try:
        runner = load_model_dir(baseline_dir)
    except MlengineError as err:
        return None, f"the served model could not be loaded ({err})"
    missing = [name for name in spec.column_names if name not in runner.columns]
    if missing:
        return None, f"the served model takes other inputs (no {missing[0]!r}): not comparable"
    return runner, ""


def score(model_dir: str, test_dir: str, *, margin: float = DEFAULT_BLESSING_MARGIN,
             baseline_dir: str | None = None, baseline_source: str = "",
             tolerance: float = DEFAULT_BASELINE_TOLERANCE, batch_size: int = 4096,
             train_dir: str | None = None) -> dict:
    """Metrics of the model, the benchmark and the baseline on the test split; the blessing and its reasons.

    A classifier's benchmark is fitted on ``train_dir`` (the training split); a regressor's line is
    in its transform state.
    """
    if not 0.0 <= margin < 1.0:
        raise MlengineError(f"margin must be in [0, 1), got {margin}")
    if not 0.0 <= tolerance < 1.0:
        raise MlengineError(f"baseline tolerance must be in [0, 1), got {tolerance}")
    if _is_classifier(model_dir):
        from mlengine.components.evaluate.classify import score_classification

        return score_classification(model_dir, test_dir, train_dir, margin=margin, baseline_dir=baseline_dir,
                                    baseline_source=baseline_source, tolerance=tolerance, batch_size=batch_size)
    state = TransformState.load(model_dir)
    spec = state.spec
    model = load_model_dir(model_dir)
    baseline, no_baseline_reason = load_baseline(baseline_dir, spec)
    files = list_parquet_files(test_dir)
    model_errors, bench_errors, baseline_errors = _Errors(), _Errors(), _Errors()
    categorical = [name for name in spec.categorical if spec.column(name).type in ("string", "int")]
    slices = {name: _Slices() for name in categorical}
    feature = state.benchmark.get("feature")
    bins, edges = _Slices(), None
    plot = {"label": [], "prediction": []}
    names = [*spec.column_names, spec.label.name]
    for index, (_, columns) in enumerate(iter_record_batches(files, names, batch_rows=batch_size)):
        label = np.asarray(columns[spec.label.name], np.float64)
        predicted = np.asarray(model(columns), np.float64)
        model_errors.update(predicted, label)
        bench_errors.update(benchmark_predictions(state, spec, columns), label)
        baseline_pred = np.asarray(baseline(columns), np.float64) if baseline is not None else None
        if baseline_pred is not None:
            baseline_errors.update(baseline_pred, label)
        for name in categorical:
            slices[name].update(columns[name], predicted, label, baseline_pred)
        if feature:
            values = benchmark_feature_values(spec, feature, columns)
            if edges is None:
                edges = _bin_edges(state, feature, values)
            bins.update(np.searchsorted(edges, values, side="right"), predicted, label, baseline_pred)
        room = PLOT_ROWS - len(plot["label"])
        if room > 0:
            plot["label"] += label[:room].tolist()
            plot["prediction"] += predicted[:room].tolist()
        if index % 50 == 49:
            log.info(f"evaluate: {model_errors.count:,} rows")
    if model_errors.count == 0:
        raise MlengineError(f"{test_dir}: the test split has no rows")
    rmse, benchmark_rmse = model_errors.rmse, bench_errors.rmse
    baseline_rmse = baseline_errors.rmse if baseline is not None else None
    verdict = blessing(rmse, benchmark_rmse, margin, baseline_rmse, tolerance, no_baseline_reason)
    sliced = {name: s.rows() for name, s in slices.items()}
    if feature and edges is not None:
        sliced[f"{feature} (quantile bins)"] = bins.rows(_bin_labels(feature, edges))
    log.info(f"evaluate: {model_errors.count:,} rows, rmse={rmse:.4f}, benchmark_rmse={benchmark_rmse:.4f}"
                    + (f", baseline_rmse={baseline_rmse:.4f}" if baseline_rmse is not None else "")
                    + f", blessed={verdict['blessed']}")
    for reason in verdict["reasons"]:
        log.info(f"evaluate: {reason}")
    return {
        "rows": model_errors.count,
        "rmse": rmse,
        "mae": model_errors.mae,
        "benchmark_rmse": benchmark_rmse,
        "benchmark_mae": bench_errors.mae,
        "benchmark_feature": feature,
        "margin": margin,
        "improvement": 1.0 - rmse / benchmark_rmse if benchmark_rmse > 0 else None,
        "baseline_rmse": baseline_rmse,
        "baseline_mae": baseline_errors.mae if baseline is not None else None,
        "baseline_model": str(baseline_source or baseline_dir or "") or None,
        "baseline_tolerance": tolerance,
        **verdict,
        "slices": sliced,
        "plot_sample": plot,
        "model_dir": str(model_dir),
        "test_dir": str(test_dir),
    }


def _is_classifier(model_dir: str) -> bool:
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.constants import SPEC_FILE

    path = Path(model_dir) / SPEC_FILE
    return path.is_file() and load_spec(path).is_classification


def blessing(rmse: float, benchmark_rmse: float, margin: float, baseline_rmse: float | None, tolerance: float,
             no_baseline_reason: str = "no model is in service yet", metric: str = "RMSE") -> dict:
    """Both rules, each with its reason in plain words; blessed only when both pass.

    ``rmse`` and the other figures are those of ``metric`` (lower is better): RMSE for a regressor,
    log loss for a classifier.
    """
    threshold = benchmark_rmse * (1.0 - margin)
    beats_benchmark = bool(rmse <= threshold)
    gain = 1.0 - rmse / benchmark_rmse if benchmark_rmse > 0 else 0.0
    reasons = [
        f"{metric} {rmse:.4g} is {abs(gain):.1%} {'better' if gain >= 0 else 'worse'} than the benchmark's "
        f"{benchmark_rmse:.4g} (needed: at least {margin:.0%} better, {metric} <= {threshold:.4g})"
        + (": passes" if beats_benchmark else ": fails")]
    if baseline_rmse is None:
        not_worse = True
        reasons.append(f"no baseline comparison: {no_baseline_reason}")
    else:
        not_worse = bool(rmse <= baseline_rmse * (1.0 + tolerance))
        change = rmse / baseline_rmse - 1.0 if baseline_rmse > 0 else 0.0
        reasons.append(
            f"{metric} {rmse:.4g} is {abs(change):.1%} {'worse' if change > 0 else 'better'} than the served model's "
            f"{baseline_rmse:.4g} (allowed: at most {tolerance:.0%} worse)" + (": passes" if not_worse else ": fails"))
    blessed = beats_benchmark and not_worse
    reasons.append("blessed" if blessed else "not blessed")
    return {"blessed": blessed, "beats_benchmark": beats_benchmark, "not_worse_than_baseline": not_worse,
            "reasons": reasons, "reason": "; ".join(reasons)}


def served_model_dir(*, baseline_uri: str, mode: str, model_name: str, namespace: str | None, scratch: str | Path,
                     spec_file: str | Path, api=None) -> tuple[str | None, str]:
    """Where the baseline model is (a local directory), and where it came from.

    Locally the pipeline passes the directory the last run deployed. On a cluster, without an
    explicit URI, the InferenceService's current ``storageUri`` (TF Serving layout ``<uri>/1/``)
    is downloaded and laid out as a model directory with the candidate's feature spec.
    """
    import shutil

    from mlengine.constants import SERVING_MODEL_SUBDIR, SPEC_FILE

    uri = baseline_uri
    if not uri and mode == "cluster":
        if not model_name:  # deploy's default: the spec name made URL-safe (deploy/http/limits.py default_model_name)
            import re

            from mlengine.components.shared.featurespec import load_spec

            model_name = re.sub(r"[^a-z0-9-]+", "-", load_spec(spec_file).name.lower()).strip("-") or "model"
        from mlengine.components.shared.k8s import CustomResource
        from mlengine.constants import K8S_NAMESPACE

        isvc = CustomResource("serving.kserve.io", "v1beta1", "inferenceservices", namespace or K8S_NAMESPACE,
                              api=api).get(model_name)
        predictor = ((isvc or {}).get("spec") or {}).get("predictor") or {}
        uri = (predictor.get("model") or {}).get("storageUri") or ""
    if not uri:
        return None, ""
    if "://" not in uri:
        return (uri if Path(uri).is_dir() else None), uri
    from mlengine.components.shared.staging import download_prefix

    target = Path(scratch) / "baseline"
    download_prefix(uri.rstrip("/") + "/1", target / SERVING_MODEL_SUBDIR, required=False)
    shutil.copy(spec_file, target / SPEC_FILE)
    return str(target), uri


@dataclass(frozen=True)
class EvaluateResult:
    """The evaluation: every figure (``details``), the blessing and the metrics logged for the UI.

    ``classification``: for a classifier, what the Kubeflow ClassificationMetrics artifact draws
    (categories, confusion matrix, one ROC curve); None for a regressor.
    """

    blessed: bool
    metrics: dict
    details: dict
    classification: dict | None = None


CLASSIFICATION_METRICS = ("log_loss", "accuracy", "roc_auc", "pr_auc", "benchmark_log_loss", "benchmark_accuracy",
                          "baseline_log_loss")


def run(*, model_dir: str, test_dir: str, margin: float, baseline_model_uri: str, baseline_tolerance: float,
        model_name: str, mode: str, report_md: str | Path, report_html: str | Path, evaluation_json: str | Path,
        train_dir: str = "", namespace: str | None = None, api=None) -> EvaluateResult:
    """Find the baseline, score the model, bless it or not, and write the three reports.

    Args:
        model_dir: the trained model directory.
        test_dir: the test split.
        margin: how much the model's RMSE (a classifier's log loss) must beat the benchmark's by.
        baseline_model_uri: the served model to compare with (directory or storage URI); empty: see
            ``served_model_dir``.
        baseline_tolerance: how much worse than the served model the candidate may be.
        model_name: the InferenceService whose storageUri is the baseline on a cluster.
        mode: local or cluster.
        report_md: where the Markdown report is written.
        report_html: where the HTML report is written.
        evaluation_json: where evaluation.json is written.
        train_dir: the training split: a classifier's benchmark is fitted on it (a regressor's is in
            its transform state, and the split is not read).
        namespace: the cluster namespace (default: the package's).
        api: a Kubernetes API client (tests).

    Returns:
        The EvaluateResult.
    """
    from mlengine.constants import SPEC_FILE

    scratch = tempfile.mkdtemp(prefix="mlengine-baseline-")
    baseline_dir, source = served_model_dir(baseline_uri=baseline_model_uri, mode=mode, model_name=model_name,
                                            namespace=namespace, scratch=scratch,
                                            spec_file=Path(model_dir) / SPEC_FILE, api=api)
    result = score(model_dir, test_dir, margin=margin, baseline_dir=baseline_dir, baseline_source=source,
                   tolerance=baseline_tolerance, train_dir=train_dir or None)
    blessed = bool(result["blessed"])
    classification = None
    if result.get("task") in ("binary", "multiclass"):
        from mlengine.components.evaluate.classify import ui_classification_metrics

        values = {key: float(result[key]) for key in CLASSIFICATION_METRICS if result.get(key) is not None}
        classification = ui_classification_metrics(result)
    else:
        values = {key: float(result[key]) for key in ("rmse", "mae", "benchmark_rmse", "benchmark_mae")}
        if result["baseline_rmse"] is not None:
            values["baseline_rmse"] = float(result["baseline_rmse"])
    metrics = {**values, "blessed": int(blessed), "test_rows": int(result["rows"])}
    Path(report_md).write_text(render_evaluation_markdown(result), encoding="utf-8")
    Path(report_html).write_text(render_evaluation_html(result), encoding="utf-8")
    Path(evaluation_json).write_text(json.dumps(summary_of(result), indent=1, default=str), encoding="utf-8")
    return EvaluateResult(blessed=blessed, metrics=metrics, details=summary_of(result), classification=classification)
