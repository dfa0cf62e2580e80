"""Real public datasets that ship as files inside registry packages (nothing downloaded at run time).

``python -m mlengine.datasets diamonds`` prints the path of ``diamonds.csv`` inside the installed
plotnine wheel (the dev extra installs it); the package is located, never imported (importing
plotnine pulls in its plotting stack).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from mlengine.constants import PACKAGE_DATA_DIR
from mlengine.errors import MlengineError

# name -> (package, file inside it, the spec shipped in mlengine/data)
DATASETS = {"diamonds": ("plotnine", "data/diamonds.csv", PACKAGE_DATA_DIR / "diamonds_spec.yaml")}


def dataset_csv(name: str) -> Path:
    """The CSV file of a package-shipped dataset; one-line error when its package is missing."""
    if name not in DATASETS:
        raise MlengineError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    package, relative, _ = DATASETS[name]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise MlengineError(f"dataset {name!r} ships inside the {package!r} package: pip install {package}")
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise MlengineError(f"{path}: dataset {name!r} not found in the installed {package!r} package")
    return path


def dataset_spec(name: str) -> Path:
    """The feature spec written for a package-shipped dataset."""
    if name not in DATASETS:
        raise MlengineError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name][2]


if __name__ == "__main__":
    print(dataset_csv(sys.argv[1] if len(sys.argv) > 1 else "diamonds"))
