"""The package's layering, checked on the source: components are siblings over components/shared.

- No component imports another component's modules, with one named exception: a tuning trial is a
  training run, so tune may import ``mlengine.components.train.public``.
- ``components/shared`` imports no component.
- Heavy libraries are imported inside functions, never when a module is imported, so
  ``mlengine --help`` and pipeline compilation stay fast (the serving module is the exception: it
  is only imported by the server process).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ROOT / "components"
ALLOWED_CROSS_IMPORTS = {("tune", "mlengine.components.train.public")}
HEAVY = ("tensorflow", "tf_keras", "kserve", "optuna", "kubernetes", "matplotlib", "torch")
HEAVY_AT_IMPORT_ALLOWED = {
    "components/deploy/predictor.py", "components/deploy/kserve_compat.py", "components/deploy/http/errors.py",
    "components/deploy/http/middleware.py", "components/deploy/http/protocol.py", "components/deploy/http/routes.py",
    "components/deploy/http/server.py",
}


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "mlengine.components":  # from mlengine.components import train
                found += [(node.lineno, f"mlengine.components.{alias.name}") for alias in node.names]
    return found


def _component_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["mlengine", "components"] else None


def _component_dirs() -> list[Path]:
    return sorted(p for p in COMPONENTS.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def test_components_import_only_shared_and_themselves():
    problems = []
    for directory in _component_dirs():
        for path in sorted(directory.rglob("*.py")):
            for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"))):
                other = _component_of(module)
                if other is None or other in (directory.name, "shared"):
                    continue
                if directory.name == "shared" or (directory.name, module) not in ALLOWED_CROSS_IMPORTS:
                    problems.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert problems == []


def test_the_checker_sees_function_level_and_from_imports():
    source = "def f():\n    from mlengine.components.train import trainer\nfrom mlengine.components import deploy\n"
    modules = [m for _, m in _imports(ast.parse(source))]
    assert "mlengine.components.train" in modules and "mlengine.components.deploy" in modules


@pytest.mark.parametrize("package", ["components", "pipelines", "mlengine"])
def test_no_heavy_import_at_module_level(package):
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if relative in HEAVY_AT_IMPORT_ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only; imports inside functions are the point
            if isinstance(node, ast.Import | ast.ImportFrom):
                for line, module in _imports(node):
                    if module.split(".")[0] in HEAVY:
                        problems.append(f"{relative}:{line} imports {module} at module level")
    assert problems == []


def test_every_component_has_the_same_shape():
    """component.py (the KFP wrapper) and executor.py (the logic, no kfp import) in every component folder."""
    problems = []
    for directory in _component_dirs():
        if directory.name == "shared":
            continue
        for required in ("component.py", "executor.py"):
            if not (directory / required).is_file():
                problems.append(f"{directory.name}: no {required}")
        executor = directory / "executor.py"
        if executor.is_file():
            modules = [m for _, m in _imports(ast.parse(executor.read_text(encoding="utf-8")))]
            if any(m.split(".")[0] == "kfp" for m in modules):
                problems.append(f"{directory.name}/executor.py imports kfp")
    assert problems == []
