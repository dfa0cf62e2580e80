"""Preprocessing side by side in one run: ingest vs the bare CSV parser vs the Beam path; analyze local vs Beam.

    python -m bench.bench_preprocessing [--rows 1000000] [--repeats 3] [--nbuckets 16] [--readme]

On the same generated taxi CSV (cached under bench/results/.cache), interleaved per repeat so
machine load hits every method alike, median of ``--repeats`` runs each:

- ``pyarrow.csv.read_csv`` of the file (typed, multi-threaded): the parser alone;
- our ingest, single process (validate, split, Parquet, statistics): ``executor.run``;
- the same ingest as an Apache Beam pipeline on the in-process FnApiRunner (the DirectRunner's
  batch engine; Prism is not used, it downloads a binary): ``executor.run(runner="beam")``;
- the analyze pass over the training split, single process and on Beam.

Beam's fixed cost (pipeline construction and start-up) is measured on a 1,000-row file and
reported on its own. Every figure is also a ratio to its baseline measured in this run. With
``--tft-rows`` (default 100,000; 0 skips it) tensorflow-transform's ``AnalyzeDataset`` on Beam's
DirectRunner runs side by side with our ingest + analyze on a smaller CSV, in its own venv
(``make bench-tft-venv``: it pins another TensorFlow). Writes bench/results/preprocessing.json
(``--readme``: the table into bench/README.md too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_ingest_memory import CACHE_DIR, RESULTS_DIR, ensure_csv
from bench.tables import write_section

RESULT_FILE = RESULTS_DIR / "preprocessing.json"
TFT_PYTHON = Path(__file__).resolve().parent.parent / ".venv-tft" / "bin" / "python"  # make bench-tft-venv
TFT_SCRIPT = Path(__file__).resolve().parent / "tft_analyze.py"
FIXED_COST_ROWS = 1000


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def _outputs(root: Path) -> tuple[dict[str, str], str, str]:
    from mlengine.constants import SPLITS

    if root.exists():
        shutil.rmtree(root)
    return {split: str(root / split) for split in SPLITS}, str(root / "rejects"), str(root / "statistics")


def run_tft(csv_path: Path, nbuckets: int) -> dict:
    """tensorflow-transform's analyze (DirectRunner) in .venv-tft: {"seconds": ...} or {"error": one line}."""
    import subprocess

    if not TFT_PYTHON.is_file():
        return {"error": f"{TFT_PYTHON} missing (make bench-tft-venv)"}
    proc = subprocess.run([str(TFT_PYTHON), str(TFT_SCRIPT), str(csv_path), "--nbuckets", str(nbuckets)],
                          capture_output=True, text=True, timeout=3600)
    results = [line for line in proc.stdout.splitlines() if line.startswith('{"rows"')]
    if results:  # the figure was printed (a crash after it, in shutdown, does not change it)
        return json.loads(results[-1])
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines()
                 if "Error" in line and "cuInit" not in line and "cuda" not in line.lower()]
        what = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"error": f"{what}{': ' + lines[-1][:300] if lines else ''}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tft_side_by_side(tft_rows: int, repeats: int, nbuckets: int, work: Path) -> dict:
    """ingest + analyze (single process) vs tensorflow-transform's AnalyzeDataset on the same CSV, same run.

    Both read the CSV and compute moments and quantile boundaries of every column; tft on Beam's
    DirectRunner in its own venv (process start and TF import excluded: tft_analyze.py times from
    after its imports)."""
    from mlengine.components.ingest.executor import run as run_ingest
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec

    spec = load_spec(None)
    csv_path = ensure_csv(tft_rows, 0.0, CACHE_DIR)
    ours, theirs, info = [], [], {}
    for repeat in range(repeats):
        _log(f"bench: tensorflow-transform side by side {repeat + 1}/{repeats} ({tft_rows:,} rows)")
        started = time.perf_counter()
        run_ingest(str(csv_path), spec, *_outputs(work / "tft-local"))
        analyze(str(work / "tft-local" / "train"), spec, nbuckets)
        ours.append(time.perf_counter() - started)
        info = run_tft(csv_path, nbuckets)
        if "error" in info:
            return {"rows": tft_rows, "error": info["error"]}
        theirs.append(info["seconds"])
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    return {"rows": tft_rows, "repeats": repeats, "seconds_median": {"ingest_analyze_local": round(ours_s, 4),
                                                                      "tft_directrunner": round(theirs_s, 4)},
            "tft_vs_ours": round(ours_s / theirs_s, 4),
            "versions": {key: info.get(key) for key in ("tft", "beam", "tensorflow")}}


