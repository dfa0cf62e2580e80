"""The user's model module: a Python file whose ``build_model(features, hp)`` is the network's body.

The contract (docs/own-model.md): the file defines ``build_model(features, hp)`` returning a
float tensor ``[batch, k]`` (mlengine puts the task's head and loss on it) and, optionally,
``HYPERPARAMETERS``: name -> ``{"default", "min", "max"[, "step"][, "log"]}`` (a float or int
range) or ``{"default", "values": [...]}`` (a choice). Those join the tuning search space next to
the built-in ones and are passed to ``build_model`` in ``hp`` with ``nbuckets``,
``learning_rate`` and ``batch_size``.

This module reads, imports and checks the file without TensorFlow (the build check on a tiny
batch is train's ``model_module.check_model_module``), types hyperparameter values, and writes
the module ARTIFACT: a folder with the file and ``model_module.json`` (its name, digest and
declared hyperparameters; ``{"file": null}`` for a run without a module). That folder is what
travels with a run: a local path, or an ``s3://`` prefix in the pipeline root on a cluster.
Every problem is one line naming the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlengine.constants import MAX_USER_FILE_BYTES
from mlengine.errors import MlengineError

MANIFEST_FILE = "model_module.json"
ENTRY_POINT = "build_model"
DECLARATION = "HYPERPARAMETERS"
# the built-in hyperparameters a module's build_model sees in hp (hidden_units is the built-in network's)
BUILTIN_FOR_MODULE = ("nbuckets", "learning_rate", "batch_size")
BUILTIN_NAMES = ("nbuckets", "hidden_units", "learning_rate", "batch_size", "class_weight")
ENTRY_KEYS = ("default", "min", "max", "step", "log", "values")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ModelModuleError(MlengineError, ValueError):
    """A model module that cannot be used; one line naming the file."""


@dataclass(frozen=True)
class ModuleParameter:
    """One entry of a module's HYPERPARAMETERS, typed like a search-space parameter."""

    name: str
    type: str  # "int" | "double" | "categorical"
    default: Any
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    log: bool = False
    values: tuple[Any, ...] | None = None

    def space_entry(self) -> dict[str, Any]:
        """The entry as a search-space YAML parameter (space_loader's format)."""
        if self.type == "categorical":
            return {"type": "categorical", "values": list(self.values)}
        out: dict[str, Any] = {"type": self.type, "min": self.min, "max": self.max}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default, **self.space_entry()}

    def coerce(self, value: Any, where: str) -> Any:
        """``value`` (a typed value, a string from ``--hp``, a float from a KFP dict) as this parameter's type."""
        if self.type == "categorical":
            for choice in self.values:
                if (type(choice) is type(value) and choice == value) or str(choice) == str(value) or (
                        _is_number(choice) and _is_number(value) and float(choice) == float(value)):
                    return choice
            raise ModelModuleError(f"{where}: {self.name}={value!r} is not one of {list(self.values)}")
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ModelModuleError(f"{where}: {self.name}={value!r} is not a number") from None
        if not _is_number(number) or not math.isfinite(number):
            raise ModelModuleError(f"{where}: {self.name}={value!r} is not a number")
        if self.type == "int":
            if float(number) != int(number):
                raise ModelModuleError(f"{where}: {self.name}={value!r} is not a whole number")
            number = int(number)
        else:
            number = float(number)
        if not self.min <= number <= self.max:
            raise ModelModuleError(f"{where}: {self.name}={value!r} is outside [{self.min}, {self.max}]")
        return number


