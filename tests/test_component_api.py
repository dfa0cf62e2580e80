"""``mlengine.components`` exports every component under one stable name, and loads kfp only for them."""

from __future__ import annotations

import subprocess
import sys

import pytest

EXPECTED = {"IngestOp": "ingest", "TransformOp": "transform", "TuneOp": "tune", "TrainOp": "train",
            "EvaluateOp": "evaluate", "DeployOp": "deploy", "BatchPredictOp": "batch-predict", "MonitorOp": "monitor"}


def _modules_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after ``statement``."""
    probe = f"{statement}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", [
    "import mlengine.components",
    "import mlengine.components.shared.featurespec",
    "from mlengine.components.shared import analyze, processes, storage",
    "from mlengine.components.train import executor",
    "from mlengine.components import ingest",  # the subpackage, not IngestOp
])
def test_the_package_and_the_logic_modules_import_without_kfp(statement):
    assert "kfp" not in _modules_after(statement)


def test_a_component_name_loads_its_component():
    assert "kfp" in _modules_after("from mlengine.components import TrainOp")


def test_every_component_under_its_stable_name():
    from kfp.dsl.python_component import PythonComponent

    import mlengine.components as api

    assert api.__all__ == list(EXPECTED)
    for public_name, kfp_name in EXPECTED.items():
        op = getattr(api, public_name)
        assert isinstance(op, PythonComponent)
        assert op.component_spec.name == kfp_name
    namespace: dict = {}
    exec("from mlengine.components import *", namespace)
    assert set(EXPECTED) <= set(namespace)
    assert set(EXPECTED) <= set(dir(api))


def test_the_stable_name_is_the_component_the_pipelines_use():
    from mlengine.components import TrainOp
    from mlengine.components.train.component import train

    assert TrainOp is train


def test_an_unknown_name_is_an_attribute_error():
    import mlengine.components as api

    with pytest.raises(AttributeError, match="NoSuchOp"):
        api.NoSuchOp  # noqa: B018 (the access is the test)
    with pytest.raises(ImportError):
        exec("from mlengine.components import NoSuchOp", {})
