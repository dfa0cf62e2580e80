"""deploy_local / stop_local: a background ``mlengine serve`` that starts, answers, restarts and stops cleanly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import psutil
import pytest
import requests

from mlengine.components.deploy.local import STATE_FILE, deploy_local, read_local_state, stop_local
from mlengine.components.shared.featurespec import load_spec
from mlengine.errors import MlengineError
from tests.serving_fixtures import in_process_predictions, sample_rows, tiny_model_dir

pytestmark = pytest.mark.e2e  # starts servers or processes: not in the quick loop (-m "not e2e")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


def group_of(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def gone(processes: list[psutil.Process]) -> bool:
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def test_deploy_local_starts_answers_restarts_and_stops(model_dir, tmp_path):
    state_dir = tmp_path / "state"
    rows = sample_rows(load_spec(model_dir / "feature_spec.yaml"), 12)
    expected = in_process_predictions(model_dir, rows)
    first = deploy_local(model_dir, name="taxi", state_dir=state_dir, workers=2)
    first_group = group_of(first["pid"])
    try:
        assert first["url"].startswith("http://127.0.0.1:") and first["name"] == "taxi"
        assert json.loads((state_dir / STATE_FILE).read_text())["pid"] == first["pid"]
        assert len(first_group) >= 3  # the server and its two spawned workers
        answer = requests.post(first["predict_url"], json={"instances": rows}, timeout=30)
        assert answer.status_code == 200
        np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5, atol=1e-4)

        # deploying again replaces the running server (here with one worker, on a new port)
        second = deploy_local(model_dir, name="taxi", state_dir=state_dir)
        assert gone(first_group)
        assert second["pid"] != first["pid"] and read_local_state(state_dir)["pid"] == second["pid"]
        answer = requests.post(second["predict_url"], json={"instances": rows[:3]}, timeout=30)
        np.testing.assert_allclose(answer.json()["predictions"], expected[:3], rtol=1e-5, atol=1e-4)
        second_group = group_of(second["pid"])
    finally:
        stopped = stop_local(state_dir)
    assert stopped is True
    assert gone(second_group) and gone(first_group)
    assert not (state_dir / STATE_FILE).exists()
    assert stop_local(state_dir) is False  # nothing left to stop
    with pytest.raises(requests.ConnectionError):
        requests.get(second["url"] + "/", timeout=5)


def test_a_server_that_fails_to_start_reports_its_error_and_leaves_nothing(model_dir, tmp_path):
    broken = tmp_path / "broken"
    (broken / "serving").mkdir(parents=True)
    shutil.copy(model_dir / "feature_spec.yaml", broken / "feature_spec.yaml")
    (broken / "serving" / "saved_model.pb").write_bytes(b"not a protobuf")
    state_dir = tmp_path / "state"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(MlengineError) as caught:
        deploy_local(broken, state_dir=state_dir, ready_timeout=240)
    message = str(caught.value)
    assert "exited with code 2" in message and "cannot load the SavedModel" in message
    assert read_local_state(state_dir) is None
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before


def test_not_a_model_directory_fails_before_starting_anything(tmp_path):
    with pytest.raises(MlengineError, match="not a model directory"):
        deploy_local(tmp_path, state_dir=tmp_path / "state")
    assert not (tmp_path / "state" / STATE_FILE).exists()


def test_stop_local_never_kills_a_process_it_did_not_start(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    me = psutil.Process()
    # a state file pointing at a live process that is not the recorded server (recycled pid)
    (state_dir / STATE_FILE).write_text(json.dumps({"pid": me.pid, "create_time": me.create_time() - 100}))
    assert stop_local(state_dir) is False
    assert me.is_running()
    assert not (state_dir / STATE_FILE).exists()
