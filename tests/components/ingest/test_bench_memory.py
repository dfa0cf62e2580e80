"""The ingest memory benchmark runs end to end (tiny sizes; timing is not asserted)."""

from __future__ import annotations

import json

from bench import bench_ingest_memory


def test_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "ingest_memory.json"
    code = bench_ingest_memory.main(["--rows", "3000", "--small-rows", "1000", "--dirty-fraction", "0.05",
                                     "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [size["rows_read"] for size in report["sizes"]] == [1000, 3000]
    for size in report["sizes"]:
        assert size["rows_ok"] + size["rows_rejected"] == size["rows_read"]
        assert size["rows_rejected"] > 0
        assert size["peak_rss_mb"] >= size["baseline_rss_mb"] > 0
        assert size["rows_per_s"] > 0
    assert report["peak_rss_ratio"] > 0
    assert "peak RSS ratio" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").glob("*.csv"))) == 2  # generated once, kept for the next run
