"""Benchmark commands write under bench/results/ only; the tracked bench/README.md only with ``--readme``.

Read from the modules' source (no benchmark is run): in every bench module, every call that ends
in ``bench.tables.write_section`` must sit under an ``if`` that tests ``args.readme``, the module's
parser must offer ``--readme``, and ``bench/run_all.py`` (``make bench``) must pass it, so a
README command such as ``python -m bench.bench_real_dataset --second-run`` leaves the file alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench import run_all

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(p for p in BENCH.glob("*.py") if p.name not in ("__init__.py", "tables.py", "run_all.py"))


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _tests_readme(test: ast.expr) -> bool:
    """Whether an ``if`` condition reads ``<something>.readme`` (``args.readme``)."""
    return any(isinstance(node, ast.Attribute) and node.attr == "readme" for node in ast.walk(test))


def _unguarded_calls(function: ast.FunctionDef) -> list[tuple[str, int]]:
    """(name, line) of the calls in ``function`` that are not inside the body of an ``if ...readme``;
    a call after ``if not args.readme: return`` counts as guarded too."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.If):
            visit(node.test, guarded)
            reads = _tests_readme(node.test)
            for child in node.body:
                visit(child, guarded or (reads and not isinstance(node.test, ast.UnaryOp)))
            for child in node.orelse:
                visit(child, guarded)
            return
        if isinstance(node, ast.Call):
            name = _called_name(node)
            if name and not guarded:
                found.append((name, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    for statement in function.body:
        visit(statement, False)
        if (isinstance(statement, ast.If) and isinstance(statement.test, ast.UnaryOp)
                and isinstance(statement.test.op, ast.Not) and _tests_readme(statement.test)
                and any(isinstance(s, ast.Return) for s in statement.body)):
            break  # `if not args.readme: return ...` guards everything after it
    return found


def readme_writers(tree: ast.Module) -> set[str]:
    """The module's functions that write bench/README.md whatever the arguments: those that call
    ``write_section``, or another such function, outside an ``if ...readme`` guard."""
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    unguarded = {name: {called for called, _ in _unguarded_calls(fn)} for name, fn in functions.items()}
    writers: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, calls in unguarded.items():
            if name not in writers and ("write_section" in calls or calls & writers):
                writers.add(name)
                changed = True
    return writers


def _options(tree: ast.Module) -> set[str]:
    return {arg.value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _called_name(node) == "add_argument"
            for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}


def _writes_readme(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.Call) and _called_name(node) == "write_section" for node in ast.walk(tree))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_a_benchmark_writes_bench_readme_only_when_asked(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert "--no-readme" not in _options(tree), f"{path.name}: writing the README must be opt-in (--readme)"
    if not _writes_readme(tree):
        return
    assert "--readme" in _options(tree), f"{path.name} writes bench/README.md but has no --readme option"
    assert "main" not in readme_writers(tree), f"{path.name}: main writes bench/README.md without --readme"


def test_make_bench_passes_readme_to_every_benchmark_that_has_a_section():
    for name, command in run_all.BENCHMARKS.items():
        module = BENCH / f"{command[0].split('.')[-1]}.py"
        if _writes_readme(ast.parse(module.read_text(encoding="utf-8"))):
            assert "--readme" in command, f"make bench would no longer regenerate the {name} section"


def test_the_check_catches_an_unguarded_write():
    unguarded = ast.parse("def write(r):\n    write_section('x', r)\n\n"
                          "def main(argv=None):\n    args = parse(argv)\n    write(1)\n    return 0\n")
    guarded = ast.parse("def write(r):\n    write_section('x', r)\n\n"
                        "def main(argv=None):\n    args = parse(argv)\n    if args.readme:\n        write(1)\n")
    early = ast.parse("def main(argv=None):\n    args = parse(argv)\n    if not args.readme:\n        return 0\n"
                      "    write_section('x', 1)\n")
    inverted = ast.parse("def main(argv=None):\n    args = parse(argv)\n    if not args.readme:\n"
                         "        write_section('x', 1)\n")
    assert "main" in readme_writers(unguarded)
    assert "main" not in readme_writers(guarded)
    assert "main" not in readme_writers(early)
    assert "main" in readme_writers(inverted)
