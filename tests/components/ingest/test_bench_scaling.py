"""The scaling benchmark runs end to end (tiny sizes, one round; timing is not asserted)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from bench import bench_scaling


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_benchmark_writes_its_report_beside_the_json_without_readme(tmp_path, capsys):
    out = tmp_path / "scaling.json"
    code = bench_scaling.main(["--rows", "2000", "--repeats", "1", "--max-cores", "2",
                               "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    cores = min(2, len(os.sched_getaffinity(0)))
    assert [entry["cores"] for entry in report["table"]] == list(range(1, cores + 1))
    first = report["table"][0]
    assert first["ingest_speedup"] == first["parser_speedup"] == 1.0
    assert all(entry["ingest_rows_per_s"] > 0 and entry["parser_rows_per_s"] > 0 for entry in report["table"])
    table = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| cores | ingest s |" in table and table.strip() in capsys.readouterr().out
