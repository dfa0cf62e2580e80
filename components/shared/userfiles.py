"""Read YAML and JSON files with one-line errors naming the file (spec, search space, configs, states)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mlengine.constants import MAX_JSON_DEPTH, MAX_USER_FILE_BYTES
from mlengine.errors import MlengineError


class AliasRefused(yaml.YAMLError):
    """A YAML alias or anchor: refused so a small file cannot expand into gigabytes (billion laughs)."""

    def __init__(self, kind: str, mark: Any) -> None:
        super().__init__(kind)
        self.kind = kind
        self.mark = mark


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses anchors and aliases before anything is expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise AliasRefused(f"YAML alias *{event.anchor} refused", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise AliasRefused(f"YAML anchor &{anchor} refused", event.start_mark)
        return super().compose_node(parent, index)


def safe_yaml_load(text: str, where: str, error_cls: type[Exception] = MlengineError,
                   *, max_bytes: int = MAX_USER_FILE_BYTES) -> Any:
    """One YAML document from user text: size-capped, anchors/aliases refused, errors as one line."""
    return _load_yaml(text, where, error_cls, max_bytes, all_documents=False)


def safe_yaml_load_all(text: str, where: str, error_cls: type[Exception] = MlengineError,
                       *, max_bytes: int = MAX_USER_FILE_BYTES) -> list[Any]:
    """Every YAML document in ``text``, with the same limits as :func:`safe_yaml_load`."""
    return _load_yaml(text, where, error_cls, max_bytes, all_documents=True)


def _load_yaml(text: str, where: str, error_cls: type[Exception], max_bytes: int, all_documents: bool) -> Any:
    if len(text) > max_bytes:
        raise error_cls(f"{where}: {len(text)} characters, over the {max_bytes}-byte limit for a YAML file")
    try:
        if all_documents:
            return list(yaml.load_all(text, Loader=_NoAliasLoader))
        return yaml.load(text, Loader=_NoAliasLoader)
    except AliasRefused as err:
        raise error_cls(f"{where}: {err.kind} at line {err.mark.line + 1} (anchors and aliases are not "
                        "accepted; write the values out)") from None
    except RecursionError:
        raise error_cls(f"{where}: YAML nested too deeply") from None
    except yaml.YAMLError as err:
        raise error_cls(f"{where}: not valid YAML{yaml_error_text(err)}") from None


def read_text_capped(path: Path, error_cls: type[Exception], what: str,
                     max_bytes: int = MAX_USER_FILE_BYTES) -> str:
    """The UTF-8 text of a user file no larger than ``max_bytes``; otherwise one line naming the file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise error_cls(f"{path}: {what} file not found") from None
    if size > max_bytes:
        raise error_cls(f"{path}: {size} bytes, over the {max_bytes}-byte limit for a {what} file")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error_cls(f"{path}: not UTF-8 text (byte {err.start + 1})") from None


def read_yaml_file(path: Path, error_cls: type[Exception], what: str) -> Any:
    """Parse ``path``; a missing, oversized, aliased or invalid YAML file raises ``error_cls('<path>: ...')``."""
    if not path.is_file():
        raise error_cls(f"{path}: {what} file not found")
    return safe_yaml_load(read_text_capped(path, error_cls, what), str(path), error_cls)


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
    """A JSON object from ``text``; anything else raises ``error_cls('<where>: ...')``.

    The text is capped in size and in nesting depth (checked before parsing, so a deep document
    cannot exhaust the stack).
    """
    if len(text) > MAX_USER_FILE_BYTES:
        raise error_cls(f"{where}: {len(text)} characters, over the {MAX_USER_FILE_BYTES}-byte limit for JSON")
    depth = json_nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise error_cls(f"{where}: JSON nested {depth} levels deep, over the limit of {MAX_JSON_DEPTH}")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise error_cls(f"{where}: not valid JSON: {err.msg} (line {err.lineno} column {err.colno})") from None
    except RecursionError:
        raise error_cls(f"{where}: JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise error_cls(f"{where}: expected a JSON object, got {type(raw).__name__}")
    return raw


def json_nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting in JSON ``text``, brackets inside strings ignored (one linear scan)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def read_json_object(path: str | Path, error_cls: type[Exception] = MlengineError, what: str = "JSON",
                     file_name: str | None = None) -> dict[str, Any]:
    """Read a JSON object file (or ``path/file_name`` when ``path`` is a folder, e.g. an artifact).

    A missing file, bad encoding or bad JSON is one line naming the file.
    """
    path = Path(path)
    if file_name and path.is_dir():
        path = path / file_name
    text = read_text_capped(path, error_cls, what)
    return parse_json_object(text, str(path), error_cls)
