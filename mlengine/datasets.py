"""Real public datasets that ship as files inside registry packages (nothing downloaded at run time).

``python -m mlengine.datasets diamonds`` prints the path of ``diamonds.csv`` inside the installed
plotnine wheel (the dev extra installs it); the package is located, never imported (importing
plotnine pulls in its plotting stack). Three datasets:

- ``diamonds`` (plotnine): the price of 53,940 diamonds, a regression;
- ``penguins`` (plotnine): the species of 344 Palmer penguins (Adelie, Chinstrap, Gentoo), a
  multiclass classification with string columns (island, sex);
- ``adult`` (mglearn's copy of the UCI census income data): does a person earn more than 50K a
  year, a binary classification of 32,561 people with eight string columns. The file has no header
  and a space after each comma, so a CSV with a header is written once into a cache folder
  (``MLENGINE_DATASET_CACHE``, default ``~/.cache/mlengine/datasets``) and that path is printed.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mlengine.constants import PACKAGE_DATA_DIR
from mlengine.errors import MlengineError

ENV_DATASET_CACHE = "MLENGINE_DATASET_CACHE"
# the census file's columns in order (the UCI names, as identifiers); fnlwgt is the survey's sampling
# weight, not a property of the person, and is left out of the prepared CSV
ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                 "relationship", "race", "gender", "capital_gain", "capital_loss", "hours_per_week",
                 "native_country", "income")
ADULT_DROPPED = ("fnlwgt",)


@dataclass(frozen=True)
class Dataset:
    package: str  # the registry package the file ships in
    relative: str  # the file inside the package
    spec: Path  # the spec written for it (mlengine/data)
    prepared: str | None = None  # the name of a prepared copy in the cache (None: the file is used as it is)


DATASETS = {
    "diamonds": Dataset("plotnine", "data/diamonds.csv", PACKAGE_DATA_DIR / "diamonds_spec.yaml"),
    "penguins": Dataset("plotnine", "data/penguins.csv", PACKAGE_DATA_DIR / "penguins_spec.yaml"),
    "adult": Dataset("mglearn", "data/adult.data", PACKAGE_DATA_DIR / "adult_spec.yaml", prepared="adult.csv"),
}


def _known(name: str) -> Dataset:
    if name not in DATASETS:
        raise MlengineError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def package_file(name: str) -> Path:
    """The dataset's file as its package ships it; one-line error when the package is missing."""
    dataset = _known(name)
    found = importlib.util.find_spec(dataset.package)
    if found is None or not found.submodule_search_locations:
        raise MlengineError(f"dataset {name!r} ships inside the {dataset.package!r} package: "
                            f"pip install {dataset.package}")
    path = Path(next(iter(found.submodule_search_locations))) / dataset.relative
    if not path.is_file():
        raise MlengineError(f"{path}: dataset {name!r} not found in the installed {dataset.package!r} package")
    return path


def cache_dir() -> Path:
    """Where prepared copies are written: MLENGINE_DATASET_CACHE, else ~/.cache/mlengine/datasets."""
    configured = os.environ.get(ENV_DATASET_CACHE)
    return Path(configured) if configured else Path.home() / ".cache" / "mlengine" / "datasets"


def dataset_csv(name: str, cache: str | Path | None = None) -> Path:
    """The CSV file (with a header line) to give ``mlengine run --data``."""
    dataset = _known(name)
    source = package_file(name)
    if dataset.prepared is None:
        return source
    target = Path(cache) if cache is not None else cache_dir()
    path = target / dataset.prepared
    if not path.is_file() or path.stat().st_mtime < source.stat().st_mtime:
        target.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        write_adult_csv(source, temporary)
        temporary.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one
    return path


def write_adult_csv(source: Path, target: Path) -> int:
    """The census file with a header, without the spaces after the commas and the blank last lines; rows written."""
    keep = [index for index, column in enumerate(ADULT_COLUMNS) if column not in ADULT_DROPPED]
    rows = 0
    with open(source, encoding="utf-8", newline="") as raw, open(target, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([ADULT_COLUMNS[index] for index in keep])
        for line, cells in enumerate(csv.reader(raw, skipinitialspace=True), start=1):
            if not cells:
                continue
            if len(cells) != len(ADULT_COLUMNS):
                raise MlengineError(f"{source}: line {line}: {len(cells)} fields, expected {len(ADULT_COLUMNS)}")
            writer.writerow([cells[index].strip() for index in keep])
            rows += 1
    return rows


def dataset_spec(name: str) -> Path:
    """The feature spec written for a package-shipped dataset."""
    return _known(name).spec


if __name__ == "__main__":
    print(dataset_csv(sys.argv[1] if len(sys.argv) > 1 else "diamonds"))
