"""Reports a browser opens, and which steps kfp.local's cache answered (no pipeline run)."""

from __future__ import annotations

import logging
import os

from mlengine.constants import REPORTS_SUBDIR
from mlengine.pipelines.local_run import compile_pipelines, format_summary_table
from mlengine.pipelines.run_outputs import CacheHits, copy_reports, report_outputs, reset_task_cache
from mlengine.pipelines.training import PIPELINE_NAME


def test_every_markdown_and_html_artifact_of_the_pipeline_is_found(tmp_path):
    pipeline_yaml = compile_pipelines(tmp_path)[PIPELINE_NAME]
    found = set(report_outputs(pipeline_yaml))
    assert ("ingest", "statistics_view", ".md") in found
    assert ("ingest", "statistics_html", ".html") in found  # the plots beside the Markdown tables
    assert ("evaluate", "eval_html", ".html") in found
    assert ("deploy", "deploy_report", ".md") in found  # inside the blessed condition (a nested DAG)
    assert all(suffix in (".md", ".html") for *_, suffix in found)


def test_reports_are_copied_with_extensions_newest_first(tmp_path):
    pipeline_yaml = compile_pipelines(tmp_path / "yaml")[PIPELINE_NAME]
    root = tmp_path / "pipeline-root"
    old = root / "run-1" / "ingest" / "statistics_view"
    new = root / "run-2" / "ingest" / "statistics_view"
    html = root / "run-1" / "evaluate" / "eval_html"
    for path, text in ((old, "# old"), (new, "# new"), (html, "<html>evaluation</html>")):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    os.utime(old, (1_000_000, 1_000_000))  # the earlier run's copy; a cached step keeps its older one
    (tmp_path / REPORTS_SUBDIR).mkdir()
    (tmp_path / REPORTS_SUBDIR / "deploy-deploy_report.md").write_text("stale")  # from an earlier run
    os.utime(html, (1_000_000, 1_000_000))
    copies = copy_reports(tmp_path, pipeline_yaml, since=2_000_000, cached=["evaluate"])
    names = sorted(p.rsplit("/", 1)[1] for p in copies)
    assert names == ["evaluate-eval_html.html", "ingest-statistics_view.md"]  # fresh, and cached from run 1
    assert (tmp_path / REPORTS_SUBDIR / "ingest-statistics_view.md").read_text() == "# new"
    assert (tmp_path / REPORTS_SUBDIR / "evaluate-eval_html.html").read_text().startswith("<html>")
    assert not (tmp_path / REPORTS_SUBDIR / "deploy-deploy_report.md").exists()
    # a report of an earlier run whose task neither ran nor came from the cache now is left out
    assert copy_reports(tmp_path, pipeline_yaml, since=2_000_000) == [str(tmp_path / REPORTS_SUBDIR /
                                                                          "ingest-statistics_view.md")]


def test_cache_hits_are_collected_from_kfp_local_log_records():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # kfp.local logs its cache hits at INFO outside its logger context
    try:
        with CacheHits() as hits:
            logging.info("Task \x1b[96mingest\x1b[0m cache hit (key=0123456789ab); skipping execution.")
            logging.info("Task tune cache hit (key=0123456789ab); skipping execution.")
            logging.info("Executing task 'train'")
        assert root.level == logging.WARNING  # restored
        logging.info("Task evaluate cache hit (key=x); skipping execution.")  # after: not collected
    finally:
        root.setLevel(level)
    assert hits.tasks == ["ingest", "tune"]


def test_reset_task_cache_removes_entries_only(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("")
    assert reset_task_cache(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert reset_task_cache(tmp_path / "absent") == 0


def test_the_final_table_lists_the_reports_and_the_reused_steps():
    summary = {"rows_read": 10, "rows_rejected": 0, "rmse": 1.0, "benchmark_rmse": 2.0, "noise_floor_rmse": None,
               "blessed": True, "model_dir": "/m", "pipeline_yaml": "/p.yaml", "seconds": 3.0,
               "cached_steps": ["ingest", "train"], "reports": ["/o/reports/a.md", "/o/reports/b.html"]}
    table = format_summary_table(summary)
    assert "reused from the cache" in table and "ingest, train" in table
    lines = table.splitlines()
    [first] = [line for line in lines if "reports (open in a browser)" in line]
    assert first.endswith("/o/reports/a.md")
    assert lines[lines.index(first) + 1].strip() == "/o/reports/b.html"


def test_a_failed_step_s_own_one_line_error_is_found_in_this_run_s_log_only(tmp_path):
    from mlengine.pipelines.run_outputs import step_error

    log = tmp_path / "pipeline.log"
    log.write_text("    mlengine.errors.DataError: old.csv: an earlier run's error\n")
    start = log.stat().st_size
    with log.open("a") as handle:
        handle.write("Traceback (most recent call last):\n"
                     "        raise DataError(f\"{data_uri}: 0 of ...\")\n"
                     "        mlengine.errors.DataError: a.csv: 0 of 2 rows passed validation; top reasons: x (2)\n"
                     "20:10:37.518 - ERROR - Task \x1b[96m'ingest'\x1b[0m finished with status FAILURE\n")
    assert step_error(log, start) == "step ingest: a.csv: 0 of 2 rows passed validation; top reasons: x (2)"
    assert step_error(log, log.stat().st_size) is None
    assert step_error(tmp_path / "absent.log") is None
