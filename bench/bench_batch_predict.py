"""Batch prediction: throughput as a ratio to in-process predict, memory flat in input size, equal predictions.

One taxi model with the default hyperparameters (the shape `mlengine run` exports, 1 epoch); generated
CSVs of 1M and 5M rows (0.1% dirty rows; ``--rows`` is the larger). 5M by default: at 1M the whole
prediction takes about 0.3 s, and its fixed part (thread pools starting, the first batch read before
any is predicted and the last written after, memory touched for the first time) is a fifth of it;
a throughput ratio should be about throughput. For each size,
``batch_predict`` runs in its own process (it reports its peak RSS). The baseline, measured in
the same run: in-process ``predict`` of the same SavedModel at the same batch size on columns
already in memory (no reading, validating or writing). Checks: every valid row's prediction
equals the in-process one to float tolerance, every dirty row is in rejects.jsonl with a reason,
``rows_read = rows_predicted + rows_rejected``. Writes bench/results/batch_predict.json.

``--repeats N`` (default 3) interleaves N runs of batch prediction and of the in-process baseline
and keeps the best of each (the ratio is then less at the mercy of a shared machine's load).
``--cores`` (default ``all``: 1, 2, ... every core) adds a scaling view: at each core count
(``taskset`` on the first n cores, ``OMP_NUM_THREADS=n``), the CSV batch prediction beside
in-process predict on those cores, and batch prediction's CSV reading stage (byte ranges on n
threads, numbers as doubles, nothing predicted) beside the bare parser (``pyarrow.csv.read_csv``,
multi-threaded, text) in the same process; speed-ups over 1 core. Then each stage's CPU per row
on one core (``stage_costs``) and what it leaves of in-process predict's speed
(``stage_bounds``). ``--readme`` writes the tables into bench/README.md.

``python -m bench.bench_batch_predict [--rows 5000000] [--repeats 3] [--cores all|1,2|''] [--readme]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "batch_predict.json"
BATCH_ROWS = 65_536
DIRTY_FRACTION = 0.001

_CHILD = """
import json, sys
from bench.memory import peak_rss_mb
from mlengine.components.batch_predict.executor import run
summary = run(sys.argv[1], sys.argv[2], sys.argv[3], batch_rows=int(sys.argv[4])).as_dict()
summary["peak_rss_mb"] = peak_rss_mb()
print(json.dumps(summary))
"""


# one process pinned to n cores: the CSV reading stage and the bare parser on the same file (best of 3,
# interleaved), then in-process predict of the model on columns already in memory (best of 3)
_SCALING_CHILD = """
import json, sys, time
import pyarrow as pa, pyarrow.csv as pacsv
from mlengine.components.batch_predict.executor import _FileBatches, available_cores
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.synthetic import generate_columns
from bench.bench_batch_predict import predict_rate, typed_columns
model_dir, csv_path, batch_rows, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cores = available_cores()
model = load_model_dir(model_dir, tf_threads=cores)
names = list(model.spec.column_names)
numeric = [col.name for col in model.spec.columns if col.type != "string"]
def read():
    return sum(table.num_rows for table, _ in _FileBatches(csv_path, names, batch_rows, workers=cores,
                                                            numeric=numeric))
def parse():
    return pacsv.read_csv(csv_path, parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
                          convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                               include_columns=names)).num_rows
def rate(call):
    started = time.perf_counter()
    count = call()
    return count / (time.perf_counter() - started)
best = {"read": 0.0, "parser": 0.0, "in_process": 0.0}
for _ in range(3):
    best["read"] = max(best["read"], rate(read))
    best["parser"] = max(best["parser"], rate(parse))
typed = typed_columns(model, generate_columns(rows, seed=6))
for _ in range(3):
    best["in_process"] = max(best["in_process"], predict_rate(model, typed))