def run(rows: int, repeats: int, nbuckets: int, work: Path) -> dict:
    import pyarrow.csv as pacsv

    from mlengine.components.ingest.executor import run as run_ingest
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.sketches import kll_rank_error
    from mlengine.components.transform.beam import analyze_beam

    spec = load_spec(None)
    csv_path = ensure_csv(rows, 0.0, CACHE_DIR)
    small_path = ensure_csv(FIXED_COST_ROWS, 0.0, CACHE_DIR)

    def local_ingest(path, root):
        return run_ingest(str(path), spec, *_outputs(root))

    def beam_ingest(path, root):
        return run_ingest(str(path), spec, *_outputs(root), runner="beam")

    # warm-up: imports, the Beam SDK's first pipeline, file cache
    local_ingest(small_path, work / "warm-local")
    beam_ingest(small_path, work / "warm-beam")
    pacsv.read_csv(str(csv_path))

    times: dict[str, list[float]] = {name: [] for name in
                                     ("parser", "ingest_local", "ingest_beam", "beam_fixed_cost",
                                      "analyze_local", "analyze_beam")}
    for repeat in range(repeats):
        _log(f"bench: preprocessing repeat {repeat + 1}/{repeats}")
        seconds, table = _timed(pacsv.read_csv, str(csv_path))
        assert table.num_rows == rows
        times["parser"].append(seconds)
        seconds, local = _timed(local_ingest, csv_path, work / "local")
        times["ingest_local"].append(seconds)
        seconds, beam = _timed(beam_ingest, csv_path, work / "beam")
        times["ingest_beam"].append(seconds)
        if beam.rows_per_split != local.rows_per_split or beam.rows_ok != local.rows_ok:
            raise AssertionError(f"the paths disagree: {beam.rows_per_split} vs {local.rows_per_split}")
        seconds, _ = _timed(beam_ingest, small_path, work / "small")
        times["beam_fixed_cost"].append(seconds)
        train_dir = str(work / "local" / "train")
        seconds, state_local = _timed(analyze, train_dir, spec, nbuckets)
        times["analyze_local"].append(seconds)
        seconds, state_beam = _timed(analyze_beam, train_dir, spec, nbuckets, work / "state-beam")
        times["analyze_beam"].append(seconds)
        assert state_beam.rows == state_local.rows
    median = {name: statistics.median(values) for name, values in times.items()}
    train_rows = local.rows_per_split["train"]
    return {
        "rows": rows,
        "train_rows": train_rows,
        "repeats": repeats,
        "nbuckets": nbuckets,
        "seconds_median": {name: round(value, 4) for name, value in median.items()},
        "seconds_all": {name: [round(v, 4) for v in values] for name, values in times.items()},
        "rows_per_second": {
            "parser": round(rows / median["parser"]),
            "ingest_local": round(rows / median["ingest_local"]),
            "ingest_beam": round(rows / median["ingest_beam"]),
            "analyze_local": round(train_rows / median["analyze_local"]),
            "analyze_beam": round(train_rows / median["analyze_beam"]),
        },
        "ratios": {
            "ingest_local_vs_parser": round(median["parser"] / median["ingest_local"], 3),
            "ingest_beam_vs_parser": round(median["parser"] / median["ingest_beam"], 3),
            "ingest_beam_vs_ingest_local": round(median["ingest_local"] / median["ingest_beam"], 3),
            "ingest_beam_vs_ingest_local_without_fixed_cost": round(
                median["ingest_local"] / max(median["ingest_beam"] - median["beam_fixed_cost"], 1e-9), 3),
            "analyze_beam_vs_analyze_local": round(median["analyze_local"] / median["analyze_beam"], 3),
        },
        "beam_runner": "FnApiRunner (in process, 1 worker)",
        "quantile_sketch_rank_error": kll_rank_error(),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
    }


