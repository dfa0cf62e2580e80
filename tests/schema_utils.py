"""Validate generated Kubernetes manifests against the real upstream schemas in tests/schemas.

Each schema there is the upstream file byte for byte, gzip-compressed (sources and blob ids in
tests/schemas/SOURCES.md), so a clone of the repository alone runs every schema test.

The CRDs accept unknown fields, so every object schema with ``properties`` is closed here
(``additionalProperties: false``) unless it preserves unknown fields, has its own
``additionalProperties``, or is ``metadata``: that way a typo such as ``storageURI`` fails.
``check_strict`` is the second, independent check: a manifest against the client models of kserve
and of the Kubernetes client (every field one the model declares, with its type).
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import re
from pathlib import Path

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def read_schema_file(file_name: str) -> bytes:
    """The upstream file ``file_name`` (kept as ``file_name.gz`` in tests/schemas)."""
    return gzip.decompress((SCHEMA_DIR / f"{file_name}.gz").read_bytes())


def close_schema(schema, parent_key: str | None = None):
    """A copy of an OpenAPI v3 schema where unknown fields are rejected (metadata stays open)."""
    if isinstance(schema, list):
        return [close_schema(item, parent_key) for item in schema]
    if not isinstance(schema, dict):
        return schema
    # "properties" is walked once, below: walking it here too doubled the work at every level
    out = {key: close_schema(value, key) for key, value in schema.items() if key != "properties"}
    if ("properties" in schema and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields") and parent_key != "metadata"):
        out["additionalProperties"] = False
    if "properties" in schema:  # reach into the property schemas with their names as parent keys
        out["properties"] = {name: close_schema(schema["properties"][name], name) for name in schema["properties"]}
    return out


def crd_schema(file_name: str, version: str, drop_status_required: bool = False) -> dict:
    """The closed ``openAPIV3Schema`` of one version of a CRD in tests/schemas."""
    crd = yaml.load(read_schema_file(file_name), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema = copy.deepcopy(entry["schema"]["openAPIV3Schema"])
            if drop_status_required and "status" in schema.get("required", []):
                schema["required"] = [r for r in schema["required"] if r != "status"]
            return close_schema(schema)
    raise KeyError(f"{file_name}: no version {version}")


@functools.cache
def tfjob_schema() -> dict:
    return crd_schema("tfjob-crd.yaml", "v1")


@functools.cache
def inference_service_schema() -> dict:
    return crd_schema("kserve-inferenceservice-crd.yaml", "v1beta1")


@functools.cache
def scheduled_workflow_schema() -> dict:
    return crd_schema("scheduledworkflow-crd.yaml", "v1beta1", drop_status_required=True)


@functools.cache
def katib_experiment_schema() -> dict:
    doc = json.loads(read_schema_file("katib-openapi-v1beta1.json"))
    components = close_schema(doc["components"])
    return {"$ref": "#/components/schemas/v1beta1.Experiment", "components": components}


def validate(manifest: dict, schema: dict) -> None:
    """Raise jsonschema.ValidationError naming the failing path (Draft 4, as the CRDs use)."""
    jsonschema.Draft4Validator(schema).validate(manifest)


def errors(manifest: dict, schema: dict) -> list[str]:
    """Every validation problem as 'path: message' (empty when the manifest is valid)."""
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def _model_class(name: str):
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no model class {name}")


def check_strict(value, type_name: str, where: str = "") -> None:
    """Raise AssertionError at the first field the type does not declare (recursively)."""
    if type_name in ("object",):
        return
    if type_name in ("str", "int", "bool", "float"):
        kinds = {"str": str, "int": int, "bool": bool, "float": (int, float)}[type_name]
        assert isinstance(value, kinds) and not (type_name == "int" and isinstance(value, bool)), \
            f"{where}: expected {type_name}, got {value!r}"
        return
    if type_name.startswith("list["):
        assert isinstance(value, list), f"{where}: expected a list"
        for index, item in enumerate(value):
            check_strict(item, type_name[5:-1], f"{where}[{index}]")
        return
    match = re.match(r"dict\((\w+), (.+)\)$", type_name)
    if match:
        assert isinstance(value, dict), f"{where}: expected a mapping"
        for key, item in value.items():
            check_strict(item, match.group(2), f"{where}.{key}")
        return
    cls = _model_class(type_name)
    assert isinstance(value, dict), f"{where}: expected an object ({type_name})"
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json))
    assert not unknown, f"{where or type_name}: unknown field(s) {unknown} for {type_name}"
    for key, item in value.items():
        check_strict(item, cls.openapi_types[by_json[key]], f"{where}.{key}")


@functools.cache
def trainjob_schema() -> dict:
    return crd_schema("trainer-trainjobs-crd.yaml", "v1alpha1")


@functools.cache
def training_runtime_schema(kind: str = "TrainingRuntime") -> dict:
    file_name = {"TrainingRuntime": "trainer-trainingruntimes-crd.yaml",
                 "ClusterTrainingRuntime": "trainer-clustertrainingruntimes-crd.yaml"}[kind]
    return crd_schema(file_name, "v1alpha1")


def schema_for(manifest: dict) -> dict:
    """The closed schema of a rendered manifest's kind (TFJob, TrainJob, runtimes, Experiment, InferenceService)."""
    kind = manifest["kind"]
    if kind == "TFJob":
        return tfjob_schema()
    if kind == "TrainJob":
        return trainjob_schema()
    if kind in ("TrainingRuntime", "ClusterTrainingRuntime"):
        return training_runtime_schema(kind)
    if kind == "Experiment":
        return katib_experiment_schema()
    if kind == "InferenceService":
        return inference_service_schema()
    raise KeyError(kind)
