"""Docs/feature-spec.md documents every key of the schema the loader validates with.

The reference table (``## Every key``) must list exactly the schema's keys, each with the
schema's type, required flag and default, an example that the key's own schema accepts, and a
meaning; the enums in the schema are the loader's constants.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from mlengine.components.shared import featurespec
from mlengine.components.shared.featurespec import load_spec, spec_from_dict, spec_schema

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "feature-spec.md"
NO_DEFAULT = "–"


def _resolve(schema: dict, node: dict) -> dict:
    """A node with its $ref merged in (the node's own keywords win)."""
    if "$ref" not in node:
        return node
    target = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    merged = {**_resolve(schema, target), **{k: v for k, v in node.items() if k != "$ref"}}
    return merged


def _type_text(schema: dict, node: dict) -> str:
    node = _resolve(schema, node)
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kinds = node.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or ["any"])
    if "array" in kinds and "items" in node:
        item = _resolve(schema, node["items"])
        inner = item.get("type") or "any"
        inner = "mapping" if inner == "object" else " or ".join([inner] if isinstance(inner, str) else inner)
        kinds[kinds.index("array")] = f"list of {inner}"
    return " \\| ".join("mapping" if k == "object" else k for k in kinds)


def schema_rows(schema: dict) -> list[tuple[str, str, str, str, dict]]:
    """(key path, type, required, default, node) for every key, depth first in schema order."""
    rows = []

    def walk(node: dict, prefix: str) -> None:
        node = _resolve(schema, node)
        if node.get("type") == "array" or "array" in (node.get("type") or []):
            items = _resolve(schema, node.get("items", {}))
            if items.get("type") == "object":
                walk(items, prefix + "[]")
            return
        required = set(node.get("required", []))
        for key, child in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            resolved = _resolve(schema, child)
            default = json.dumps(resolved["default"]) if "default" in resolved else NO_DEFAULT
            rows.append((path, _type_text(schema, child), "yes" if key in required else "no", default, resolved))
            walk(child, path)

    walk(schema, "")
    return rows


def doc_rows() -> dict[str, list[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Every key", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_every_schema_key_is_documented_with_its_type_required_flag_and_default():
    expected = schema_rows(spec_schema())
    documented = doc_rows()
    assert list(documented) == [path for path, *_ in expected]  # the same keys, in the schema's order
    for path, type_text, required, default, _ in expected:
        doc_type, doc_required, doc_default, example, meaning = documented[path]
        assert (doc_type, doc_required, doc_default.strip("`")) == (type_text, required, default), path
        assert example.startswith("`") and meaning, path


def test_every_documented_example_is_valid_for_its_key():
    schema = spec_schema()
    documented = doc_rows()
    for path, *_, node in schema_rows(schema):
        example = yaml.safe_load(documented[path][3].strip("`"))
        subschema = {**node, "$defs": schema["$defs"]}
        jsonschema.validate(example, subschema)  # raises naming the key's schema when the example is wrong


def test_the_schema_enums_are_the_loaders_constants():
    schema = spec_schema()
    assert schema["$defs"]["column"]["properties"]["type"]["enum"] == list(featurespec.COLUMN_TYPES)
    assert schema["$defs"]["derived"]["properties"]["op"]["enum"] == list(featurespec.DERIVED_OPS)
    assert set(schema["properties"]["label_transform"]["enum"]) == set(featurespec.LABEL_TRANSFORMS)
    assert schema["properties"]["label_transform"]["default"] == featurespec.DEFAULT_LABEL_TRANSFORM
    assert schema["properties"]["embedding_dim"]["default"] == featurespec.DEFAULT_EMBEDDING_DIM
    assert schema["properties"]["delimiter"]["default"] == featurespec.DEFAULT_DELIMITER
    assert schema["properties"]["reject_warning_share"]["default"] == featurespec.DEFAULT_REJECT_WARNING_SHARE


def test_the_full_example_in_the_doc_loads(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    block = text.split("## A complete example", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(block)
    spec = load_spec(path)
    assert spec_from_dict(yaml.safe_load(spec.to_yaml())) == spec
