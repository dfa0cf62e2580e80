"""Exit-code wording, the task programs' exit protocol, free and taken ports, stopping a process tree."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import psutil
import pytest

from mlengine.components.shared import processes
from mlengine.errors import MlengineError


def test_describe_exit_names_codes_and_signals():
    assert processes.describe_exit(None) == "still running"
    assert processes.describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert processes.describe_exit(processes.EXIT_USER_ERROR).startswith(f"exit code {processes.EXIT_USER_ERROR} (")
    assert processes.describe_exit(77) == "exit code 77"


@pytest.mark.parametrize("outcome, code", [
    (lambda: 0, 0),
    (lambda: (_ for _ in ()).throw(MlengineError("bad spec")), processes.EXIT_USER_ERROR),
    (lambda: (_ for _ in ()).throw(processes.PortInUseError("taken")), processes.EXIT_PORT_IN_USE),
    (lambda: (_ for _ in ()).throw(RuntimeError("bug")), processes.EXIT_CRASH),
])
def test_run_program_maps_outcomes_to_exit_codes(outcome, code, capsys):
    assert processes.run_program(outcome, "task") == code
    err = capsys.readouterr().err
    if code in (processes.EXIT_USER_ERROR, processes.EXIT_PORT_IN_USE):
        assert err.startswith("task: error: ") and len(err.strip().splitlines()) == 1


def test_free_ports_are_distinct_and_bindable():
    ports = processes.free_ports(3)
    assert len(set(ports)) == 3
    processes.check_ports_free(ports)  # nothing listens there: no error


def test_a_taken_port_is_one_line_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(processes.PortInUseError, match=rf"port 127\.0\.0\.1:{port} is already in use"):
            processes.check_ports_free([port])


def test_stop_process_tree_stops_the_leader_and_its_children():
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
              "print('up', flush=True); time.sleep(600)")
    leader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert leader.stdout.readline().strip() == "up"
        children = psutil.Process(leader.pid).children(recursive=True)
        assert len(children) == 1
        assert processes.stop_process_tree(leader.pid, timeout=10, child=leader) is True
        assert leader.wait(timeout=10) is not None
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
    finally:
        processes.kill_group(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
        leader.stdout.close()
    assert processes.stop_process_tree(leader.pid, timeout=1) is False  # already gone
