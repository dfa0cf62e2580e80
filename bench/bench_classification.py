"""Two real classification datasets with only a spec: `mlengine run` defaults vs two scikit-learn references.

The datasets ship inside registry wheels (``mlengine.datasets``): ``adult`` (census income, binary,
eight string columns; mglearn) and ``penguins`` (three species, string island and sex; plotnine).
Each runs through the pipeline with its default options; then a default scikit-learn
``HistGradientBoostingClassifier`` (string columns as categories) and a one-hot
``LogisticRegression`` (numeric columns standardised) are fitted on the SAME training split the
pipeline's ingest wrote and scored on the SAME test split. The headline figure is the test ROC AUC
for a binary label and the accuracy for a multiclass one; the target is to be within 0.02 of the
better reference, with a log loss below the class prior's (and the multiclass model blessed).
Writes bench/results/classification.json (``--readme``: its table into bench/README.md too).

``python -m bench.bench_classification [--out out/bench-classification] [--datasets adult,penguins]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "classification.json"
DATASETS = ("adult", "penguins")
TOLERANCE = 0.02  # the headline figure may be this much below the better reference


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def headline(task: str) -> str:
    """The figure a dataset is compared on: ROC AUC for binary, accuracy for multiclass."""
    return "roc_auc" if task == "binary" else "accuracy"


def figures(probabilities, labels, classes: list) -> dict:
    """Test figures of [rows, C] probabilities (vocabulary order) against class labels."""
    import numpy as np
    from sklearn import metrics

    ids = np.array([classes.index(value) for value in labels])
    out = {"log_loss": float(metrics.log_loss(ids, probabilities, labels=list(range(len(classes))))),
           "accuracy": float(metrics.accuracy_score(ids, np.asarray(probabilities).argmax(axis=1)))}
    if len(classes) == 2:
        out["roc_auc"] = float(metrics.roc_auc_score(ids, np.asarray(probabilities)[:, 1]))
    else:
        out["roc_auc"] = float(metrics.roc_auc_score(ids, probabilities, multi_class="ovr",
                                                     labels=list(range(len(classes)))))
    return out


def _frames(train_dir, test_dir, spec):
    """Training and test frames with every string column a category of the same categories on both sides."""
    from bench.bench_real_dataset import read_split

    train, test = read_split(train_dir, spec), read_split(test_dir, spec)
    for col in spec.columns:
        if col.type == "string":
            categories = sorted(set(train[col.name].cat.categories) | set(test[col.name].cat.categories))
            train[col.name] = train[col.name].cat.set_categories(categories)
            test[col.name] = test[col.name].cat.set_categories(categories)
    return train, test


def _in_vocabulary_order(model, probabilities, classes: list):
    """predict_proba's columns (sorted classes) reordered to the spec's vocabulary."""
    order = [list(model.classes_).index(value) for value in classes]
    return probabilities[:, order]


def sklearn_references(train_dir, test_dir, spec, seed: int = 0) -> dict:
    """Test figures of a default HistGradientBoostingClassifier, a one-hot logistic regression and the class prior."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    classes = list(spec.classes)
    train, test = _frames(train_dir, test_dir, spec)
    names, label = spec.column_names, spec.label.name
    y_train = train[label].astype(object).to_numpy()
    y_test = test[label].astype(object).to_numpy()
    out = {}
    boosting = HistGradientBoostingClassifier(random_state=seed, categorical_features="from_dtype")
    boosting.fit(train[names], y_train)
    out["hist_gradient_boosting"] = figures(
        _in_vocabulary_order(boosting, boosting.predict_proba(test[names]), classes), y_test, classes)
    one_hot = [name for name in names if name in spec.categorical or spec.column(name).type == "string"]
    scaled = [name for name in names if name not in one_hot]
    logistic = make_pipeline(
        ColumnTransformer([("one_hot", OneHotEncoder(handle_unknown="ignore"), one_hot),
                           ("scaled", StandardScaler(), scaled)]),
        LogisticRegression(max_iter=5000))
    frame = {name: (train[name].astype(str) if name in one_hot else train[name]) for name in names}
    test_frame = {name: (test[name].astype(str) if name in one_hot else test[name]) for name in names}
    import pandas as pd

    logistic.fit(pd.DataFrame(frame), y_train)
    out["logistic_regression"] = figures(
        _in_vocabulary_order(logistic, logistic.predict_proba(pd.DataFrame(test_frame)), classes), y_test, classes)
    shares = np.array([np.mean(y_train == value) for value in classes])
    out["class_prior"] = figures(np.tile(shares, (len(y_test), 1)), y_test, classes)
    return out


