"""Both ServingRuntimes of manifests/base against the ServingRuntime CRD and kserve's own models.

The CRD is kserve's `serving.kserve.io_servingruntimes.yaml` (tests/schemas, source in SOURCES.md),
closed so that an unknown field fails; the kserve client models are a second, independent check:
every field must be one the model (or the Kubernetes model it nests) declares.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.schema_utils import check_strict

BASE = Path(__file__).resolve().parents[3] / "manifests" / "base"


def _crd_schema() -> dict:
    from tests.schema_utils import crd_schema

    return crd_schema("serving.kserve.io_servingruntimes.yaml", "v1alpha1")


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
