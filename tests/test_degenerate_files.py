"""Degenerate data files through every command that reads data: exit 2, one line, no traceback, no raw bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlengine.components.shared.featurespec import load_spec

BINARY = b"PK\x03\x04\x00\x00\xff\xfe\xc3\x28 secret\x07\x1b[31m"
HEADER = ",".join(load_spec().column_names) + ",fare_amount\n"


def _files(root: Path) -> dict[str, Path]:
    contents = {
        "empty": b"",
        "header_only": HEADER.encode(),
        "binary": BINARY * 20,
        "semicolons": (HEADER.replace(",", ";") + HEADER.replace(",", ";")).encode(),
    }
    paths = {}
    for name, data in contents.items():
        path = root / f"{name}.csv"
        path.write_bytes(data)
        paths[name] = path
    return paths


COMMANDS = {
    "run": lambda data, out: ["run", "--data", data, "--out", out],
    "ingest": lambda data, out: ["ingest", "--data", data, "--out", out],
    "spec": lambda data, out: ["spec", "--data", data, "--out", f"{out}/spec.yaml"],
    "batch-predict": lambda data, out: ["batch-predict", "--model", f"{out}/no-model", "--data", data, "--out", out],
    "monitor": lambda data, out: ["monitor", "--statistics", f"{out}/no-stats", "--serving-log", data, "--out", out],
}
# the serving log is JSON Lines: a header or a delimiter means nothing there
KINDS = {"run": ["empty", "header_only", "binary", "semicolons"], "ingest": ["empty", "header_only", "binary",
         "semicolons"], "spec": ["empty", "header_only", "binary"],
         "batch-predict": ["empty", "header_only", "binary"], "monitor": ["empty", "binary"]}
CASES = [(command, kind) for command, kinds in KINDS.items() for kind in kinds]
EXPECTED = {"empty": "empty file", "header_only": "header only", "binary": "binary file",
            "semicolons": "split by ';'"}


@pytest.mark.parametrize(("command", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_degenerate_file_is_one_line_exit_2(tmp_path: Path, command: str, kind: str) -> None:
    path = _files(tmp_path)[kind]
    done = subprocess.run([sys.executable, "-m", "mlengine.cli", *COMMANDS[command](str(path), str(tmp_path / "out"))],
                          capture_output=True, timeout=120, cwd=tmp_path)
    stderr = done.stderr.decode("utf-8")  # raw bytes would fail to decode or show below
    assert done.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert str(path) in lines[0] and EXPECTED[kind] in lines[0], lines[0]
    assert "secret" not in stderr and "\x1b" not in stderr and "\ufffd" not in stderr


def test_unexpected_error_is_one_line_unless_debug(tmp_path: Path) -> None:
    # a folder where a file is expected makes the generator fail with an OSError that is not an MlengineError
    (tmp_path / "dir.csv").mkdir()
    args = [sys.executable, "-m", "mlengine.cli", "generate", "--rows", "10", "--out", str(tmp_path / "dir.csv")]
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 1, quiet.stderr
    assert "Traceback" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    assert "unexpected error" in quiet.stderr
    loud = subprocess.run([*args[:3], "--debug", *args[3:]], capture_output=True, text=True, timeout=60)
    assert "Traceback" in loud.stderr


def test_batch_predict_with_nothing_to_predict_is_an_error(tmp_path_factory, tmp_path: Path, capsys) -> None:
    from mlengine.cli import main
    from tests.serving_fixtures import tiny_model_dir

    model = tiny_model_dir(tmp_path_factory)
    folder = tmp_path / "shards"  # a folder is not sniffed: the executor reads it and finds no row
    folder.mkdir()
    (folder / "part-0.csv").write_text(HEADER, encoding="utf-8")
    code = main(["batch-predict", "--model", str(model), "--data", str(folder), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "no rows to predict" in err or "no data rows" in err, err