def compare(ours: dict, references: dict, task: str, blessed: bool) -> dict:
    """Our headline figure against the better reference, and the done-when checks."""
    key = headline(task)
    best_name = max(("hist_gradient_boosting", "logistic_regression"), key=lambda name: references[name][key])
    best = references[best_name][key]
    checks = {"within_tolerance_of_the_better_reference": bool(ours[key] >= best - TOLERANCE),
              "log_loss_below_the_class_prior": bool(ours["log_loss"] < references["class_prior"]["log_loss"])}
    if task == "multiclass":
        checks["blessed"] = bool(blessed)
    return {"metric": key, "ours": ours[key], "better_reference": best_name, "reference": best,
            "ratio": ours[key] / best if best else None, "difference": ours[key] - best, "checks": checks,
            "passed": all(checks.values())}


def run_and_compare(out: str | Path, dataset: str, params: dict | None = None) -> dict:
    """One `mlengine run` (default options unless ``params``) on a package-shipped dataset, then the references."""
    from bench.bench_real_dataset import splits_of
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.logs import setup_logging
    from mlengine.datasets import dataset_csv, dataset_spec
    from mlengine.pipelines.local_run import run_training_locally

    setup_logging()  # the run's progress lines on stderr
    spec_path = dataset_spec(dataset)
    spec = load_spec(spec_path)
    summary = run_training_locally(Path(out) / dataset, data=str(dataset_csv(dataset)), rows=0,
                                   params={"spec_uri": str(spec_path), **(params or {})})
    splits = splits_of(summary)
    references = sklearn_references(splits["train"], splits["test"], spec)
    ours = {key: summary.get(key) for key in ("log_loss", "accuracy", "roc_auc", "pr_auc")}
    result = {"dataset": dataset, "task": spec.task, "classes": list(spec.classes), "mlengine": ours,
              "benchmark_log_loss": summary.get("benchmark_log_loss"), "blessed": summary["blessed"],
              "blessing_reasons": summary.get("blessing_reasons"), "references": references,
              "seconds": summary["seconds"]}
    result["comparison"] = compare(ours, references, spec.task, summary["blessed"])
    return result


def table(results: dict) -> str:
    from bench.tables import markdown_table

    rows = []
    for name, r in results.items():
        c = r["comparison"]
        refs = r["references"]
        metric = c["metric"]
        rows.append([name, r["task"], metric, f"{c['ours']:.4f}", f"{refs['hist_gradient_boosting'][metric]:.4f}",
                     f"{refs['logistic_regression'][metric]:.4f}", f"{c['ratio']:.3f}",
                     f"{r['mlengine']['log_loss']:.4f}", f"{refs['class_prior']['log_loss']:.4f}",
                     r["blessed"], "yes" if c["passed"] else "NO", f"{r['seconds']:.0f}"])
    return markdown_table(["dataset", "task", "metric", "mlengine", "HistGradientBoosting", "one-hot logistic",
                           "ratio to the better", "log loss", "class prior log loss", "blessed", "target met",
                           "seconds"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", default="out/bench-classification")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default %(default)s)")
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md too")
    args = parser.parse_args(argv)
    results = {}
    for dataset in [name for name in args.datasets.split(",") if name]:
        results[dataset] = run_and_compare(args.out, dataset)
        _log(f"bench: {dataset} {json.dumps(results[dataset]['comparison'])}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(table(results))
    if args.readme:
        from bench.tables import write_section

        write_section("classification", "\n".join([
            "## Classification on two real datasets: mlengine defaults vs scikit-learn on the same splits", "",
            "`python -m bench.bench_classification` (binary: test ROC AUC; multiclass: test accuracy; target: within "
            f"{TOLERANCE} of the better reference, log loss below the class prior's, the multiclass model blessed):",
            "", table(results)]))
    return 0 if all(r["comparison"]["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
