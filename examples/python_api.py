"""mlengine from plain Python (a script or a notebook cell), without KFP: each step's executor in turn.

Every component's logic is ``mlengine.components.<name>.executor.run(...)``: typed arguments in,
a result dataclass out, its reports written where you say. The KFP components call exactly
these functions, so what runs here is what runs in a pipeline step.

    .venv/bin/python examples/python_api.py --out out/python-api               # 2,000 generated taxi rows
    .venv/bin/python examples/python_api.py --out out/python-api --data my.csv --spec my_spec.yaml
"""

import argparse
import json
from pathlib import Path

from mlengine.components.batch_predict import executor as batch_predict
from mlengine.components.evaluate import executor as evaluate
from mlengine.components.ingest import executor as ingest
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.hyperparameters import HyperParameters
from mlengine.components.train import executor as train
from mlengine.components.transform import executor as transform
from mlengine.constants import SPLITS


def walk_through(out: str | Path, data: str | None = None, spec_path: str | None = None, rows: int = 2000,
                 epochs: int = 1) -> dict:
    """Ingest, transform, train, evaluate and batch-predict; returns the figures each step reported."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:  # generated taxi rows (the built-in spec describes them)
        from mlengine.synthetic import write_csv

        data = str(out / "taxi.csv")
        write_csv(data, rows, seed=1)
    spec = load_spec(spec_path)  # None: the built-in taxi spec

    # 1. ingest: validate every row, quarantine the bad ones, split 80/10/10 into Parquet, statistics
    splits = {split: str(out / "data" / split) for split in SPLITS}
    ingested = ingest.run(data, spec, splits, str(out / "rejects.jsonl"), str(out / "statistics"))
    print(f"ingest: {ingested.rows_read} rows read, {ingested.rows_rejected} rejected, {ingested.rows_per_split}")

    # 2. transform: the analyze pass (bucket boundaries, scaling, vocabularies) the model carries inside
    hyperparameters = HyperParameters(nbuckets=4, hidden_units="16,8", learning_rate=0.01, batch_size=64)
    transformed = transform.run(splits["train"], spec, hyperparameters.nbuckets, out / "transform")
    print(f"transform: analyzed {transformed.rows} rows")

    # 3. train: a SavedModel over raw features (one process here; workers/ps/mode for more)
    trained = train.run(train_dir=splits["train"], eval_dir=splits["eval"], transform_dir=str(out / "transform"),
                        model_dir=str(out / "model"), hyperparameters=hyperparameters, epochs=epochs)
    print(f"train: eval RMSE {trained.eval_rmse:.3f} after {trained.epochs_run} epoch(s)")

    # 4. evaluate: the test split against the rule-based benchmark; the blessing, with its reasons
    evaluated = evaluate.run(model_dir=str(out / "model"), test_dir=splits["test"], margin=0.0,
                             baseline_model_uri="", baseline_tolerance=0.01, model_name="", mode="local",
                             report_md=out / "evaluation.md", report_html=out / "evaluation.html",
                             evaluation_json=out / "evaluation.json")
    print(f"evaluate: blessed={evaluated.blessed} (reports: {out / 'evaluation.md'})")

    # 5. batch predict: score a file with the exported model, no server
    predicted = batch_predict.run(str(out / "model"), data, str(out / "predictions"))
    print(f"batch predict: {predicted.rows_predicted} rows scored into {predicted.out_dir}")

    return {"rows_read": ingested.rows_read, "rows_rejected": ingested.rows_rejected,
            "eval_rmse": trained.eval_rmse, "blessed": evaluated.blessed,
            "rows_predicted": predicted.rows_predicted, "model_dir": str(out / "model")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for every output")
    parser.add_argument("--data", help="CSV of your data (default: generated taxi rows)")
    parser.add_argument("--spec", help="feature spec YAML of your data (default: the built-in taxi spec)")
    parser.add_argument("--rows", type=int, default=2000, help="rows to generate without --data")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(walk_through(args.out, args.data, args.spec, args.rows, args.epochs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
