"""Shared fixtures: kfp.local with the SubprocessRunner, small generated data sets."""

from __future__ import annotations

import os
import warnings

import pytest

# tf-keras is the Keras whose distributed fit works (components/shared/tf.py); quiet TF's C++ logs
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def kfp_local(tmp_path):
    """kfp.local with the SubprocessRunner in this interpreter (no venv, no Docker)."""
    from kfp import local

    root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        yield root


@pytest.fixture(scope="session")
def small_taxi_csv(tmp_path_factory):
    """3,000 clean generated taxi rows."""
    from mlengine.synthetic import write_csv

    path = tmp_path_factory.mktemp("data") / "taxi-3000.csv"
    write_csv(path, 3000, seed=11)
    return path


def pytest_collection_modifyitems(config, items):
    """The e2e files first: under ``--dist loadfile --no-loadscope-reorder`` (the Makefile's) the two
    test processes then end the suite on the short files together, instead of one running a
    minute-long pipeline file alone at the end (xdist's own order puts files with few tests last)."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)  # stable: file order otherwise
