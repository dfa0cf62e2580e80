"""A small fake Kubernetes API server for the custom-objects REST paths, on 127.0.0.1.

It speaks enough of the real protocol for the REAL ``kubernetes`` python client:

- ``POST   /apis/{group}/{version}/namespaces/{ns}/{plural}``            create (409 AlreadyExists)
- ``GET    /apis/{group}/{version}/namespaces/{ns}/{plural}``            list (``fieldSelector=metadata.name=x``)
- ``GET    ...?watch=true``                                               newline-delimited watch events
- ``GET    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``     get (404 NotFound)
- ``PATCH  .../{name}``                                                   JSON merge patch
- ``DELETE .../{name}``

Errors carry a ``kind: Status`` body like the real server's. Tests play the controller with
``set_status`` / ``script`` (status transitions over time), and read ``requests`` to check, for
example, that a re-attach sent no second POST.
"""

from __future__ import annotations

import copy
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

Key = tuple[str, str, str, str]  # (group/version, namespace, plural, name)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def status_body(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeKubeAPI:
    """Start with ``FakeKubeAPI().start()`` (or as a context manager); ``host`` is its URL."""

    def __init__(self):
        self.objects: dict[Key, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.on_create: list[Callable[[dict], None]] = []  # controller hooks, called after a create
        self.watch_supported = True
        self.served_group_versions: list[str] = []  # what GET /apis (API discovery) lists, e.g. "kubeflow.org/v1"
        self._lock = threading.RLock()
        self._watchers: list[tuple[tuple[str, str, str], str | None, queue.Queue]] = []
        self._resource_version = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubeAPI:
        thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for _, _, events in self._watchers:
                events.put(None)
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def custom_objects_api(self):
        """A real ``kubernetes.client.CustomObjectsApi`` talking to this server."""
        from kubernetes import client

        configuration = client.Configuration(host=self.host)
        return client.CustomObjectsApi(client.ApiClient(configuration))

    # --- the controller's side ------------------------------------------------------------
    def count(self, method: str, plural: str | None = None) -> int:
        return sum(1 for m, path in self.requests if m == method and (plural is None or f"/{plural}" in path))

    def find(self, plural: str, name: str, namespace: str | None = None) -> dict | None:
        with self._lock:
            for (_, ns, pl, nm), obj in self.objects.items():
                if pl == plural and nm == name and (namespace is None or ns == namespace):
                    return copy.deepcopy(obj)
        return None

    def put(self, obj: dict, plural: str) -> dict:
        """Store an object directly (as if created by an earlier launcher)."""
        key = self._key_of(obj, plural)
        with self._lock:
            stored = self._stamp(copy.deepcopy(obj))
            self.objects[key] = stored
            self._notify(key, "ADDED", stored)
            return copy.deepcopy(stored)

    def set_status(self, plural: str, name: str, status: dict) -> None:
        """Replace ``status`` of an object and send MODIFIED to the watchers (what a controller does)."""
        with self._lock:
            key = self._find_key(plural, name)
            obj = self.objects[key]
            obj["status"] = copy.deepcopy(status)
            self._stamp(obj)
            self._notify(key, "MODIFIED", obj)

    def script(self, plural: str, name: str, statuses: list[dict], interval: float = 0.2) -> threading.Thread:
        """Play ``statuses`` one after another, ``interval`` seconds apart, in a background thread."""

        def play():
            for status in statuses:
                if self._stopping.wait(interval):
                    return
                self.set_status(plural, name, status)

        thread = threading.Thread(target=play, name=f"fake-controller-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    # --- storage helpers --------------------------------------------------------------------
    def _key_of(self, obj: dict, plural: str) -> Key:
        meta = obj.get("metadata") or {}
        return (obj.get("apiVersion", ""), meta.get("namespace", "default"), plural, meta.get("name", ""))

    def _find_key(self, plural: str, name: str) -> Key:
        for key in self.objects:
            if key[2] == plural and key[3] == name:
                return key
        raise KeyError(f"{plural}/{name}")

    def _stamp(self, obj: dict) -> dict:
        self._resource_version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._resource_version)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        meta.setdefault("generation", 1)
        return obj

    def _notify(self, key: Key, kind: str, obj: dict) -> None:
        for (api_version, ns, plural), name, events in self._watchers:
            if (api_version, ns, plural) == key[:3] and (name is None or name == key[3]):
                events.put({"type": kind, "object": copy.deepcopy(obj)})

    def api_group_list(self) -> dict:
        """The ``APIGroupList`` of API discovery (``GET /apis``) for ``served_group_versions``."""
        groups: dict[str, list[str]] = {}
        for group_version in self.served_group_versions:
            group, version = group_version.split("/")
            groups.setdefault(group, []).append(version)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
             "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
            for group, versions in groups.items()]}

    # --- HTTP -----------------------------------------------------------------------------
    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # a watch streams chunked, like the real API server

            def log_message(self, *args):  # keep test output quiet
                pass

            def _route(self):
                parts = urlsplit(self.path)
                segments = [s for s in parts.path.split("/") if s]
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                # apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
                if len(segments) not in (6, 7) or segments[0] != "apis" or segments[3] != "namespaces":
                    return None
                group, version, ns, plural = segments[1], segments[2], segments[4], segments[5]
                name = segments[6] if len(segments) == 7 else None
                return f"{group}/{version}", ns, plural, name, query

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _handle(self, method: str) -> None:
                with fake._lock:
                    fake.requests.append((method, self.path))
                if method == "GET" and urlsplit(self.path).path.rstrip("/") == "/apis":
                    self._send(200, fake.api_group_list())
                    return
                route = self._route()
                if route is None:
                    self._send(404, status_body(404, "NotFound", f"the server could not find {self.path}"))
                    return
                api_version, ns, plural, name, query = route
                getattr(self, f"_{method.lower()}")(api_version, ns, plural, name, query)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_DELETE(self):
                self._handle("DELETE")

            def _not_found(self, plural: str, name: str) -> None:
                self._send(404, status_body(404, "NotFound", f'{plural} "{name}" not found'))

            def _post(self, api_version, ns, plural, name, query):
                obj = self._body()
                meta = obj.setdefault("metadata", {})
                meta.setdefault("namespace", ns)
                if not meta.get("name"):
                    self._send(422, status_body(422, "Invalid", "metadata.name: Required value"))
                    return
                key = (api_version, ns, plural, meta["name"])
                with fake._lock:
                    if key in fake.objects:
                        self._send(409, status_body(409, "AlreadyExists",
                                                    f'{plural}.{api_version.split("/")[0]} "{meta["name"]}" '
                                                    "already exists"))
                        return
                    stored = fake._stamp(copy.deepcopy(obj))
                    fake.objects[key] = stored
                    fake._notify(key, "ADDED", stored)
                    reply = copy.deepcopy(stored)
                for hook in list(fake.on_create):  # before the reply: the client sees the controller's effects
                    hook(copy.deepcopy(reply))
                self._send(201, reply)

            def _get(self, api_version, ns, plural, name, query):
                if name is not None:
                    with fake._lock:
                        obj = fake.objects.get((api_version, ns, plural, name))
                        obj = copy.deepcopy(obj)
                    if obj is None:
                        self._not_found(plural, name)
                    else:
                        self._send(200, obj)
                    return
                wanted = None
                selector = query.get("fieldSelector", "")
                if selector.startswith("metadata.name="):
                    wanted = selector.split("=", 1)[1]
                if query.get("watch") in ("true", "1", "True"):
                    self._watch(api_version, ns, plural, wanted, float(query.get("timeoutSeconds") or 3600))
                    return
                with fake._lock:
                    items = [copy.deepcopy(o) for (av, n, p, nm), o in fake.objects.items()
                             if (av, n, p) == (api_version, ns, plural) and (wanted is None or nm == wanted)]
                    version = str(fake._resource_version)
                self._send(200, {"apiVersion": api_version, "kind": "List", "items": items,
                                 "metadata": {"resourceVersion": version}})

            def _watch(self, api_version, ns, plural, wanted, timeout):
                if not fake.watch_supported:
                    self._send(405, status_body(405, "MethodNotAllowed", "watch is not supported here"))
                    return
                events: queue.Queue = queue.Queue()
                entry = ((api_version, ns, plural), wanted, events)
                with fake._lock:
                    # like the real server without a resourceVersion: synthetic ADDED for what exists
                    for (av, n, p, nm), obj in fake.objects.items():
                        if (av, n, p) == (api_version, ns, plural) and (wanted is None or nm == wanted):
                            events.put({"type": "ADDED", "object": copy.deepcopy(obj)})
                    fake._watchers.append(entry)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    deadline = time.monotonic() + timeout
                    while not fake._stopping.is_set():
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        try:
                            event = events.get(timeout=min(remaining, 0.5))
                        except queue.Empty:
                            continue
                        if event is None:
                            break
                        line = json.dumps(event).encode() + b"\n"
                        self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with fake._lock:
                        if entry in fake._watchers:
                            fake._watchers.remove(entry)

            def _patch(self, api_version, ns, plural, name, query):
                content_type = self.headers.get("Content-Type", "")
                body = self._body()
                key = (api_version, ns, plural, name)
                with fake._lock:
                    if key not in fake.objects:
                        self._not_found(plural, name)
                        return
                    if "merge-patch" not in content_type:
                        self._send(415, status_body(415, "UnsupportedMediaType",
                                                    f"the fake only supports merge patches, got {content_type!r}"))
                        return
                    patched = merge_patch(fake.objects[key], body)
                    patched["metadata"]["name"] = name
                    fake.objects[key] = fake._stamp(patched)
                    fake._notify(key, "MODIFIED", patched)
                    reply = copy.deepcopy(patched)
                self._send(200, reply)

            def _delete(self, api_version, ns, plural, name, query):
                key = (api_version, ns, plural, name)
                with fake._lock:
                    obj = fake.objects.pop(key, None)
                    if obj is not None:
                        fake._notify(key, "DELETED", obj)
                if obj is None:
                    self._not_found(plural, name)
                else:
                    self._send(200, status_body(200, "", "deleted") | {"status": "Success"})

        return Handler
