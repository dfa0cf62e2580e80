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
    except UnicodeDecodeError as err:
        raise error_cls(f"{path}: not UTF-8 text (byte {err.start + 1})") from None
    except yaml.YAMLError as err:
        raise error_cls(f"{path}: not valid YAML{yaml_error_text(err)}") from None


def yaml_error_text(err: Exception) -> str:
    """`` at line 3, column 7: found unexpected end of stream (while parsing a flow sequence)``.

    PyYAML's own message spans several lines with a snippet; its marks (0-based) carry the
    place. The problem mark says where the parser gave up, the context what it was reading.
    """
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None)
    context = getattr(err, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    if problem:
        what = problem + (f" ({context})" if context else "")
    else:
        lines = str(err).strip().splitlines()
        what = lines[0] if lines else type(err).__name__
    return f"{where}: {what}"


def parse_json_object(text: str, where: str, error_cls: type[Exception] = MlengineError) -> dict[str, Any]:
    """A JSON object from ``text``; anything else raises ``error_cls('<where>: ...')``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise error_cls(f"{where}: not valid JSON: {err.msg} (line {err.lineno} column {err.colno})") from None
    if not isinstance(raw, dict):
        raise error_cls(f"{where}: expected a JSON object, got {type(raw).__name__}")
    return raw


def read_json_object(path: str | Path, error_cls: type[Exception] = MlengineError, what: str = "JSON",
                     file_name: str | None = None) -> dict[str, Any]:
    """Read a JSON object file (or ``path/file_name`` when ``path`` is a folder, e.g. an artifact).

    A missing file, bad encoding or bad JSON is one line naming the file.
    """
    path = Path(path)
    if file_name and path.is_dir():
        path = path / file_name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_cls(f"{path}: {what} file not found") from None
    except UnicodeDecodeError:
        raise error_cls(f"{path}: not UTF-8 text") from None
    return parse_json_object(text, str(path), error_cls)
