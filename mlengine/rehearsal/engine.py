"""The rehearsal's Docker objects, the Secret-like env file and log scrubbing: what every part shares.

Everything created carries the label ``io.mlengine.rehearsal=<id>`` and ``Engine.cleanup`` removes it
(and only it) at the end, on failure and on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.constants import (
    REHEARSAL_LABEL,
)
from mlengine.errors import MlengineError

DATA_ROOT = "s3://mlpipeline/mlengine/run"
MODEL_URI = "s3://mlpipeline/mlengine/models/v2"
PREVIOUS_MODEL_URI = "s3://mlpipeline/mlengine/models/v1"
JOB_TIMEOUT = 900.0
LOG_TAIL = 40


class RehearsalError(MlengineError):
    """The one-line reason a rehearsal stopped (bad input, a failing replica...)."""


# --- the env file (a Secret's data) ------------------------------------------------------------------
def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments, blank lines skipped), as ``kubectl create secret --from-env-file``."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise RehearsalError(f"--env-file {path}: cannot read it ({err.strerror})") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise RehearsalError(f"--env-file {path}: line {number} is not KEY=value")
        values[key.strip()] = value.strip()
    return values


def resolve_env(env: list[dict], secret: dict[str, str], secret_name: str, where: str,
                fields: dict[str, str] | None = None) -> dict[str, str]:
    """A container's ``env`` as the kubelet resolves it: literals, ``secretKeyRef`` from ``secret`` and
    ``fieldRef`` (the downward API) from ``fields`` (fieldPath -> the pod's value)."""
    out: dict[str, str] = {}
    for item in env or []:
        name = item["name"]
        if "value" in item:
            out[name] = str(item["value"])
            continue
        field_ref = (item.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None and fields is not None:
            if field_ref["fieldPath"] not in fields:
                raise RehearsalError(f"{where}: env {name}: the pod has no {field_ref['fieldPath']}")
            out[name] = fields[field_ref["fieldPath"]]
            continue
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            raise RehearsalError(f"{where}: env {name}: only value, secretKeyRef and fieldRef are rehearsed")
        if ref.get("name") != secret_name:
            raise RehearsalError(f"{where}: env {name} refers to Secret {ref.get('name')!r}; the rehearsal has "
                                 f"only {secret_name!r} (the env file)")
        if ref["key"] in secret:
            out[name] = secret[ref["key"]]
        elif not ref.get("optional"):
            raise RehearsalError(f"{where}: couldn't find key {ref['key']} in Secret {secret_name} "
                                 "(CreateContainerConfigError)")
    return out


class Scrubber:
    """Replaces every credential value in a text with ``****`` (for logs and reports)."""

    def __init__(self, values):
        self.values = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "****")
        return text


# --- what the rehearsal creates, and its removal ------------------------------------------------------
@dataclass
class Engine:
    """The Docker client and everything this rehearsal created (removed by ``cleanup``)."""

    client: Any
    rehearsal_id: str
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return {REHEARSAL_LABEL: self.rehearsal_id}

    def name(self, base: str) -> str:
        return f"{base}-{self.rehearsal_id}"

    def network(self, base: str) -> str:
        net = self.client.networks.create(self.name(base), driver="bridge", labels=self.labels)
        self.networks.append(net.name)
        return net.name

    def volume(self, base: str) -> str:
        vol = self.client.volumes.create(name=self.name(base), labels=self.labels)
        self.volumes.append(vol.name)
        return vol.name

    def create(self, image: str, *, name: str, network: str, alias: str | None = None,
               extra_aliases: list[str] | None = None,
               entrypoint: list[str] | None = None, command: list[str] | None = None,
               environment: dict[str, str] | None = None, binds: dict[str, str] | None = None,
               user: str | None = None, group_add: list[str] | None = None,
               ports: dict[int, int] | None = None) -> str:
        """Create (not start) a container; the Docker ``environment`` keeps values off every command line."""
        api = self.client.api
        host_config = api.create_host_config(
            binds={source: {"bind": target, "mode": "rw"} for source, target in (binds or {}).items()},
            network_mode=network, group_add=group_add,
            port_bindings={port: ("127.0.0.1", host) for port, host in (ports or {}).items()})
        networking = api.create_networking_config(
            {network: api.create_endpoint_config(aliases=[*([alias] if alias else []), *(extra_aliases or [])]
                                                 or None)})
        created = api.create_container(
            image, command=command, entrypoint=entrypoint, environment=environment, name=self.name(name),
            hostname=alias, user=user, labels=self.labels, host_config=host_config, networking_config=networking,
            ports=list(ports or {}))
        self.containers.append(created["Id"])
        return created["Id"]

    def cleanup(self) -> None:
        """Remove this rehearsal's containers, networks and volumes (and only those), whatever state they are in."""
        import docker

        filters = {"label": f"{REHEARSAL_LABEL}={self.rehearsal_id}"}
        try:
            ids = set(self.containers) | {c.id for c in self.client.containers.list(all=True, filters=filters)}
            for cid in ids:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_container(cid, force=True, v=True)
            for net in {*self.networks, *(n.name for n in self.client.networks.list(filters=filters))}:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.networks.get(net).remove()
            for vol in {*self.volumes, *(v.name for v in self.client.volumes.list(filters=filters))}:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.volumes.get(vol).remove(force=True)
        except docker.errors.DockerException as err:
            print(f"rehearse: cleanup incomplete ({err}); remove objects labelled "
                  f"{REHEARSAL_LABEL}={self.rehearsal_id} by hand", file=sys.stderr)


def require_image(client, image: str, what: str) -> None:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RehearsalError(f"{what}: image {image} is not in the local engine (no registry to pull from): "
                             "run `make images`") from None


def check_port_free(port: int, what: str) -> int:
    """``port`` on 127.0.0.1 when it is free (0: any free one); a busy one ends the rehearsal naming it."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise RehearsalError(f"{what}: port {port} on 127.0.0.1 is already in use") from None
        return sock.getsockname()[1]


def tail_logs(engine: Engine, cid: str, scrub: Scrubber, lines: int = LOG_TAIL) -> str:
    raw = engine.client.api.logs(cid, tail=lines).decode("utf-8", "replace")
    return scrub(raw).rstrip()


def last_error_line(logs: str) -> str:
    lines = [line for line in logs.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line.strip()
    return lines[-1].strip() if lines else "(no output)"
