"""One helper every benchmark uses to write its table into bench/README.md and its JSON under bench/results/.

Each benchmark owns one section of bench/README.md between ``<!-- bench_<name>:start -->`` and
``<!-- bench_<name>:end -->``; :func:`write_section` replaces that section only (other sections are
left as they are) and appends it when the markers are missing.
"""

from __future__ import annotations

import json
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
RESULTS = BENCH_DIR / "results"


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of benchmark ``name`` (e.g. ``preprocessing``)."""
    name = name.removeprefix("bench_")
    return f"<!-- bench_{name}:start -->", f"<!-- bench_{name}:end -->"


def write_section(name: str, markdown: str, readme: Path | None = None) -> Path:
    """Replace benchmark ``name``'s section of bench/README.md with ``markdown``.

    Args:
        name: the benchmark's name without the ``bench_`` prefix (``preprocessing``, ``serving``).
        markdown: the section body (heading, caption, table).
        readme: the README to edit (default bench/README.md).

    Returns:
        The path of the README written.
    """
    readme = readme or README
    start, end = markers(name)
    section = f"{start}\n{markdown.strip()}\n{end}"
    current = readme.read_text(encoding="utf-8") if readme.is_file() else "# Benchmarks (`make bench`)\n"
    if start in current and end in current:
        head, rest = current.split(start, 1)
        current = head + section + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(current, encoding="utf-8")
    return readme


def write_results(name: str, report: dict, results: Path | None = None) -> Path:
    """Write ``report`` as bench/results/<name>.json (indented, keys in insertion order)."""
    results = results or RESULTS
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name.removeprefix('bench_')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table from a header and rows (cells formatted with str)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
