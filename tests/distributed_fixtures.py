"""Helpers for the distributed-training tests.

Run as a script it is a toy stand-in for task.py, to test the local-cluster supervisor without
TensorFlow. Behaviour by environment: TOY_MODE (ok | crash_once_worker | never_ready_worker | user_error |
crash_always_worker | sleep_chief), TOY_STATE (a directory for marker files). It reads TF_CONFIG
like the real program, prints the ready marker, and the chief writes the result file.
"""

import json
import os
import sys
import time
from pathlib import Path

READY = "mlengine-task: ready"


def main() -> int:
    config = json.loads(os.environ["TF_CONFIG"])
    task = config["task"]
    name = f"{task['type']}-{task['index']}"
    mode = os.environ.get("TOY_MODE", "ok")
    state = Path(os.environ["TOY_STATE"])
    result_file = sys.argv[sys.argv.index("--result-file") + 1]
    starts = state / f"{name}.starts"
    count = int(starts.read_text()) + 1 if starts.exists() else 1
    starts.write_text(str(count))
    (state / f"{name}.pid{count}").write_text(str(os.getpid()))
    if mode == "never_ready_worker" and name == "worker-1":
        time.sleep(600)
        return 0
    print(f"{READY} {name} pid {os.getpid()}", flush=True)
    if task["type"] == "chief":
        if mode == "user_error":
            print("mlengine-task: error: train config: unknown field 'epochz'", file=sys.stderr, flush=True)
            return 2
        time.sleep(60 if mode == "sleep_chief" else 3)
        Path(result_file).write_text(json.dumps({"eval_rmse": 1.5, "cluster": config["cluster"]}))
        print("rmse=1.5", flush=True)
        return 0
    if mode == "crash_once_worker" and name == "worker-0" and count == 1:
        time.sleep(0.5)
        print("worker crashing on purpose", flush=True)
        return 1
    if mode == "crash_always_worker" and name == "worker-0":
        time.sleep(0.3)
        print("Error: worker always crashes", flush=True)
        return 1
    time.sleep(600)  # serve until terminated
    return 0


def toy_command(task, config_file, result_file) -> list[str]:
    """The ``command`` hook of run_local_cluster that runs this file instead of task.py."""
    return [sys.executable, __file__, "--config", str(config_file), "--result-file", str(result_file)]


def taxi_training_setup(workdir: Path, rows: int = 4000, nbuckets: int = 4) -> dict[str, str]:
    """Tiny taxi Parquet splits + transform under workdir; returns the TrainConfig paths."""
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from tests.model_fixtures import write_taxi_splits

    splits = write_taxi_splits(workdir, rows=rows)
    state = analyze(str(splits["train"]), load_spec(None), nbuckets)
    state.save(workdir / "transform")
    return {"train_dir": str(splits["train"]), "eval_dir": str(splits["eval"]),
            "transform_dir": str(workdir / "transform"), "model_dir": str(workdir / "model")}


# descendants alive when the current test started (another module's shared server in the same test
# process): not this test's to clean up; tests/components/train/conftest.py records them per test
PREEXISTING_CHILDREN: set[int] = set()


def live_descendants() -> list:
    """Live (non-zombie) descendants of this process."""
    import psutil

    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def child_processes() -> list:
    """Live descendants this test started and left behind (what the teardown checks look for)."""
    return [child for child in live_descendants() if child.pid not in PREEXISTING_CHILDREN]


if __name__ == "__main__":
    sys.exit(main())
