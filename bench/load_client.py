"""The serving benchmark's load generator: request bodies for every protocol, and clients that send
them on kept-alive connections, bounded in request count and in time.

``load`` uses the client named by ``CLIENT`` (``raw``: prepared HTTP/1.1 request bytes on asyncio
streams, as wrk does; ``aiohttp``: an aiohttp session); ``bench_serving --client`` sets it.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np


def percentile_ms(latencies: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(latencies) * 1000.0, q)) if latencies else float("nan")

def _predictions_seen(payload: bytes, headers, binary: bool) -> int:
    """How many predictions an answer holds (a binary answer: float32s after its JSON header)."""
    if binary:
        size = int(headers.get("inference-header-content-length", len(payload)))
        return (len(payload) - size) // 4
    return payload.count(b",") + 1


async def _drive(session, bodies: list[bytes], concurrency: int, max_requests: int, time_limit: float,
                 expect_rows: int) -> dict:
    """Run ``concurrency`` workers until ``max_requests`` or ``time_limit``; ``session(index)``
    is an async context manager giving each worker ``send(index) -> (ok, predictions)``."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + time_limit

    async def worker():
        nonlocal sent, errors
        async with session() as send:
            while sent < max_requests and time.perf_counter() < deadline:
                index = sent % len(bodies)
                sent += 1
                start = time.perf_counter()
                ok, predictions = await send(index)
                latencies.append(time.perf_counter() - start)
                if not ok or (expect_rows and predictions < expect_rows):  # a 200 without all predictions too
                    errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "seconds": elapsed,
            "requests_per_s": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99)}


async def _load(url: str, bodies: list[bytes], concurrency: int, max_requests: int, time_limit: float,
                expect_rows: int, body_headers: list[dict] | None = None) -> dict:
    """One load phase through an aiohttp client session (``--client aiohttp``)."""
    import contextlib

    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    json_headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        @contextlib.asynccontextmanager
        async def session():
            async def send(index: int) -> tuple[bool, int]:
                extra = body_headers[index] if body_headers else json_headers
                try:
                    async with client.post(url, data=bodies[index], headers=extra) as response:
                        payload = await response.read()
                        return response.status == 200, _predictions_seen(payload, response.headers,
                                                                          bool(body_headers))
                except (TimeoutError, aiohttp.ClientError):
                    return False, 0

            yield send

        return await _drive(session, bodies, concurrency, max_requests, time_limit, expect_rows)


class _RawConnection:
    """One kept-alive HTTP/1.1 connection that writes prepared request bytes and reads whole answers."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes) -> tuple[int, dict[str, bytes], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(head + body)
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n"))[:-4].split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip()
        if headers.get("transfer-encoding", b"").lower() == b"chunked":  # kserve streams some answers
            pieces = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
                pieces.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers, up to the blank line
                pass
            payload = b"".join(pieces)
        else:
            payload = await self.reader.readexactly(int(headers.get("content-length", b"0")))
        if headers.get("connection", b"").lower() == b"close":
            self.close()
        return int(status_line.split(b" ", 2)[1]), headers, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _load_raw(url: str, bodies: list[bytes], concurrency: int, max_requests: int, time_limit: float,
                    expect_rows: int, body_headers: list[dict] | None = None) -> dict:
    """One load phase with a lean client (the default): request bytes built before the clock
    starts, one kept-alive connection per worker, answers read with asyncio streams, as wrk does
    (aiohttp's own per-request work is about half a millisecond here, on the server's 2 cores)."""
    import contextlib
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    prepared = []
    for index, body in enumerate(bodies):
        # aiohttp's own default for a bytes body, so both clients send the same heads
        extra = {"content-type": "application/octet-stream", **body_headers[index]} if body_headers else {
            "content-type": "application/json"}
        head = "".join(f"{name}: {value}\r\n" for name, value in extra.items())
        prepared.append((f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n{head}"
                         f"content-length: {len(body)}\r\n\r\n").encode("ascii"))

    @contextlib.asynccontextmanager
    async def session():
        connection = _RawConnection(parts.hostname, parts.port)

        async def send(index: int) -> tuple[bool, int]:
            try:
                status, headers, payload = await asyncio.wait_for(
                    connection.request(prepared[index], bodies[index]), 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                connection.close()
                return False, 0
            return status == 200, _predictions_seen(payload, headers, bool(body_headers))

        try:
            yield send
        finally:
            connection.close()

    return await _drive(session, bodies, concurrency, max_requests, time_limit, expect_rows)


def group_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server and its worker processes."""
    import psutil

    total = 0.0
    try:
        leader = psutil.Process(pid)
        members = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for member in members:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


