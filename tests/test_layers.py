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


CONTROL_FLOW = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.With, ast.AsyncWith, ast.Match,
                ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda, ast.IfExp,
                ast.FunctionDef, ast.AsyncFunctionDef)
COMPONENT_DECORATORS = {"component", "container_component"}


def _decorator_name(node: ast.expr) -> str | None:
    node = node.func if isinstance(node, ast.Call) else node
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)


def _executor_problems(name: str, source: str) -> list[str]:
    """``run`` at top level whose return annotation names a dataclass defined in the same module."""
    tree = ast.parse(source)
    dataclasses = {node.name for node in tree.body if isinstance(node, ast.ClassDef)
                   and any(_decorator_name(d) == "dataclass" for d in node.decorator_list)}
    runs = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "run"]
    if not runs:
        return [f"{name}/executor.py: no top-level run"]
    returns = runs[0].returns
    annotation = returns.value if isinstance(returns, ast.Constant) else getattr(returns, "id", None)
    if annotation not in dataclasses:
        return [f"{name}/executor.py: run returns {annotation!r}, not a dataclass defined there"]
    return []


def _component_problems(name: str, source: str) -> list[str]:
    """Every KFP component function: no control flow, exactly one call of ``run``."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        if not any(_decorator_name(d) in COMPONENT_DECORATORS for d in node.decorator_list):
            continue
        for inner in (n for stmt in node.body for n in ast.walk(stmt)):
            if isinstance(inner, CONTROL_FLOW):
                problems.append(f"{name}/component.py:{inner.lineno} {node.name} has {type(inner).__name__}")
        calls = [n for stmt in node.body for n in ast.walk(stmt)
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "run"]
        if len(calls) != 1:
            problems.append(f"{name}/component.py: {node.name} calls run {len(calls)} time(s)")
    return problems


def test_every_component_follows_the_executor_contract():
    problems = []
    for directory in _component_dirs():
        if directory.name == "shared":
            continue
        for filename, check in (("executor.py", _executor_problems), ("component.py", _component_problems)):
            path = directory / filename
            if path.is_file():
                problems += check(directory.name, path.read_text(encoding="utf-8"))
    assert problems == []


def test_the_contract_checker_flags_a_bad_component_and_executor():
    executor = "def run(x) -> dict:\n    return {}\n"
    component = (
        "@dsl.component(base_image='x')\n"
        "def step(a: str):\n"
        "    from x.executor import run\n"
        "    if a:\n"
        "        run(a)\n"
        "    values = [v for v in a]\n"
    )
    assert _executor_problems("x", executor) == ["x/executor.py: run returns 'dict', not a dataclass defined there"]
    found = _component_problems("x", component)
    assert any("If" in p for p in found) and any("ListComp" in p for p in found)
    good = "@dataclass(frozen=True)\nclass R:\n    n: int\n\ndef run() -> R:\n    return R(1)\n"
    assert _executor_problems("x", good) == []
