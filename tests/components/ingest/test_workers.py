"""The local engine on several processes: the output does not depend on the worker count.

Small ``piece_bytes`` cut the files into many byte ranges, so 2 and 4 workers run many tasks
(pieces starting mid-file, line numbers counted from the piece) against 1 worker's single task.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from mlengine import synthetic
from mlengine.cli import main
from mlengine.components.ingest import pieces
from mlengine.components.shared.featurespec import load_spec
from mlengine.constants import SPLITS
from tests.components.ingest.test_dirty import EXPECTED_REASON
from tests.ingest_fixtures import ingest, read_csv_rows, write_csv_rows

PIECE_BYTES = 4096  # about 70 taxi lines: dozens of pieces per file


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three shards: CRLF with dirty rows, gzip, and BOM + LF with blank lines and quoted cells spanning lines."""
    folder = tmp_path_factory.mktemp("data")
    synthetic.write_csv(folder / "a.csv", 3000, seed=7, dirty_fraction=0.05)  # csv.writer: CRLF line ends
    synthetic.write_csv(folder / "plain-b.csv", 1500, seed=8, dirty_fraction=0.02)
    (folder / "b.csv.gz").write_bytes(gzip.compress((folder / "plain-b.csv").read_bytes()))
    (folder / "plain-b.csv").unlink()
    header, rows = read_csv_rows(folder / "a.csv")
    lines = [",".join(row) for row in rows[:1200]]
    for index in range(40, len(lines), 97):
        lines[index] = lines[index].replace(",", ',"a\nb",', 1)  # a quoted cell spanning two lines
    for index in range(13, len(lines), 211):
        lines[index] = ""  # a blank line
    text = "\n".join([",".join(header), *lines]) + "\n"
    (folder / "c.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return folder


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return {workers: ingest(dataset, out / str(workers), workers=workers,
                            piece_bytes=PIECE_BYTES if workers > 1 else 0)
            for workers in (1, 2, 4)}


def _rows_in_order(run, split):
    paths = sorted((run.out / split).glob("part-*.parquet"))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def test_the_plan_cuts_files_at_line_ends_and_keeps_gzip_whole(dataset):
    spec = load_spec()
    files = sorted(str(p) for p in dataset.iterdir())
    tasks = pieces.plan_tasks(files, [c.name for c in spec.all_columns], spec.delimiter, 4, PIECE_BYTES)
    cut = [piece for task in tasks for piece in task.pieces]
    assert [p.uri for p in cut] == sorted(p.uri for p in cut)  # file order, then byte order
    gz = [p for p in cut if p.uri.endswith(".gz")]
    assert len(gz) == 1 and gz[0].start == -1  # one stream, header read by the worker
    for uri in (str(dataset / "a.csv"), str(dataset / "c.csv")):
        ranges = [p for p in cut if p.uri == uri]
        data = (dataset / uri).read_bytes()
        assert len(ranges) > 10
        assert ranges[0].first_line == 2 and all(p.first_line == 0 for p in ranges[1:])
        assert ranges[-1].end == len(data)
        for before, after in itertools.pairwise(ranges):
            assert before.end == after.start and data[after.start - 1:after.start] == b"\n"


def test_same_counts_rejects_and_splits_whatever_the_worker_count(runs):
    one = runs[1]
    assert one.result.workers == 1
    for workers in (2, 4):
        other = runs[workers]
        assert other.result.workers == workers
        for key in ("rows_read", "rows_ok", "rows_rejected", "blank_lines", "rows_per_split", "reject_reasons",
                    "files"):
            assert getattr(other.result, key) == getattr(one.result, key), (workers, key)
        # the same file, line for line: file order, absolute line numbers, reasons and raw text
        assert other.rejects() == one.rejects()
        for split in SPLITS:
            assert _rows_in_order(other, split) == _rows_in_order(one, split), (workers, split)
            assert len(other.result.parts[split]) > len(one.result.parts[split])  # a part per task
    assert one.result.rows_rejected > 100
    assert one.result.blank_lines > 0
    rejects = one.rejects()
    assert any(item["reason"].startswith("malformed CSV") for item in rejects)  # the quoted cells
    assert any(item["file"].endswith(".gz") for item in rejects)


def test_rejects_name_their_lines_in_the_file(runs, dataset):
    lines = {name: (dataset / name).read_bytes().decode("utf-8").split("\n") for name in ("a.csv", "c.csv")}
    for item in runs[4].rejects():
        name = os.path.basename(item["file"])
        if name in lines:
            assert item["raw"] == lines[name][item["row"] - 1].rstrip("\r").lstrip("\ufeff"), item


def test_statistics_do_not_depend_on_the_worker_count(runs):
    one = runs[1].statistics()
    for workers in (2, 4):
        other = runs[workers].statistics()
        assert other["ingest"] == one["ingest"]
        for scope in ("all", "train"):
            assert other[scope]["rows"] == one[scope]["rows"]
            for name, expected in one[scope]["columns"].items():
                got = other[scope]["columns"][name]
                for key in ("count", "missing", "min", "max", "quantiles", "histogram", "top_values", "distinct"):
                    # the bottom-k sample merges exactly: quantiles and histograms are the same numbers
                    assert got.get(key) == expected.get(key), (workers, scope, name, key)
                if "mean" in expected:
                    assert got["mean"] == pytest.approx(expected["mean"], rel=1e-12, abs=1e-12)
                    assert got["std"] == pytest.approx(expected["std"], rel=1e-9, abs=1e-12)


def test_no_temporary_file_is_left(runs):
    for run in runs.values():
        leftovers = [p.name for p in run.out.rglob("*") if p.name.startswith(".")]
        assert leftovers == []


@pytest.mark.parametrize("workers", [1, 4])
def test_every_dirty_kind_is_rejected_with_its_line_at_any_worker_count(tmp_path, workers):
    synthetic.write_csv(tmp_path / "clean.csv", 60, seed=5)
    header, rows = read_csv_rows(tmp_path / "clean.csv")
    kinds = {}
    for offset, kind in enumerate(synthetic.DIRTY_KINDS):
        index = 3 + 7 * offset  # spread over the file, so over the pieces
        rows[index] = synthetic._dirty(rows[index], kind)
        kinds[index + 2] = kind
    path = write_csv_rows(tmp_path / "dirty.csv", header, rows)
    run = ingest(path, tmp_path / "out", workers=workers, piece_bytes=256)
    assert run.result.workers == workers
    assert run.result.rows_read == 60 and run.result.rows_rejected == len(kinds)
    rejects = run.rejects()
    assert [item["row"] for item in rejects] == sorted(kinds)
    lines = path.read_text(encoding="utf-8").splitlines()
    for item in rejects:
        assert item["reason"].startswith(EXPECTED_REASON[kinds[item["row"]]]), item
        assert item["raw"] == lines[item["row"] - 1]


def test_cli_takes_workers(tmp_path, dataset, capsys):
    assert main(["ingest", "--data", str(dataset / "a.csv"), "--out", str(tmp_path / "cli"), "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["workers"] == 1 and summary["rows_read"] == 3000
    assert (tmp_path / "cli" / "statistics" / "statistics.md").read_text(encoding="utf-8").startswith("# Ingest")


def test_workers_die_with_the_engine_process(tmp_path):
    """The engine's process killed with SIGKILL (no cleanup runs): its pool processes go too."""
    script = textwrap.dedent("""
        import multiprocessing, os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from mlengine.components.ingest import local
        from mlengine.components.ingest.worker import init_worker

        if __name__ == "__main__":
            context = multiprocessing.get_context(local.START_METHOD)
            pool = ProcessPoolExecutor(2, mp_context=context, initializer=init_worker, initargs=(os.getpid(), 1))
            futures = [pool.submit(time.sleep, 120) for _ in range(2)]
            while len(pool._processes) < 2:
                time.sleep(0.05)
            print(" ".join(str(pid) for pid in pool._processes), flush=True)
            time.sleep(120)
    """)
    (tmp_path / "engine.py").write_text(script, encoding="utf-8")
    engine = subprocess.Popen([sys.executable, str(tmp_path / "engine.py")], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in engine.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        engine.kill()
        engine.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_ctrl_c_stops_the_workers_and_leaves_no_temporary_file(tmp_path):
    """SIGINT to the engine's process mid-ingest: it exits, its workers are gone, no temporary file stays."""
    import psutil

    synthetic.write_csv(tmp_path / "data.csv", 100_000, seed=9)
    script = textwrap.dedent(f"""
        import time

        from mlengine.components.ingest import worker, workerserver
        from mlengine.components.ingest.executor import run
        from mlengine.components.shared.featurespec import load_spec

        # Every task waits 20 ms per chunk, so the run is still going when SIGINT comes, however fast
        # the machine. This module runs in the fork server too (preloaded as __main__): the pool's
        # workers fork from it with the same slow chunks.
        _chunks = worker.iter_cell_chunks


        def _slow_chunks(*args, **kwargs):
            for chunk in _chunks(*args, **kwargs):
                time.sleep(0.02)
                yield chunk


        worker.iter_cell_chunks = _slow_chunks
        workerserver.PRELOAD = ("__main__", *workerserver.PRELOAD)

        if __name__ == "__main__":
            out = {str(tmp_path / "out")!r}
            # tiny chunks and pieces: many tasks of many chunks (6,250 chunks: over 40 s of waits)
            run({str(tmp_path / "data.csv")!r}, load_spec(), {{s: out + "/" + s for s in ("train", "eval", "test")}},
                out + "/rejects", out + "/stats", workers=3, chunk_rows=16, piece_bytes=100_000)
            print("finished", flush=True)
    """)
    (tmp_path / "engine.py").write_text(script, encoding="utf-8")
    engine = subprocess.Popen([sys.executable, str(tmp_path / "engine.py")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        process = psutil.Process(engine.pid)
        deadline = time.monotonic() + 30
        workers = []
        while time.monotonic() < deadline and len(workers) < 2 and engine.poll() is None:
            # the pool's processes are forked by the fork server, a child of the engine's process
            servers = [p for p in process.children() if "forkserver" in " ".join(p.cmdline())]
            workers = [child for server in servers for child in server.children()]
            time.sleep(0.05)
        assert len(workers) >= 2, "the pool did not start"
        time.sleep(0.3)  # the workers are busy with tasks now
        engine.send_signal(signal.SIGINT)
        stdout, stderr = engine.communicate(timeout=30)
        assert engine.returncode != 0 and "finished" not in stdout
        assert "KeyboardInterrupt" in stderr
        deadline = time.monotonic() + 10
        while any(_alive(p.pid) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p.pid) for p in workers)
        assert [p.name for p in (tmp_path / "out").rglob(".*")] == []
    finally:
        engine.kill()
        engine.wait(timeout=10)


def test_default_workers_respect_a_cgroup_cpu_quota(tmp_path, monkeypatch):
    from mlengine.components.ingest import local, workerserver

    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(workerserver, "CGROUP_V2_CPU_MAX", str(cpu_max))
    monkeypatch.setattr(workerserver, "CGROUP_V1_CPU", ())
    cores = len(os.sched_getaffinity(0))
    cpu_max.write_text("max 100000\n", encoding="ascii")
    assert local.default_workers() == cores
    cpu_max.write_text("50000 100000\n", encoding="ascii")  # half a CPU: still one worker
    assert local.default_workers() == 1
    cpu_max.write_text(f"{100000 * cores + 1} 100000\n", encoding="ascii")  # more than the affinity
    assert local.default_workers() == cores


def test_an_error_in_a_worker_is_raised_naming_the_file_and_cleans_up(tmp_path):
    from mlengine.errors import DataError

    synthetic.write_csv(tmp_path / "data" / "a.csv", 2000, seed=1)
    good = gzip.compress((tmp_path / "data" / "a.csv").read_bytes())
    (tmp_path / "data" / "b.csv.gz").write_bytes(good[: len(good) // 2])  # the header reads, the rest breaks
    with pytest.raises(DataError, match=re.escape("b.csv.gz: not a valid gzip file")):
        ingest(tmp_path / "data", tmp_path / "out", workers=3, piece_bytes=4096)
    assert [p.name for p in (tmp_path / "out").rglob(".*")] == []


def test_the_fork_server_starts_early_only_for_a_large_local_input_and_more_than_one_worker(tmp_path, monkeypatch):
    from multiprocessing import forkserver

    from mlengine.components.ingest import workerserver

    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small.write_text("a,b\n1,2\n", encoding="utf-8")
    with large.open("wb") as handle:  # sparse: the size is all that is looked at
        handle.truncate(2 * workerserver.MIN_PIECE_BYTES)
    started = []
    monkeypatch.setattr(workerserver, "start_server", lambda: started.append(True))
    assert not workerserver.start_early(str(small), workers=2)
    assert not workerserver.start_early(str(large), workers=1)
    assert not workerserver.start_early("s3://bucket/large.csv", workers=2)
    assert not workerserver.start_early(str(tmp_path / "*.gz"), workers=2)
    assert started == []
    assert workerserver.start_early(str(large), workers=2) and workerserver.start_early(str(tmp_path), workers=2)
    assert workerserver.start_early(f"file://{tmp_path}/*.csv", workers=2)
    assert started == [True] * 3
    monkeypatch.undo()
    workerserver.start_server()  # the real one: a running fork server, which the engine's pool then uses
    assert forkserver._forkserver._forkserver_pid is not None
