"""Create, re-attach to and wait for Kubernetes custom resources (TFJob, Katib Experiment, InferenceService).

Launchers follow the GCPC ``remote_runner`` pattern: the resource name is written to a file
*before* the create call, so a launcher that is restarted (pod evicted, pipeline retried) finds
the name and re-attaches to the running resource instead of creating a duplicate. A create that
answers 409 AlreadyExists re-attaches too.

Waiting uses a watch on the one object (``fieldSelector=metadata.name=...``), re-opened when the
server ends it, with polling as the fallback when watching fails. Every problem the user can fix
(no kube config, forbidden, failed resource, timeout) ends as a one-line ``MlengineError``.

The ``kubernetes`` client is imported inside functions: importing this module costs nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from mlengine.errors import MlengineError

_log = logging.getLogger(__name__)

DoneFn = Callable[[dict], tuple[bool, bool, str]]
WATCH_WINDOW_SECONDS = 60  # the server ends each watch after this; we re-open it (keeps proxies happy)


def load_custom_objects_api():
    """A ``CustomObjectsApi`` from the in-cluster service account, else from ``~/.kube/config``."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, FileNotFoundError, OSError) as err:
            raise MlengineError(
                f"no Kubernetes configuration: not running in a cluster and ~/.kube/config is unusable ({err})"
            ) from None
    return client.CustomObjectsApi()


def api_error_message(err: Exception) -> str:
    """One line out of a kubernetes ``ApiException`` (the Status message when the body has one)."""
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None) or type(err).__name__
    body = getattr(err, "body", None)
    message = None
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError, TypeError):
            message = str(body)[:300]
    text = f"HTTP {status} {reason}" if status else str(reason)
    if message:
        text += f": {message}"
    return " ".join(text.split())


def condition_status(obj: dict | None, type_: str) -> str | None:
    """The ``status`` ("True"/"False"/"Unknown") of the condition ``type_`` in ``obj.status.conditions``."""
    condition = find_condition(obj, type_)
    return None if condition is None else condition.get("status")


