"""A pipeline of your own: mlengine's components around two lightweight components of yours.

    ingest -> check_rows (yours) -> tune (no trials) -> transform -> train -> evaluate -> notify (yours)

``check_rows`` stops the run when ingest kept too few training rows; ``notify`` turns the
evaluation into a message (here a Markdown artifact and a string; a real one would post it to a
chat or a ticket). The suite's components come from ``mlengine.components``; the pipeline asks
``mlengine.pipelines.platform`` for the cluster wiring (images of your registry, the MinIO
Secret as every step's environment, the shared volume of parameter-server training), as the
built-in pipelines do.

    # compile for a Kubeflow cluster (upload the YAML in the UI or with the kfp client)
    .venv/bin/python examples/pipelines/compose.py compile --out out/compose
    # run it on this machine under kfp.local (generated taxi rows unless --data is given)
    .venv/bin/python examples/pipelines/compose.py run --out out/compose-run
"""

import argparse
import json
from pathlib import Path

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from mlengine.components import EvaluateOp, IngestOp, TrainOp, TransformOp, TuneOp
from mlengine.constants import PIPELINE_IMAGE
from mlengine.pipelines import platform

PIPELINE_NAME = "compose-example"


# --- your own components: plain Python functions; they run in the suite's image (pyarrow is there) --
@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def check_rows(train_data: Input[Dataset], min_rows: int) -> int:
    """Count the training rows ingest kept; fail the run below ``min_rows``."""
    from pathlib import Path

    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(part).metadata.num_rows for part in Path(train_data.path).glob("*.parquet"))
    if rows < min_rows:
        raise ValueError(f"only {rows} training rows (at least {min_rows} wanted): check the data source")
    return rows


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def notify(blessed: bool, train_rows: int, evaluation: Input[Artifact], note: Output[Markdown]) -> str:
    """The run's outcome as one line; also written as a Markdown artifact the UI shows."""
    verdict = "blessed: ready to deploy" if blessed else "not blessed: the served model stays"
    message = f"model trained on {train_rows:,} rows is {verdict} (evaluation: {evaluation.uri})"
    with open(note.path, "w", encoding="utf-8") as handle:
        handle.write(f"# Training run\n\n{message}\n")
    return message


# --- the pipeline ----------------------------------------------------------------------------------
@dsl.pipeline(name=PIPELINE_NAME, description="ingest, a row check, train and evaluate, then a notification")
def compose_pipeline(
    data_uri: str,
    spec_uri: str = "",
    min_rows: int = 100,
    epochs: int = 1,
    workers: int = 1,
    ps: int = 0,
    mode: str = "local",
) -> str:
    """mlengine's components with two of yours.

    Args:
        data_uri: CSV file, folder of CSV shards, glob or s3:// URI of the raw data.
        spec_uri: feature spec YAML; empty for the built-in taxi spec.
        min_rows: the fewest training rows worth training on.
        epochs: maximum training epochs.
        workers: training workers (local processes or TFJob replicas).
        ps: parameter servers.
        mode: local (heavy steps as processes in the step) or cluster (TFJob, Katib).
    """
    with platform.shared_volume() as shared_claim:  # "" locally; a per-run PVC on a cluster
        ingest_task = IngestOp(data_uri=data_uri, spec_uri=spec_uri, split_seed=0)
        check_task = check_rows(train_data=ingest_task.outputs["train_data"], min_rows=min_rows)
        tune_task = TuneOp(train_data=ingest_task.outputs["train_data"], eval_data=ingest_task.outputs["eval_data"],
                           statistics=ingest_task.outputs["statistics"], fixed_hyperparameters={}, trials=0,
                           parallel=1, algorithm="tpe", epochs=epochs, mode=mode, shared_claim=shared_claim)
        tune_task.after(check_task)
        transform_task = TransformOp(train_data=ingest_task.outputs["train_data"],
                                     statistics=ingest_task.outputs["statistics"],
                                     hyperparameters=tune_task.outputs["hyperparameters"])
        train_task = TrainOp(train_data=ingest_task.outputs["train_data"], eval_data=ingest_task.outputs["eval_data"],
                             transform_fn=transform_task.outputs["transform_fn"],
                             hyperparameters=tune_task.outputs["hyperparameters"], study=tune_task.outputs["study"],
                             model_module=tune_task.outputs["module"], epochs=epochs, workers=workers, ps=ps,
                             strategy="auto", mode=mode, shared_claim=shared_claim)
        evaluate_task = EvaluateOp(model=train_task.outputs["model"], test_data=ingest_task.outputs["test_data"],
                                   train_data=ingest_task.outputs["train_data"],
                                   margin=0.0, baseline_model_uri="", baseline_tolerance=0.01, model_name="",
                                   mode=mode)
        notify_task = notify(blessed=evaluate_task.outputs["Output"], train_rows=check_task.output,
                             evaluation=evaluate_task.outputs["evaluation"])
    platform.finish(volume_users=(tune_task, train_task))
    return notify_task.outputs["Output"]


def compile_pipeline(out_dir, target_name: str = "cluster", image_registry: str | None = None) -> Path:
    """Write ``compose_pipeline.<target>.yaml``; the cluster target gets cluster defaults (mode, workers, ps)."""
    from kfp import compiler

    target = platform.Target(name=target_name, image_registry=image_registry)
    # KFP takes pipeline outputs only from the top level: inside the cluster's exit handler there are none
    pipeline = platform.build(compose_pipeline, target, outputs=not target.is_cluster)
    inputs = pipeline.component_spec.inputs or {}
    defaults = {key: value for key, value in target.defaults.items() if key in inputs}
    path = Path(out_dir) / f"compose_pipeline.{target.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(path), pipeline_parameters=defaults or None)
    return path


def run_locally(data_uri: str, out_dir, epochs: int = 1, min_rows: int = 100) -> str:
    """Run the pipeline under kfp.local, every step a process of this Python; returns notify's message."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(out_dir) / "pipeline-root"))
    return compose_pipeline(data_uri=data_uri, epochs=epochs, min_rows=min_rows).output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    comp = commands.add_parser("compile", help="write the pipeline YAML")
    comp.add_argument("--out", required=True)
    comp.add_argument("--target", choices=platform.TARGETS, default="cluster")
    comp.add_argument("--image-registry")
    run = commands.add_parser("run", help="run it here under kfp.local")
    run.add_argument("--out", required=True)
    run.add_argument("--data", help="CSV of taxi rows (default: 2,000 generated ones)")
    run.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "compile":
        print(compile_pipeline(args.out, args.target, args.image_registry))
        return 0
    data = args.data
    if not data:
        from mlengine.synthetic import write_csv

        data = str(Path(args.out) / "taxi.csv")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_csv(data, 2000, seed=1)
    print(json.dumps({"message": run_locally(data, args.out, epochs=args.epochs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
