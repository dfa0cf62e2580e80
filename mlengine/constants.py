"""Every name and default that more than one module shares lives here, and only here.

Artifact and parameter names are the keys components, pipelines and tests agree on; image tags
derive from the package version so a release never points at a moving ``:latest``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlengine.version import __version__

# --- images (one place; tags follow the package version) -------------------------------------
IMAGE_REGISTRY = "ghcr.io/mlengine"  # the default; yours comes from MLENGINE_IMAGE_REGISTRY / --image-registry
ENV_IMAGE_REGISTRY = "MLENGINE_IMAGE_REGISTRY"  # also set in every compiled step, for the TFJobs it renders
IMAGE_ROLES = ("pipeline", "trainer", "server")


def image_registry(registry: str | None = None) -> str:
    """The registry prefix images are named under: ``registry``, else $MLENGINE_IMAGE_REGISTRY, else the default."""
    return (registry or os.environ.get(ENV_IMAGE_REGISTRY, "").strip() or IMAGE_REGISTRY).rstrip("/")


def image_for(role: str, registry: str | None = None) -> str:
    """The container image of one runtime role, tagged with the package version."""
    if role not in IMAGE_ROLES:
        raise ValueError(f"unknown image role {role!r}; expected one of {IMAGE_ROLES}")
    return f"{image_registry(registry)}/mlengine-{role}:{__version__}"


PIPELINE_IMAGE = image_for("pipeline")
TRAINER_IMAGE = image_for("trainer")
SERVER_IMAGE = image_for("server")
IMAGES_BUILD_COMMAND = "make images"  # what an error about a missing image tells the user to run
IMAGE_DEFAULT_UID = 10001  # the images' USER (group 0); any other UID in group 0 works too
IMAGE_MODEL_DIR = "/mnt/models"  # where KServe (and the server image) expects the model
IMAGE_SERVER_PORT = 8080  # the server image's HTTP port
CONTAINER_LABEL = "io.mlengine.run"  # on every container `mlengine run --runner docker` starts
SOURCE_FINGERPRINT_LABEL = "io.mlengine.source-fingerprint"  # the package sources an image was built from
RUNNERS = ("subprocess", "docker")  # `mlengine run --runner`: kfp.local's SubprocessRunner or DockerRunner

# --- built-in data -----------------------------------------------------------------------------
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_SPEC_PATH = PACKAGE_DATA_DIR / "taxi_spec.yaml"
TAXI_NOISE_STD = 1.0  # the generator's Gaussian noise: the irreducible RMSE
DEFAULT_ROWS = 200_000
DEFAULT_SEED = 42

# --- data layout inside artifacts --------------------------------------------------------------
SPLITS = ("train", "eval", "test")
SPLIT_FRACTIONS = {"train": 0.8, "eval": 0.1, "test": 0.1}
PARQUET_PART_PATTERN = "part-{index:05d}.parquet"
REJECTS_FILE = "rejects.jsonl"
STATISTICS_FILE = "statistics.json"
STATISTICS_VIEW_FILE = "statistics.md"  # the Markdown view `mlengine ingest` writes beside statistics.json
STATISTICS_HTML_FILE = "statistics.html"  # the HTML report (plots) `mlengine ingest` writes beside it
TRANSFORM_FILE = "transform.json"
SPEC_FILE = "feature_spec.yaml"
SERVING_MODEL_SUBDIR = "serving"  # SavedModel with the raw-feature signature
# the serving signature's outputs: a regression model returns PREDICTIONS (float32 [batch], label unit);
# a classification model returns CLASS (the vocabulary's type, [batch]) and PROBABILITIES (float32
# [batch, C], in the vocabulary's order; binary models too, C = 2)
OUTPUT_PREDICTIONS = "predictions"
OUTPUT_CLASS = "label"
OUTPUT_PROBABILITIES = "probabilities"
CHECKPOINT_SUBDIR = "checkpoints"
REPLICA_LOGS_SUBDIR = "logs"  # a local cluster's per-task output files, in the model directory
HISTORY_FILE = "history.json"
TRIALS_FILE = "trials.json"  # a tuning study's trials, written by tune, read by train and the local runner
CSV_CHUNK_ROWS = 65_536
SPEC_SAMPLE_ROWS = 20_000  # rows `mlengine spec` drafts a feature spec from
REPORTS_SUBDIR = "reports"  # browser-openable copies of a run's reports, under its --out

# --- artifact names (component outputs the pipeline wires together) ----------------------------
ART_TRAIN_DATA = "train_data"
ART_EVAL_DATA = "eval_data"
ART_TEST_DATA = "test_data"
ART_STATISTICS = "statistics"
ART_TRANSFORM = "transform_fn"
ART_MODEL = "model"
ART_METRICS = "metrics"
ART_TUNING_STUDY = "study"

# --- pipeline parameter names and defaults -----------------------------------------------------
PARAM_SPEC_URI = "spec_uri"
PARAM_NBUCKETS = "nbuckets"
PARAM_HIDDEN_UNITS = "hidden_units"
PARAM_LEARNING_RATE = "learning_rate"
PARAM_BATCH_SIZE = "batch_size"
ART_MODEL_MODULE = "module"  # tune's output: the user's model module as read once and checked (train loads it)
PARAM_MODEL_MODULE = "model_module"  # the pipeline parameter naming the user's model module file
ART_HYPERPARAMETERS = "hyperparameters"  # tune's output: one HyperParameters value for transform and train

# hyperparameter defaults live in components/shared/hyperparameters.py (HyperParameters)
DEFAULT_EPOCHS = 30  # a maximum: training stops early once the eval RMSE stalls (best weights kept)
DEFAULT_TUNE_EPOCHS = 8  # a trial's maximum; the multi-fidelity pruner stops poor trials sooner
DEFAULT_PATIENCE = 4  # epochs without eval improvement before training stops
CLASS_WEIGHTS = ("none", "balanced")  # how a class label's classes weigh in the training loss
DEFAULT_LR_PATIENCE = 2  # epochs without eval improvement before the learning rate halves
# Adam's epsilon under ParameterServerStrategy: workers update the same ps variables without a lock, so one
# worker can read a row's first moment already updated by another and its second moment still 0; the step
# is then lr * m / epsilon (about 1e4 x the gradient with Keras' 1e-7: a zero-initialised wide embedding row
# jumped to 760 and a run's eval RMSE to 20). 1e-3 bounds that step near the gradient's size.
ASYNC_ADAM_EPSILON = 1e-3
DEFAULT_BASELINE_TOLERANCE = 0.01  # a candidate may be at most 1% worse than the served model
RUN_MODES = ("local", "cluster")  # where the heavy steps run: processes here, or cluster resources
DEFAULT_BLESSING_MARGIN = 0.05  # the model must beat the benchmark RMSE by 5%

# --- environment variables ---------------------------------------------------------------------
ENV_TF_CONFIG = "TF_CONFIG"
ENV_LEGACY_KERAS = "TF_USE_LEGACY_KERAS"  # tf-keras: the Keras whose PS/multi-worker fit works
ENV_S3_ENDPOINT = "MLENGINE_S3_ENDPOINT"
ENV_S3_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
ENV_S3_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_S3_SECURE = "MLENGINE_S3_SECURE"
# handed from the caller's environment to `--runner docker` steps at run time, never put in an image
CONTAINER_PASSTHROUGH_ENV = (ENV_S3_ENDPOINT, ENV_S3_ACCESS_KEY, ENV_S3_SECRET_KEY, ENV_S3_SECURE)

# --- Kubernetes --------------------------------------------------------------------------------
K8S_NAMESPACE = "kubeflow-user"
PART_OF_LABEL = {"app.kubernetes.io/part-of": "mlengine"}  # on every resource we render, to list or clean them up
K8S_SERVICE_ACCOUNT = "mlengine-pipeline"
K8S_S3_SECRET = "mlengine-minio-credentials"
K8S_SERVING_SERVICE_ACCOUNT = "mlengine-serving"
# which operator runs training jobs and Katib trials: auto asks the cluster's API discovery (TrainJob preferred)
TRAINING_OPERATORS = ("auto", "trainjob", "tfjob")
DEFAULT_TRAINING_OPERATOR = "auto"
# a TrainJob's pods (no TF_CONFIG from Trainer v2): the program to run and the cluster shape, set by the TrainJob
ENV_TASK_ARGS = "MLENGINE_TASK_ARGS"  # JSON list: the module to run, then its arguments
ENV_TF_REPLICAS = "MLENGINE_TF_REPLICAS"  # JSON {replicatedJob: [jobs, pods per job]}

# --- Kubeflow Pipelines API (mlengine upload / submit / schedule / runs) --------------------------
ENV_KFP_HOST = "KF_PIPELINES_ENDPOINT"  # kfp.Client's own variable for the API URL
ENV_KFP_TOKEN = "MLENGINE_KFP_TOKEN"  # a bearer token, instead of --existing-token on the command line
ENV_KFP_COOKIES = "MLENGINE_KFP_COOKIES"  # e.g. "authservice_session=..." for a Dex-protected endpoint
ENV_KFP_SA_TOKEN_PATH = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp.Client's: a file holding a (projected) SA token
DEFAULT_EXPERIMENT = "mlengine"

# `mlengine rehearse`: the rendered cluster resources run on the local Docker engine
REHEARSAL_LABEL = "io.mlengine.rehearsal"  # value: the rehearsal's id, on every container/network/volume it makes
REHEARSAL_S3_IMAGE = f"mlengine-rehearsal-s3:{__version__}"  # moto's S3 server, built on the pipeline image
REHEARSAL_S3_HOST = "minio"  # the stand-in's name on the rehearsal network, as the cluster's MinIO Service
REHEARSAL_S3_PORT = 9000
REHEARSAL_TFJOB_PORT = 2222  # the Training Operator's default port of every replica

# --- limits on user files (YAML/JSON read before parsing) ---------------------------------------
# feature specs, search spaces and configs are a few KB; 4 MB leaves room and stops a runaway file
MAX_USER_FILE_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 64
# set by `mlengine run` for every process it starts (kfp.local's executors inherit it): a component
# whose run is gone kills its own children and exits; pid and start time, so a reused pid is not taken for it
ENV_RUN_PID = "MLENGINE_RUN_PID"
ENV_RUN_STARTED = "MLENGINE_RUN_STARTED"
RUN_LOCK_FILE = ".lock"
RUN_WATCHDOG_SECONDS = 0.5
