"""Slow clients do not starve the server: many connections dribbling their request heads, far more
than ``--max-connections``, while one legitimate client keeps predicting.

A connection only takes a slot once its head is complete, unfinished heads have their own short
deadline and a bounded pool, and refusals are logged at a bounded rate. Loopback only; every socket
is closed; the slow clients run for a fixed number of rounds, not a wall-clock assertion.
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


def dribble(port: int, stop: threading.Event, stats: dict) -> None:
    """SLOW_CLIENTS connections each sending one header byte per round; a closed one is reopened."""
    selector = selectors.DefaultSelector()
    sockets: set[socket.socket] = set()
    try:
        for _ in range(SLOW_CLIENTS):
            sockets.add(open_slow(port, selector))
        for _ in range(DRIP_ROUNDS):
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


def test_many_dribbling_heads_do_not_starve_a_legitimate_client(guarded_server, served_model_dir):
    rows = sample_rows(load_spec(served_model_dir / "feature_spec.yaml"), 2, seed=7)
    url = f"{guarded_server['url']}/v1/models/{NAME}:predict"
    log = guarded_server["log"]
    size_before = log.stat().st_size
    stop, stats = threading.Event(), {"closed": 0, "408": 0}
    slow = threading.Thread(target=dribble, args=(guarded_server["port"], stop, stats))
    slow.start()
    statuses = []
    try:
        time.sleep(DRIP_INTERVAL_S * 4)  # the slow heads are all open before the first legitimate request
        with requests.Session() as session:
            while slow.is_alive() and len(statuses) < 400:
                statuses.append(session.post(url, json={"instances": rows}, timeout=30).status_code)
    finally:
        stop.set()
        slow.join(timeout=60)
    assert not slow.is_alive()
    assert len(statuses) >= 10
    assert statuses.count(200) >= 0.99 * len(statuses), statuses
    assert stats["closed"] >= SLOW_CLIENTS  # the head deadline closed the dribblers (and they came back)
    growth = log.stat().st_size - size_before
    text = log.read_text(errors="replace")
    assert growth < LOG_GROWTH_LIMIT_BYTES, text[size_before:][-2000:]
    assert "Exceeded concurrency limit" not in text


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
