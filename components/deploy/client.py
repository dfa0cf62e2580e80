"""A small prediction client for the served model (KServe v1 or Open Inference v2 over REST).

Server answers other than 200 become one-line :class:`MlengineError` messages carrying the
server's own error text (``http://...: HTTP 400: instances[3].pickup_latitude: ...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlengine.errors import MlengineError

PROTOCOLS = ("v1", "v2")


class ServerError(MlengineError):
    """The server refused a request; ``index`` is the rejected row within the request, if named."""

    def __init__(self, message: str, status: int, field: str | None = None, index: int | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.index = index


# a route pasted into --url: the server's base URL is what comes before it, the model name is in it
_ROUTE = re.compile(r"/v[12]/models(?:/(?P<name>[^/:]+))?(?::predict|/infer|/ready|/versions/[^/]+(?:/infer)?)?/?$")


def split_server_url(url: str) -> tuple[str, str | None]:
    """``http://h:8080/v1/models/taxi:predict`` -> ``("http://h:8080", "taxi")``; a base URL passes through."""
    base = url.rstrip("/")
    match = _ROUTE.search(base)
    if not match:
        return base, None
    return base[:match.start()].rstrip("/"), match.group("name")


class PredictionClient:
    """``PredictionClient("http://127.0.0.1:8080").predict(rows)`` -> list of float predictions."""

    def __init__(self, url: str, name: str | None = None, protocol: str = "v1", timeout: float = 30.0):
        import requests

        if protocol not in PROTOCOLS:
            raise MlengineError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if not url.startswith(("http://", "https://")):
            raise MlengineError(f"{url}: the server URL must start with http:// or https://")
        self.url, named = split_server_url(url)
        name = name or named
        self.protocol = protocol
        self.timeout = timeout
        self._session = requests.Session()
        self._name = name
        self._inputs: list[dict] | None = None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- HTTP -------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        url = self.url + path
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            raise MlengineError(f"{url}: cannot reach the server ({type(err).__name__}: "
                                f"{' '.join(str(err).split())[:200]})") from None
        if response.status_code != 200:
            details = _error_details(response)
            raise ServerError(f"{url}: HTTP {response.status_code}: {_error_text(response)}", response.status_code,
                              details.get("field"), details.get("index"))
        try:
            return response.json()
        except ValueError:
            raise MlengineError(f"{url}: the server answered 200 with a body that is not JSON") from None

    @property
    def name(self) -> str:
        """The model name: given, or the only model the server lists."""
        if self._name is None:
            models = self._request("GET", "/v1/models").get("models") or []
            if len(models) != 1:
                raise MlengineError(f"{self.url}: the server serves {len(models)} models ({', '.join(models)}); "
                                    f"pass --name")
            self._name = models[0]
        return self._name

    def input_types(self) -> list[dict]:
        """The v2 metadata inputs (name, datatype, shape) of the model."""
        if self._inputs is None:
            self._inputs = self._request("GET", f"/v2/models/{self.name}").get("inputs") or []
        return self._inputs

    def ready(self) -> bool:
        try:
            return bool(self._request("GET", f"/v2/models/{self.name}/ready").get("ready"))
        except MlengineError:
            return False

    # --- predictions --------------------------------------------------------------------------------
    def predict_rows(self, rows: list[dict]) -> list[dict]:
        """One object per row: ``{"prediction": float}`` from a regression model, ``{"prediction": class,
        "probabilities": [one per class, in the vocabulary's order]}`` from a classifier."""
        if self.protocol == "v1":
            answer = self._request("POST", f"/v1/models/{self.name}:predict", {"instances": rows})
            predictions = answer.get("predictions")
            self._check_count(predictions, rows)
            if all(isinstance(p, dict) for p in predictions):
                return [{"prediction": p.get("label"), "probabilities": p.get("probabilities")} for p in predictions]
            return [{"prediction": float(p)} for p in predictions]
        answer = self._request("POST", f"/v2/models/{self.name}/infer", self.v2_body(rows))
        outputs = {o.get("name"): o for o in answer.get("outputs") or []}
        if "label" not in outputs:
            predictions = (outputs.get("predictions") or {}).get("data")
            self._check_count(predictions, rows)
            return [{"prediction": float(p)} for p in predictions]
        labels = outputs["label"].get("data")
        self._check_count(labels, rows)
        flat = (outputs.get("probabilities") or {}).get("data") or []
        width = len(flat) // len(rows) if rows else 0
        if width * len(rows) != len(flat):
            raise MlengineError(f"{self.url}: the server answered {len(flat)} probabilities for {len(rows)} rows")
        return [{"prediction": label, "probabilities": flat[i * width:(i + 1) * width]}
                for i, label in enumerate(labels)]

    def _check_count(self, predictions: Any, rows: list[dict]) -> None:
        if not isinstance(predictions, list) or len(predictions) != len(rows):
            raise MlengineError(f"{self.url}: the server answered {len(predictions or [])} predictions "
                                f"for {len(rows)} rows")

    def predict(self, rows: list[dict]) -> list[float]:
        """A regression model's predictions, one float per row (:meth:`predict_rows` answers any task)."""
        if self.protocol == "v1":
            answer = self._request("POST", f"/v1/models/{self.name}:predict", {"instances": rows})
            predictions = answer.get("predictions")
        else:
            answer = self._request("POST", f"/v2/models/{self.name}/infer", self.v2_body(rows))
            outputs = {o.get("name"): o for o in answer.get("outputs") or []}
            predictions = (outputs.get("predictions") or {}).get("data")
        if not isinstance(predictions, list) or len(predictions) != len(rows):
            raise MlengineError(f"{self.url}: the server answered {len(predictions or [])} predictions "
                                f"for {len(rows)} rows")
        return [float(p) for p in predictions]

    def v2_body(self, rows: list[dict]) -> dict:
        """One v2 input per model input (column), with the datatype the model's metadata names."""
        inputs = []
        for meta in self.input_types():
            name = meta["name"]
            inputs.append({"name": name, "shape": [len(rows)], "datatype": meta["datatype"],
                           "data": [row.get(name) for row in rows]})
        return {"inputs": inputs}


def read_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` for each non-empty line of a JSON Lines file of raw feature objects."""
    file = Path(path)
    if not file.is_file():
        raise MlengineError(f"{file}: rows file not found")
    with file.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise MlengineError(f"{file}:{line_number}: not valid JSON ({err})") from None
            if not isinstance(row, dict):
                raise MlengineError(f"{file}:{line_number}: expected a JSON object of raw features")
            yield line_number, row


def _error_details(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    index = body.get("index")
    field = body.get("field")
    return {"index": index if isinstance(index, int) else None, "field": field if isinstance(field, str) else None}


def _error_text(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300] or response.reason
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if key in body:
                return " ".join(str(body[key]).split())[:500]
    return " ".join(json.dumps(body).split())[:300]
