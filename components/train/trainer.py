"""The trainer: fit the wide-and-deep model, checkpoint every epoch, export the serving model.

One code path for one process and for tf.distribute strategies. Without a strategy the model
fits on plain datasets, one full pass over the training split per epoch. With a strategy
(MultiWorkerMirroredStrategy or ParameterServerStrategy, chosen by the distributed launcher) the
model is built inside ``strategy.scope()`` and fits on ``DatasetCreator`` inputs, so every worker
builds its own input pipeline over its shard of the files, with a fixed ``steps_per_epoch``.

``epochs`` is a maximum: training stops once the eval objective (RMSE for a regression label, log
loss for a class label: ``labels.objective_metric``) has not improved for ``patience`` epochs, and
the weights of the BEST epoch are restored before export (also when it ran to the maximum). The
learning rate halves when the eval objective stalls for ``lr_patience`` epochs.

``BackupAndRestore`` keeps a checkpoint per epoch under ``model_dir/checkpoints``: a restarted job
(a TFJob pod rescheduled, or the same command run again with more epochs) continues where it
stopped, and ``history.json`` keeps the epochs already done.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mlengine.components.shared.hyperparameters import parse_hidden_units
from mlengine.components.shared.labels import OBJECTIVE_CLASSIFICATION, objective_metric
from mlengine.components.shared.parquet import count_rows, list_parquet_files
from mlengine.components.shared.transform_state import TransformState
from mlengine.components.shared.userfiles import parse_json_object, read_json_object
from mlengine.components.train import data as train_data
from mlengine.components.train import model as model_lib
from mlengine.constants import CHECKPOINT_SUBDIR, CLASS_WEIGHTS, DEFAULT_LR_PATIENCE, DEFAULT_PATIENCE, HISTORY_FILE
from mlengine.errors import DataError, MlengineError

TRAIN_CONFIG_FILE = "train_config.json"
log = logging.getLogger(__name__)
PS_STEPS_PER_EXECUTION = 10
HISTORY_KEYS = ("loss", "val_loss", "rmse", "val_rmse", "lr")  # a regression model's
CLASSIFICATION_HISTORY_KEYS = ("loss", "val_loss", "log_loss", "val_log_loss", "accuracy", "val_accuracy", "lr")
LR_FACTOR = 0.5  # learning rate multiplier on a plateau
MIN_LR_FRACTION = 0.01  # never below 1% of the starting rate
MIN_IMPROVEMENT = 1e-4  # a relative eval RMSE gain smaller than this is no improvement


@dataclass
class TrainConfig:
    train_dir: str
    eval_dir: str
    transform_dir: str
    model_dir: str
    hidden_units: list[int]
    learning_rate: float
    batch_size: int
    epochs: int
    steps_per_epoch: int | None = None  # required with a ParameterServerStrategy; from row counts when None
    seed: int = 0
    patience: int = DEFAULT_PATIENCE  # epochs without eval improvement before stopping; 0: never stop early
    lr_patience: int = DEFAULT_LR_PATIENCE  # epochs without improvement before the learning rate halves
    class_weight: str = "none"  # class label only: "balanced" weighs rows by rows / (classes * rows of their class)
    model_module: str = ""  # a model module file or artifact folder (path or s3:// prefix); "": the built-in network
    model_hp: str = ""  # the module's hyperparameter values as a JSON object ("" : its defaults)

    def __post_init__(self):
        self.hidden_units = parse_hidden_units(self.hidden_units)
        self.model_module = str(self.model_module or "")
        if isinstance(self.model_hp, dict):  # a JSON string: one task.py flag, one TFJob argument
            self.model_hp = json.dumps(self.model_hp, sort_keys=True) if self.model_hp else ""
        self.model_hp = self.model_hp or ""
        if self.model_hp:
            parse_json_object(self.model_hp, "model_hp")  # a JSON object, or one line saying what it is not
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MlengineError(f"{name} must be a positive integer, got {value!r}")
        for name in ("patience", "lr_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MlengineError(f"{name} must be 0 or a positive integer, got {value!r}")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise MlengineError(f"steps_per_epoch must be a positive integer or None, got {self.steps_per_epoch!r}")
        if not isinstance(self.learning_rate, int | float) or not self.learning_rate > 0:
            raise MlengineError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        self.learning_rate = float(self.learning_rate)
        if self.class_weight not in CLASS_WEIGHTS:
            raise MlengineError(f"class_weight must be one of {list(CLASS_WEIGHTS)}, "
                                f"got {self.class_weight!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def module_values(self) -> dict:
        """The model module's hyperparameter values this run sets (its defaults fill the rest)."""
        return parse_json_object(self.model_hp, "model_hp") if self.model_hp else {}

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        raw = parse_json_object(text, "train config")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise MlengineError(f"train config: unknown field {unknown[0]!r}; allowed: {sorted(known)}")
        try:
            return cls(**raw)
        except TypeError as err:
            raise MlengineError(f"train config: {err}") from None


