"""The README's own-data walk-through, run top to bottom as a user would.

The commands are read from the README's code block and run in order, with a small CSV of our own
(semicolon-delimited, with an identifier column) in place of ``data/houses.csv``: the spec is
drafted, edited by the test (the commented bucketized and cross suggestions switched on), the
pipeline runs, the reports are found, the model is served and predicted, and ``--resume`` reuses
the steps that do not depend on the changed ``--epochs``. Kept small: 3,000 rows, no tuning,
1-2 epochs.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import sys
from pathlib import Path

import pytest

from mlengine import cli as mlengine_cli
from mlengine.components.shared.featurespec import load_spec
from mlengine.pipelines.local_run import SUMMARY_FILE
from tests.helpers import free_port, running_server
from tests.model_fixtures import house_columns

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
ROWS = 3000
PREDICT_ROWS = 20
# what keeps the test small: no tuning, few epochs (the README's commands are otherwise unchanged)
SMALL = {"run": ["--trials", "0", "--epochs", "2"], "resume": ["--trials", "0"]}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def write_houses(path: Path) -> list[dict]:
    """The CSV (``;``, an id column) and the first rows as prediction requests (raw columns only)."""
    columns = house_columns(ROWS, seed=21)
    names = ["listing_id", "sqft", "rooms", "city", "condition", "style", "price"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(names)
        for i in range(ROWS):
            writer.writerow([f"L{i:06d}", f"{columns['sqft'][i]:.1f}", int(columns["rooms"][i]), columns["city"][i],
                             int(columns["condition"][i]), columns["style"][i], f"{columns['price'][i]:.3f}"])
    return [{"sqft": round(float(columns["sqft"][i]), 1), "rooms": int(columns["rooms"][i]),
             "city": str(columns["city"][i]), "condition": int(columns["condition"][i]),
             "style": str(columns["style"][i])} for i in range(PREDICT_ROWS)]


def edit_spec(path: Path) -> None:
    """What a user does with the draft: switch on the suggested bucketized feature and cross."""
    lines = path.read_text(encoding="utf-8").splitlines()
    edited = [re.sub(r"^  # (bucketized:|crosses:)", r"  \1", line) for line in lines]
    edited = [re.sub(r"^  #   - \{name:", "    - {name:", line) for line in edited]
    assert edited != lines, "the draft had no bucketized / cross suggestion to switch on"
    path.write_text("\n".join(edited) + "\n", encoding="utf-8")


def test_the_readme_own_data_walk_through(tmp_path, capsys):
    commands = readme_commands()
    assert [c.split()[1] for c in commands if c.startswith("mlengine ")] == \
        ["spec", "run", "serve", "predict", "run"]
    data, spec_path, out = tmp_path / "houses.csv", tmp_path / "my_spec.yaml", tmp_path / "out" / "mine"
    request_rows = write_houses(data)
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(row) + "\n" for row in request_rows), encoding="utf-8")
    port = free_port()
    replacements = {"data/houses.csv": str(data), "my_spec.yaml": str(spec_path), "out/mine": str(out),
                    "rows.jsonl": str(rows_file), "8080": str(port)}
    summaries: list[dict] = []
    server = None
    try:
        for command in commands:
            if command.startswith("# edit"):
                edit_spec(spec_path)
                spec = load_spec(spec_path)  # the edited draft still loads
                assert spec.bucketized and spec.crosses and spec.delimiter == ";"
                assert "listing_id" not in spec.column_names  # an identifier, left out
                continue
            for old, new in replacements.items():
                command = command.replace(old, new)
            if command.startswith("ls "):
                folder = Path(shlex.split(command)[1])
                reports = {p.name for p in folder.iterdir()}
                assert {"ingest-statistics_view.md", "ingest-statistics_html.html", "evaluate-eval_html.html",
                        "train-loss_curves.html"} <= reports
                statistics = (folder / "ingest-statistics_html.html").read_text(encoding="utf-8")
                assert 'alt="histogram of ' in statistics  # a plot per numeric column
                html = (folder / "evaluate-eval_html.html").read_text(encoding="utf-8")
                assert html.lstrip().lower().startswith("<!doctype html")
                continue
            args = shlex.split(command.rstrip("&").strip())[1:]
            if args[0] == "serve":
                args[args.index("MODEL_DIR")] = summaries[-1]["model_dir"]
                server = running_server([sys.executable, "-m", "mlengine.cli", *args], tmp_path / "serve.log",
                                        spec.name, port)
                server.__enter__()
                continue
            if args[0] == "run":
                args += SMALL["resume" if "--resume" in args else "run"]
                if "--resume" in args:  # the README's --epochs 20: 1 here, still a change from 2
                    args[args.index("--epochs") + 1] = "1"
                    if server is not None:  # free the CPU: the README leaves it running in the background
                        server.__exit__(None, None, None)
                        server = None
            capsys.readouterr()
            assert mlengine_cli.main(args) == 0, capsys.readouterr().err[-3000:]
            captured = capsys.readouterr()
            if args[0] == "spec":
                assert json.loads(captured.out)["delimiter"] == ";"
            if args[0] == "run":
                summaries.append(json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8")))
                assert "reports (open in a browser)" in captured.out
                if "--resume" in args:
                    assert "run: --resume: reused from the cache: " in captured.err
            if args[0] == "predict":
                predictions = [json.loads(line)["prediction"] for line in captured.out.splitlines()]
                assert len(predictions) == PREDICT_ROWS
                assert all(math.isfinite(float(p if not isinstance(p, list) else p[0])) for p in predictions)
    finally:
        if server is not None:
            server.__exit__(None, None, None)

    first, resumed = summaries
    assert first["rows_read"] == ROWS and first["rows_rejected"] == 0
    assert first["cached_steps"] == []
    assert all(Path(p).is_file() for p in first["reports"])
    # --resume after a plain run: ingest came from the cache, training ran again for the new --epochs
    assert "ingest" in resumed["cached_steps"] and "train" not in resumed["cached_steps"]
    assert resumed["rows_read"] == ROWS
    log = re.sub(r"\x1b\[[0-9;]*m", "", (out / "pipeline.log").read_text())
    assert log.count("Executing task 'ingest'") == 1
