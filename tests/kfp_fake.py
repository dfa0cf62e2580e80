"""A fake Kubeflow Pipelines v2beta1 REST API on 127.0.0.1 for the kfp.Client tests.

It implements the endpoints ``mlengine upload / submit / schedule / runs`` use (healthz, pipelines
and their versions incl. the multipart uploads, experiments, runs, recurring runs), keeps state in
memory, records every request, and VALIDATES every JSON request body against the models of the
``kfp-server-api`` package: every key must be one of the model's JSON attributes, every value of
the model's declared type (nested models, lists, maps, enums, RFC 3339 datetimes), and the body
must then deserialize into that model. An uploaded package must parse as a ``PipelineSpec`` (and
its second document as a ``PlatformSpec``) with unknown fields rejected. A body that does not
validate gets a 400 and is recorded in ``errors``, so a test asserts ``fake.errors == []``.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import kfp_server_api
import yaml

API = "/apis/v2beta1"
# proto int64 fields the OpenAPI generator types as str; grpc-gateway takes a JSON number for them
INT64_FIELDS = {"max_concurrency", "interval_second"}
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(([^,]+), (.+)\)$")


class BodyError(ValueError):
    pass


def validate(value: Any, type_name: str, where: str = "body") -> None:
    """Strict check of decoded JSON ``value`` against a kfp_server_api type (``'V2beta1Run'``, ``'str'``...)."""
    if value is None:
        raise BodyError(f"{where}: null (the client leaves unset fields out)")
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            raise BodyError(f"{where}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            validate(item, match.group(1), f"{where}[{i}]")
        return
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            raise BodyError(f"{where}: expected an object, got {type(value).__name__}")
        for key, item in value.items():
            validate(item, match.group(2), f"{where}.{key}")
        return
    simple = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object}
    if type_name in simple:
        if type_name == "int" and isinstance(value, bool):
            raise BodyError(f"{where}: expected int, got bool")
        if not isinstance(value, simple[type_name]):
            raise BodyError(f"{where}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    if type_name in ("datetime", "date"):
        if not isinstance(value, str):
            raise BodyError(f"{where}: expected an RFC 3339 string")
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BodyError(f"{where}: {value!r} is not RFC 3339") from None
        return
    model = getattr(kfp_server_api.models, type_name, None)
    if model is None:
        raise BodyError(f"{where}: unknown model {type_name}")
    if hasattr(model, "allowable_values"):  # an enum
        if value not in model.allowable_values:
            raise BodyError(f"{where}: {value!r} is not one of {model.allowable_values}")
        return
    if not isinstance(value, dict):
        raise BodyError(f"{where}: expected a {type_name} object, got {type(value).__name__}")
    json_to_attr = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in json_to_attr:
            raise BodyError(f"{where}: {type_name} has no field {key!r}")
        attr = json_to_attr[key]
        declared = model.openapi_types[attr]
        if declared == "str" and attr in INT64_FIELDS and isinstance(item, int) and not isinstance(item, bool):
            continue
        validate(item, declared, f"{where}.{key}")


def deserialize(value: Any, type_name: str):
    """The model object the generated client would build (its setters check enums and required fields)."""

    class _Response:
        data = json.dumps(value)

    return kfp_server_api.ApiClient().deserialize(_Response(), type_name)


def check_package(text: str) -> tuple[dict, dict | None]:
    """An uploaded pipeline package: a PipelineSpec document and an optional PlatformSpec, both strict."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if not docs or len(docs) > 2:
        raise BodyError(f"package: {len(docs)} YAML documents; expected a PipelineSpec and an optional PlatformSpec")
    try:
        json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
        if len(docs) == 2:
            json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise BodyError(f"package: {err}") from None
    return docs[0], docs[1] if len(docs) == 2 else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: Any  # decoded JSON, the multipart package text, or None
    raw: bytes = b""