CLIENTS = {"raw": _load_raw, "aiohttp": _load}
CLIENT = "raw"  # --client


def load(url, bodies, concurrency, max_requests, time_limit, expect_rows=1, server_pid=None,
         body_headers=None) -> dict:
    """One bounded load phase; with ``server_pid`` also the server's and this client's CPU per request."""
    server_before = group_cpu_s(server_pid) if server_pid else 0.0
    client_before = time.process_time()
    out = asyncio.run(CLIENTS[CLIENT](url, bodies, concurrency, max_requests, time_limit, expect_rows, body_headers))
    if server_pid and out["requests"]:
        out["server_cpu_ms_per_request"] = 1000 * (group_cpu_s(server_pid) - server_before) / out["requests"]
        out["client_cpu_ms_per_request"] = 1000 * (time.process_time() - client_before) / out["requests"]
    return out


def v1_bodies(rows: list[dict], batch: int, count: int) -> list[bytes]:
    return [json.dumps({"instances": [rows[(i * batch + j) % len(rows)] for j in range(batch)]}).encode()
            for i in range(count)]


def v1_columnar_bodies(rows: list[dict], batch: int, count: int) -> list[bytes]:
    """TF Serving's columnar v1 layout: {"inputs": {column: [values]}} (mlengine serve and TF Serving accept it)."""
    bodies = []
    for i in range(count):
        chunk = [rows[(i * batch + j) % len(rows)] for j in range(batch)]
        bodies.append(json.dumps({"inputs": {name: [row[name] for row in chunk] for name in chunk[0]}}).encode())
    return bodies


def v2_bodies(rows: list[dict], spec, count: int, batch: int = 1) -> list[bytes]:
    """Open Inference v2 bodies: one input per column (the columnar layout the server accepts)."""
    types = {"float": "FP32", "int": "INT64", "string": "BYTES"}
    bodies = []
    for i in range(count):
        chunk = [rows[(i * batch + j) % len(rows)] for j in range(batch)]
        bodies.append(json.dumps({"inputs": [{"name": c.name, "shape": [batch], "datatype": types[c.type],
                                              "data": [row[c.name] for row in chunk]} for c in spec.columns]}).encode())
    return bodies


def v2_binary_bodies(rows: list[dict], spec, count: int, batch: int = 256) -> tuple[list[bytes], list[int]]:
    """v2 bodies with the binary tensor extension, built by tritonclient as NVIDIA's client sends them."""
    import tritonclient.http as triton

    types = {"float": ("FP32", np.float32), "int": ("INT64", np.int64)}
    bodies, lengths = [], []
    for i in range(count):
        chunk = [rows[(i * batch + j) % len(rows)] for j in range(batch)]
        inputs = []
        for c in spec.columns:
            datatype, dtype = types[c.type]
            item = triton.InferInput(c.name, [batch], datatype)
            item.set_data_from_numpy(np.array([row[c.name] for row in chunk], dtype=dtype), binary_data=True)
            inputs.append(item)
        body, json_length = triton.InferenceServerClient.generate_request_body(inputs)
        bodies.append(body)
        lengths.append(json_length)
    return bodies, lengths
