"""Slow clients do not starve the server: many connections dribbling their request heads, far more
than ``--max-connections``, while one legitimate client keeps predicting.

A connection only takes a slot once its head is complete, unfinished heads have their own short
deadline and a bounded pool, and refusals are logged at a bounded rate. Loopback only; every socket
is closed; the slow clients run for a fixed number of rounds, not a wall-clock assertion. The
full-size case (600 clients for 25 s, a 2 MB log bound) is in the fault-injection suite (``faults``).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time

import pytest
import requests

from mlengine.components.shared.featurespec import load_spec
from tests.components.deploy.serving_helpers import status_of
from tests.helpers import HOST, free_port, running_server, serve_command
from tests.serving_fixtures import sample_rows

pytestmark = pytest.mark.e2e  # a live server under load: not in the quick loop

NAME = "taxi"
MAX_CONNECTIONS = 8
SLOW_CLIENTS = 240  # 30x the connection limit
HEAD_TIMEOUT_S = 1.0
DRIP_INTERVAL_S = 0.25
DRIP_ROUNDS = 24  # about 6 s of dribbling: each slow head outlives the head deadline several times over
LOG_GROWTH_LIMIT_BYTES = 4096  # a few summary lines; one line per refusal would be tens of kilobytes
FULL_SLOW_CLIENTS = 600  # the attack that answered 0% before the head deadline and slot rules
FULL_DRIP_ROUNDS = 100  # 25 s of dribbling
FULL_LOG_GROWTH_LIMIT_BYTES = 2 << 20
MAX_LEGITIMATE_REQUESTS = 100_000  # a bound on the loop; the dribbling rounds end it first
SLOW_HEAD = b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nX-Slow: "


@pytest.fixture(scope="module")
def guarded_server(served_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("slow-clients")
    port = free_port()
    command = serve_command(served_model_dir, port, NAME, "--max-connections", str(MAX_CONNECTIONS),
                            "--head-timeout", str(HEAD_TIMEOUT_S), "--max-pending-connections", "4096")
    with running_server(command, work / "server.log", NAME, port) as server:
        yield server
    assert server["process"].poll() is not None


def open_slow(port: int, selector: selectors.BaseSelector) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.setblocking(False)
    sock.sendall(SLOW_HEAD)
    selector.register(sock, selectors.EVENT_READ)
    return sock


def dribble(port: int, stop: threading.Event, stats: dict, clients: int = SLOW_CLIENTS,
            rounds: int = DRIP_ROUNDS) -> None:
    """``clients`` connections each sending one header byte per round; a closed one is reopened."""
    selector = selectors.DefaultSelector()
    sockets: set[socket.socket] = set()
    try:
        for _ in range(clients):
            sockets.add(open_slow(port, selector))
        for _ in range(rounds):
            if stop.is_set():
                break
            for key, _ in selector.select(timeout=0):
                sock = key.fileobj
                try:
                    answer = sock.recv(4096)
                except OSError:
                    answer = b""
                stats["closed"] += 1
                stats["408"] += status_of(answer) == 408
                selector.unregister(sock)
                sock.close()
                sockets.discard(sock)
                sockets.add(open_slow(port, selector))
            for sock in list(sockets):
                with contextlib.suppress(OSError):  # closed by the server: seen as readable next round
                    sock.send(b"a")
            time.sleep(DRIP_INTERVAL_S)
    finally:
        for sock in sockets:
            selector.unregister(sock)
            sock.close()
        selector.close()


def legitimate_requests_under_dribbling(server: dict, model_dir, clients: int, rounds: int) -> dict:
    """One client predicting in a loop while ``clients`` dribble their heads for ``rounds`` rounds."""
    rows = sample_rows(load_spec(model_dir / "feature_spec.yaml"), 2, seed=7)
    url = f"{server['url']}/v1/models/{NAME}:predict"
    log = server["log"]
    size_before = log.stat().st_size
    stop, stats = threading.Event(), {"closed": 0, "408": 0}
    slow = threading.Thread(target=dribble, args=(server["port"], stop, stats, clients, rounds))
    slow.start()
    statuses = []
    began = time.monotonic()
    try:
        time.sleep(DRIP_INTERVAL_S * 4)  # the slow heads are all open before the first legitimate request
        with requests.Session() as session:
            while slow.is_alive() and len(statuses) < MAX_LEGITIMATE_REQUESTS:
                statuses.append(session.post(url, json={"instances": rows}, timeout=30).status_code)
    finally:
        stop.set()
        slow.join(timeout=60)
    assert not slow.is_alive()
    text = log.read_text(errors="replace")
    return {"seconds": time.monotonic() - began, "statuses": statuses, "closed": stats["closed"], "408": stats["408"],
            "log_growth": log.stat().st_size - size_before, "new_log": text[size_before:]}


def test_many_dribbling_heads_do_not_starve_a_legitimate_client(guarded_server, served_model_dir):
    seen = legitimate_requests_under_dribbling(guarded_server, served_model_dir, SLOW_CLIENTS, DRIP_ROUNDS)
    statuses = seen["statuses"]
    assert len(statuses) >= 10
    assert statuses.count(200) >= 0.99 * len(statuses), statuses
    assert seen["closed"] >= SLOW_CLIENTS  # the head deadline closed the dribblers (and they came back)
    assert seen["log_growth"] < LOG_GROWTH_LIMIT_BYTES, seen["new_log"][-2000:]
    assert "Exceeded concurrency limit" not in seen["new_log"]


@pytest.mark.faults
def test_600_clients_dribbling_for_25_s_leave_99_percent_of_requests_answered(guarded_server, served_model_dir):
    seen = legitimate_requests_under_dribbling(guarded_server, served_model_dir, FULL_SLOW_CLIENTS, FULL_DRIP_ROUNDS)
    statuses = seen["statuses"]
    print(f"slow clients {FULL_SLOW_CLIENTS}, {FULL_DRIP_ROUNDS} rounds in {seen['seconds']:.1f} s: "
          f"{statuses.count(200)}/{len(statuses)} "
          f"answered 200, {seen['closed']} slow connections closed ({seen['408']} with 408), "
          f"log +{seen['log_growth']} bytes")
    assert len(statuses) >= 10
    assert statuses.count(200) >= 0.99 * len(statuses), sorted(set(statuses))
    assert seen["closed"] >= FULL_SLOW_CLIENTS
    assert seen["log_growth"] < FULL_LOG_GROWTH_LIMIT_BYTES, seen["new_log"][-2000:]


def test_the_head_deadline_closes_a_dribbling_connection_with_408(guarded_server):
    with socket.create_connection((HOST, guarded_server["port"]), timeout=20) as sock:
        sock.sendall(SLOW_HEAD)
        received, sent = b"", 0
        sock.settimeout(DRIP_INTERVAL_S)
        for _ in range(200):  # 50 s of dribbling if never cut: far past the 1 s head deadline
            try:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
            except TimeoutError:
                pass
            except ConnectionResetError:
                break
            try:
                sock.sendall(b"a")
                sent += 1
            except OSError:
                break
    assert status_of(received) == 408, received[:200]
    assert b"request head was not received within 1 s" in received
    assert sent < 200
