"""``mlengine rehearse``: run the rendered cluster resources on the local Docker engine.

The resources are the ones ``mlengine manifests`` renders (``render_cluster_manifests``, one code
path); this module only plays the controllers:

- the cluster's MinIO: moto's S3 server in a container (an image built on the pipeline image with
  moto's wheels, no registry needed), reachable as ``minio:9000`` on the rehearsal network; a
  bucket holding the splits, the transform and (after training) the model, where a cluster run
  puts them;
- the Training Operator: one container per replica of the TFJob, from its pod template (image,
  command, args, env with ``secretKeyRef`` resolved from a Secret-like env file, emptyDir and the
  ReadWriteMany claim as Docker volumes), reachable as ``<job>-<type>-<index>:2222``, ``TF_CONFIG``
  as the operator builds it, restartPolicy and backoffLimit honoured (``tfjob.py``);
- Kubeflow Trainer v2 and JobSet: the TrainJob merged into the project's TrainingRuntime, one
  container per pod JobSet would make, named and labelled as JobSet names them; no TF_CONFIG is
  given, each container builds it from those labels as on a cluster (``trainjob.py``);
- Katib: one trial of each Experiment (TFJob trials, TrainJob trials), its metric read from the
  primary pod's stdout (``katib.py``);
- KServe: the storage initializer (``storageUri`` copied into ``/mnt/models``), then the
  predictor container; its v1/v2 answers are compared with ``mlengine serve`` on the same model.

Credentials reach the containers only as environment variables (never a command line, image,
manifest, report or log: logs are scrubbed). Everything created carries the label
``io.mlengine.rehearsal=<id>`` and is removed at the end, on failure and on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlengine.components.shared.storage import split_s3_uri
from mlengine.constants import (
    ENV_S3_ACCESS_KEY,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_KEY,
    K8S_S3_SECRET,
    REHEARSAL_LABEL,
    REHEARSAL_S3_HOST,
    REHEARSAL_S3_PORT,
    image_for,
)
from mlengine.errors import MlengineError
from mlengine.rehearsal import log
from mlengine.rehearsal.data import prepare_data, sample_rows
from mlengine.rehearsal.engine import (
    DATA_ROOT,
    JOB_TIMEOUT,
    MODEL_URI,
    PREVIOUS_MODEL_URI,
    Engine,
    RehearsalError,
    Scrubber,
    check_port_free,
    read_env_file,
)
from mlengine.rehearsal.katib import run_trial
from mlengine.rehearsal.kserve import compare_predictions, run_inference_service
from mlengine.rehearsal.module import (
    MODULE_PART,
    MODULE_URI,
    module_entry,
    prepare_module,
    saved_model_layers,
    trained_with_module,
)
from mlengine.rehearsal.monitor import run_monitor_step
from mlengine.rehearsal.s3stage import ensure_s3_image, list_keys, s3_error, start_s3, upload_tree
from mlengine.rehearsal.tfjob import run_tfjob
from mlengine.rehearsal.trainjob import run_trainjob

SERVING_LOG_FLUSH_SECONDS = 3  # the rendered predictor uploads its log this often here (60 s on a cluster)
TRAINJOB_MODEL_URI = MODEL_URI + "-trainjob"
TARGET_MODEL_URIS = {"tfjob": MODEL_URI, "trainjob": TRAINJOB_MODEL_URI}
TARGET_EXPERIMENTS = {"tfjob": "katib-experiment.yaml", "trainjob": "katib-experiment-trainjob.yaml"}
DATA_PARTS = ("train", "eval", "test", "transform", "statistics")


def _check_model(result: dict, s3, model_uri: str, module=None) -> None:
    """A job that passed must have left the exported model under ``model_uri`` (with ``module``: trained with it)."""
    if not result.get("passed"):
        return
    keys = list_keys(s3.client(), model_uri)
    result["model_objects"] = len(keys)
    if not any(k.endswith("serving/saved_model.pb") for k in keys):
        result.update(passed=False, reason=f"the job finished but {model_uri} holds no serving/saved_model.pb")
    elif module is not None:
        from mlengine.components.train.trainer import TRAIN_CONFIG_FILE

        bucket, prefix = split_s3_uri(model_uri)
        body = s3.client().get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{TRAIN_CONFIG_FILE}")["Body"]
        record = json.loads(body.read())
        result["model_hp"] = record.get("model_hp")
        why = trained_with_module(record, module)
        if why:
            result.update(passed=False, reason=f"the model under {model_uri} is not the model module's: {why}")


def render(options: Options, images: dict[str, str], module=None) -> dict[str, dict]:
    """The manifests the rehearsal runs: ``render_cluster_manifests``'s, both targets' models apart; with
    ``module`` the jobs and trials name its artifact folder under ``MODULE_URI``, as on a cluster."""
    from mlengine.kubeflow.manifests import render_cluster_manifests

    render_args = {"data_root": DATA_ROOT, "model_uri": MODEL_URI, "image": images["trainer"],
                   "server_image": images["server"], "previous_model_uri": PREVIOUS_MODEL_URI,
                   "workers": options.workers, "ps": options.ps, "trials": 1, "epochs": options.epochs,
                   "tune_epochs": options.epochs, "serving_log_flush_seconds": SERVING_LOG_FLUSH_SECONDS}
    if module is not None:
        render_args.update(model_module=module, model_module_uri=MODULE_URI)
    manifests = render_cluster_manifests(**render_args)
    # the TrainJob writes its model under a prefix of its own: the two targets' models never mix
    trainjob_manifests = render_cluster_manifests(**{**render_args, "model_uri": TRAINJOB_MODEL_URI})
    manifests["trainjob.yaml"] = trainjob_manifests["trainjob.yaml"]
    manifests["inferenceservice-canary-tfjob.yaml"] = manifests["inferenceservice-canary.yaml"]
    manifests["inferenceservice-canary-trainjob.yaml"] = trainjob_manifests["inferenceservice-canary.yaml"]
    return manifests


def stage_data(s3_client, data: Path, module_dir: Path | None = None) -> int:
    """Upload the splits, transform and statistics under ``DATA_ROOT`` (and the module artifact folder under
    ``MODULE_URI``); returns the object count."""
    parts = {part: data / part for part in DATA_PARTS}
    if module_dir is not None:
        parts[MODULE_PART] = module_dir
    return sum(upload_tree(s3_client, local, f"{DATA_ROOT}/{part}") for part, local in parts.items())


@dataclass
class Options:
    out: Path
    env_file: str | None = None
    server_env_file: str | None = None  # the S3 server's own credentials (default: the env file's)
    workers: int = 2
    ps: int = 1
    rows: int = 3000
    epochs: int = 1
    s3_port: int = 0
    predictor_port: int = 0
    crash_worker: bool = False
    skip_serving: bool = False
    skip_trial: bool = False
    targets: tuple[str, ...] = ("tfjob", "trainjob")  # the training operators rehearsed, in this order
    image_registry: str | None = None  # images named <registry>/mlengine-<role>:<version> (default: the setting)
    manifest_hook: Any = None  # tests: change a rendered manifest (a broken command, a missing env var)
    timeout: float = JOB_TIMEOUT
    model_module: str | None = None  # the user's model module file: the jobs train its body


def rehearsal_images(registry: str | None = None) -> dict[str, str]:
    """role -> image the rehearsal runs: the TFJob and trials (trainer), the predictor (server), the
    storage initializer, the monitor step and the S3 stand-in's base (pipeline)."""
    if registry:
        from mlengine.pipelines.platform import check_registry

        try:
            registry = check_registry(registry)
        except MlengineError as err:
            raise RehearsalError(str(err)) from None
    return {role: image_for(role, registry) for role in ("trainer", "server", "pipeline")}


