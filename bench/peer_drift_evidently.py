"""Runs inside the peer venv (bench/.venv-peer, never the project's): Evidently's column drift verdicts.

    bench/.venv-peer/bin/python bench/peer_drift_evidently.py MANIFEST.json OUT.json

The manifest names the reference CSV, the sample CSVs and which columns are numerical or
categorical; the output maps sample -> column -> {drift_detected, stattest, score, threshold}
from Evidently's DataDriftTable with its default test selection. Only the standard library,
pandas and evidently are imported: this file must not import the project.
"""

from __future__ import annotations

import json
import sys


def main(manifest_path: str, out_path: str) -> int:
    import evidently
    import pandas as pd
    from evidently.legacy.metric_preset import DataDriftPreset
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    numerical, categorical = manifest["numerical"], manifest["categorical"]
    reference = pd.read_csv(manifest["reference"])
    mapping = ColumnMapping(numerical_features=numerical, categorical_features=categorical, target=None,
                            prediction=None)
    verdicts: dict[str, dict] = {}
    for name, path in manifest["samples"].items():
        report = Report(metrics=[DataDriftPreset()])
        report.run(reference_data=reference, current_data=pd.read_csv(path), column_mapping=mapping)
        table = next(m["result"] for m in report.as_dict()["metrics"] if "drift_by_columns" in m["result"])
        verdicts[name] = {column: {"drift_detected": bool(entry["drift_detected"]),
                                   "stattest": entry["stattest_name"], "score": float(entry["drift_score"]),
                                   "threshold": float(entry["stattest_threshold"])}
                          for column, entry in table["drift_by_columns"].items()}
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump({"library": "evidently", "version": evidently.__version__, "verdicts": verdicts}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