print(json.dumps({"cores": cores, **best}))
"""


# one process on one core (taskset, OMP_NUM_THREADS=1): the CPU each stage of batch prediction costs
_STAGES_CHILD = """
import json, sys
from bench.bench_batch_predict import stage_costs
print(json.dumps(stage_costs(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
"""


def stage_costs(model_dir: str, csv_path: str, clean_csv_path: str, batch_rows: int, repeats: int = 3) -> dict:
    """CPU seconds per 1,000,000 rows of each stage of batch prediction from CSV, each stage alone.

    The least of ``repeats`` (``time.process_time``: all threads' CPU, so with the process on one
    core the stages add up to what a core must do per row): ``parse_doubles``, Arrow's parser
    reading the used columns of ``clean_csv_path`` straight as doubles, the least any reading of
    such a CSV costs here (it takes no junk: a clean file of the same shape); ``read``, batch
    prediction's reading stage (byte ranges, numbers as doubles, a column with junk as text turned
    into numbers); ``validate`` (the checks); ``model``
    (TensorFlow on the process's cores, one thread on one core); ``write`` (output table, Parquet).
    Huge pages off, as in batch prediction.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from mlengine.components.batch_predict import outputs as prediction_outputs
    from mlengine.components.batch_predict.executor import _FileBatches, _output_table, available_cores, validate
    from mlengine.components.shared.hugepages import transparent_huge_pages_off
    from mlengine.components.shared.savedmodel import load_model_dir
    from mlengine.components.shared.tf import configure_tf_threads

    configure_tf_threads(available_cores(), intra_op=1)  # as batch prediction sets TensorFlow's pools
    model = load_model_dir(model_dir)
    spec = model.spec
    names = list(spec.column_names)
    numeric = [col.name for col in spec.columns if col.type != "string"]
    seconds: dict[str, float] = {}

    def timed(stage: str, call, *args):
        started = time.process_time()
        result = call(*args)
        seconds[stage] = min(seconds.get(stage, float("inf")), time.process_time() - started)
        return result

    def parse_doubles():
        options = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.float64()), include_columns=names)
        return pacsv.read_csv(clean_csv_path, convert_options=options)

    def write(out: Path, read: list, checked: list, valid: list, predicted: list) -> None:
        writer = None
        for (table, index), (_, ok, _), columns, predictions in zip(read, checked, valid, predicted, strict=True):
            result = _output_table(table, index, ok, columns, [], predictions)
            if writer is None:
                writer = pq.ParquetWriter(out, result.schema, use_dictionary=False, write_statistics=False)
            writer.write_table(result)
        writer.close()

    with transparent_huge_pages_off(), tempfile.TemporaryDirectory(prefix="mlengine-bench-stages-") as tmp:
        for _ in range(repeats):
            clean_rows = timed("parse_doubles", parse_doubles).num_rows
            read = timed("read", lambda: list(_FileBatches(csv_path, names, batch_rows, numeric=numeric)))
            checked = timed("validate", lambda tables: [validate(table, spec) for table, _ in tables], read)
            valid = [columns if ok.all() else {n: v[ok] for n, v in columns.items()} for columns, ok, _ in checked]
            predicted = timed("model", lambda batches: [prediction_outputs.predict(model, spec, columns)
                                                        for columns in batches], valid)
            timed("write", write, Path(tmp) / "out.parquet", read, checked, valid, predicted)
    rows = sum(table.num_rows for table, _ in read)  # per input row: the stages add up
    return {stage: round(spent / (clean_rows if stage == "parse_doubles" else rows) * 1e6, 4)
            for stage, spent in seconds.items()}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def in_process_rate(model_dir: Path, csv_path: Path) -> tuple[float, dict]:
    """Rows/s of the model alone on in-memory columns, batch by batch; and those predictions by row."""
    import numpy as np
    import pyarrow.csv as pacsv

    from mlengine.components.shared.savedmodel import load_model_dir

    model = load_model_dir(model_dir)
    ragged: list[int] = []

    def skip(row) -> str:  # ragged lines: skipped here too, their data row index remembered
        ragged.append(int(row.number) - 2)
        return "skip"

    table = pacsv.read_csv(csv_path, read_options=pacsv.ReadOptions(use_threads=False),
                           parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
                           convert_options=pacsv.ConvertOptions(
                               column_types={name: "string" for name in model.spec.column_names}))
    data_index = np.arange(table.num_rows, dtype=np.int64)
    for index in sorted(ragged):
        data_index[data_index >= index] += 1
    columns = {}
    for col in model.spec.columns:  # the same parsing batch prediction does; junk -> NaN, dropped below
        import pandas as pd

        columns[col.name] = pd.to_numeric(pd.Series(table.column(col.name).to_numpy(zero_copy_only=False)),
                                          errors="coerce").to_numpy(np.float64)
    finite = np.all([np.isfinite(v) for v in columns.values()], axis=0)
    rows = np.flatnonzero(finite)
    typed = {c.name: columns[c.name][rows].astype(c.dtypes.numpy) for c in model.spec.columns}
    model({name: values[:BATCH_ROWS] for name, values in typed.items()})  # warm-up (tracing)
    predictions = np.empty(len(rows), np.float32)
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH_ROWS):
        predictions[start:start + BATCH_ROWS] = model({n: v[start:start + BATCH_ROWS] for n, v in typed.items()})
    seconds = time.perf_counter() - started
    return len(rows) / seconds, dict(zip(data_index[rows].tolist(), predictions.tolist(), strict=True))


