"""Helpers of the model-server tests: the faulty server's command, raw HTTP, the serving log's lines.

Starting, awaiting and stopping a server is tests/helpers.py's ``running_server``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from pathlib import Path

from tests.helpers import HOST

SERVER_MODULE_FAULTY = "tests.components.deploy.faulty_server"


def faulty_command(model_dir: Path, port: int, name: str, *extra: str) -> list[str]:
    """The same server with a model that raises or stalls on marked rows (``faulty_server.py``)."""
    return [sys.executable, "-m", SERVER_MODULE_FAULTY, "--model", str(model_dir), "--port", str(port),
            "--name", name, *extra]


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def status_of(raw: bytes) -> int | None:
    """The status code of the first HTTP response in ``raw``."""
    parts = raw.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and raw.startswith(b"HTTP/1.1") and parts[1].isdigit() else None


def serving_log_lines(folder: Path) -> list[dict]:
    """Every line of the serving log folder, oldest file first."""
    lines = []
    for path in sorted(Path(folder).glob("serving-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines
