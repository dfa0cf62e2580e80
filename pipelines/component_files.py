"""The suite's components as files: one component YAML each, and each folder's README from its docstring.

``mlengine compile --components DIR`` writes ``DIR/<folder>.yaml`` for every component
``mlengine.components`` exports, each loadable with ``kfp.components.load_component_from_file``
and pinned, like the pipelines' steps, to the versioned pipeline image of the registry the
target names. The YAML carries no environment: kfp 2.17 cannot put a loaded component with an
``env`` into a pipeline. A step that renders cluster resources (TFJobs, Katib trials,
InferenceServices) names the images of ``$MLENGINE_IMAGE_REGISTRY``; set it on such a task
(``task.set_env_variable``) when the registry is not the default, as ``platform.finish`` does.

``mlengine compile --component-docs`` rewrites the generated block of every
``components/<folder>/README.md`` from the component's docstring and signature (what it does,
inputs with their descriptions, outputs, a usage snippet); tests/pipelines/test_components.py
regenerates them in memory and fails when a README has drifted.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from mlengine.components import COMPONENTS
from mlengine.constants import image_for

COMPONENTS_ROOT = Path(__file__).resolve().parents[1] / "components"
README_FILE = "README.md"
BEGIN = "<!-- BEGIN GENERATED: mlengine compile --component-docs (edit the component's docstring, not this block) -->"
END = "<!-- END GENERATED -->"
PARAMETER_TYPES = {"String": "str", "Integer": "int", "Float": "float", "Boolean": "bool", "Struct": "dict",
                   "List": "list"}
_ARTIFACT_TYPE = re.compile(r"^system\.(\w+)@")


def component(public_name: str):
    """The KFP component exported as ``public_name`` (``IngestOp`` ...)."""
    import mlengine.components

    return getattr(mlengine.components, public_name)


def component_yaml_name(public_name: str) -> str:
    return f"{COMPONENTS[public_name]}.yaml"


def pinned(public_name: str, registry: str):
    """A copy of the component whose container is the versioned pipeline image of ``registry``."""
    pinned_component = copy.deepcopy(component(public_name))
    pinned_component.component_spec.implementation.container.image = image_for("pipeline", registry)
    return pinned_component


def compile_components(out_dir, registry: str) -> dict[str, str]:
    """Write one component YAML per exported component into ``out_dir``; returns {public name: path}."""
    from kfp import compiler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for public_name in COMPONENTS:
        path = out / component_yaml_name(public_name)
        compiler.Compiler().compile(pinned(public_name, registry), str(path))
        written[public_name] = str(path)
    return written


# --- READMEs -----------------------------------------------------------------------------------
def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _type_name(spec_type: str) -> str:
    artifact = _ARTIFACT_TYPE.match(spec_type)
    if artifact:
        return "Artifact" if artifact.group(1) == "Artifact" else f"{artifact.group(1)} artifact"
    return PARAMETER_TYPES.get(spec_type, spec_type)


def _producers() -> dict[str, str]:
    """{output name: the folder of the first component (in pipeline order) that outputs it}."""
    found: dict[str, str] = {}
    for public_name, folder in COMPONENTS.items():
        for name in component(public_name).component_spec.outputs or {}:
            found.setdefault(name, folder)
    return found


def _usage(public_name: str) -> list[str]:
    spec = component(public_name).component_spec
    producers = _producers()
    arguments = []
    for name, item in (spec.inputs or {}).items():
        if item.optional:
            continue
        producer = producers.get(name) if _ARTIFACT_TYPE.match(item.type) else None
        value = f'{producer}_task.outputs["{name}"]' if producer and producer != COMPONENTS[public_name] else "..."
        arguments.append(f"{name}={value}")
    folder = COMPONENTS[public_name]
    call = f"    {folder}_task = {public_name}("
    lines, line = [], call
    for index, argument in enumerate(arguments):
        piece = argument + (", " if index < len(arguments) - 1 else ")")
        if len(line) + len(piece) > 100 and line != call:
            lines.append(line.rstrip())
            line = " " * len(call)
        line += piece
    lines.append(line if arguments else call + ")")
    return ["```python", "from kfp import dsl", "", f"from mlengine.components import {public_name}", "",
            "", "@dsl.pipeline", "def my_pipeline():", "    ...", *lines, "```"]


def render_readme_block(public_name: str) -> str:
    """The generated part of ``components/<folder>/README.md``, from the component's docstring and signature."""
    import docstring_parser

    op = component(public_name)
    spec = op.component_spec
    folder = COMPONENTS[public_name]
    doc = docstring_parser.parse(op.python_func.__doc__ or "")
    described = {param.arg_name: param.description for param in doc.params}
    lines = [BEGIN, f"# {public_name} (`{folder}`)", "", _one_line(doc.short_description)]
    if doc.long_description:
        lines += ["", _one_line(doc.long_description)]
    lines += ["", "## Use", "",
              f"`from mlengine.components import {public_name}` in a pipeline of your own (the `...` are your "
              "values; the artifacts come from the steps named):", "", *_usage(public_name), "",
              f"Or as a file: `mlengine compile --components DIR` writes `DIR/{component_yaml_name(public_name)}`, "
              f"pinned to the versioned pipeline image; `kfp.components.load_component_from_file"
              f"(\"DIR/{component_yaml_name(public_name)}\")` loads it. docs/components.md has the details.",
              "", "## Inputs", "", "| name | type | default | description |", "| --- | --- | --- | --- |"]
    for name, item in (spec.inputs or {}).items():
        default = f"`{item.default!r}`" if item.optional else "required"
        lines.append(f"| `{name}` | {_type_name(item.type)} | {default} | {_one_line(described.get(name))} |")
    lines += ["", "## Outputs", "", "| name | type | description |", "| --- | --- | --- |"]
    returned = _one_line(doc.returns.description) if doc.returns else ""
    for name, item in (spec.outputs or {}).items():
        # a ``Returns:`` section describes the single return value; NamedTuple fields have no docstring entry
        text = (_one_line(described.get(name)) or (returned if name == "Output" else "")
                or "returned by the component (see the description above)")
        lines.append(f"| `{name}` | {_type_name(item.type)} | {text} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def readme_path(public_name: str, root: Path = COMPONENTS_ROOT) -> Path:
    return Path(root) / COMPONENTS[public_name] / README_FILE


def readme_with_block(current: str | None, block: str) -> str:
    """``current`` with its generated block replaced by ``block`` (put first when it has none: the
    hand-written part of a README follows the generated one)."""
    if not current:
        return block
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        return head + block.rstrip("\n") + rest.split(END, 1)[1]
    return block + "\n" + current


def stale_readmes(root: Path = COMPONENTS_ROOT) -> list[str]:
    """The READMEs whose generated block differs from what the components say now."""
    stale = []
    for public_name in COMPONENTS:
        path = readme_path(public_name, root)
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != readme_with_block(current, render_readme_block(public_name)):
            stale.append(str(path))
    return stale


def write_readmes(root: Path = COMPONENTS_ROOT) -> dict[str, str]:
    """Rewrite every component README's generated block; returns {public name: path}."""
    written: dict[str, Any] = {}
    for public_name in COMPONENTS:
        path = readme_path(public_name, root)
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        path.write_text(readme_with_block(current, render_readme_block(public_name)), encoding="utf-8")
        written[public_name] = str(path)
    return written
