"""bench/tables.py and the log parsing of bench_end_to_end (no timing asserted)."""

from bench.bench_end_to_end import parse_log
from bench.tables import markdown_table, write_results, write_section


def test_write_section_replaces_only_its_own_section_and_appends_a_missing_one(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# B\n\n<!-- bench_a:start -->\nold a\n<!-- bench_a:end -->\n\n<!-- bench_b:start -->\n"
                      "b stays\n<!-- bench_b:end -->\ntail\n")
    write_section("bench_a", "## newer a", readme)
    write_section("c", "## c", readme)
    text = readme.read_text()
    assert "old a" not in text and text.count("## newer a") == 1 and "b stays" in text and "tail" in text
    assert text.rstrip().endswith("<!-- bench_c:start -->\n## c\n<!-- bench_c:end -->")


def test_write_results_and_markdown_table(tmp_path):
    path = write_results("bench_x", {"ratio": 0.5}, tmp_path)
    assert path.name == "x.json" and '"ratio": 0.5' in path.read_text()
    assert markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |"


LOG = """\
10:00:00.000 - INFO - Executing task \x1b[96m'ingest'\x1b[0m
    [KFP Executor 2026-12-01 10:00:00,500 INFO]: Got executor_input:
    [KFP Executor 2026-12-01 10:00:02,500 INFO]: Wrote executor output file to /x
10:00:03.000 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
"""


def test_parse_log_splits_a_task_into_work_and_overhead():
    assert parse_log(LOG) == {"ingest": {"span": 3.0, "work": 2.0, "overhead": 1.0}}