def find_condition(obj: dict | None, type_: str) -> dict | None:
    """The condition of type ``type_`` (the last one if the list repeats it), or None."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    found = None
    for condition in conditions:
        if isinstance(condition, dict) and condition.get("type") == type_:
            found = condition
    return found


class CustomResource:
    """One kind of custom resource in one namespace, e.g. ``CustomResource("kubeflow.org", "v1", "tfjobs", ns)``."""

    def __init__(self, group: str, version: str, plural: str, namespace: str, api=None):
        self.group = group
        self.version = version
        self.plural = plural
        self.namespace = namespace
        self._api = api

    @property
    def api(self):
        if self._api is None:
            self._api = load_custom_objects_api()
        return self._api

    def _where(self, name: str | None = None) -> str:
        path = f"{self.group}/{self.version} {self.plural} in namespace {self.namespace}"
        return f"{self.plural}/{name} ({path})" if name else path

    def _call(self, what: str, name: str | None, func, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException

        try:
            return func(*args, **kwargs)
        except ApiException as err:
            raise MlengineError(f"{what} {self._where(name)} failed: {api_error_message(err)}") from None
        except _connection_errors() as err:  # connection refused, DNS, TLS
            raise MlengineError(f"{what} {self._where(name)} failed: cannot reach the API server ({err})") from None

    # --- CRUD -----------------------------------------------------------------------------
    def get(self, name: str) -> dict | None:
        """The object, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(self.group, self.version, self.namespace, self.plural, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise MlengineError(f"get {self._where(name)} failed: {api_error_message(err)}") from None
        except _connection_errors() as err:
            raise MlengineError(f"get {self._where(name)} failed: cannot reach the API server ({err})") from None

    def create(self, manifest: dict) -> dict:
        return self._call("create", _name_of(manifest), self.api.create_namespaced_custom_object,
                          self.group, self.version, self.namespace, self.plural, manifest)

    def create_or_attach(self, manifest: dict, name_file: str | None = None) -> dict:
        """Create ``manifest`` or re-attach to the object a previous attempt created; return the object.

        With ``name_file``: a name already in the file (a restarted launcher) is looked up first and
        returned when the object exists; otherwise the name is written to the file before the create.
        A 409 AlreadyExists returns the existing object instead of failing or duplicating it.
        """
        from kubernetes.client.exceptions import ApiException

        manifest = dict(manifest)
        metadata = dict(manifest.get("metadata") or {})
        manifest["metadata"] = metadata
        if name_file:
            path = Path(name_file)
            previous = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
            if previous:
                existing = self.get(previous)
                if existing is not None:
                    _log.info("re-attaching to %s (name from %s)", self._where(previous), name_file)
                    return existing
                metadata["name"] = previous  # the earlier attempt died before its create landed
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_name_of(manifest), encoding="utf-8")
        name = _name_of(manifest)
        try:
            return self.api.create_namespaced_custom_object(self.group, self.version, self.namespace,
                                                            self.plural, manifest)
        except ApiException as err:
            if err.status != 409:
                raise MlengineError(f"create {self._where(name)} failed: {api_error_message(err)}") from None
        except _connection_errors() as err:
            raise MlengineError(f"create {self._where(name)} failed: cannot reach the API server ({err})") from None
        existing = self.get(name)
        if existing is None:  # deleted between the 409 and the get: the next create is the real one
            return self.create(manifest)
        _log.info("%s already exists: re-attaching", self._where(name))
        return existing

    def patch(self, name: str, body: dict) -> dict:
        """A JSON merge patch (``application/merge-patch+json``) of the object."""
        return self._call("patch", name, self.api.patch_namespaced_custom_object,
                          self.group, self.version, self.namespace, self.plural, name, body)

    def delete(self, name: str) -> None:
        """Delete the object (no error when it is already gone)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_namespaced_custom_object(self.group, self.version, self.namespace, self.plural, name)
        except ApiException as err:
            if err.status != 404:
                raise MlengineError(f"delete {self._where(name)} failed: {api_error_message(err)}") from None
        except _connection_errors() as err:
            raise MlengineError(f"delete {self._where(name)} failed: cannot reach the API server ({err})") from None

    # --- waiting --------------------------------------------------------------------------
    def wait(self, name: str, done: DoneFn, *, timeout: float, poll_interval: float = 5.0,
             label: str | None = None) -> dict:
        """Block until ``done(obj)`` says finished; return the object when it succeeded.

        ``done(obj) -> (finished, succeeded, reason)``. Raises ``MlengineError`` with the reason when
        the object finished unsuccessfully, disappeared, or did not finish within ``timeout`` seconds.
        With ``label``, every change of the reason is one progress line, ``<label>: <reason>``.
        """
        deadline = time.monotonic() + timeout
        state = {"reason": None}

        def check(obj: dict | None) -> dict | None:
            if obj is None:
                raise MlengineError(f"{self._where(name)} was deleted while waiting for it")
            finished, succeeded, reason = done(obj)
            if reason != state["reason"]:
                state["reason"] = reason
                if label is not None:
                    _log.info("%s: %s", label, reason)
            if not finished:
                return None
            if not succeeded:
                raise MlengineError(f"{self._where(name)} failed: {reason}")
            return obj

        use_watch = True
        while True:
            obj = self.get(name)
            result = check(obj)
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if use_watch:
                try:
                    result = self._watch_once(name, check, remaining)
                except MlengineError:
                    raise
                except Exception as err:  # a watch the server or a proxy refuses: poll instead
                    _log.warning("watching %s failed (%s); polling every %.0f s", self._where(name), err,
                                 poll_interval)
                    use_watch = False
                    result = None
                if result is not None:
                    return result
            else:
                time.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
        last = state["reason"] or "no status yet"
        raise MlengineError(f"timed out after {timeout:.0f} s waiting for {self._where(name)}; last status: {last}")

    def _watch_once(self, name: str, check: Callable[[dict | None], dict | None], remaining: float) -> dict | None:
        """One watch window; returns the finished object, or None when the window ended first."""
        from kubernetes import watch
        from urllib3.exceptions import ProtocolError, ReadTimeoutError

        window = max(1, int(min(remaining, WATCH_WINDOW_SECONDS)))
        watcher = watch.Watch()
        try:
            for event in watcher.stream(
                self.api.list_namespaced_custom_object, self.group, self.version, self.namespace, self.plural,
                field_selector=f"metadata.name={name}", timeout_seconds=window,
                _request_timeout=window + 5,  # a server that ignores timeoutSeconds cannot hang us
            ):
                kind = event.get("type")
                obj = event.get("object")
                if kind == "ERROR":
                    return None  # e.g. 410 Gone: the caller re-reads the object and opens a new watch
                if not isinstance(obj, dict) or (obj.get("metadata") or {}).get("name") != name:
                    continue
                result = check(None if kind == "DELETED" else obj)
                if result is not None:
                    return result
        except (ReadTimeoutError, ProtocolError):
            return None  # the stream went quiet or was cut: re-read and re-open
        finally:
            watcher.stop()
        return None


def _connection_errors() -> tuple[type[BaseException], ...]:
    from urllib3.exceptions import HTTPError

    return (OSError, HTTPError)


def _name_of(manifest: dict) -> str:
    name = (manifest.get("metadata") or {}).get("name")
    if not name:
        raise MlengineError(f"manifest of kind {manifest.get('kind')!r} has no metadata.name")
    return name
