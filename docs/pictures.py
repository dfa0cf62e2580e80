"""Draw the pictures of docs/architecture.md from the code itself, so they cannot drift from it.

- ``training-dag.png``: the tasks and artifact edges of the COMPILED training pipeline YAML;
- ``layers.png``: which package imports which (read from the source with ``ast``).

Run: ``.venv/bin/python docs/pictures.py`` (writes docs/pictures/*.png).
"""

from __future__ import annotations

import ast
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "pictures"
STEP = 3.0  # horizontal distance between pipeline steps in the DAG picture


def _dag_edges(compiled: dict) -> tuple[list[str], set[tuple[str, str, str]], dict[str, str]]:
    """Tasks (condition branches flattened to their tasks), (producer, consumer, artifact) edges, display names."""
    tasks: list[str] = []
    shown: dict[str, str] = {}
    edges: set[tuple[str, str, str]] = set()

    def walk(dag_tasks: dict, gate: str | None) -> None:
        for name, task in dag_tasks.items():
            component = compiled["components"][task["componentRef"]["name"]]
            if "dag" in component:  # a dsl.If / dsl.Else branch: its tasks run after the gate
                walk(component["dag"]["tasks"], task.get("dependentTasks", [None])[0])
                continue
            label = name if name not in tasks else f"{name}#{len(tasks)}"
            tasks.append(label)
            shown[label] = task.get("taskInfo", {}).get("name", name)
            for key, art in task.get("inputs", {}).get("artifacts", {}).items():
                producer = art.get("taskOutputArtifact", {}).get("producerTask")
                if producer:
                    edges.add((producer, label, key))
                elif art.get("componentInputArtifact"):  # inside a branch: the artifact came from train
                    edges.add(("train", label, key))
            if gate and "evaluate" not in {p for p, c, _ in edges if c == label}:
                edges.add((gate, label, "blessed?"))

    walk(compiled["root"]["dag"]["tasks"], None)
    return tasks, edges, shown


def draw_dag(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    from mlengine.pipelines.local_run import PIPELINE_YAML, compile_pipelines

    with tempfile.TemporaryDirectory() as scratch:
        compile_pipelines(scratch)
        compiled = yaml.safe_load((Path(scratch) / PIPELINE_YAML).read_text())
    tasks, edges, shown = _dag_edges(compiled)
    order = ["ingest", "tune", "transform", "train", "evaluate"]
    rest = [t for t in tasks if t not in order]
    position = {name: (i * STEP, 0.0) for i, name in enumerate(order)}
    for j, name in enumerate(rest):
        position[name] = (len(order) * STEP, 0.9 - 1.9 * j)
    figure, axes = plt.subplots(figsize=(16, 4.2))
    for producer, consumer, key in sorted(edges):
        if producer not in position or consumer not in position:
            continue
        (x0, y0), (x1, y1) = position[producer], position[consumer]
        bend = 0.0 if abs(x1 - x0) <= STEP + 0.1 else 0.35 * (1 if hash(key) % 2 else -1)
        axes.annotate("", xy=(x1 - 0.9, y1), xytext=(x0 + 0.9, y0),
                      arrowprops={"arrowstyle": "->", "color": "grey", "connectionstyle": f"arc3,rad={bend}"})
    labels = {}
    for producer, consumer, key in edges:
        labels.setdefault(consumer, []).append(f"{key} <- {producer}")
    for name, (x, y) in position.items():
        caption = textwrap.fill(shown.get(name, ""), 20)
        axes.text(x, y, f"{name.split('#')[0]}\n{caption}", ha="center", va="center", fontsize=8,
                  bbox={"boxstyle": "round", "facecolor": "#dde8f5", "edgecolor": "#3a6ea5"})
        axes.text(x, y - 0.5, "\n".join(sorted(labels.get(name, []))), ha="center", va="top", fontsize=6.5)
    axes.set_xlim(-1.4, len(order) * STEP + 1.4)
    axes.set_ylim(-2.6, 1.8)
    axes.axis("off")
    axes.set_title("training pipeline (from the compiled YAML): inputs of each task <- the task that produced them")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def package_imports() -> dict[str, set[str]]:
    """{package: packages it imports} for mlengine core, pipelines, each component and shared."""
    groups: dict[str, set[str]] = {}
    for path in sorted((ROOT / "components").rglob("*.py")):
        group = f"components/{path.relative_to(ROOT / 'components').parts[0]}"
        if group.endswith(".py"):
            continue
        groups.setdefault(group, set()).update(_imported_groups(path))
    for top in ("pipelines", "mlengine"):
        for path in sorted((ROOT / top).rglob("*.py")):
            groups.setdefault(top, set()).update(_imported_groups(path))
    return {name: {dep for dep in deps if dep != name} for name, deps in groups.items()}


def _imported_groups(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[:2] == ["mlengine", "components"] and len(parts) > 2:
                found.add(f"components/{parts[2]}")
            elif parts[:2] == ["mlengine", "pipelines"]:
                found.add("pipelines")
            elif parts[0] == "mlengine" and (len(parts) == 1 or parts[1] not in ("components", "pipelines")):
                found.add("mlengine")
    return found


def draw_layers(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deps = package_imports()
    components = sorted(name for name in deps if name.startswith("components/") and name != "components/shared")
    rows = {"pipelines": ["pipelines"], "components": components, "shared": ["components/shared"],
            "core": ["mlengine"]}
    position = {}
    for level, names in enumerate(rows.values()):
        for i, name in enumerate(names):
            position[name] = ((i - (len(names) - 1) / 2) * 1.6, -level * 1.5)
    figure, axes = plt.subplots(figsize=(13, 5.5))
    for name, targets in deps.items():
        for target in targets:
            if name == "mlengine" or target not in position:
                continue  # the CLI's lazy sub-command table is not a layer dependency
            (x0, y0), (x1, y1) = position[name], position[target]
            sideways = y0 == y1
            color = "red" if sideways else "#9aa"
            axes.annotate("", xy=(x1, y1 + (0 if sideways else 0.25)), xytext=(x0, y0 - (0 if sideways else 0.25)),
                          arrowprops={"arrowstyle": "->", "color": color, "lw": 1.4 if sideways else 0.6,
                                      "connectionstyle": "arc3,rad=0.3" if sideways else "arc3"})
    for name, (x, y) in position.items():
        axes.text(x, y, name.replace("components/", ""), ha="center", va="center", fontsize=10,
                  bbox={"boxstyle": "round", "facecolor": "#f5efdd" if "shared" in name else "#dde8f5"})
    axes.text(-7.5, 0.6, "red: the one allowed sibling import (tune -> train.public)", color="red", fontsize=8)
    axes.set_xlim(-8, 8)
    axes.set_ylim(-5, 1)
    axes.axis("off")
    axes.set_title("package layers (from the source's imports): pipelines -> components -> shared -> core")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    draw_dag(OUT / "training-dag.png")
    draw_layers(OUT / "layers.png")
    print(f"wrote {OUT / 'training-dag.png'} and {OUT / 'layers.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
