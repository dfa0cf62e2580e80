"""Serving inputs flow from the live KServe server into the skew monitor.

`mlengine serve --serving-log DIR` keeps every validated request's raw features; `run`
compares the most recent ones with the ingest statistics: a population like the training one
passes, a shifted one (longer trips, more night rides) is flagged.
"""


import numpy as np
import pytest
import requests

from mlengine.components.ingest.executor import run as run_ingest
from mlengine.components.monitor.executor import run as run_monitor
from mlengine.components.shared.featurespec import load_spec
from mlengine.constants import SPLITS
from mlengine.synthetic import generate_columns, write_csv
from tests.helpers import free_port, running_server, serve_command
from tests.serving_fixtures import tiny_model_dir

pytestmark = pytest.mark.e2e  # starts servers or processes: not in the quick loop (-m "not e2e")

NAME = "taxi"
ROWS_PER_PHASE = 1200


@pytest.fixture(scope="module")
def training_statistics(tmp_path_factory):
    work = tmp_path_factory.mktemp("skew-train")
    write_csv(work / "train.csv", 6000, seed=21)
    run_ingest(str(work / "train.csv"), load_spec(), {s: str(work / s) for s in SPLITS}, str(work / "rejects"),
               str(work / "stats"))
    return work / "stats"


@pytest.fixture(scope="module")
def logging_server(tmp_path_factory):
    model_dir = tiny_model_dir(tmp_path_factory)
    work = tmp_path_factory.mktemp("skew-serve")
    port = free_port()
    command = serve_command(model_dir, port, NAME, "--serving-log", str(work / "serving-log"))
    with running_server(command, work / "server.log", NAME, port) as server:
        yield {"url": server["url"], "log_dir": work / "serving-log", "work": work}
    assert server["process"].poll() is not None


def _in_range_instances(shift: float, seed: int) -> list[dict]:
    spec = load_spec()
    columns = generate_columns(ROWS_PER_PHASE * 2, seed, shift=shift)
    keep = np.ones(ROWS_PER_PHASE * 2, dtype=bool)
    for column in spec.columns:
        keep &= (columns[column.name] >= column.range[0]) & (columns[column.name] <= column.range[1])
    picked = np.flatnonzero(keep)[:ROWS_PER_PHASE]
    assert len(picked) == ROWS_PER_PHASE
    return [{c.name: (float(columns[c.name][i]) if c.type == "float" else int(columns[c.name][i]))
             for c in spec.columns} for i in picked]


def _serve_population(server, shift: float, seed: int) -> None:
    instances = _in_range_instances(shift, seed)
    with requests.Session() as session:
        for start in range(0, len(instances), 100):
            response = session.post(f"{server['url']}/v1/models/{NAME}:predict",
                                    json={"instances": instances[start:start + 100]}, timeout=30)
            assert response.status_code == 200, response.text


def test_serving_log_feeds_the_monitor_same_population_passes_shifted_one_drifts(logging_server,
                                                                                 training_statistics):
    _serve_population(logging_server, shift=0.0, seed=31)
    same = run_monitor(training_statistics, logging_server["log_dir"], logging_server["work"] / "same",
                limit=ROWS_PER_PHASE, html=False)
    assert same.status == "ok", same.columns_drifted
    assert same.drift_detected is False

    _serve_population(logging_server, shift=1.0, seed=32)
    shifted = run_monitor(training_statistics, logging_server["log_dir"], logging_server["work"] / "shifted",
                   limit=ROWS_PER_PHASE, html=True)
    assert shifted.drift_detected is True
    assert "hourofday" in shifted.columns_drifted
    assert shifted.max_psi > 0.2 > same.max_psi
    assert (logging_server["work"] / "shifted" / "drift_report.html").is_file()
