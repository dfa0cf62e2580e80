"""Evaluate the exported model on the test split against the rule-based benchmark.

The test split is streamed batch by batch through the SavedModel's raw-feature signature (the
same path serving takes). The benchmark is the least-squares line of the transform
(``label ~ slope * benchmark_feature + intercept``, fitted on the training split). The model is
blessed when its RMSE beats the benchmark's by the margin.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from mlengine.components.shared import derived as derived_ops
from mlengine.components.shared import reports
from mlengine.components.shared.parquet import iter_record_batches, list_parquet_files
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.components.shared.transform_state import TransformState
from mlengine.constants import DEFAULT_BLESSING_MARGIN
from mlengine.errors import MlengineError


def _emit(progress, message: str) -> None:
    if progress is None:
        print(message, file=sys.stderr, flush=True)
    elif progress:
        progress(message)


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


def benchmark_predictions(state: dict, spec, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The rule-based benchmark on numpy columns: slope * feature + intercept (or the mean)."""
    bench = state.benchmark
    rows = len(next(iter(columns.values())))
    if not bench.get("feature"):
        return np.full(rows, float(bench["intercept"]))
    numeric = {c.name: np.asarray(columns[c.name], np.float64) for c in spec.columns if c.is_numeric}
    feature = derived_ops.add_derived_np(spec, numeric)[bench["feature"]]
    return float(bench["slope"]) * feature + float(bench["intercept"])


def evaluate(model_dir: str, test_dir: str, *, margin: float = DEFAULT_BLESSING_MARGIN, batch_size: int = 4096,
             progress=None) -> dict:
    """RMSE / MAE of the model and of the benchmark on the test split, and the blessing."""
    if not 0.0 <= margin < 1.0:
        raise MlengineError(f"margin must be in [0, 1), got {margin}")
    state = TransformState.load(model_dir)
    spec = state.spec
    model = load_model_dir(model_dir)
    files = list_parquet_files(test_dir)
    model_errors, bench_errors = _Errors(), _Errors()
    names = [*spec.column_names, spec.label.name]
    for index, (_, columns) in enumerate(iter_record_batches(files, names, batch_rows=batch_size)):
        label = np.asarray(columns[spec.label.name], np.float64)
        model_errors.update(model(columns), label)
        bench_errors.update(benchmark_predictions(state, spec, columns), label)
        if index % 50 == 49:
            _emit(progress, f"evaluate: {model_errors.count:,} rows")
    if model_errors.count == 0:
        raise MlengineError(f"{test_dir}: the test split has no rows")
    rmse, benchmark_rmse = model_errors.rmse, bench_errors.rmse
    blessed = bool(rmse <= benchmark_rmse * (1.0 - margin))
    _emit(progress, f"evaluate: {model_errors.count:,} rows, rmse={rmse:.4f}, benchmark_rmse={benchmark_rmse:.4f}, "
                    f"blessed={blessed}")
    return {
        "rows": model_errors.count,
        "rmse": rmse,
        "mae": model_errors.mae,
        "benchmark_rmse": benchmark_rmse,
        "benchmark_mae": bench_errors.mae,
        "benchmark_feature": state.benchmark.get("feature"),
        "margin": margin,
        "improvement": 1.0 - rmse / benchmark_rmse if benchmark_rmse > 0 else None,
        "blessed": blessed,
        "model_dir": str(model_dir),
        "test_dir": str(test_dir),
    }


def render_evaluation_markdown(result: dict) -> str:
    """A short Markdown report: the metrics table and the blessing decision with its rule."""
    feature = result.get("benchmark_feature")
    benchmark_name = f"least-squares line on `{feature}`" if feature else "the mean label"
    verdict = "**BLESSED**" if result["blessed"] else "**NOT blessed**"
    threshold = result["benchmark_rmse"] * (1.0 - result["margin"])
    improvement = result.get("improvement")
    lines = [
        "# Model evaluation",
        "",
        f"Test rows: {result['rows']:,}",
        "",
        reports.markdown_table(["", "RMSE", "MAE"], [
            ["model", result["rmse"], result["mae"]],
            [f"benchmark ({benchmark_name})", result["benchmark_rmse"], result["benchmark_mae"]],
        ]),
        "",
        f"{verdict}: the model must reach RMSE <= {threshold:.4g} "
        f"(benchmark RMSE x (1 - margin {result['margin']:.0%})); it reached {result['rmse']:.4g}"
        + (f", {improvement:.1%} better than the benchmark." if improvement is not None else "."),
    ]
    return "\n".join(lines) + "\n"
