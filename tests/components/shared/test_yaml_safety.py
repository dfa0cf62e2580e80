"""User YAML/JSON is parsed bounded: anchors/aliases refused, size and nesting capped, one-line errors."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlengine.components.shared.featurespec import FeatureSpecError, load_spec
from mlengine.components.shared.userfiles import (
    json_nesting_depth,
    parse_json_object,
    read_json_object,
    read_yaml_file,
    safe_yaml_load,
)
from mlengine.constants import MAX_JSON_DEPTH, MAX_USER_FILE_BYTES
from mlengine.errors import MlengineError


def _bomb(levels: int = 9, width: int = 9, where: str = "name") -> str:
    """The classic billion-laughs document: each anchor lists the previous one ``width`` times."""
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        lines.append(f"a{i}: &a{i} [{refs}]")
    if where == "name":
        lines.append(f"name: *a{levels}")
    else:
        lines.append(f"features:\n  numeric: *a{levels}")
    return "\n".join(lines) + "\n"


def test_bomb_is_refused_at_the_first_anchor(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(), encoding="utf-8")
    with pytest.raises(FeatureSpecError) as info:
        read_yaml_file(path, FeatureSpecError, "feature spec")
    message = str(info.value)
    assert message.startswith(f"{path}: YAML anchor &a0 refused at line 1")
    assert "\n" not in message


def test_a_bare_alias_names_its_line() -> None:
    with pytest.raises(MlengineError, match=r"^spec: YAML alias \*x refused at line 2 "):
        safe_yaml_load("a: 1\nb: *x\n", "spec")


def test_plain_yaml_still_loads() -> None:
    assert safe_yaml_load("name: taxi\nfeatures: {numeric: [a, b]}\n", "spec") == {
        "name": "taxi", "features": {"numeric": ["a", "b"]}}


def test_oversized_yaml_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("x: " + "a" * MAX_USER_FILE_BYTES + "\n", encoding="utf-8")
    with pytest.raises(MlengineError, match=r"over the .*-byte limit"):
        read_yaml_file(path, MlengineError, "feature spec")


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 12), width=st.integers(1, 12), where=st.sampled_from(["name", "numeric"]),
       nested=st.booleans())
def test_any_alias_document_is_refused(levels: int, width: int, where: str, nested: bool) -> None:
    text = _bomb(levels, width, where)
    if nested:  # anchors inside a mapping value, aliases deeper down
        text = "outer:\n" + "".join("  " + line + "\n" for line in text.splitlines())
    with pytest.raises(MlengineError, match=r"YAML (anchor|alias) .* refused at line \d+"):
        safe_yaml_load(text, "spec")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deep_json_refused(depth: int) -> None:
    text = '{"a": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(MlengineError, match=r"nested .* levels deep"):
        parse_json_object(text, "config")


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_nesting_depth('{"a": "[[[[\\"{{"}') == 1
    assert parse_json_object('{"a": {"b": [1, "]]]"]}}', "config") == {"a": {"b": [1, "]]]"]}}


def test_oversized_json_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"a": "' + "x" * MAX_USER_FILE_BYTES + '"}', encoding="utf-8")
    with pytest.raises(MlengineError, match=r"over the .*-byte limit"):
        read_json_object(path)


def test_feature_spec_loader_refuses_the_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(where="numeric"), encoding="utf-8")
    with pytest.raises(FeatureSpecError, match="anchor &a0 refused at line 1"):
        load_spec(path)


@pytest.mark.faults
def test_cli_run_with_the_bomb_spec_exits_2_in_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb(), encoding="utf-8")
    assert len(bomb.read_bytes()) < 2500
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    peak = 0
    with stdout.open("wb") as out, stderr.open("wb") as err:
        child = subprocess.Popen([sys.executable, "-m", "mlengine.cli", "run", "--spec", str(bomb), "--out",
                                  str(tmp_path / "out")], stdout=out, stderr=err, cwd=tmp_path)
        # sampled RSS: the child's ru_maxrss would count the pytest worker it was forked from (TF loaded)
        process = psutil.Process(child.pid)
        while child.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)
    text = stderr.read_text(encoding="utf-8")
    assert child.returncode == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    assert str(bomb) in lines[0] and "refused at line 1" in lines[0]
    # the expanded bomb would be gigabytes; the CLI before TensorFlow is loaded stays well under this
    assert peak < 500 * 2**20, peak