def is_parameter_server_strategy(strategy) -> bool:
    return strategy is not None and "ParameterServerStrategy" in type(strategy).__name__


def load_history(model_dir: str | Path) -> dict:
    path = Path(model_dir) / HISTORY_FILE
    if not path.is_file():
        return {}
    return read_json_object(path, what="history")


def history_keys(spec) -> tuple[str, ...]:
    """The figures history.json records per epoch for this spec's task (besides epoch, rate and seconds)."""
    return CLASSIFICATION_HISTORY_KEYS if spec.is_classification else HISTORY_KEYS


def eval_figures(history: dict, spec) -> dict:
    """The best recorded epoch by the eval objective, and its figures (``train``'s result fields).

    ``eval_metric`` names the objective (rmse or log_loss), ``eval_objective`` is its value;
    regression also gives ``eval_rmse``, classification ``eval_log_loss`` and ``eval_accuracy``.
    """
    objective = objective_metric(spec)
    values = history.get(f"val_{objective}") or []
    recorded = [(value, index) for index, value in enumerate(values) if value is not None and math.isfinite(value)]
    out = {"eval_metric": objective, "eval_objective": None, "best_epoch": None}
    if recorded:
        value, index = min(recorded)
        out.update(eval_objective=value, best_epoch=history["epoch"][index])
        if spec.is_classification:
            accuracy = history.get("val_accuracy") or []
            out.update(eval_log_loss=value, eval_accuracy=accuracy[index] if index < len(accuracy) else None)
    if not spec.is_classification:
        out["eval_rmse"] = out["eval_objective"]
    return out


def _merge_history(previous: dict, new_rows: list[dict], keys: tuple[str, ...] = HISTORY_KEYS) -> dict:
    """Column-wise history: earlier epochs from ``previous``, then the epochs of this run."""
    first_new = new_rows[0]["epoch"] if new_rows else math.inf
    rows = []
    for index, epoch in enumerate(previous.get("epoch", [])):
        if epoch < first_new:
            rows.append({key: values[index] for key, values in previous.items() if index < len(values)})
    rows += new_rows
    keys = ["epoch", *keys, "examples_per_second", "seconds"]
    return {key: [row.get(key) for row in rows] for key in keys}


def _check_resumable(config: TrainConfig, state: TransformState, module=None) -> None:
    """Refuse to resume checkpoints of a different model (other layers or other transform)."""
    model_dir = Path(config.model_dir)
    saved = model_dir / TRAIN_CONFIG_FILE
    if not (model_dir / CHECKPOINT_SUBDIR).is_dir() or not saved.is_file():
        return
    previous = json.loads(saved.read_text(encoding="utf-8"))
    fingerprint = _model_fingerprint(config, state, module)
    if previous.get("model_fingerprint") not in (None, fingerprint):
        raise MlengineError(
            f"{model_dir}: holds checkpoints of a different model (hidden units, model module or transform changed); "
            "use a new model directory or delete its checkpoints/")


def _model_fingerprint(config: TrainConfig, state: TransformState, module=None) -> str:
    import hashlib

    shape = {"hidden_units": config.hidden_units, "features": state.sparse_features(),
             "numeric": list(state.spec.numeric)}
    if state.spec.is_classification:  # a regression fingerprint stays what it was
        shape["classes"] = list(state.spec.classes)
    if module is not None:  # another module, or other values of its hyperparameters: another network
        shape.update(model_module=module.sha256, model_hp=config.module_values)
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def _check_classes(state: TransformState, source: str) -> None:
    """A class label needs training rows of every class (ingest checks it first; a hand-made split may not)."""
    spec = state.spec
    if not spec.is_classification or not state.class_counts:
        return
    empty = [cls for cls, count in zip(spec.classes, state.class_counts, strict=True) if count == 0]
    if empty:
        raise DataError(f"{source}: the training split has no row of class {empty[0]!r} of label {spec.label.name!r} "
                        f"(classes {list(spec.classes)}, rows {state.class_counts}): nothing trained")


def _model_module(config: TrainConfig, state: TransformState):
    """``(loaded module, hp)`` of the config's model module, or ``(None, None)`` for the built-in network."""
    if not config.model_module:
        return None, None
    from mlengine.components.shared.model_module import load_module, model_hp

    module = load_module(config.model_module)
    builtin = {"nbuckets": state.nbuckets, "learning_rate": config.learning_rate, "batch_size": config.batch_size}
    return module, model_hp(module.values(config.module_values), builtin)


