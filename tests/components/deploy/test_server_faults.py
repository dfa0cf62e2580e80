"""Server faults and shutdown, with a model that raises or stalls on marked rows (``faulty_server.py``).

- The model raising is a 500 whose body has the request id and no detail of the fault; the log
  has the same id with the exception and its traceback; the server goes on predicting.
- A request whose response does not start within ``--request-timeout`` is a 503 with its id.
- SIGTERM with requests in flight: every one of them is answered 200, the process exits, and
  the serving log holds every accepted request.
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
import requests

from mlengine.components.shared.featurespec import load_spec
from tests.components.deploy.faulty_server import RAISE_PASSENGERS, SECRET, SLOW_PASSENGERS
from tests.components.deploy.serving_helpers import faulty_command, serving_log_lines
from tests.helpers import free_port, running_server, wait_for
from tests.serving_fixtures import in_process_predictions, sample_rows

NAME = "faulty"
REQUEST_TIMEOUT_S = 2
SLOW_DELAY_S = 4  # longer than REQUEST_TIMEOUT_S: the slow request times out
DRAIN_DELAY_S = 1.5  # the shutdown server's model stalls this long per call
IN_FLIGHT = 6


@pytest.fixture(scope="module")
def rows(served_model_dir):
    picked = sample_rows(load_spec(served_model_dir / "feature_spec.yaml"), 40, seed=61)
    return [r for r in picked if r["passenger_count"] not in (RAISE_PASSENGERS, SLOW_PASSENGERS)][:8]


@pytest.fixture(scope="module")
def faulty(served_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("faulty")
    port = free_port()
    # a model thread: the loop stays free to answer 503 while the stalled call runs
    command = faulty_command(served_model_dir, port, NAME, "--request-timeout", str(REQUEST_TIMEOUT_S),
                             "--delay", str(SLOW_DELAY_S), "--model-thread")
    with running_server(command, work / "server.log", NAME, port) as server:
        yield server


def v2_body(rows):
    types = {"pickup_longitude": "FP32", "pickup_latitude": "FP32", "dropoff_longitude": "FP32",
             "dropoff_latitude": "FP32", "passenger_count": "INT64", "dayofweek": "INT64", "hourofday": "INT64"}
    return {"inputs": [{"name": k, "shape": [len(rows)], "datatype": t, "data": [r[k] for r in rows]}
                       for k, t in types.items()]}


def test_a_model_that_raises_gives_500_with_a_request_id_and_no_detail(faulty, rows, served_model_dir):
    url = faulty["url"]
    bad = [rows[0], dict(rows[1], passenger_count=RAISE_PASSENGERS)]
    answers = [requests.post(f"{url}/v1/models/{NAME}:predict", json={"instances": bad}, timeout=30),
               requests.post(f"{url}/v2/models/{NAME}/infer", json=v2_body(bad), timeout=30),
               requests.post(f"{url}/v1/models/{NAME}:predict", json={"instances": bad},
                             headers={"x-request-id": "client-fault-1"}, timeout=30)]
    for answer in answers:
        assert answer.status_code == 500, answer.text
        body = answer.json()
        assert body["request_id"] == answer.headers["x-request-id"] and body["request_id"] in body["error"]
        assert SECRET not in answer.text and "Traceback" not in answer.text and "RuntimeError" not in answer.text
    assert answers[2].json()["request_id"] == "client-fault-1"
    log = faulty["log"].read_text(errors="replace")
    for answer in answers:
        request_id = answer.json()["request_id"]
        line = next(line for line in log.splitlines() if request_id in line)
        assert "failed" in line and SECRET in line
    assert "Traceback" in log  # the traceback is in the log, under the id
    fine = requests.post(f"{url}/v1/models/{NAME}:predict", json={"instances": rows}, timeout=30)
    assert fine.status_code == 200
    np.testing.assert_allclose(fine.json()["predictions"], in_process_predictions(served_model_dir, rows),
                               rtol=1e-5, atol=1e-4)


def test_a_request_past_the_request_timeout_gets_503_with_its_id(faulty, rows):
    slow = [dict(rows[0], passenger_count=SLOW_PASSENGERS)]
    answer = requests.post(f"{faulty['url']}/v1/models/{NAME}:predict", json={"instances": slow}, timeout=60)
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["request_id"] == answer.headers["x-request-id"]
    assert f"longer than {REQUEST_TIMEOUT_S} s" in body["error"]
    assert body["request_id"] in faulty["log"].read_text(errors="replace")
    # the stalled model call still holds the model thread for a while; then the server answers again
    wait_for(lambda: requests.post(f"{faulty['url']}/v1/models/{NAME}:predict", json={"instances": rows[:2]},
                                   timeout=60).status_code == 200, timeout=60, interval=0.5)


@pytest.mark.e2e
@pytest.mark.parametrize("model_thread", [False, True], ids=["model-on-the-loop", "model-thread"])
def test_sigterm_drains_in_flight_requests_and_keeps_them_in_the_serving_log(served_model_dir, rows, tmp_path,
                                                                             model_thread):
    # with the model on the loop, the other requests are read when the first stalled call ends
    # and stall together in the next; with a model thread they are read during the first
    port = free_port()
    serving_log = tmp_path / "serving-log"
    command = faulty_command(served_model_dir, port, NAME, "--delay", str(DRAIN_DELAY_S),
                             "--serving-log", str(serving_log), *(["--model-thread"] if model_thread else []))
    slow_rows = [dict(row, passenger_count=SLOW_PASSENGERS, hourofday=i) for i, row in enumerate(rows[:IN_FLIGHT])]
    results: dict[int, requests.Response | BaseException] = {}

    def send(index: int) -> None:
        try:
            results[index] = requests.post(f"http://127.0.0.1:{port}/v1/models/{NAME}:predict",
                                           json={"instances": [slow_rows[index]]}, timeout=60)
        except requests.RequestException as err:
            results[index] = err

    with running_server(command, tmp_path / "server.log", NAME, port) as server:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        # every request validated and logged, the model still stalling (on the first, or on the rest): stop now
        wait_for(lambda: len(serving_log_lines(serving_log)) == IN_FLIGHT, timeout=60)
        os.killpg(server["process"].pid, signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=90)
        code = server["process"].wait(timeout=60)
    assert all(isinstance(r, requests.Response) and r.status_code == 200 for r in results.values()), results
    assert len(results) == IN_FLIGHT and all(len(r.json()["predictions"]) == 1 for r in results.values())
    assert code == 0, code
    logged = serving_log_lines(serving_log)
    assert sorted(line["instance"]["hourofday"] for line in logged) == list(range(IN_FLIGHT))
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "Traceback" not in log and "Cancel" not in log
