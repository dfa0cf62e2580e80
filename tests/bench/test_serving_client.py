"""The serving benchmark's load generators (the lean default and aiohttp): every answer read whole,
errors counted, a closed connection reopened (against a small HTTP/1.1 server on 127.0.0.1; no
time is asserted)."""

from __future__ import annotations

import asyncio

import pytest

from bench import load_client

ROWS = 5


async def _serve(connections: list[int]):
    """Answers ``ROWS`` predictions; ``fail`` gets 500, ``chunked`` a chunked answer; every third closes."""
    answered = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                answered += 1
                close = answered % 3 == 0
                status = b"500 Internal Server Error" if body == b"fail" else b"200 OK"
                payload = b'{"predictions": [' + b",".join([b"1.5"] * ROWS) + b"]}"
                if body == b"chunked":  # as kserve's own handlers answer some requests
                    half = len(payload) // 2
                    framing = b"transfer-encoding: chunked\r\n\r\n" + b"".join(
                        b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:half], payload[half:])) + b"0\r\n\r\n"
                else:
                    framing = b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
                writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                             + (b"connection: close\r\n" if close else b"") + framing)
                await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("client", sorted(load_client.CLIENTS))
@pytest.mark.parametrize("concurrency", [1, 3])
def test_client_reads_every_answer_and_reconnects(client, concurrency):
    async def run():
        connections: list[int] = []
        server = await _serve(connections)
        port = server.sockets[0].getsockname()[1]
        try:
            out = await load_client.CLIENTS[client](f"http://127.0.0.1:{port}/v1/models/m:predict",
                                                [b'{"instances": []}', b"fail", b"chunked"], concurrency, 21,
                                                30.0, ROWS)
        finally:
            server.close()
            await server.wait_closed()
        return out, len(connections)

    out, connections = asyncio.run(run())
    assert out["requests"] == 21
    assert out["errors"] == 7  # the "fail" body, answered 500; chunked answers are read whole
    assert connections >= 21 // 3  # reopened after each answer that closed the connection
    assert out["p50_ms"] > 0


@pytest.mark.parametrize("client", sorted(load_client.CLIENTS))
def test_client_counts_a_short_answer_as_an_error(client):
    async def run():
        server = await _serve([])
        port = server.sockets[0].getsockname()[1]
        try:
            return await load_client.CLIENTS[client](f"http://127.0.0.1:{port}/p", [b"{}"], 1, 4, 30.0, ROWS + 1)
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(run())["errors"] == 4