def rehearse(options: Options) -> dict:
    """Run the rendered TFJob, TrainJob, Katib trials and InferenceService; write rehearsal.json and
    rehearsal.md; return the report."""
    import botocore.exceptions
    import docker

    from mlengine.kubeflow.manifests import write_manifests

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    if options.env_file:
        secret = read_env_file(options.env_file)
        env_file = options.env_file
    else:  # throw-away credentials, in a private file removed at the end
        secret = {ENV_S3_ACCESS_KEY: "rehearsal" + secrets.token_hex(6), ENV_S3_SECRET_KEY: secrets.token_hex(16)}
        env_file = "(generated credentials)"
    server_secret = read_env_file(options.server_env_file) if options.server_env_file else secret
    scrub = Scrubber([secret.get(ENV_S3_ACCESS_KEY), secret.get(ENV_S3_SECRET_KEY),
                      server_secret.get(ENV_S3_ACCESS_KEY), server_secret.get(ENV_S3_SECRET_KEY)])
    s3_port = check_port_free(options.s3_port, "S3 server")
    predictor_port = check_port_free(options.predictor_port, "predictor")
    # the pods reach the stand-in under its Service name, whatever endpoint the file names
    pod_secret = {**secret, ENV_S3_ENDPOINT: f"{REHEARSAL_S3_HOST}:{REHEARSAL_S3_PORT}"}

    images = rehearsal_images(options.image_registry)
    for target in options.targets:
        if target not in TARGET_MODEL_URIS:
            raise RehearsalError(f"training target {target!r}: expected tfjob or trainjob")
    module, module_dir = None, None
    if options.model_module:  # read once and checked before anything starts, as mlengine run does
        import shutil

        module_dir = out / MODULE_PART
        shutil.rmtree(module_dir, ignore_errors=True)
        module = prepare_module(options.model_module, module_dir)
        log.info(f"model module {module.name} checked on a tiny batch; staged to {MODULE_URI}")
    manifests = render(options, images, module)
    if options.manifest_hook:
        options.manifest_hook(manifests)
    write_manifests(out / "manifests", manifests)
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as err:
        raise RehearsalError(f"no Docker engine answers ({err}): images/dockerd.sh start") from None
    engine = Engine(client, secrets.token_hex(4))
    report: dict[str, Any] = {"id": engine.rehearsal_id, "label": f"{REHEARSAL_LABEL}={engine.rehearsal_id}",
                              "resources": {}}
    if module is not None:
        report["model_module"] = module_entry(module)
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        network = engine.network("mlengine-rehearsal")
        bucket, _ = split_s3_uri(DATA_ROOT)
        s3 = start_s3(engine, network, server_secret, secret, s3_port, env_file, bucket,
                      pipeline_image=images["pipeline"])
        with tempfile.TemporaryDirectory(prefix="mlengine-rehearsal-") as work:
            data = prepare_data(Path(work) / "data", options.rows)
            try:
                uploaded = stage_data(s3.client(), data, module_dir)
            except botocore.exceptions.ClientError as err:
                raise s3_error(err, bucket, "the S3 server", env_file) from None
            log.info(f"s3://{bucket}: {uploaded} objects under {DATA_ROOT}")
            runtimes = {m["metadata"]["name"]: m for m in manifests.values() if m["kind"] == "TrainingRuntime"}
            for target in options.targets:
                job = manifests["tfjob.yaml" if target == "tfjob" else "trainjob.yaml"]
                model_uri = TARGET_MODEL_URIS[target]
                if target == "tfjob":
                    result = run_tfjob(engine, job, network=network, secret=pod_secret, secret_name=K8S_S3_SECRET,
                                       scrub=scrub, crash_worker=options.crash_worker,
                                       timeout=options.timeout)
                else:
                    result = run_trainjob(engine, job, runtimes, network=network, secret=pod_secret,
                                          secret_name=K8S_S3_SECRET, scrub=scrub,
                                          timeout=options.timeout)
                _check_model(result, s3, model_uri, module)
                report["resources"][target] = {"name": job["metadata"]["name"], **result}
                if not result.get("passed"):
                    raise RehearsalError(f"{job['kind']} {job['metadata']['name']}: {result['reason']}")
                log.info(f"{job['kind']} {job['metadata']['name']}: finished, {model_uri} holds the model")
            if not options.skip_trial:
                for target in options.targets:
                    experiment = manifests[TARGET_EXPERIMENTS[target]]
                    trial = run_trial(engine, experiment, network=network, secret=pod_secret,
                                      secret_name=K8S_S3_SECRET, scrub=scrub,
                                      timeout=options.timeout, runtimes=runtimes)
                    key = "katib_trial" if target == "tfjob" else "katib_trial_trainjob"
                    report["resources"][key] = {"experiment": experiment["metadata"]["name"], **trial}
                    if not trial["passed"]:
                        raise RehearsalError(f"Katib trial ({trial['kind']}): {trial['reason']}")
                    log.info(f"Katib trial {trial['name']} ({trial['kind']}): {trial['metrics']}")
            if not options.skip_serving:
                # the last target's model is served: the TrainJob's when both ran
                served_uri = TARGET_MODEL_URIS[options.targets[-1]]
                isvc = manifests[f"inferenceservice-canary-{options.targets[-1]}.yaml"]
                runtimes = {m["metadata"]["name"]: m for m in manifests.values() if m["kind"] == "ServingRuntime"}
                served, url = run_inference_service(engine, isvc, runtimes, network=network, secret=pod_secret, s3=s3,
                                                    scrub=scrub, port=predictor_port)
                if url:
                    model_dir = Path(work) / "model"
                    bucket_name, prefix = split_s3_uri(served_uri)
                    for key in list_keys(s3.client(), served_uri):
                        if key.endswith("/"):  # a folder marker object
                            continue
                        target = model_dir / key[len(prefix) + 1:]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        s3.client().download_file(bucket_name, key, str(target))
                    served["predictions"] = compare_predictions(url, model_dir, sample_rows())
                    served["passed"] = all(p["equal"] for p in served["predictions"].values())
                    if module is not None:  # the served SavedModel holds the module's layers
                        report["model_module"]["served_layers"] = saved_model_layers(model_dir)
                report["resources"]["inferenceservice"] = {"name": isvc["metadata"]["name"], **served}
                if not served["passed"]:
                    raise RehearsalError(f"InferenceService {isvc['metadata']['name']}: "
                                         f"{served.get('reason', 'predictions differ from mlengine serve')}")
                compared = sum(p["rows"] for p in served["predictions"].values())
                monitored = run_monitor_step(engine, isvc, url=url, rows_before=compared, network=network,
                                             secret=pod_secret, s3=s3, scrub=scrub,
                                             pipeline_image=images["pipeline"])
                report["resources"]["monitor"] = {"name": f"{isvc['metadata']['name']}-monitor", **monitored}
                if not monitored["passed"]:
                    raise RehearsalError(f"monitor: {monitored['reason']}")
                log.info(f"monitor: read {monitored['rows_read']} rows, drift_detected="
                         f"{monitored['drift_detected']}")
        report["passed"] = True
        return report
    except RehearsalError as err:
        report["passed"] = False
        report["reason"] = scrub(str(err))
        raise
    except KeyboardInterrupt:
        report["passed"] = False
        report["reason"] = "interrupted"
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.cleanup()
        write_report(out, report, scrub)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def write_report(out: Path, report: dict, scrub: Scrubber) -> None:
    text = scrub(json.dumps(report, indent=2, default=str))
    (out / "rehearsal.json").write_text(text + "\n", encoding="utf-8")
    lines = ["# mlengine rehearsal", "", f"Rehearsal `{report['id']}`: "
             f"**{'passed' if report.get('passed') else 'failed'}**"
             + (f" ({report['reason']})" if report.get("reason") else ""), ""]
    for name, entry in report["resources"].items():
        lines += [f"## {name}: {entry.get('name', '')}", "",
                  f"- passed: {entry.get('passed')}"]
        for key, value in entry.items():
            if key not in ("name", "passed", "logs"):
                lines.append(f"- {key}: `{json.dumps(value, default=str)}`")
        if entry.get("logs"):
            lines += ["", "Logs of the failing container (last lines):", "", "```", entry["logs"], "```"]
        lines.append("")
    (out / "rehearsal.md").write_text(scrub("\n".join(lines)), encoding="utf-8")