def table(report: dict) -> str:
    r, s, ratios = report["rows_per_second"], report["seconds_median"], report["ratios"]
    rows, train = report["rows"], report["train_rows"]
    lines = [
        f"Preprocessing, {rows:,}-row taxi CSV ({train:,} training rows), median of {report['repeats']} "
        f"interleaved runs, {report['machine']['cpus']} cores (load average at the end "
        f"{report['machine']['loadavg_at_end'][0]}); `python -m bench.bench_preprocessing`:",
        "",
        "| what | seconds | rows/s | ratio (same run) |",
        "|---|---:|---:|---|",
        f"| `pyarrow.csv.read_csv` (parser alone) | {s['parser']:.2f} | {r['parser']:,} | 1.00 (baseline) |",
        f"| ingest, single process | {s['ingest_local']:.2f} | {r['ingest_local']:,} | "
        f"{ratios['ingest_local_vs_parser']:.2f} of the parser |",
        f"| ingest on Beam (in-process FnApiRunner) | {s['ingest_beam']:.2f} | {r['ingest_beam']:,} | "
        f"{ratios['ingest_beam_vs_parser']:.2f} of the parser, {ratios['ingest_beam_vs_ingest_local']:.2f} of "
        f"single-process ingest ({ratios['ingest_beam_vs_ingest_local_without_fixed_cost']:.2f} without Beam's "
        f"fixed cost) |",
        f"| Beam fixed cost ({FIXED_COST_ROWS:,}-row file) | {s['beam_fixed_cost']:.2f} | | |",
        f"| analyze, single process | {s['analyze_local']:.2f} | {r['analyze_local']:,} | 1.00 (baseline) |",
        f"| analyze on Beam (KLL, rank error {report['quantile_sketch_rank_error']:.2%}) | "
        f"{s['analyze_beam']:.2f} | {r['analyze_beam']:,} | {ratios['analyze_beam_vs_analyze_local']:.2f} of "
        f"single-process analyze |",
        "",
    ]
    tft = report.get("tensorflow_transform") or {"error": "not run (--tft-rows 0)"}
    if "error" in tft:
        lines.append(f"tensorflow-transform: not run: {tft['error']}")
    else:
        s2 = tft["seconds_median"]
        lines += [
            f"tensorflow-transform {tft['versions']['tft']} (TensorFlow {tft['versions']['tensorflow']}, Beam "
            f"{tft['versions']['beam']} DirectRunner, in `.venv-tft`) on a smaller {tft['rows']:,}-row CSV, "
            f"median of {tft['repeats']}, CSV read + moments + {report['nbuckets']} quantile buckets of every column:",
            "",
            "| what | seconds | ratio (same run) |",
            "|---|---:|---|",
            f"| ingest + analyze, single process | {s2['ingest_analyze_local']:.2f} | 1.00 (baseline) |",
            f"| tensorflow-transform `AnalyzeDataset` | {s2['tft_directrunner']:.2f} | "
            f"{tft['tft_vs_ours']:.3f} of our speed |",
            "",
            "tft is fed instance dicts (`beam.Create`; its TFXIO / RecordBatch input would be faster) and timed "
            "from after its imports to the end of the pipeline; fewer rows because it is that much slower here.",
        ]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    """Replace this benchmark's section of bench/README.md (other sections are left as they are)."""
    write_section("preprocessing", f"## Preprocessing\n\n{text}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the taxi CSV (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each method (default %(default)s)")
    parser.add_argument("--nbuckets", type=int, default=16, help="buckets of the analyze pass (default %(default)s)")
    parser.add_argument("--tft-rows", type=int, default=100_000,
                        help="rows of the tensorflow-transform side by side (0: skip; default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULT_FILE, help="result JSON path")
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-preprocessing-") as work:
        report = run(args.rows, args.repeats, args.nbuckets, Path(work))
        if args.tft_rows:
            report["tensorflow_transform"] = tft_side_by_side(args.tft_rows, args.repeats, args.nbuckets, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = table(report)
    print(text)
    if args.readme:
        write_readme(text)
    _log(f"bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