def train_default_model(workdir: Path) -> Path:
    """A taxi model with the default HyperParameters (the shape the pipeline exports), one epoch."""
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.train.trainer import TrainConfig, train
    from tests.model_fixtures import write_taxi_splits

    params = HyperParameters()
    splits = write_taxi_splits(workdir, rows=20_000)
    analyze(str(splits["train"]), load_spec(None), params.nbuckets).save(workdir / "transform")
    train(TrainConfig(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                      transform_dir=str(workdir / "transform"), model_dir=str(workdir / "model"),
                      hidden_units=params.layers, learning_rate=params.learning_rate, batch_size=params.batch_size,
                      epochs=1))
    return workdir / "model"


def _core_counts(text: str) -> list[int]:
    """``"all"`` -> 1 .. the cores this process may use; ``"1,2"`` -> [1, 2]; ``""`` -> []."""
    import os

    if text.strip() == "all":
        return list(range(1, len(os.sched_getaffinity(0)) + 1))
    return [int(c) for c in text.split(",") if c.strip()]


def typed_columns(model, columns: dict) -> dict:
    """The model's feature columns in its serving dtypes, after one warm-up call (tracing)."""
    typed = {c.name: columns[c.name].astype(c.dtypes.numpy) for c in model.spec.columns}
    model({n: v[:BATCH_ROWS] for n, v in typed.items()})
    return typed


def predict_rate(model, typed: dict) -> float:
    """Rows/s of in-process predict over columns already in memory, ``BATCH_ROWS`` at a time."""
    rows = len(next(iter(typed.values())))
    started = time.perf_counter()
    for start in range(0, rows, BATCH_ROWS):
        model({n: v[start:start + BATCH_ROWS] for n, v in typed.items()})
    return rows / (time.perf_counter() - started)


def _pinned(cores: int | None) -> tuple[list[str], dict]:
    """``taskset`` on the first ``cores`` cores of this process's affinity, ``OMP_NUM_THREADS`` alike."""
    import os

    from bench.bench_scaling import pinned

    return pinned(sorted(os.sched_getaffinity(0))[:cores]) if cores else ([], dict(os.environ))