def cli(args) -> int:
    """The ``mlengine rehearse`` handler: 0 when every resource passed, 1 with one line otherwise."""
    options = Options(out=Path(args.out), env_file=args.env_file, workers=args.workers, ps=args.ps,
                      rows=args.rows, epochs=args.epochs, s3_port=args.s3_port, predictor_port=args.predictor_port,
                      image_registry=args.image_registry, model_module=args.model_module,
                      targets=("tfjob", "trainjob") if args.training_operator == "both" else (args.training_operator,))
    try:
        report = rehearse(options)
    except RehearsalError as err:
        print(f"mlengine rehearse: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlengine rehearse: interrupted; its containers, networks and volumes are removed", file=sys.stderr)
        return 130
    for name, entry in report["resources"].items():
        print(f"{name} {entry.get('name', '')}: {'passed' if entry.get('passed') else 'failed'}")
    print(f"report: {options.out / 'rehearsal.md'}")
    return 0


def add_cli(subparsers) -> None:
    reh = subparsers.add_parser("rehearse", help="run the rendered TFJob, TrainJob, Katib trials and "
                                                 "InferenceService on the local Docker engine, as the cluster's "
                                                 "controllers would (needs make images)")
    reh.add_argument("--out", required=True, help="folder for rehearsal.json, rehearsal.md and the manifests")
    reh.add_argument("--env-file", help="the MinIO Secret as KEY=value lines (AWS_ACCESS_KEY_ID, "
                                        "AWS_SECRET_ACCESS_KEY); default: throw-away credentials")
    reh.add_argument("--workers", type=int, default=2)
    reh.add_argument("--ps", type=int, default=1)
    reh.add_argument("--rows", type=int, default=3000, help="synthetic taxi rows (default %(default)s)")
    reh.add_argument("--epochs", type=int, default=1)
    reh.add_argument("--training-operator", choices=["both", "tfjob", "trainjob"], default="both",
                     help="which training target's job and Katib trial to run: the TFJob's, the TrainJob's "
                          "(Kubeflow Trainer v2 on JobSet) or both (default; the TrainJob's model is served)")
    reh.add_argument("--s3-port", type=int, default=0, help="host port of the S3 server (default: a free one)")
    reh.add_argument("--predictor-port", type=int, default=0, help="host port of the predictor (default: free)")
    reh.add_argument("--image-registry", default=None,
                     help="run the images named <registry>/mlengine-<role>:<version> (they must be in the local "
                          "engine, e.g. tagged after make images; default: $MLENGINE_IMAGE_REGISTRY, else built-in)")
    reh.add_argument("--model-module", default=None, metavar="FILE",
                     help="your model module (docs/own-model.md): checked first, staged next to the data, and "
                          "the TFJob, TrainJob and Katib trials train its body; the predictor serves that model")
    reh.set_defaults(handler=cli)


if __name__ == "__main__":  # `make images`: the rehearsal's tools image on the pipeline image just built
    import docker

    from mlengine.components.shared.logs import log_to_stderr

    log_to_stderr("mlengine.rehearsal")
    print("images: " + ensure_s3_image(docker.from_env()))
