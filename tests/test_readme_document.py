"""The README is a user's document: short, the two set-up commands first, no commit, paths that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
OUTPUT_PREFIXES = ("out/", "~/")  # what a run writes, not part of the repository


def test_the_readme_is_at_most_300_lines_and_starts_with_the_two_commands():
    lines = README.splitlines()
    assert len(lines) <= 300
    block = README.split("```", 2)[1]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make run", "make test"]
    assert README.index("make run") < README.index("\n## ")


def test_the_readme_names_no_commit():
    hashes = re.findall(r"(?<![\w/.-])[0-9a-f]{7,40}(?![\w-])", README)
    assert [h for h in hashes if re.search(r"[a-f]", h) and re.search(r"[0-9]", h)] == []


def test_every_repository_path_the_readme_mentions_exists():
    linked = re.findall(r"\]\(([^)#]+)\)", README)
    quoted = re.findall(r"`((?:[\w.-]+/)+[\w.-]*)`", README)
    in_commands = re.findall(r"(?<![\w/.:-])((?:examples|mlengine|manifests|components|docs|bench|tests)/[\w./-]+)",
                             README)
    paths = {p.rstrip("/.") for p in (*linked, *quoted, *in_commands)
             if not p.startswith(("http", *OUTPUT_PREFIXES)) and "<" not in p}
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert paths and missing == []
