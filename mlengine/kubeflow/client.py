"""Kubeflow Pipelines from the command line: upload and version, submit, schedule, list runs.

Upload and submit live here; recurring runs and the runs table in mlengine/kubeflow/schedules.py.
Everything goes through ``kfp.Client`` (the KFP v2beta1 REST API). What the client supports for
auth passes through (:class:`Connection`): a bearer token (``--existing-token`` or
``MLENGINE_KFP_TOKEN``), a token file (``KF_PIPELINES_SA_TOKEN_PATH``, read by kfp's
``ServiceAccountTokenVolumeCredentials``), cookies for a Dex-protected endpoint (``--cookies`` or
``MLENGINE_KFP_COOKIES``) and ``--namespace`` for multi-user Kubeflow. No token, cookie or
credential is ever logged: errors name the URL, the HTTP status and the auth options, never a
header or a request body.

Bad input fails before any request: parameters are checked against the pipeline's own inputs,
cron expressions field by field (mlengine/kubeflow/cron.py). An existing pipeline gets a new VERSION
(named from the package version and a hash of the compiled YAML) when its spec changed; an
unchanged spec re-uses the version that has it; nothing is overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlengine.components.shared.logs import component_logger
from mlengine.constants import (
    DEFAULT_EXPERIMENT,
    ENV_KFP_COOKIES,
    ENV_KFP_HOST,
    ENV_KFP_SA_TOKEN_PATH,
    ENV_KFP_TOKEN,
)
from mlengine.errors import MlengineError
from mlengine.version import __version__

log = component_logger("kubeflow")

AUTH_OPTIONS = (f"--existing-token TOKEN (or {ENV_KFP_TOKEN}), {ENV_KFP_SA_TOKEN_PATH}=<token file>, "
                f"--cookies 'authservice_session=...' (or {ENV_KFP_COOKIES}) for a Dex-protected endpoint, "
                "--namespace for multi-user Kubeflow")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
REQUEST_TIMEOUT_S = (10.0, 60.0)  # connect, read
PAGE_SIZE = 100
MONITORING_SUFFIX = "-skew-monitor"
SUMMARY_STATISTICS_KEY = "statistics_uri"
SUMMARY_SERVING_LOG_KEY = "serving_log_uri"
_REMOTE_SCHEMES = ("s3://", "gs://", "minio://", "http://", "https://")


# --- connecting ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Connection:
    """Where the KFP API is and how to authenticate; secrets are kept out of ``repr``.

    Attributes:
        host: the API's URL, e.g. http://localhost:8080 (port-forwarded ml-pipeline-ui) or
            https://kubeflow.example.com/pipeline.
        namespace: the Kubeflow profile namespace (multi-user); None for single-user KFP.
        existing_token: a bearer token made outside the SDK.
        cookies: a Cookie header value (Dex/oauth2-proxy session).
        sa_token_path: a file with a ServiceAccount token, re-read on every request.
    """

    host: str
    namespace: str | None = None
    existing_token: str | None = field(default=None, repr=False)
    cookies: str | None = field(default=None, repr=False)
    sa_token_path: str | None = None

    def __post_init__(self) -> None:
        host = (self.host or "").strip().rstrip("/")
        if not host:
            raise MlengineError("--host: the KFP API URL is required (or set KF_PIPELINES_ENDPOINT), "
                                "e.g. http://localhost:8080")
        if not host.startswith(("http://", "https://")):
            raise MlengineError(f"--host {host!r}: give the scheme, e.g. http://{host} or https://{host}")
        object.__setattr__(self, "host", host)
        if self.sa_token_path and not Path(self.sa_token_path).is_file():
            raise MlengineError(f"{ENV_KFP_SA_TOKEN_PATH}={self.sa_token_path}: no such token file")

    @classmethod
    def from_args(cls, host: str | None, namespace: str | None = None, existing_token: str | None = None,
                  cookies: str | None = None, environ: dict[str, str] | None = None) -> Connection:
        env = os.environ if environ is None else environ
        return cls(host=host or env.get(ENV_KFP_HOST, ""), namespace=namespace or None,
                   existing_token=existing_token or env.get(ENV_KFP_TOKEN) or None,
                   cookies=cookies or env.get(ENV_KFP_COOKIES) or None,
                   sa_token_path=env.get(ENV_KFP_SA_TOKEN_PATH) or None)


class NotKfpApi(Exception):
    """The health check was answered, but not by the KFP API (e.g. a login page)."""

    def __init__(self, status: int, content_type: str):
        super().__init__(f"{status} {content_type}")
        self.status = status
        self.content_type = content_type


def _client_class():
    import kfp
    import kfp_server_api

    class _Client(kfp.Client):
        """kfp.Client whose start-up health check fails at once (the SDK's retries 5 times, 5 s apart)
        and tells the KFP API from a page in front of it (a Dex login answers 200 with HTML)."""

        def get_kfp_healthz(self, sleep_duration: int = 5):
            raw = self._healthz_api.healthz_service_get_healthz(_request_timeout=REQUEST_TIMEOUT_S,
                                                                _preload_content=False)
            content_type = raw.headers.get("Content-Type", "")
            if "json" not in content_type:
                raise NotKfpApi(raw.status, content_type or "no content type")
            payload = json.loads(raw.data or b"{}")
            return kfp_server_api.V2beta1GetHealthzResponse(multi_user=payload.get("multi_user"),
                                                            pipeline_store=payload.get("pipeline_store"))

    return _Client


def _short_reason(err: BaseException) -> str:
    """The last, most specific cause of a connection error, without the urllib3 object dumps."""
    reason = getattr(err, "reason", None) or err
    text = str(reason)
    for marker in ("Failed to establish a new connection: ", "] "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.rstrip("')").strip() or type(err).__name__


def _api_message(err) -> str:
    """The server's own error message from a KFP error body ({"message": ...}), short, no headers."""
    body = getattr(err, "body", None)
    try:
        payload = json.loads(body) if body else {}
        message = payload.get("message") or payload.get("error") or ""
    except (ValueError, AttributeError):
        message = ""
    return " ".join(str(message).split())[:300]


@contextlib.contextmanager
def api_errors(host: str) -> Iterator[None]:
    """Turn what the KFP client raises into one line naming ``host`` (never headers or bodies we sent)."""
    import kfp_server_api
    import urllib3

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # kfp.Client warns about its own version and prints UI links; we print our own lines
            warnings.simplefilter("ignore")
            yield
    except NotKfpApi as err:
        raise MlengineError(f"{host}: /apis/v2beta1/healthz answered {err.status} with {err.content_type}, not the "
                            "KFP API (a login page?); give the API's URL (e.g. https://kubeflow.example.com/pipeline) "
                            f"and authenticate with {AUTH_OPTIONS}") from None
    except kfp_server_api.ApiException as err:
        status = err.status
        if not status:  # TLS and protocol errors come as status 0
            raise MlengineError(f"{host}: no KFP API answers ({' '.join(str(err.reason).split())[:300]})") from None
        if status in (401, 403):
            what = "401 Unauthorized" if status == 401 else "403 Forbidden"
            raise MlengineError(f"{host}: {what} from the KFP API; authenticate with {AUTH_OPTIONS}") from None
        message = _api_message(err)
        if status == 404 and not message:
            message = "is --host the KFP API's URL (e.g. http://localhost:8080 or https://kubeflow.example.com/pipeline)?"
        raise MlengineError(f"{host}: the KFP API answered {status} {err.reason or ''}".rstrip()
                            + (f": {message}" if message else "")) from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise MlengineError(f"{host}: no KFP API answers ({_short_reason(err)})") from None


def connect(conn: Connection):
    """A ``kfp.Client`` for ``conn`` whose health check has answered (else one-line MlengineError)."""
    kwargs: dict[str, Any] = {"host": conn.host}
    if conn.namespace:
        kwargs["namespace"] = conn.namespace
    if conn.existing_token:
        kwargs["existing_token"] = conn.existing_token
    elif conn.sa_token_path:
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(conn.sa_token_path)
    if conn.cookies:
        kwargs["cookies"] = conn.cookies
    with api_errors(conn.host):
        client = _client_class()(**kwargs)
        client.get_kfp_healthz()  # with --namespace the client skips it; we always want the early answer
    return client


def _filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _paged(call, items_attr: str, **kwargs) -> list:
    """Every item of a paginated KFP list call."""
    items: list = []
    token = ""
    while True:
        page = call(page_token=token, page_size=PAGE_SIZE, **kwargs)
        items += getattr(page, items_attr) or []
        token = page.next_page_token or ""
        if not token:
            return items


# --- parameters ---------------------------------------------------------------------------------
_TYPE_NAMES = {"STRING": "a string", "NUMBER_INTEGER": "an integer", "NUMBER_DOUBLE": "a number",
               "BOOLEAN": "true or false", "STRUCT": "a JSON object", "LIST": "a JSON list"}


def pipeline_inputs(pipeline) -> dict[str, tuple[str, bool]]:
    """{input name: (KFP parameter type, required)} of a pipeline (a GraphComponent), from its spec."""
    inputs = pipeline.pipeline_spec.root.input_definitions.parameters
    from kfp.pipeline_spec import pipeline_spec_pb2

    type_name = pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name
    return {name: (type_name(spec.parameter_type), not spec.is_optional and not spec.HasField("default_value"))
            for name, spec in inputs.items()}


def _convert(name: str, text: str, kind: str) -> Any:
    def wrong() -> MlengineError:
        return MlengineError(f"--param {name}={text}: {name} takes {_TYPE_NAMES.get(kind, kind)}")

    if kind == "STRING":
        return text
    if kind == "NUMBER_INTEGER":
        try:
            return int(text)
        except ValueError:
            raise wrong() from None
    if kind == "NUMBER_DOUBLE":
        try:
            return float(text)
        except ValueError:
            raise wrong() from None
    if kind == "BOOLEAN":
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise wrong()
    try:
        value = json.loads(text)
    except ValueError:
        raise wrong() from None
    if (kind == "STRUCT" and not isinstance(value, dict)) or (kind == "LIST" and not isinstance(value, list)):
        raise wrong()
    return value


def parse_params(pipeline, pairs: list[str] | None, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """``["key=value", ...]`` typed by the pipeline's inputs; unknown names, wrong types and missing
    required inputs are one-line errors (raised before any request)."""
    inputs = pipeline_inputs(pipeline)
    params = dict(given or {})
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise MlengineError(f"--param {pair!r}: expected name=value")
        if name not in inputs:
            raise MlengineError(f"--param {name}: {pipeline.component_spec.name} has no input {name!r}; "
                                f"its inputs are {', '.join(sorted(inputs))}")
        params[name] = _convert(name, text, inputs[name][0])
    if "hyperparameters" in params and "hyperparameters" in inputs:
        from mlengine.components.shared.hyperparameters import explicit_values

        explicit_values(params["hyperparameters"])  # unknown names and bad values now, not in the tune step
    missing = [name for name, (_, required) in sorted(inputs.items()) if required and name not in params]
    if missing:
        raise MlengineError(f"--param {missing[0]}=...: required by {pipeline.component_spec.name} "
                            f"(inputs without a default: {', '.join(missing)})")
    return params


# --- upload -------------------------------------------------------------------------------------
def pipeline_names(name: str | None) -> dict[str, str]:
    """{kind: pipeline name in KFP}: ``--name N`` names the training pipeline, the monitor is N-skew-monitor."""
    from mlengine.pipelines import monitoring, training

    if not name:
        return {"training": training.PIPELINE_NAME, "monitoring": monitoring.PIPELINE_NAME}
    return {"training": name, "monitoring": f"{name}{MONITORING_SUFFIX}"}


def spec_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def version_name(path: str | Path, given: str | None = None) -> str:
    """``--version`` if given, else ``<package version>-<first 10 hex of the YAML's sha256>``."""
    return given or f"{__version__}-{spec_digest(path)[:10]}"


def _stored_forms(path: str | Path) -> list[dict]:
    """How KFP returns this package's spec on a version: the PipelineSpec alone, or, with a
    platform spec, ``{"pipeline_spec": ..., "platform_spec": ...}``."""
    import yaml

    docs = [doc for doc in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if doc is not None]
    forms = [docs[0]]
    if len(docs) > 1:
        forms.append({"pipeline_spec": docs[0], "platform_spec": docs[1]})
    return forms


def find_pipeline(client, name: str, namespace: str | None):
    matches = _paged(client.list_pipelines, "pipelines", filter=_filter("display_name", name),
                     **({"namespace": namespace} if namespace else {}))
    matches = [p for p in matches if p.display_name == name]
    if len(matches) > 1:
        raise MlengineError(f"{len(matches)} pipelines are named {name!r}; give another --name")
    return matches[0] if matches else None


def list_versions(client, pipeline_id: str) -> list:
    versions = _paged(client.list_pipeline_versions, "pipeline_versions", pipeline_id=pipeline_id,
                      sort_by="created_at desc")
    return sorted(versions, key=lambda v: v.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)


@dataclass
class Uploaded:
    kind: str
    pipeline: str
    pipeline_id: str
    version: str
    version_id: str
    action: str  # "created pipeline", "new version", "unchanged"
    yaml: str

    def line(self) -> str:
        return (f"upload: {self.pipeline}: {self.action}; pipeline id {self.pipeline_id}, "
                f"version {self.version!r} id {self.version_id}")


def upload_one(client, conn: Connection, kind: str, path: str, name: str, version: str | None,
               description: str) -> Uploaded:
    """One pipeline YAML: a new pipeline, a new version of it, or the existing version with this spec."""
    import kfp_server_api

    wanted = version_name(path, version)
    ours = _stored_forms(path)
    existing = find_pipeline(client, name, conn.namespace)
    action = "new version"
    if existing is None:
        pipeline = client.pipelines.pipeline_service_create_pipeline(pipeline=kfp_server_api.V2beta1Pipeline(
            display_name=name, description=description, namespace=conn.namespace or None))
        pipeline_id = pipeline.pipeline_id
        action = "created pipeline"
    else:
        pipeline_id = existing.pipeline_id
        for old in list_versions(client, pipeline_id):
            if old.display_name != wanted:
                continue
            # a generated name carries the YAML's hash: the same name is the same spec
            if version is None or (old.pipeline_spec or {}) in ours:
                return Uploaded(kind, name, pipeline_id, wanted, old.pipeline_version_id, "unchanged", path)
            raise MlengineError(f"{name}: version {wanted!r} exists with a different spec; versions are never "
                                "overwritten: give another --version (or none: named from the spec's hash)")
    created = client.upload_pipeline_version(path, pipeline_version_name=wanted, pipeline_id=pipeline_id,
                                             description=description)
    return Uploaded(kind, name, pipeline_id, wanted, created.pipeline_version_id, action, path)


def upload(conn: Connection, target, out_dir: str | Path, *, name: str | None = None,
           version: str | None = None) -> list[Uploaded]:
    """Compile both pipelines for ``target`` into ``out_dir`` and upload them; one line each on the log."""
    from mlengine.pipelines.platform import compile_for

    written = compile_for(target, out_dir)  # before any request: a compile error costs no round trip
    from mlengine.pipelines import monitoring, training

    paths = {"training": written[training.PIPELINE_NAME], "monitoring": written[monitoring.PIPELINE_NAME]}
    descriptions = {"training": training.training_pipeline.component_spec.description,
                    "monitoring": monitoring.monitoring_pipeline.component_spec.description}
    names = pipeline_names(name)
    client = connect(conn)
    results = []
    with api_errors(conn.host):
        for kind in ("training", "monitoring"):
            result = upload_one(client, conn, kind, paths[kind], names[kind], version,
                                f"{descriptions[kind]} (mlengine {__version__}, {target.name} target)")
            log.info(result.line())
            results.append(result)
    return results


def upload_file(conn: Connection, path: str | Path, *, name: str | None = None,
                version: str | None = None) -> Uploaded:
    """Upload a pipeline YAML you compiled yourself (e.g. one that composes the suite's components).

    The pipeline is named ``name``, else the YAML's own ``pipelineInfo.name``; versions follow the
    same rules as the built-in pipelines' (named from the spec's hash, never overwritten).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MlengineError(f"--pipeline-file {path}: no such file")
    try:
        spec = _stored_forms(path)[0]  # a cluster YAML has a second document: its platform spec
    except (yaml.YAMLError, IndexError, UnicodeDecodeError) as err:
        raise MlengineError(f"--pipeline-file {path}: not a pipeline YAML ({type(err).__name__})") from None
    info = spec.get("pipelineInfo") if isinstance(spec, dict) else None
    if not isinstance(info, dict) or "root" not in spec:
        raise MlengineError(f"--pipeline-file {path}: not a compiled KFP pipeline (no pipelineInfo/root)")
    pipeline_name = name or info.get("name") or path.stem
    client = connect(conn)
    with api_errors(conn.host):
        result = upload_one(client, conn, "pipeline", str(path), pipeline_name, version,
                            info.get("description") or f"{pipeline_name} (uploaded by mlengine {__version__})")
    log.info(result.line())
    return result


def resolve_version(client, conn: Connection, name: str, version: str | None):
    """(pipeline id, version) of ``name``: ``version`` by name or id, else the newest one."""
    pipeline = find_pipeline(client, name, conn.namespace)
    if pipeline is None:
        raise MlengineError(f"{conn.host}: no pipeline named {name!r}; upload it first: mlengine upload --host "
                            f"{conn.host}")
    versions = list_versions(client, pipeline.pipeline_id)
    if not versions:
        raise MlengineError(f"{name}: the pipeline has no version; upload one: mlengine upload --host {conn.host}")
    if version is None:
        return pipeline.pipeline_id, versions[0]
    for candidate in versions:
        if version in (candidate.display_name, candidate.pipeline_version_id):
            return pipeline.pipeline_id, candidate
    raise MlengineError(f"{name}: no version {version!r}; versions: "
                        + ", ".join(v.display_name for v in versions[:10]))


def ensure_experiment(client, conn: Connection, name: str):
    """The experiment named ``name`` in the namespace, created when missing."""
    import kfp_server_api

    found = _paged(client.list_experiments, "experiments", filter=_filter("display_name", name),
                   **({"namespace": conn.namespace} if conn.namespace else {}))
    found = [e for e in found if e.display_name == name]
    if found:
        return found[0]
    log.info("experiment %s: created", name)
    return client.experiments.experiment_service_create_experiment(experiment=kfp_server_api.V2beta1Experiment(
        display_name=name, namespace=conn.namespace or None))


# --- submit -------------------------------------------------------------------------------------
def _pipeline_object(kind: str):
    from mlengine.pipelines import monitoring, training

    return training.training_pipeline if kind == "training" else monitoring.monitoring_pipeline


def submit(conn: Connection, *, name: str | None = None, version: str | None = None,
           experiment: str = DEFAULT_EXPERIMENT, params: list[str] | None = None, run_name: str | None = None,
           wait: bool = False, poll_interval: float = 10.0, timeout: float | None = None,
           kind: str = "training", service_account: str | None = None) -> int:
    """Start one run of the uploaded version; with ``wait`` follow it; returns the exit code."""
    values = parse_params(_pipeline_object(kind), params)  # before any request
    pipeline_name = pipeline_names(name)[kind]
    client = connect(conn)
    with api_errors(conn.host):
        pipeline_id, chosen = resolve_version(client, conn, pipeline_name, version)
        exp = ensure_experiment(client, conn, experiment)
        display = run_name or f"{pipeline_name} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
        run = client.run_pipeline(experiment_id=exp.experiment_id, job_name=display, params=values,
                                  pipeline_id=pipeline_id, version_id=chosen.pipeline_version_id,
                                  service_account=service_account or None)
    log.info("submit: run %s (%s) of %s version %r in experiment %s; parameters %s", run.run_id, display,
             pipeline_name, chosen.display_name, experiment, json.dumps(values, sort_keys=True))
    if not wait:
        return 0
    final = follow_run(client, conn, run.run_id, poll_interval=poll_interval, timeout=timeout)
    return 0 if final == "SUCCEEDED" else 1


def follow_run(client, conn: Connection, run_id: str, *, poll_interval: float = 10.0,
               timeout: float | None = None) -> str:
    """Poll the run until it ends, logging every task state change; returns the final run state."""
    started = time.monotonic()
    seen: dict[str, str] = {}
    last_state = None
    while True:
        with api_errors(conn.host):
            run = client.get_run(run_id)
        state = run.state or "RUNTIME_STATE_UNSPECIFIED"
        for task in (run.run_details.task_details if run.run_details else None) or []:
            task_name = task.display_name or task.task_id
            task_state = task.state or "RUNTIME_STATE_UNSPECIFIED"
            if seen.get(task_name) != task_state:
                seen[task_name] = task_state
                log.info("run %s: task %s %s", run_id, task_name, task_state)
        if state != last_state:
            log.info("run %s: %s", run_id, state)
            last_state = state
        if state in FINAL_STATES:
            message = run.error.message if run.error and run.error.message else ""
            log.info("run %s: finished %s after %.0f s%s", run_id, state, time.monotonic() - started,
                     f": {message}" if message else "")
            return state
        if timeout is not None and time.monotonic() - started > timeout:
            raise MlengineError(f"run {run_id}: still {state} after {timeout:.0f} s (--timeout); it goes on "
                                "in Kubeflow")
        time.sleep(poll_interval)
