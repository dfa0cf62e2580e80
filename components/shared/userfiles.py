"""Read YAML and JSON files with one-line errors naming the file (spec, search space, configs, states)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mlengine.errors import MlengineError


def read_yaml_file(path: Path, error_cls: type[Exception], what: str) -> Any:
    """Parse ``path``; a missing file or invalid YAML raises ``error_cls('<path>: ...')``."""
    if not path.is_file():
        raise error_cls(f"{path}: {what} file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise error_cls(f"{path}: not valid YAML: {first_line}") from None


def parse_json_object(text: str, where: str, error_cls: type[Exception] = MlengineError) -> dict[str, Any]:
    """A JSON object from ``text``; anything else raises ``error_cls('<where>: ...')``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise error_cls(f"{where}: not valid JSON: {err.msg} (line {err.lineno} column {err.colno})") from None
    if not isinstance(raw, dict):
        raise error_cls(f"{where}: expected a JSON object, got {type(raw).__name__}")
    return raw


def read_json_object(path: str | Path, error_cls: type[Exception] = MlengineError, what: str = "JSON"
                     ) -> dict[str, Any]:
    """Read a JSON object file: a missing file, bad encoding or bad JSON is one line naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_cls(f"{path}: {what} file not found") from None
    except UnicodeDecodeError:
        raise error_cls(f"{path}: not UTF-8 text") from None
    return parse_json_object(text, str(path), error_cls)
