"""Both ServingRuntimes of manifests/base against the ServingRuntime CRD and kserve's own models.

The CRD is kserve's `serving.kserve.io_servingruntimes.yaml` (tests/schemas, source in SOURCES.md),
closed so that an unknown field fails; the kserve client models are a second, independent check:
every field must be one the model (or the Kubernetes model it nests) declares.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

BASE = Path(__file__).resolve().parents[3] / "manifests" / "base"


def _crd_schema() -> dict:
    from tests.schema_utils import crd_schema

    return crd_schema("serving.kserve.io_servingruntimes.yaml", "v1alpha1")


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


def _runtimes() -> dict[str, dict]:
    out = {}
    for path in sorted(BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == "ServingRuntime":
                out[doc["metadata"]["name"]] = doc
    return out


def test_base_holds_both_runtimes_and_kustomize_lists_them():
    from mlengine.components.deploy.cluster import OUR_RUNTIME, SERVING_RUNTIME

    assert set(_runtimes()) == {OUR_RUNTIME, SERVING_RUNTIME}
    resources = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    assert "servingruntime-mlengine-server.yaml" in resources and "serving-runtime.yaml" in resources


def test_our_runtime_in_base_is_the_rendered_one():
    from mlengine.components.deploy.cluster import OUR_RUNTIME, render_serving_runtime

    assert _runtimes()[OUR_RUNTIME] == render_serving_runtime()


@pytest.mark.parametrize("name", ["mlengine-server", "mlengine-tensorflow-serving"])
def test_runtime_validates_against_kserves_servingruntime_model(name):
    doc = _runtimes()[name]
    check_strict(doc, "V1alpha1ServingRuntime")
    assert doc["apiVersion"] == "serving.kserve.io/v1alpha1"


def test_the_strict_check_rejects_an_unknown_field():
    from mlengine.components.deploy.cluster import render_serving_runtime

    doc = render_serving_runtime()
    doc["spec"]["containers"][0]["readinesProbe"] = doc["spec"]["containers"][0].pop("readinessProbe")
    with pytest.raises(AssertionError, match="readinesProbe"):
        check_strict(doc, "V1alpha1ServingRuntime")
    doc = render_serving_runtime()
    doc["spec"]["supportedModelFormats"][0]["autoselect"] = True
    with pytest.raises(AssertionError, match="autoselect"):
        check_strict(doc, "V1alpha1ServingRuntime")


@pytest.mark.parametrize("name", ["mlengine-server", "mlengine-tensorflow-serving"])
def test_runtime_validates_against_the_servingruntime_crd(name):
    from tests.schema_utils import errors

    assert errors(_runtimes()[name], _crd_schema()) == []


def test_the_crd_rejects_a_misspelt_field():
    from mlengine.components.deploy.cluster import render_serving_runtime
    from tests.schema_utils import errors

    doc = render_serving_runtime()
    doc["spec"]["containers"][0]["readinesProbe"] = doc["spec"]["containers"][0].pop("readinessProbe")
    assert any("readinesProbe" in problem for problem in errors(doc, _crd_schema()))
