"""Read a user's YAML file with one-line errors naming the file (spec, search space, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_file(path: Path, error_cls: type[Exception], what: str) -> Any:
    """Parse ``path``; a missing file or invalid YAML raises ``error_cls('<path>: ...')``."""
    if not path.is_file():
        raise error_cls(f"{path}: {what} file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise error_cls(f"{path}: not valid YAML: {first_line}") from None
