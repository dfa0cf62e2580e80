"""setuptools' PEP 517 backend, without its "Editable installation." notice.

``pip install -e .`` of this layout (top-level folders installed under ``mlengine.``) goes
through setuptools' meta path finder, which always prints a notice that folders named like the
package could shadow it. Here the only such folder is ``mlengine/`` itself, so the notice is
noise in every install; every other setuptools warning still shows.
"""

from __future__ import annotations

import warnings

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the whole PEP 517 interface, unchanged)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    from setuptools.warnings import InformationOnly

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Editable installation\.", category=InformationOnly)
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