@dataclass(frozen=True)
class LoadedModule:
    """An imported, checked model module."""

    path: Path
    module: types.ModuleType
    parameters: dict[str, ModuleParameter]
    sha256: str
    shown: str = ""  # how errors name the file: the user's path or URI (the copy in an artifact is read)

    @property
    def name(self) -> str:
        return self.path.name

    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.parameters.items()}

    def values(self, given: dict[str, Any] | None = None, where: str | None = None) -> dict[str, Any]:
        """Every module hyperparameter: the defaults with ``given`` applied (typed, checked, unknown names refused)."""
        return {**self.defaults(), **self.typed(given or {}, where)}

    def typed(self, given: dict[str, Any], where: str | None = None) -> dict[str, Any]:
        where = where or self.shown or str(self.path)
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            declared = ", ".join(self.parameters) or "none"
            raise ModelModuleError(f"{where}: unknown hyperparameter {unknown[0]!r}; the module declares {declared}")
        return {name: self.parameters[name].coerce(value, where) for name, value in given.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- locating and reading -----------------------------------------------------------------------
def module_file(path_or_dir: str | Path | None) -> Path | None:
    """The module's file: ``path_or_dir`` when it is a file; in a module artifact folder the file its
    manifest names (None when the run has no module); None for "" / None."""
    if not path_or_dir:
        return None
    path = Path(path_or_dir)
    if path.is_dir():
        manifest = read_manifest(path)
        return path / manifest["file"] if manifest.get("file") else None
    if not path.is_file():
        raise ModelModuleError(f"{path}: model module not found")
    return path


def module_digest(path_or_dir: str | Path | None) -> str | None:
    """The SHA-256 of the module file's content (None without a module)."""
    path = module_file(path_or_dir)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise ModelModuleError(f"{directory}: not a model module folder (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ModelModuleError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise ModelModuleError(f"{path}: expected a JSON object")
    return manifest


def read_source(uri: str | Path) -> tuple[str, bytes]:
    """``(file name, bytes)`` of a module file: a local path, or an ``s3://`` / ``minio://`` object."""
    text = str(uri)
    from mlengine.components.shared.staging import is_remote, normalize_uri

    if is_remote(text):
        from mlengine.components.shared import storage

        with storage.open_binary(normalize_uri(text)) as handle:
            data = handle.read(MAX_USER_FILE_BYTES + 1)
        name = normalize_uri(text).rstrip("/").rsplit("/", 1)[-1]
    else:
        path = Path(text)
        if not path.is_file():
            raise ModelModuleError(f"{path}: model module not found")
        with path.open("rb") as handle:
            data = handle.read(MAX_USER_FILE_BYTES + 1)
        name = path.name
    if len(data) > MAX_USER_FILE_BYTES:
        raise ModelModuleError(f"{uri}: over the {MAX_USER_FILE_BYTES}-byte limit for a model module")
    if not name.endswith(".py"):
        raise ModelModuleError(f"{uri}: a model module is a Python file ending in .py")
    return name, data


# --- importing and checking -----------------------------------------------------------------------
def load_module(path_or_dir: str | Path, shown: str | None = None) -> LoadedModule:
    """Import the module file (or the one in a module artifact folder) and check its contract.

    Raises ``ModelModuleError`` naming the file (``shown``, else the source an artifact folder
    records, else the path) for: a syntax error (with its line), an exception while importing, a
    missing or non-callable ``build_model``, a malformed ``HYPERPARAMETERS``.
    """
    path = module_file(path_or_dir)
    if path is None:
        raise ModelModuleError(f"{path_or_dir}: the run has no model module")
    if shown is None and Path(path_or_dir).is_dir():
        shown = read_manifest(path_or_dir).get("source")
    shown = str(shown or path)
    data = path.read_bytes()
    if len(data) > MAX_USER_FILE_BYTES:
        raise ModelModuleError(f"{shown}: over the {MAX_USER_FILE_BYTES}-byte limit for a model module")
    try:
        code = compile(data, str(path), "exec")
    except SyntaxError as err:
        raise ModelModuleError(f"{shown}:{err.lineno}: syntax error: {err.msg}") from None
    except ValueError as err:  # null bytes
        raise ModelModuleError(f"{shown}: not Python source ({err})") from None
    digest = hashlib.sha256(data).hexdigest()
    name = f"mlengine_model_module_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling inside the module look themselves up there
    try:
        exec(code, module.__dict__)  # the compiled code: the lines in errors are the file's
    except Exception as err:
        sys.modules.pop(name, None)
        raise ModelModuleError(f"{shown}{_line_in(err, path)}: importing it raised {_describe(err)}") from err
    entry = getattr(module, ENTRY_POINT, None)
    if entry is None:
        raise ModelModuleError(f"{shown}: defines no {ENTRY_POINT}(features, hp)")
    if not callable(entry):
        raise ModelModuleError(f"{shown}: {ENTRY_POINT} is a {type(entry).__name__}, not a function")
    parameters = parse_hyperparameters(getattr(module, DECLARATION, None), shown)
    return LoadedModule(path=path, module=module, parameters=parameters, sha256=digest, shown=shown)


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _line_in(err: BaseException, path: Path) -> str:
    """``:<line>`` of the deepest frame of ``err`` inside ``path`` (empty when none is)."""
    line = None
    tb = err.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f":{line}" if line else ""


def call_error(err: BaseException, loaded: LoadedModule, what: str) -> ModelModuleError:
    """The one line for an exception raised by the module's code (``what``: where it was called)."""
    return ModelModuleError(f"{loaded.shown}{_line_in(err, loaded.path)}: {what} raised {_describe(err)}")


def parse_hyperparameters(raw: Any, source: str) -> dict[str, ModuleParameter]:
    """``HYPERPARAMETERS`` as typed parameters; a malformed entry is one line naming the file and the entry."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ModelModuleError(f"{source}: {DECLARATION} must be a dict of name -> entry, got {type(raw).__name__}")
    return {name: _parameter(source, name, entry) for name, entry in raw.items()}


def _parameter(source: str, name: Any, entry: Any) -> ModuleParameter:
    where = f"{source}: {DECLARATION}[{name!r}]"

    def fail(message: str):
        raise ModelModuleError(f"{where}: {message}")

    if not isinstance(name, str) or not _NAME.match(name):
        fail("a hyperparameter name is a Python identifier (letters, digits, _)")
    if name in BUILTIN_NAMES:
        fail(f"{name} is a built-in hyperparameter; the module gets it in hp without declaring it")
    if not isinstance(entry, dict):
        fail(f"expected a dict like {{'default': 0.1, 'min': 0.0, 'max': 0.5}}, got {entry!r}")
    unknown = sorted(str(k) for k in set(entry) - set(ENTRY_KEYS))
    if unknown:
        fail(f"unknown key {unknown[0]!r}; allowed: {', '.join(ENTRY_KEYS)}")
    if "default" not in entry:
        fail("has no 'default'")
    default = entry["default"]
    if "values" in entry:
        for key in ("min", "max", "step", "log"):
            if key in entry:
                fail(f"a choice takes 'values' and 'default' only, not {key!r}")
        values = entry["values"]
        if not isinstance(values, list | tuple) or not values:
            fail(f"'values' must be a non-empty list, got {values!r}")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                fail(f"'values' entries must be strings or numbers, got {value!r}")
        if len({str(v) for v in values}) != len(values):
            fail("'values' has duplicate entries")
        if not any(type(v) is type(default) and v == default for v in values):
            fail(f"default {default!r} is not one of the values {list(values)}")
        return ModuleParameter(name, "categorical", default, values=tuple(values))
    for key in ("min", "max"):
        if key not in entry:
            fail(f"a range needs 'min' and 'max' (or a choice: 'values'); {key!r} is missing")
    low, high, step, log = entry["min"], entry["max"], entry.get("step"), entry.get("log", False)
    numbers = [("min", low), ("max", high), ("default", default)] + ([("step", step)] if step is not None else [])
    for key, value in numbers:
        if not _is_number(value) or not math.isfinite(value):
            fail(f"{key!r} must be a number, got {value!r}")
    if not isinstance(log, bool):
        fail(f"'log' must be true or false, got {log!r}")
    kind = "int" if all(isinstance(v, int) for _, v in numbers) else "double"
    if low > high:
        fail(f"min {low} is greater than max {high}")
    if not low <= default <= high:
        fail(f"default {default} is outside [min, max] = [{low}, {high}]")
    if log and low <= 0:
        fail(f"a log-scale range needs min > 0, got {low}")
    if step is not None:
        if step <= 0:
            fail(f"step must be positive, got {step}")
        if log:
            fail("a log-scale range cannot have a step")
        if kind == "int" and (high - low) % step:
            fail(f"max - min ({high - low}) must be a multiple of step {step}")
    cast = int if kind == "int" else float
    return ModuleParameter(name, kind, cast(default), cast(low), cast(high), None if step is None else cast(step),
                           log)


# --- hyperparameter values ------------------------------------------------------------------------
def split_values(values: dict[str, Any] | None, module: LoadedModule | None,
                 where: str = "hyperparameters") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(built-in, module)`` parts of a hyperparameter dict; module values typed; unknown names refused."""
    builtin, extra = {}, {}
    for name, value in (values or {}).items():
        (builtin if name in BUILTIN_NAMES else extra)[name] = value
    if extra and module is None:
        raise ModelModuleError(f"{where}: unknown hyperparameter {sorted(extra)[0]!r}; the built-in ones are "
                               f"{', '.join(BUILTIN_NAMES)} (a model module declares more)")
    return builtin, (module.typed(extra) if module is not None else {})


def parse_assignments(items: list[str] | None, flag: str = "--hp") -> dict[str, str]:
    """``["dropout=0.2", "width=64"]`` -> ``{"dropout": "0.2", "width": "64"}`` (values typed later)."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise ModelModuleError(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} dropout=0.2")
        if name in out and out[name] != value.strip():
            raise ModelModuleError(f"{flag}: {name} is given twice ({out[name]} and {value.strip()})")
        out[name] = value.strip()
    return out


def builtin_from_text(name: str, value: Any) -> Any:
    """A built-in hyperparameter given as text (``--hp nbuckets=8``) typed like its field."""
    if not isinstance(value, str):
        return value
    if name in ("hidden_units", "class_weight"):
        return value
    try:
        return int(value) if name in ("nbuckets", "batch_size") else float(value)
    except ValueError:
        raise ModelModuleError(f"--hp {name}={value}: not a number") from None


def model_hp(values: dict[str, Any], builtin: dict[str, Any]) -> dict[str, Any]:
    """The ``hp`` a module's build_model gets: its own values plus nbuckets, learning_rate and batch_size."""
    return {**values, **{name: builtin[name] for name in BUILTIN_FOR_MODULE if name in builtin}}


# --- the artifact ---------------------------------------------------------------------------------
def write_artifact(source: str | Path | None, out_dir: str | Path) -> dict[str, Any]:
    """Write the module artifact folder (the file and its manifest); ``source`` "" / None: a run without one.

    ``source`` is a file path, an ``s3://`` / ``minio://`` object or a module artifact folder; the
    file is read ONCE here and imported and checked from the copy. Returns the manifest.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"file": None}
    if source:
        text = str(source)
        if Path(text).is_dir():
            inner = module_file(text)
            name, data = (inner.name, inner.read_bytes()) if inner else (None, None)
        else:
            name, data = read_source(text)
        if name is not None:
            (out / name).write_bytes(data)
            loaded = load_module(out / name, shown=text)
            manifest = {"file": name, "source": text, "sha256": loaded.sha256,
                        "hyperparameters": {n: p.to_dict() for n, p in loaded.parameters.items()}}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def load_optional(path_or_dir: str | Path | None) -> LoadedModule | None:
    """The loaded module of a file or artifact folder, or None when the run has none."""
    path = module_file(path_or_dir) if path_or_dir else None
    return load_module(path) if path is not None else None
