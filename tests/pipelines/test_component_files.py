"""One component YAML per component (``mlengine compile --components``) and each folder's generated README.

The READMEs are goldens of the components' docstrings and signatures: after changing a component,
rewrite them with ``mlengine compile --component-docs`` (or ``MLENGINE_UPDATE_GOLDEN=1`` and this
test) and commit them with the change.
"""

import os

import pytest

from mlengine.components import COMPONENTS
from mlengine.constants import image_for
from mlengine.pipelines import component_files
from mlengine.version import __version__

UPDATE = os.environ.get("MLENGINE_UPDATE_GOLDEN") == "1"
REGISTRY = "registry.example.com:5000/ml"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from mlengine.cli import main

    out = tmp_path_factory.mktemp("components")
    assert main(["compile", "--components", str(out), "--image-registry", REGISTRY]) == 0
    return out


def test_one_yaml_per_component_and_nothing_else(compiled):
    assert sorted(p.name for p in compiled.iterdir()) == sorted(f"{folder}.yaml" for folder in COMPONENTS.values())


@pytest.mark.parametrize("public_name", list(COMPONENTS))
def test_each_yaml_loads_as_the_component_pinned_to_the_versioned_image(compiled, public_name):
    from kfp.components import load_component_from_file

    original = component_files.component(public_name).component_spec
    loaded = load_component_from_file(str(compiled / component_files.component_yaml_name(public_name)))
    spec = loaded.component_spec
    assert spec.name == original.name
    assert spec.inputs.keys() == original.inputs.keys()
    assert spec.outputs.keys() == original.outputs.keys()
    for name, item in original.inputs.items():
        assert (spec.inputs[name].optional, spec.inputs[name].default) == (item.optional, item.default), name
    container = spec.implementation.container
    assert container.image == image_for("pipeline", REGISTRY) == f"{REGISTRY}/mlengine-pipeline:{__version__}"
    assert not container.env  # kfp cannot compose a loaded component that has one
    assert original.implementation.container.image != container.image  # the exported component is untouched


def test_a_loaded_component_composes_into_a_pipeline_that_compiles(compiled, tmp_path):
    from kfp import compiler, dsl
    from kfp.components import load_component_from_file

    ingest = load_component_from_file(str(compiled / "ingest.yaml"))
    monitor = load_component_from_file(str(compiled / "monitor.yaml"))

    @dsl.pipeline(name="two-of-the-suite")
    def two(data_uri: str, serving_log_uri: str):
        ingested = ingest(data_uri=data_uri, spec_uri="", split_seed=0)
        monitor(statistics=ingested.outputs["statistics"], serving_log_uri=serving_log_uri, thresholds="")

    compiler.Compiler().compile(two, str(tmp_path / "two.yaml"))
    text = (tmp_path / "two.yaml").read_text(encoding="utf-8")
    assert "comp-ingest" in text and "comp-monitor" in text and f"{REGISTRY}/mlengine-pipeline" in text


def test_compile_without_a_destination_is_a_one_line_error(capsys):
    from mlengine.cli import main

    assert main(["compile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--components DIR" in err[0]


def test_component_readmes_match_their_components():
    if UPDATE:
        component_files.write_readmes()
    stale = component_files.stale_readmes()
    assert stale == [], (f"{stale}: regenerate with `mlengine compile --component-docs` (or "
                         "MLENGINE_UPDATE_GOLDEN=1) and commit the READMEs with the change")


@pytest.mark.parametrize("public_name", list(COMPONENTS))
def test_a_readme_lists_every_input_and_output_with_its_description(public_name):
    spec = component_files.component(public_name).component_spec
    block = component_files.render_readme_block(public_name)
    assert block.startswith(component_files.BEGIN) and block.rstrip().endswith(component_files.END)
    assert f"from mlengine.components import {public_name}" in block
    for name, item in spec.inputs.items():
        assert f"| `{name}` |" in block
        if item.description:
            assert " ".join(item.description.split())[:40] in block, name
    for name in spec.outputs:
        assert f"| `{name}` |" in block


def test_the_generated_block_is_replaced_in_place_and_hand_written_text_kept(tmp_path):
    block = component_files.render_readme_block("IngestOp")
    assert component_files.readme_with_block(None, block) == block
    hand = "# ingest\n\nNotes a person wrote.\n"
    first = component_files.readme_with_block(hand, block)
    assert first == block + "\n" + hand
    edited = first.replace("Stream raw CSV", "Something stale")
    assert component_files.readme_with_block(edited, block) == first
