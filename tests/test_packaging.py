"""Building this package (wheel and editable) prints no setuptools warning."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = """
import sys, warnings
sys.path.insert(0, "build_backend")
import quiet_setuptools as backend
warnings.simplefilter("always")
print(getattr(backend, sys.argv[1])(sys.argv[2]))
"""


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_the_build_backend_warns_about_nothing(tmp_path, hook):
    done = subprocess.run([sys.executable, "-c", BUILD, hook, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert "Warning" not in output, [line for line in output.splitlines() if "Warning" in line]
    [wheel] = tmp_path.glob("*.whl")
    if hook == "build_wheel":  # the data files are in the wheel, under their packages
        names = zipfile.ZipFile(wheel).namelist()
        assert "mlengine/data/taxi_spec.yaml" in names
        assert "mlengine/components/shared/featurespec.schema.json" in names
