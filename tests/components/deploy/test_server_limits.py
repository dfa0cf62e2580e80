"""The limits a public endpoint needs, against the shared ``live_server`` (``LIVE_LIMITS``).

Header size (431, also for a head too big to buffer whole), body size on v1 and v2, with and
without Content-Length (413), and slow clients: a client that trickles its body or its head, or
opens a connection and sends nothing, loses the connection after the read timeout (408 when it
had started a request) while other clients are served; kept-alive connections between requests
are not cut by that deadline. No test measures wall-clock time: each asserts that the server
hung up before the slow client had sent everything.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from mlengine.components.shared.featurespec import load_spec
from tests.components.deploy.conftest import LIVE_LIMITS
from tests.components.deploy.serving_helpers import raw_exchange, status_of
from tests.helpers import HOST, wait_for
from tests.serving_fixtures import sample_rows

pytestmark = pytest.mark.e2e  # a live server: not in the quick loop (-m "not e2e")

TRICKLE_INTERVAL_S = 0.2
TRICKLE_BYTES = 200  # 40 s of trickling at that pace: far longer than the read timeout
SOCKET_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def rows(served_model_dir):
    return sample_rows(load_spec(served_model_dir / "feature_spec.yaml"), 3, seed=51)


def still_predicts(live_server, rows) -> bool:
    answer = requests.post(f"{live_server['url']}/v1/models/{live_server['name']}:predict",
                           json={"instances": rows}, timeout=30)
    return answer.status_code == 200 and len(answer.json()["predictions"]) == len(rows)


def trickle(port: int, head: bytes, drip: bytes = b" ", count: int = TRICKLE_BYTES) -> tuple[int, bytes]:
    """Send ``head``, then ``drip`` every TRICKLE_INTERVAL_S up to ``count`` times; (drips sent, server bytes)."""
    with socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        received, sent = b"", 0
        for _ in range(count):
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    return sent, received  # the server closed the connection
                received += chunk
            except BlockingIOError:
                pass
            except ConnectionResetError:
                # a drip sent after the server's close comes back as a reset: closed all the same
                return sent, received
            try:
                sock.sendall(drip)
                sent += 1
            except OSError:
                return sent, received
            time.sleep(TRICKLE_INTERVAL_S)
        return sent, received


# --- header size --------------------------------------------------------------------------------------------
def test_headers_over_the_limit_get_431_and_the_server_goes_on(live_server, rows):
    url, limit = live_server["url"], LIVE_LIMITS["max_header_bytes"]
    assert requests.get(f"{url}/v2/health/live", headers={"x-pad": "a" * (limit // 2)}, timeout=10).status_code == 200
    one_big = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (limit + 100) + b"\r\n\r\n"
    many = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"b" * 60) for i in range(limit // 50)) + b"\r\n"
    long_url = b"GET /v2/health/live?" + b"q" * (limit + 100) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for request in (one_big, many, long_url):
        answer = raw_exchange(live_server["port"], request)
        assert status_of(answer) == 431 and b"larger than the limit of %d" % limit in answer
    # a head that never ends: only the protocol can refuse it (the ASGI check sees whole heads), and
    # it must do so before the read timeout, from the bytes alone
    unfinished = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (8 * limit)
    answer = raw_exchange(live_server["port"], unfinished, timeout=LIVE_LIMITS["read_timeout_s"] / 2)
    assert status_of(answer) == 431 and b"larger than the limit of %d bytes" % limit in answer
    assert still_predicts(live_server, rows)


# --- body size ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/models/taxi:predict", "/v2/models/taxi/infer"])
def test_bodies_over_the_limit_get_413_with_or_without_content_length(live_server, rows, path):
    limit = LIVE_LIMITS["max_body_bytes"]
    big = json.dumps({"instances": [rows[0]] * 2000, "pad": "x" * limit}).encode()
    assert len(big) > limit
    declared = requests.post(live_server["url"] + path, data=big, headers={"content-type": "application/json"},
                             timeout=30)
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"] == f"request body larger than the limit of {limit} bytes"

    def chunks():
        for start in range(0, len(big), 16_384):
            yield big[start:start + 16_384]

    streamed = requests.post(live_server["url"] + path, data=chunks(), headers={"content-type": "application/json"},
                             timeout=30)
    assert streamed.status_code == 413, streamed.text
    assert still_predicts(live_server, rows)


# --- slow clients -------------------------------------------------------------------------------------------
def test_a_client_trickling_its_body_gets_408_and_does_not_block_others(live_server, rows):
    body_bytes = TRICKLE_BYTES + 100
    head = (b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % body_bytes)
    outcome = {}
    slow = threading.Thread(target=lambda: outcome.update(result=trickle(live_server["port"], head)))
    slow.start()
    try:
        others = [still_predicts(live_server, rows) for _ in range(5)]  # served while the slow client trickles
    finally:
        slow.join(timeout=60)
    sent, answer = outcome["result"]
    assert all(others)
    assert status_of(answer) == 408, answer[:200]
    assert b"not received within" in answer
    assert sent < body_bytes  # the server hung up before the body was complete
    # refusals are logged at a bounded rate: in full, or in the summary at the end of the interval
    wait_for(lambda: "request not received within" in live_server["log"].read_text(errors="replace"), timeout=30)
    assert "Traceback" not in live_server["log"].read_text(errors="replace")


def test_a_request_answered_before_its_body_gets_no_second_answer_when_the_body_trickles(live_server):
    # a route that does not exist is answered (404) without reading the body; the connection stays
    # open while the rest trickles, and the read deadline then closes it without a second answer
    head = (b"POST /v1/models/nowhere/elsewhere HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (TRICKLE_BYTES + 100))
    sent, answer = trickle(live_server["port"], head)
    assert status_of(answer) == 404 and answer.count(b"HTTP/1.1 ") == 1, answer[:300]
    assert sent < TRICKLE_BYTES


def test_a_client_trickling_its_head_gets_408(live_server, rows):
    sent, answer = trickle(live_server["port"], b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                           drip=b"a")
    assert status_of(answer) == 408 and sent < TRICKLE_BYTES
    assert still_predicts(live_server, rows)


def test_the_deadline_starts_again_for_the_next_request_on_a_kept_alive_connection(live_server, rows):
    first = (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
             b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    sent, answer = trickle(live_server["port"], first, drip=b"a")
    assert status_of(answer) == 200  # the first request is answered
    assert b"HTTP/1.1 408 " in answer and sent < TRICKLE_BYTES  # the second one, trickled, is cut
    assert still_predicts(live_server, rows)


def test_a_connection_that_sends_nothing_is_closed(live_server):
    with socket.create_connection((HOST, live_server["port"]), timeout=SOCKET_TIMEOUT_S) as sock:
        assert sock.recv(100) == b""  # closed by the server (a timeout here raises instead)


def test_kept_alive_connections_are_not_cut_by_the_read_deadline(live_server, rows):
    with requests.Session() as session:
        url = f"{live_server['url']}/v1/models/{live_server['name']}:predict"
        first = session.post(url, json={"instances": rows}, timeout=30)
        time.sleep(LIVE_LIMITS["read_timeout_s"] * 1.5)  # idle between requests: keep-alive governs, not the deadline
        second = session.post(url, json={"instances": rows}, timeout=30)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()


def test_the_limits_are_uvicorns_own_options():
    from mlengine.components.deploy.http.protocol import GuardedHttpToolsProtocol
    from mlengine.components.deploy.http.server import LocalModelServer, ServerLimits

    limits = ServerLimits(max_header_bytes=1234, max_connections=17, shutdown_grace_s=7, read_timeout_s=3,
                          head_timeout_s=2, max_pending_connections=99)
    config = LocalModelServer(http_port=1, limits=limits)._rest_server_for_workers().config
    assert config.head_timeout_s == 2 and config.max_pending_heads == 99
    assert config.max_head_bytes == 2468 and config.limit_concurrency == 17
    assert config.timeout_graceful_shutdown == 7 and config.read_timeout_s == 3
    assert config.http is GuardedHttpToolsProtocol
    assert config.host == "127.0.0.1"