def run_batch(model_dir: Path, csv_path: Path, out: Path, cores: int | None = None) -> dict:
    """One batch prediction in a fresh process; on the first ``cores`` cores when given (taskset)."""
    pin, env = _pinned(cores)
    output = subprocess.run([*pin, sys.executable, "-c", _CHILD, str(model_dir), str(csv_path), str(out),
                             str(BATCH_ROWS)], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_scaling_child(model_dir: Path, csv_path: Path, rows: int, cores: int) -> dict:
    """Reading stage, bare parser and in-process predict rows/s in one process pinned to ``cores``."""
    pin, env = _pinned(cores)
    output = subprocess.run([*pin, sys.executable, "-c", _SCALING_CHILD, str(model_dir), str(csv_path),
                             str(BATCH_ROWS), str(rows)], check=True, capture_output=True, text=True,
                            env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_stages_child(model_dir: Path, csv_path: Path, clean_csv_path: Path) -> dict:
    """``stage_costs`` in a process of its own on one core (``OMP_NUM_THREADS=1``)."""
    pin, env = _pinned(1)
    output = subprocess.run([*pin, sys.executable, "-c", _STAGES_CHILD, str(model_dir), str(csv_path),
                             str(clean_csv_path), str(BATCH_ROWS)], check=True, capture_output=True, text=True,
                            env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--cores", default="all",
                        help="core counts for the taskset scaling view: comma-separated (e.g. 1,2), 'all' (1 to "
                             "every core this process may use, the default) or '' (none)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved runs of batch prediction and in-process predict, the best of each "
                             "(the machine may be shared: the best run is the least disturbed one)")
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args(argv)
    raw = list(sys.argv[1:] if argv is None else argv)

    import numpy as np
    import pyarrow.parquet as pq

    from mlengine.synthetic import write_csv

    results: dict = {"batch_rows": BATCH_ROWS, "repeats": args.repeats, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="mlengine-bench-batch-") as tmp:
        work = Path(tmp)
        model_dir = train_default_model(work / "model")
        for rows in sorted({max(1, args.rows // 5), args.rows}):
            csv_path = work / f"rows-{rows}.csv"
            counts = write_csv(csv_path, rows, seed=5, dirty_fraction=DIRTY_FRACTION)
            _log(f"bench: {rows:,} rows ({counts['dirty_rows']:,} dirty) -> batch-predict")
            largest = rows == args.rows
            # the largest size: batch prediction and in-process predict interleaved, the best of each
            summary, rate_model, expected = None, 0.0, None
            for _ in range(args.repeats if largest else 1):
                run = run_batch(model_dir, csv_path, work / f"out-{rows}")
                if summary is None or run["rows_per_second"] > summary["rows_per_second"]:
                    summary = run
                if largest:
                    rate, expected = in_process_rate(model_dir, csv_path)
                    rate_model = max(rate_model, rate)
            rate_batch = summary["rows_per_second"]
            entry = {"rows": rows, "dirty_rows": counts["dirty_rows"], **{k: summary[k] for k in (
                "rows_read", "rows_predicted", "rows_rejected", "seconds", "load_seconds", "model_seconds",
                "peak_rss_mb")}, "batch_rows_per_second": rate_batch}
            if largest:
                table = pq.ParquetDataset(sorted(str(p) for p in (work / f"out-{rows}").glob("*.parquet"))).read()
                got_rows = table.column("row").to_numpy()
                got = table.column("prediction").to_numpy()
                want = np.asarray([expected.get(int(r), np.nan) for r in got_rows], np.float32)
                rejects = [json.loads(line) for line in (work / f"out-{rows}" / "rejects.jsonl").open()]
                kinds = Counter(r["reason"].split(":")[1].strip() if r["reason"].startswith("column") else
                                r["reason"].split(":")[0] for r in rejects)
                entry.update({
                    "in_process_rows_per_second": rate_model,
                    "throughput_ratio": rate_batch / rate_model,
                    "max_abs_difference": float(np.nanmax(np.abs(got - want))),
                    "all_equal_to_float_tolerance": bool(np.allclose(got, want, rtol=1e-5, atol=1e-4)),
                    "rows_read_equals_predicted_plus_rejected":
                        summary["rows_read"] == summary["rows_predicted"] + summary["rows_rejected"],
                    "reject_reasons": dict(kinds),
                })
            results["sizes"][str(rows)] = entry
            _log(f"bench: {json.dumps(entry)}")
        # the same number of clean rows as Parquet (typed columns: no text to parse)
        import pyarrow as pa

        from mlengine.synthetic import generate_columns

        columns = generate_columns(args.rows, seed=6)
        parquet_path = work / "rows.parquet"
        pq.write_table(pa.table(columns), parquet_path, row_group_size=BATCH_ROWS)
        from mlengine.components.shared.savedmodel import load_model_dir

        model = load_model_dir(model_dir)
        typed = typed_columns(model, columns)
        summary, rate_model = None, 0.0
        for _ in range(args.repeats):
            run = run_batch(model_dir, parquet_path, work / "out-parquet")
            if summary is None or run["rows_per_second"] > summary["rows_per_second"]:
                summary = run
            rate_model = max(rate_model, predict_rate(model, typed))
        rate_batch = summary["rows_per_second"]
        for cores in _core_counts(args.cores):
            csv_path = work / f"rows-{args.rows}.csv"
            scaled = max((run_batch(model_dir, csv_path, work / f"out-cores-{cores}", cores)
                          for _ in range(max(1, args.repeats - 1))), key=lambda run: run["rows_per_second"])
            stages = run_scaling_child(model_dir, csv_path, args.rows, cores)
            results.setdefault("cores", {})[str(cores)] = {
                "batch_rows_per_second": scaled["rows_per_second"], "in_process_rows_per_second": stages["in_process"],
                "read_rows_per_second": stages["read"], "parser_rows_per_second": stages["parser"]}
            _log(f"bench: on {cores} core(s): {json.dumps(results['cores'][str(cores)])}")
        # what each stage costs a core, and what that leaves of in-process predict's speed (stage_bounds)
        smaller = min(results["sizes"].values(), key=lambda e: e["rows"])["rows"]
        clean_path = work / f"clean-{smaller}.csv"
        write_csv(clean_path, smaller, seed=7)
        results["stages_one_core"] = run_stages_child(model_dir, work / f"rows-{smaller}.csv", clean_path)
        _log(f"bench: CPU-s per 1M rows on one core: {json.dumps(results['stages_one_core'])}")
        results["parquet"] = {"rows": args.rows, "rows_rejected": summary["rows_rejected"],
                              "batch_rows_per_second": rate_batch, "in_process_rows_per_second": rate_model,
                              "throughput_ratio": rate_batch / rate_model, "peak_rss_mb": summary["peak_rss_mb"]}
        _log(f"bench: parquet {json.dumps(results['parquet'])}")
    sizes = sorted(results["sizes"].values(), key=lambda e: e["rows"])
    if len(sizes) == 2:
        results["memory_ratio_large_to_small"] = sizes[1]["peak_rss_mb"] / sizes[0]["peak_rss_mb"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(json.dumps(results, indent=1))
    if args.readme:
        write_readme(results, " ".join(["python -m bench.bench_batch_predict", *raw]))
    return 0


def _machine() -> str:
    """The CPU count and model (Linux: /proc/cpuinfo)."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model})"


def write_readme(results: dict, command: str) -> None:
    """The batch-prediction section of bench/README.md: the component vs in-process predict, same run."""
    import os

    from bench.tables import markdown_table, write_section

    largest = max(results["sizes"].values(), key=lambda e: e["rows"])
    parquet = results["parquet"]
    rows = [[f"CSV, {largest['rows']:,} rows ({largest['dirty_rows']:,} dirty)",
             f"{largest['in_process_rows_per_second']:,.0f}", f"{largest['batch_rows_per_second']:,.0f}",
             f"{largest['throughput_ratio']:.2f}", f"{largest['peak_rss_mb']:.0f}"],
            [f"Parquet, {parquet['rows']:,} rows", f"{parquet['in_process_rows_per_second']:,.0f}",
             f"{parquet['batch_rows_per_second']:,.0f}", f"{parquet['throughput_ratio']:.2f}",
             f"{parquet['peak_rss_mb']:.0f}"]]
    memory = results.get("memory_ratio_large_to_small")
    write_section("batch_predict", "\n".join([
        "## Batch prediction vs in-process predict",
        "",
        f"batches of {results['batch_rows']:,} rows, best of {results.get('repeats', 1)} interleaved runs of "
        f"each (batch prediction in its own process, in-process predict on columns already in memory), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at the end {os.getloadavg()[0]:.2f}"
        + (f"; peak RSS ratio 5x rows / 1x rows {memory:.2f}" if memory else "")
        + f"; {_machine()}; `{command}`:",
        "",
        markdown_table(["input", "in-process rows/s (baseline)", "batch-predict rows/s", "ratio", "peak RSS MB"],
                       rows),
        *(_scaling_lines(results["cores"]) if results.get("cores") else []),
        *(_stage_lines(results["stages_one_core"], results.get("cores", {})) if results.get("stages_one_core")
          else []),
    ]))


STAGES = ("read", "validate", "model", "write")  # batch prediction's stages from CSV, in order


def stage_bounds(stages: dict) -> dict:
    """Batch prediction's rows/s from CSV as a ratio of in-process predict's (the model alone) if every
    stage sped up with the cores as the model does: the model's share of the CPU per row. For batch
    prediction's own stages, and for the floor of Arrow reading the used columns straight as
    doubles plus the model, nothing else. (The model calls of batch prediction, one batch per
    thread, may scale better than in-process predict's one call over threads: not a strict bound.)"""
    return {"stages_ratio": stages["model"] / sum(stages[name] for name in STAGES),
            "floor_ratio": stages["model"] / (stages["parse_doubles"] + stages["model"])}


def _stage_lines(stages: dict, by_cores: dict) -> list[str]:
    """CPU per stage on one core, and the ratios to in-process predict they leave room for."""
    from bench.tables import markdown_table

    bounds = stage_bounds(stages)
    measured = "; measured above: " + ", ".join(
        f"{e['batch_rows_per_second'] / e['in_process_rows_per_second']:.2f}x on {cores} core(s)"
        for cores, e in by_cores.items()) if by_cores else ""
    return ["", "CPU seconds per 1,000,000 input rows on one core (`taskset`, `OMP_NUM_THREADS=1`, TensorFlow on "
            "one thread), each stage alone in one process, best of 3, the smaller CSV. `parse_doubles`: Arrow "
            "reading the used columns of a clean CSV of the same shape straight as doubles, the least any "
            "reading of such a file costs here:", "",
            markdown_table([*STAGES, "sum", "parse_doubles"],
                           [[*(f"{stages[name]:.3f}" for name in STAGES),
                             f"{sum(stages[name] for name in STAGES):.3f}", f"{stages['parse_doubles']:.3f}"]]),
            "", f"If every stage sped up with the cores as the model does, batch prediction from CSV would reach "
            f"model / sum = {bounds['stages_ratio']:.2f}x of in-process predict with these stages, and "
            f"{bounds['floor_ratio']:.2f}x with nothing but Arrow's parse and the model{measured}. 0.8x needs "
            f"everything besides the model to cost at most a quarter of it; Arrow's parse alone costs "
            f"{stages['parse_doubles'] / stages['model']:.2f} of it here."]


def _scaling_lines(by_cores: dict) -> list[str]:
    """The scaling view: batch prediction vs in-process predict, the reading stage vs the parser, by cores."""
    from bench.tables import markdown_table

    first = by_cores[min(by_cores, key=int)]

    def speedup(entry: dict, key: str) -> str:
        return f"{entry[key] / first[key]:.2f}x"

    rows = [[cores, f"{e['batch_rows_per_second']:,.0f}", f"{e['in_process_rows_per_second']:,.0f}",
             f"{e['batch_rows_per_second'] / e['in_process_rows_per_second']:.2f}",
             speedup(e, "batch_rows_per_second"), speedup(e, "in_process_rows_per_second"),
             f"{e['read_rows_per_second']:,.0f}", f"{e['parser_rows_per_second']:,.0f}",
             f"{e['read_rows_per_second'] / e['parser_rows_per_second']:.2f}",
             speedup(e, "read_rows_per_second"), speedup(e, "parser_rows_per_second")]
            for cores, e in by_cores.items()]
    return ["", "Scaling: each core count a process under `taskset` on the first n cores with `OMP_NUM_THREADS=n`. "
            "Batch prediction of the CSV (best of repeats - 1) beside in-process predict pinned alike; its reading "
            "stage (byte ranges on n threads, numbers as doubles; validation and model left out) beside "
            "`pyarrow.csv.read_csv` of the used columns as text in the same process (best of 3). Speed-up: over "
            "the smallest core count.", "",
            markdown_table(["cores", "batch-predict rows/s", "in-process rows/s", "ratio", "batch speed-up",
                            "in-process speed-up", "CSV read rows/s", "parser rows/s", "read / parser",
                            "read speed-up", "parser speed-up"], rows)]


if __name__ == "__main__":
    sys.exit(main())
