"""The skew monitor's verdicts next to a peer drift library's (Evidently) on the same samples.

    python -m bench.bench_drift_peer [--train-rows 20000] [--serving-rows 2000] [--unshifted 5]

A training population (generated taxi trips, coordinates clipped to a box so both ends are
point masses, as real clipped data is) is ingested as `mlengine run` does; serving samples are
drawn from the same generator: ``--unshifted`` populations of different seeds (no drift) and
shifted ones (``--shifts``), float columns as float32 as the serving log holds them. Our
monitor (``compare`` on the ingest statistics) and Evidently's DataDriftTable (its default
tests: Wasserstein distance for numerical columns, Jensen-Shannon for categorical ones at these
sizes, reference = the same train split our statistics describe) judge every (sample, column).

Evidently is installed by this bench into ``bench/.venv-peer`` (its own venv, created on first
use; never the project's venv) and runs there (``bench/peer_drift_evidently.py``).

Prints false alarms on unshifted samples per tool, detections on shifted ones, and the
agreement per (sample, column) and per sample (any column drifted); writes
bench/results/drift_peer.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
RESULT_FILE = RESULTS_DIR / "drift_peer.json"  # drift_peer-<thresholds>.json with --thresholds
PEER_VENV = ROOT / "bench" / ".venv-peer"
PEER_SCRIPT = ROOT / "bench" / "peer_drift_evidently.py"
# the peer's pins: evidently 0.7 imports a pandas helper that pandas 3 removed
PEER_REQUIREMENTS = ["evidently==0.7.23", "pandas>=2.2,<3"]
TRAIN_SEED = 17
UNSHIFTED_SEEDS_FROM = 201
SHIFTED_SEEDS_FROM = 301
DEFAULT_SHIFTS = (0.1, 0.25, 0.5, 1.0)
# the same box as tests/components/monitor/test_clipped_precision.py: about 5% of the rows on each edge
CLIPPED = {"pickup_longitude": (-74.012345, -73.931234), "pickup_latitude": (40.711111, 40.801234),
           "dropoff_longitude": (-74.021234, -73.921234), "dropoff_latitude": (40.701234, 40.811234)}
PEER_TIMEOUT_S = 1800


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_peer_venv() -> Path:
    """bench/.venv-peer with Evidently (created and installed once); returns its python."""
    python = PEER_VENV / "bin" / "python"
    probe = [str(python), "-c", "import evidently, pandas; assert pandas.__version__ < '3'"]
    if python.is_file() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    _log(f"bench: installing {' '.join(PEER_REQUIREMENTS)} into {PEER_VENV} (its own venv, once)")
    venv.create(PEER_VENV, with_pip=True, clear=not python.is_file())
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS], check=True)
    return python


def population(rows: int, seed: int, shift: float = 0.0):
    import numpy as np

    from mlengine.synthetic import generate_columns

    columns = generate_columns(rows, seed=seed, shift=shift)
    for name, (low, high) in CLIPPED.items():
        columns[name] = np.clip(np.round(columns[name], 6), low, high)
    return columns


def write_table(path: Path, names: list[str], columns: dict, types: dict[str, str]) -> None:
    rows = len(columns[names[0]])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for i in range(rows):
            writer.writerow([repr(float(columns[n][i])) if types[n] == "float" else int(columns[n][i]) for n in names])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--serving-rows", type=int, default=2_000)
    parser.add_argument("--unshifted", type=int, default=5, help="unshifted serving samples (different seeds)")
    parser.add_argument("--shifts", type=float, nargs="*", default=list(DEFAULT_SHIFTS))
    parser.add_argument("--thresholds", default="", help="our monitor's overrides, as `mlengine monitor --thresholds`")
    args = parser.parse_args(argv)

    import numpy as np
    import pyarrow.parquet as pq

    from mlengine.components.ingest.executor import run as run_ingest
    from mlengine.components.monitor.executor import compare, load_statistics
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.constants import SPLITS

    peer_python = ensure_peer_venv()
    spec = load_spec()
    names = spec.column_names
    types = {c.name: c.type for c in spec.all_columns}
    work = RESULTS_DIR / ".cache" / "drift_peer"
    work.mkdir(parents=True, exist_ok=True)

    _log(f"bench: training population {args.train_rows:,} rows (clipped coordinates), ingested")
    train = population(args.train_rows, TRAIN_SEED)
    all_names = [c.name for c in spec.all_columns]
    write_table(work / "train.csv", all_names, train, types)
    ingest_dir = work / "ingest"
    run_ingest(str(work / "train.csv"), spec, {s: str(ingest_dir / s) for s in SPLITS}, str(ingest_dir / "rejects"),
               str(ingest_dir / "stats"))
    stats, _ = load_statistics(ingest_dir / "stats")
    reference = pq.read_table(sorted((ingest_dir / "train").glob("*.parquet"))).to_pydict()
    write_table(work / "reference.csv", names, reference, types)

    samples: dict[str, dict] = {}
    for i in range(args.unshifted):
        samples[f"unshifted-{i + 1}"] = population(args.serving_rows, UNSHIFTED_SEEDS_FROM + i)
    for i, shift in enumerate(args.shifts):
        samples[f"shift-{shift:g}"] = population(args.serving_rows, SHIFTED_SEEDS_FROM + i, shift)
    ours: dict[str, dict[str, bool]] = {}
    manifest = {"reference": str(work / "reference.csv"), "samples": {},
                "numerical": [n for n in names if n not in spec.categorical and types[n] != "string"],
                "categorical": [n for n in names if n in spec.categorical or types[n] == "string"]}
    for name, columns in samples.items():
        # what the serving log holds: float columns as the float32 the model saw
        served = {n: columns[n].astype(np.float32) if types[n] == "float" else columns[n] for n in names}
        result = compare(stats, served, spec, args.thresholds)
        ours[name] = {n: entry["status"] == "drift" for n, entry in result["columns"].items()}
        path = work / f"{name}.csv"
        write_table(path, names, {n: np.asarray(v, np.float64) if types[n] == "float" else v
                                  for n, v in served.items()}, types)
        manifest["samples"][name] = str(path)
    (work / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    _log(f"bench: {len(samples)} samples x {len(names)} columns; Evidently runs in {PEER_VENV}")
    subprocess.run([str(peer_python), str(PEER_SCRIPT), str(work / "manifest.json"), str(work / "peer.json")],
                   check=True, timeout=PEER_TIMEOUT_S)
    peer = json.loads((work / "peer.json").read_text(encoding="utf-8"))
    theirs = {s: {n: v["drift_detected"] for n, v in cols.items()} for s, cols in peer["verdicts"].items()}

    pairs = [(s, n) for s in samples for n in names]
    agree = sum(ours[s][n] == theirs[s][n] for s, n in pairs)
    sample_agree = sum(any(ours[s].values()) == any(theirs[s].values()) for s in samples)
    unshifted = [s for s in samples if s.startswith("unshifted")]
    shifted = [s for s in samples if s.startswith("shift")]
    figures = {
        "peer": {"library": peer["library"], "version": peer["version"]},
        "train_rows": args.train_rows, "serving_rows": args.serving_rows, "thresholds": args.thresholds or "default",
        "column_verdicts": len(pairs),
        "column_agreement": agree / len(pairs),
        "sample_agreement": sample_agree / len(samples),
        "false_alarms_ours": sum(ours[s][n] for s in unshifted for n in names),
        "false_alarms_peer": sum(theirs[s][n] for s in unshifted for n in names),
        "unshifted_column_verdicts": len(unshifted) * len(names),
        "shifted_columns_flagged_ours": sum(ours[s][n] for s in shifted for n in names),
        "shifted_columns_flagged_peer": sum(theirs[s][n] for s in shifted for n in names),
        "disagreements": [{"sample": s, "column": n, "ours": ours[s][n], "peer": theirs[s][n],
                           "peer_test": peer["verdicts"][s][n]["stattest"],
                           "peer_score": round(peer["verdicts"][s][n]["score"], 4)}
                          for s, n in pairs if ours[s][n] != theirs[s][n]],
        "per_sample": {s: {"ours": sorted(n for n in names if ours[s][n]),
                           "peer": sorted(n for n in names if theirs[s][n])} for s in samples},
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result_file = RESULT_FILE if not args.thresholds else \
        RESULT_FILE.with_name(f"drift_peer-{args.thresholds.replace('=', '').replace(',', '-')}.json")
    result_file.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print(f"{'sample':<14} {'ours (drifted columns)':<60} peer ({peer['library']} {peer['version']})")
    for s, verdict in figures["per_sample"].items():
        print(f"{s:<14} {', '.join(verdict['ours']) or '-':<60} {', '.join(verdict['peer']) or '-'}")
    print(f"false alarms on unshifted samples: ours {figures['false_alarms_ours']}, peer "
          f"{figures['false_alarms_peer']} of {figures['unshifted_column_verdicts']} column verdicts")
    print(f"agreement: {agree}/{len(pairs)} column verdicts ({100 * figures['column_agreement']:.1f}%), "
          f"{sample_agree}/{len(samples)} sample verdicts; results: {result_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