@dataclass
class FakeKfp:
    """State and switches of one fake server (see :func:`start`)."""

    token: str | None = None  # when set, every request needs "Authorization: Bearer <token>" ...
    cookie: str | None = None  # ... or this Cookie header value
    forbidden: bool = False  # answer 403 to authenticated requests (a namespace the user may not use)
    login_redirect: bool = False  # like Dex/oauth2-proxy: an unauthenticated request is sent to an HTML login page
    multi_user: bool = False
    # what GET /runs/{id} shows, one entry per poll: (run state, {task: state})
    run_script: list[tuple[str, dict[str, str]]] = field(default_factory=lambda: [
        ("PENDING", {}),
        ("RUNNING", {"ingest raw CSV": "RUNNING"}),
        ("RUNNING", {"ingest raw CSV": "SUCCEEDED", "train wide-and-deep (TFJob)": "RUNNING"}),
        ("SUCCEEDED", {"ingest raw CSV": "SUCCEEDED", "train wide-and-deep (TFJob)": "SUCCEEDED"}),
    ])
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, list[dict]] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}-{uuid.uuid4().hex[:8]}"

    def bodies(self, method: str, suffix: str) -> list[Any]:
        """Recorded request bodies whose path ends with ``suffix``."""
        return [r.body for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def raw_log(self) -> str:
        """Every recorded request as text: paths, queries, headers and bodies (for secret greps)."""
        return "\n".join(f"{r.method} {r.path} {r.query} {r.headers} {r.raw.decode('utf-8', 'replace')}"
                         for r in self.requests)


def _filter_name(query: dict[str, list[str]]) -> str | None:
    raw = (query.get("filter") or [""])[0]
    if not raw:
        return None
    predicates = json.loads(raw).get("predicates") or []
    for predicate in predicates:
        if predicate.get("key") in ("display_name", "name") and predicate.get("operation") == "EQUALS":
            return predicate.get("stringValue") or predicate.get("string_value")
    return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeKFP/2.17"
    fake: FakeKfp

    def log_message(self, *args) -> None:  # quiet test output
        pass

    # --- plumbing ---------------------------------------------------------------------------
    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_html(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "message": message, "code": status})

    def _handle(self, method: str) -> None:
        fake = self.fake
        url = urlparse(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        body: Any = None
        content_type = self.headers.get("Content-Type", "")
        try:
            if raw and content_type.startswith("multipart/form-data"):
                message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw,
                                                   policy=email.policy.HTTP)
                files = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                         for part in message.iter_parts()}
                if set(files) != {"uploadfile"}:
                    raise BodyError(f"multipart: expected one 'uploadfile' part, got {sorted(files)}")
                body = files["uploadfile"].decode("utf-8")
            elif raw:
                body = json.loads(raw)
        except (ValueError, BodyError) as err:
            fake.errors.append(f"{method} {url.path}: {err}")
            return self._error(400, str(err))
        with fake.lock:
            fake.requests.append(Request(method, url.path, query, headers, body, raw))
        if url.path == "/dex/auth":
            return self._send_html(200, "<html><body><form>Log in to Kubeflow</form></body></html>")
        if not self._authorized(headers):
            if fake.login_redirect:
                self.send_response(302)
                self.send_header("Location", "/dex/auth?client_id=kubeflow-oidc-authservice")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._error(401, "Unauthorized: no valid credentials")
        if fake.forbidden:
            return self._error(403, "Forbidden: not allowed in this namespace")
        try:
            with fake.lock:
                status, payload = self._route(method, url.path, query, body)
        except BodyError as err:
            fake.errors.append(f"{method} {url.path}: {err}")
            return self._error(400, str(err))
        self._send(status, payload)

    def _authorized(self, headers: dict[str, str]) -> bool:
        fake = self.fake
        if fake.token is None and fake.cookie is None:
            return True
        if fake.token is not None and headers.get("authorization") == f"Bearer {fake.token}":
            return True
        return fake.cookie is not None and headers.get("cookie") == fake.cookie

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --- the API ----------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:
        fake = self.fake
        if not path.startswith(API):
            return 404, {"message": f"no route {path}"}
        route = path[len(API):]
        if method == "GET" and route == "/healthz":
            return 200, {"multi_user": fake.multi_user, "pipeline_store": "database"}
        if route == "/pipelines" and method == "GET":
            name = _filter_name(query)
            items = [p for p in fake.pipelines.values() if name is None or p["display_name"] == name]
            return 200, ({"pipelines": items, "total_size": len(items)} if items else {})
        if route == "/pipelines" and method == "POST":
            validate(body, "V2beta1Pipeline")
            deserialize(body, "V2beta1Pipeline")
            if any(p["display_name"] == body.get("display_name") for p in fake.pipelines.values()):
                return 409, {"message": "pipeline name exists"}
            pipeline = {**body, "pipeline_id": fake.new_id("pipeline"), "created_at": _now()}
            fake.pipelines[pipeline["pipeline_id"]] = pipeline
            fake.versions[pipeline["pipeline_id"]] = []
            return 200, pipeline
        if route == "/pipelines/upload_version" and method == "POST":
            return self._upload_version(query, body)
        if match := re.fullmatch(r"/pipelines/([^/]+)/versions", route):
            pipeline_id = match.group(1)
            if pipeline_id not in fake.pipelines:
                return 404, {"message": f"pipeline {pipeline_id} not found"}
            items = list(reversed(fake.versions[pipeline_id]))  # newest first, as sort_by=created_at desc
            return 200, ({"pipeline_versions": items, "total_size": len(items)} if items else {})
        if route == "/experiments" and method == "GET":
            name = _filter_name(query)
            items = [e for e in fake.experiments.values() if name is None or e["display_name"] == name]
            return 200, ({"experiments": items, "total_size": len(items)} if items else {})
        if route == "/experiments" and method == "POST":
            validate(body, "V2beta1Experiment")
            deserialize(body, "V2beta1Experiment")
            experiment = {**body, "experiment_id": fake.new_id("experiment"), "created_at": _now(),
                          "storage_state": "AVAILABLE"}
            fake.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if route == "/runs" and method == "POST":
            validate(body, "V2beta1Run")
            deserialize(body, "V2beta1Run")
            self._check_reference(body)
            run = {**body, "run_id": fake.new_id("run"), "created_at": _now(), "state": "PENDING"}
            fake.runs[run["run_id"]] = run
            return 200, run
        if route == "/runs" and method == "GET":
            experiment = (query.get("experiment_id") or [None])[0]
            items = [r for r in fake.runs.values() if experiment is None or r.get("experiment_id") == experiment]
            items.sort(key=lambda r: r["created_at"], reverse=True)
            return 200, ({"runs": items, "total_size": len(items)} if items else {})
        if match := re.fullmatch(r"/runs/([^/:]+)", route):
            return self._poll_run(match.group(1))
        if route == "/recurringruns" and method == "POST":
            validate(body, "V2beta1RecurringRun")
            deserialize(body, "V2beta1RecurringRun")
            self._check_reference(body)
            recurring = {**body, "recurring_run_id": fake.new_id("recurring"), "created_at": _now(),
                         "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED"}
            fake.recurring_runs[recurring["recurring_run_id"]] = recurring
            return 200, recurring
        if route == "/recurringruns" and method == "GET":
            items = list(fake.recurring_runs.values())
            return 200, ({"recurringRuns": items, "total_size": len(items)} if items else {})
        if match := re.fullmatch(r"/recurringruns/([^/:]+)(:disable|:enable)?", route):
            recurring_id, action = match.group(1), match.group(2)
            if recurring_id not in fake.recurring_runs:
                return 404, {"message": f"recurring run {recurring_id} not found"}
            if method == "DELETE":
                del fake.recurring_runs[recurring_id]
                return 200, {}
            if action:
                enabled = action == ":enable"
                fake.recurring_runs[recurring_id].update(mode="ENABLE" if enabled else "DISABLE",
                                                         status="ENABLED" if enabled else "DISABLED")
                return 200, {}
            return 200, fake.recurring_runs[recurring_id]
        return 404, {"message": f"no route {method} {path}"}

    def _upload_version(self, query: dict, body: Any) -> tuple[int, dict]:
        fake = self.fake
        if not isinstance(body, str):
            raise BodyError("upload_version: no uploadfile part")
        allowed = {"name", "display_name", "pipelineid", "description", "tags"}
        if set(query) - allowed:
            raise BodyError(f"upload_version: unknown query parameters {sorted(set(query) - allowed)}")
        pipeline_id = (query.get("pipelineid") or [""])[0]
        name = (query.get("name") or [""])[0]
        if pipeline_id not in fake.pipelines:
            return 404, {"message": f"pipeline {pipeline_id} not found"}
        if not name:
            raise BodyError("upload_version: no version name")
        if any(v["display_name"] == name for v in fake.versions[pipeline_id]):
            return 409, {"message": f"version {name} exists"}
        spec, platform = check_package(body)
        # the backend returns the platform spec next to the pipeline spec when the package has one
        stored = {"pipeline_spec": spec, "platform_spec": platform} if platform else spec
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": fake.new_id("version"), "display_name": name,
                   "name": name, "description": (query.get("description") or [""])[0], "created_at": _now(),
                   "pipeline_spec": stored}
        fake.versions[pipeline_id].append(version)
        return 200, version

    def _check_reference(self, body: dict) -> None:
        """The run names an existing experiment and version, and only parameters that version declares."""
        fake = self.fake
        if body.get("experiment_id") not in fake.experiments:
            raise BodyError(f"experiment {body.get('experiment_id')!r} not found")
        ref = body.get("pipeline_version_reference") or {}
        versions = fake.versions.get(ref.get("pipeline_id"), [])
        version = next((v for v in versions if v["pipeline_version_id"] == ref.get("pipeline_version_id")), None)
        if version is None:
            raise BodyError(f"pipeline version reference {ref} not found")
        spec = version["pipeline_spec"].get("pipeline_spec", version["pipeline_spec"])
        declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = set((body.get("runtime_config") or {}).get("parameters") or {}) - set(declared)
        if unknown:
            raise BodyError(f"runtime parameters {sorted(unknown)} are not inputs of the pipeline")

    def _poll_run(self, run_id: str) -> tuple[int, dict]:
        fake = self.fake
        if run_id not in fake.runs:
            return 404, {"message": f"run {run_id} not found"}
        step = fake.polls.get(run_id, 0)
        fake.polls[run_id] = step + 1
        state, tasks = fake.run_script[min(step, len(fake.run_script) - 1)]
        run = fake.runs[run_id]
        run["state"] = state
        run["run_details"] = {"task_details": [
            {"run_id": run_id, "task_id": f"task-{i}", "display_name": name, "state": task_state}
            for i, (name, task_state) in enumerate(tasks.items())]}
        if state in ("SUCCEEDED", "FAILED"):
            run["finished_at"] = _now()
            if state == "FAILED":
                run["error"] = {"code": 2, "message": "task train failed"}
        return 200, run


@dataclass
class FakeServer:
    fake: FakeKfp
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.fake.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start(fake: FakeKfp | None = None) -> FakeServer:
    """Serve ``fake`` on 127.0.0.1 (a free port) in a daemon thread; call ``stop()`` when done."""
    fake = fake or FakeKfp()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kfp",
                              daemon=True)
    thread.start()
    return FakeServer(fake, server, thread)