def train(config: TrainConfig, strategy=None, *, is_chief: bool = True,
          on_epoch: Callable[[int, float], None] | None = None) -> dict:
    """Train, checkpoint, record history and (on the chief) export the serving model.

    Progress (one ``train: ...`` line per epoch, the data sizes, the export, the best epoch) goes to
    this module's logger. ``on_epoch(epoch, eval objective)`` is called on the chief after each
    epoch's history is written (a tuning trial reports it to its pruner).
    """
    from mlengine.components.shared.tf import import_tf

    tf, keras = import_tf()
    state = TransformState.load(config.transform_dir)
    spec = state.spec
    _check_classes(state, config.transform_dir)
    if config.class_weight != "none" and not spec.is_classification:
        raise MlengineError(f"class_weight {config.class_weight!r} weighs the classes of a class label; the label "
                            f"{spec.label.name!r} of {spec.source} is a regression label")
    objective = objective_metric(spec)
    monitor = f"val_{objective}"
    keys = history_keys(spec)
    train_files = list_parquet_files(config.train_dir)
    eval_files = list_parquet_files(config.eval_dir)
    train_rows = count_rows(train_files)
    eval_rows = count_rows(eval_files)
    model_dir = Path(config.model_dir)
    module, hp = _model_module(config, state)
    if is_chief:
        _check_resumable(config, state, module)
        model_dir.mkdir(parents=True, exist_ok=True)
        record = {**json.loads(config.to_json()), "model_fingerprint": _model_fingerprint(config, state, module)}
        (model_dir / TRAIN_CONFIG_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    keras.utils.set_random_seed(config.seed)

    distributed = strategy is not None
    strategy = strategy or tf.distribute.get_strategy()
    # under PS every step is a remote function call: several steps per call amortise the round trip
    steps_per_execution = PS_STEPS_PER_EXECUTION if is_parameter_server_strategy(strategy) else 1
    with strategy.scope():
        model = model_lib.build_model(state, config.hidden_units, config.learning_rate,
                                      steps_per_execution=steps_per_execution, class_weight=config.class_weight,
                                      model_module=module, hp=hp, asynchronous=is_parameter_server_strategy(strategy))

    fit_args: dict = {}
    graph_dirs: list[Path] = []
    if is_parameter_server_strategy(strategy):
        # PS workers run only TensorFlow ops: give them a TFRecord copy instead of a Python reader
        graph_dirs = [train_data.graph_input_dir(files, spec, job=str(model_dir.resolve()))
                      for files in (train_files, eval_files)]
        try:
            train_files = train_data.prepare_graph_input(train_files, spec, graph_dirs[0], seed=config.seed)
            eval_files = train_data.prepare_graph_input(eval_files, spec, graph_dirs[1], seed=config.seed)
        except BaseException:
            for directory in graph_dirs:
                shutil.rmtree(directory, ignore_errors=True)
            raise
    if distributed:
        steps = config.steps_per_epoch or train_data.steps_for(train_rows, config.batch_size)
        validation_steps = train_data.steps_for(eval_rows, config.batch_size)

        def train_fn(input_context):
            return train_data.make_dataset(train_files, spec, config.batch_size, shuffle=True, repeat=True,
                                           input_context=input_context, seed=config.seed)

        def eval_fn(input_context):
            return train_data.make_dataset(eval_files, spec, config.batch_size, shuffle=False, repeat=True,
                                           input_context=input_context, seed=config.seed)

        fit_args.update(x=keras.utils.experimental.DatasetCreator(train_fn), steps_per_epoch=steps,
                        validation_data=keras.utils.experimental.DatasetCreator(eval_fn),
                        validation_steps=validation_steps)
        examples_per_epoch = steps * config.batch_size
    else:
        if config.steps_per_epoch:
            fit_args.update(steps_per_epoch=config.steps_per_epoch)
            examples_per_epoch = config.steps_per_epoch * config.batch_size
        else:
            examples_per_epoch = train_rows
        fit_args.update(
            x=train_data.make_dataset(train_files, spec, config.batch_size, shuffle=True,
                                      repeat=bool(config.steps_per_epoch), seed=config.seed),
            validation_data=train_data.make_dataset(eval_files, spec, config.batch_size, shuffle=False,
                                                    repeat=False, seed=config.seed))

    previous_history = load_history(model_dir) if is_chief else {}
    new_rows: list[dict] = []

    class EpochLog(keras.callbacks.Callback):
        """Times the training part of each epoch, prints a line, writes history.json (chief only)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            self.train_ended = None

        def on_test_begin(self, logs=None):
            if getattr(self, "train_ended", 0) is None:
                self.train_ended = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = (self.train_ended or time.perf_counter()) - self.started
            logs = {**logs, "lr": float(keras.backend.get_value(self.model.optimizer.learning_rate))}
            row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in keys if k in logs},
                   "examples_per_second": examples_per_epoch / seconds if seconds > 0 else None,
                   "seconds": seconds}
            new_rows.append(row)
            if not is_chief:
                return
            (model_dir / HISTORY_FILE).write_text(
                json.dumps(_merge_history(previous_history, new_rows, keys), indent=1), encoding="utf-8")
            extra = (f" val_accuracy={row.get('val_accuracy', math.nan):.4g}"
                     if objective == OBJECTIVE_CLASSIFICATION else "")
            log.info(f"train: epoch {epoch + 1}/{config.epochs} loss={row.get('loss', math.nan):.4g} "
                     f"{monitor}={row.get(monitor, math.nan):.4g}{extra} "
                     f"{row['examples_per_second'] or 0:,.0f} ex/s")
            if on_epoch is not None:
                on_epoch(epoch + 1, row.get(monitor, math.nan))

    class BestEpoch(keras.callbacks.Callback):
        """Early stopping on the eval objective that always restores the best epoch's weights at the end."""

        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.wait = math.inf, None, None, 0

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is None or not math.isfinite(value):
                return
            if value < self.best * (1.0 - MIN_IMPROVEMENT):
                self.best, self.best_epoch, self.best_weights, self.wait = value, epoch + 1, self.model.get_weights(), 0
                return
            self.wait += 1
            if config.patience and self.wait >= config.patience:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    best_epoch = BestEpoch()
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir=str(model_dir / CHECKPOINT_SUBDIR), save_freq="epoch",
                                         delete_checkpoint=False),
        EpochLog(),
        best_epoch,
    ]
    if config.lr_patience:
        # EpochLog runs first, so the history shows the rate each epoch was trained with
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=LR_FACTOR, patience=config.lr_patience, min_delta=0.0,
            min_lr=config.learning_rate * MIN_LR_FRACTION, verbose=0))
    if is_chief:
        log.info(f"train: {train_rows:,} training rows, {eval_rows:,} eval rows, batch {config.batch_size}, "
                 f"at most {config.epochs} epoch(s) (early stopping after {config.patience or 'no'} "
                 f"stalled epochs), " + (f"model module {module.name} with hp {json.dumps(hp, sort_keys=True)}"
                                         if module is not None else f"hidden units {config.hidden_units}"))
    try:
        model.fit(epochs=config.epochs, callbacks=callbacks, verbose=0, **fit_args)
    finally:
        for directory in graph_dirs:
            shutil.rmtree(directory, ignore_errors=True)

    history = _merge_history(previous_history if is_chief else {}, new_rows, keys)
    if is_chief:
        (model_dir / HISTORY_FILE).write_text(json.dumps(history, indent=1), encoding="utf-8")
        export_model = model
        if is_parameter_server_strategy(strategy):
            # the variables live on the ps tasks and saving them from there hangs: export a local copy
            export_model = model_lib.build_model(state, config.hidden_units, config.learning_rate,
                                                 class_weight=config.class_weight, model_module=module, hp=hp)
            export_model.set_weights(model.get_weights())
        export_path = model_lib.export_serving_model(export_model, state, str(model_dir))
        log.info(f"train: exported the serving model to {export_path}")
    else:
        # MultiWorkerMirroredStrategy: every worker takes part in saving; only the chief keeps it
        scratch = tempfile.mkdtemp(prefix="mlengine-worker-export-")
        try:
            model_lib.export_serving_model(model, state, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    rates = [r["examples_per_second"] for r in new_rows if r.get("examples_per_second")]
    figures = eval_figures(history, spec)
    if best_epoch.best_epoch is not None:  # this run's best (the history may hold a resumed run's)
        run_best = [i for i, e in enumerate(history["epoch"]) if e == best_epoch.best_epoch]
        figures = {**figures, "eval_objective": best_epoch.best, "best_epoch": best_epoch.best_epoch}
        if spec.is_classification:
            accuracy = history.get("val_accuracy") or []
            figures.update(eval_log_loss=best_epoch.best,
                           eval_accuracy=accuracy[run_best[0]] if run_best and run_best[0] < len(accuracy) else None)
        else:
            figures["eval_rmse"] = best_epoch.best
    best, value = figures["best_epoch"], figures["eval_objective"]
    if is_chief and best is not None:
        log.info(f"train: best epoch {best} of {len(history.get('epoch', []))} (eval {objective} "
                 f"{value:.4g}); its weights are the exported model's")
    return {
        "history": history,
        **figures,
        "epochs_run": len(history.get("epoch", [])),
        "examples_per_second": sum(rates) / len(rates) if rates else None,
        "model_dir": str(model_dir),
    }
