"""The compiled pipelines, both targets, against committed goldens.

kfp keeps compiled samples next to its compiler tests (``test_data/sdk_compiled_pipelines``) for
the same reason: a refactor that changes no behaviour must change no pipeline, and a deliberate
change shows up as a golden diff in the same commit. Two checks per file:

- the structure (DAG, inputs and outputs, types, images, environment, platform spec) with each
  lightweight component's embedded Python program masked: what Kubeflow schedules and shows;
- the whole text, programs included: a change to a component's body is a golden update too.

After a deliberate change rewrite the goldens with
``MLENGINE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/pipelines/test_golden.py`` and read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mlengine.constants import ENV_IMAGE_REGISTRY
from mlengine.pipelines.platform import PIPELINE_FILES, TARGETS, Target, pipeline_file

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MLENGINE_UPDATE_GOLDEN") == "1"
NAMES = sorted(pipeline_file(kind, Target(target)) for kind in PIPELINE_FILES for target in TARGETS)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    """{file name: path} of both pipelines compiled for both targets, with the default registry."""
    from mlengine.pipelines.platform import compile_for

    saved = os.environ.pop(ENV_IMAGE_REGISTRY, None)
    try:
        out = tmp_path_factory.mktemp("compiled")
        paths = [Path(path) for target in TARGETS for path in compile_for(Target(target), out).values()]
    finally:
        if saved is not None:
            os.environ[ENV_IMAGE_REGISTRY] = saved
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        for path in paths:
            (GOLDEN / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return {path.name: path for path in paths}


def masked(text: str) -> list[dict]:
    """The YAML's documents with every embedded component program replaced by its function's name."""
    documents = list(yaml.safe_load_all(text))
    for document in documents:
        executors = (document or {}).get("deploymentSpec", {}).get("executors", {})
        for executor in executors.values():
            container = executor.get("container", {})
            command = container.get("command", [])
            if command and "def " in command[-1]:
                args = container.get("args", [])
                function = args[args.index("--function_to_execute") + 1] if "--function_to_execute" in args else "?"
                command[-1] = f"<the program of {function}>"
    return documents


def test_the_goldens_are_the_compiled_pipelines(compiled):
    assert sorted(compiled) == NAMES
    assert sorted(path.name for path in GOLDEN.glob("*.yaml")) == NAMES


def test_masking_hides_only_the_programs():
    text = (GOLDEN / NAMES[0]).read_text(encoding="utf-8")
    assert masked(text) != list(yaml.safe_load_all(text))  # there are programs to mask
    assert masked(text.replace("import kfp", "import kfp  # edited")) == masked(text)
    assert masked(text.replace("mlengine-pipeline:", "mlengine-pipeline-x:")) != masked(text)


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_structure_equals_its_golden(compiled, name):
    expected = masked((GOLDEN / name).read_text(encoding="utf-8"))
    assert masked(compiled[name].read_text(encoding="utf-8")) == expected, (
        f"{name}: the DAG, interface or platform spec changed against tests/pipelines/golden/{name}")


@pytest.mark.parametrize("name", NAMES)
def test_compiled_yaml_equals_its_golden(compiled, name):
    expected = (GOLDEN / name).read_text(encoding="utf-8")
    assert compiled[name].read_text(encoding="utf-8") == expected, (
        f"{name} differs from tests/pipelines/golden/{name}; if the change is meant, rewrite the goldens with "
        "MLENGINE_UPDATE_GOLDEN=1 and commit the diff")
