"""A real dataset with only a spec: `mlengine run` defaults vs a default HistGradientBoostingRegressor.

The diamonds data ships inside the plotnine wheel (``mlengine.datasets``); its spec is
``mlengine/data/diamonds_spec.yaml``. The pipeline runs with its default options; then a default
scikit-learn ``HistGradientBoostingRegressor`` is fitted on the SAME training split the pipeline's
ingest wrote and scored on the SAME test split. With ``--second-run`` the pipeline runs again on
the same ``--out``: its evaluator then compares with the model the first run deployed
(``baseline_rmse``). Writes bench/results/real_dataset.json.

A third run with ``--epochs 1`` (a worse model) checks that it is NOT blessed against the served one.

``python -m bench.bench_real_dataset [--out out/bench-diamonds] [--second-run] [--readme]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "real_dataset.json"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_split(split_dir: str | Path, spec):
    """A Parquet split as a pandas frame with the spec's string columns as categories."""
    import pyarrow.parquet as pq

    from mlengine.components.shared.parquet import list_parquet_files

    frame = pq.ParquetDataset(list_parquet_files(str(split_dir))).read().to_pandas()
    for col in spec.columns:
        if col.type == "string":
            frame[col.name] = frame[col.name].astype("category")
    return frame


def hist_gradient_boosting_rmse(train_dir: str | Path, test_dir: str | Path, spec, seed: int = 0) -> float:
    """Test RMSE of a default HistGradientBoostingRegressor fitted on the training split."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor

    train, test = read_split(train_dir, spec), read_split(test_dir, spec)
    names = spec.column_names
    for col in spec.columns:  # the same categories on both sides
        if col.type == "string":
            categories = sorted(set(train[col.name].cat.categories) | set(test[col.name].cat.categories))
            train[col.name] = train[col.name].cat.set_categories(categories)
            test[col.name] = test[col.name].cat.set_categories(categories)
    model = HistGradientBoostingRegressor(random_state=seed)  # defaults otherwise
    model.fit(train[names], train[spec.label.name])
    error = model.predict(test[names]) - test[spec.label.name].to_numpy()
    return float(np.sqrt(np.mean(error ** 2)))


def splits_of(summary: dict) -> dict[str, Path]:
    """The ingest splits of the run that produced ``summary`` (beside its model in the pipeline root)."""
    run_root = Path(summary["model_dir"]).parents[1]
    return {name: run_root / "ingest" / f"{name}_data" for name in ("train", "test")}


def run_and_compare(out: str | Path, dataset: str = "diamonds", params: dict | None = None) -> dict:
    """One `mlengine run` (default options unless ``params``) on a package-shipped dataset, then the
    HistGradientBoosting reference on the same splits."""
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.logs import setup_logging
    from mlengine.datasets import dataset_csv, dataset_spec
    from mlengine.pipelines.local_run import run_training_locally

    setup_logging()  # the run's progress lines on stderr
    spec_path = dataset_spec(dataset)
    summary = run_training_locally(out, data=str(dataset_csv(dataset)), rows=0,
                                   params={"spec_uri": str(spec_path), **(params or {})})
    splits = splits_of(summary)
    reference = hist_gradient_boosting_rmse(splits["train"], splits["test"], load_spec(spec_path))
    return {"dataset": dataset, "rmse": summary["rmse"], "benchmark_rmse": summary["benchmark_rmse"],
            "baseline_rmse": summary.get("baseline_rmse"), "blessed": summary["blessed"],
            "blessing_reasons": summary.get("blessing_reasons"),
            "hist_gradient_boosting_rmse": reference, "ratio_to_hgb": summary["rmse"] / reference,
            "seconds": summary["seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", default="out/bench-diamonds")
    parser.add_argument("--second-run", action="store_true", help="run again on the same --out (baseline check)")
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md too")
    args = parser.parse_args(argv)
    results = {"first": run_and_compare(args.out)}
    _log(f"bench: first run {json.dumps(results['first'])}")
    if args.second_run:
        results["second"] = run_and_compare(args.out)
        _log(f"bench: second run {json.dumps(results['second'])}")
        # a deliberately worse candidate (one epoch) against the served model: must not be blessed
        results["worse"] = run_and_compare(args.out, params={"epochs": 1})
        _log(f"bench: one-epoch run {json.dumps(results['worse'])}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(json.dumps(results, indent=1))
    if args.readme:
        write_readme(results)
    return 0


def write_readme(results: dict) -> None:
    """The real-dataset section of bench/README.md (``--readme`` only: the file is tracked)."""
    from bench.tables import markdown_table, write_section

    write_section("real_dataset", "\n".join([
        "## Real dataset (diamonds): our RMSE vs HistGradientBoosting on the same splits",
        "",
        "`python -m bench.bench_real_dataset --second-run` (second run: baseline check; third: one epoch, "
        "must not be blessed):",
        "",
        markdown_table(["run", "RMSE", "HistGradientBoosting RMSE (baseline)", "ratio", "blessed", "seconds"],
                       [[name, f"{r['rmse']:.4f}", f"{r['hist_gradient_boosting_rmse']:.4f}",
                         f"{r['ratio_to_hgb']:.3f}", r["blessed"], f"{r['seconds']:.0f}"]
                        for name, r in results.items()]),
    ]))


if __name__ == "__main__":
    sys.exit(main())
