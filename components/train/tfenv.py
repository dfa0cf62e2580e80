"""Import TensorFlow with the Keras this project trains with (tf-keras), quietly.

tf-keras is the Keras whose MultiWorkerMirroredStrategy and ParameterServerStrategy ``fit``
work on TF 2.21 (DESIGN.md); the environment variable must be set before TensorFlow loads.
"""

from __future__ import annotations

import os

from mlengine.constants import ENV_LEGACY_KERAS


def import_tf():
    """Return ``(tf, keras)`` with ``keras`` being tf-keras; call it instead of importing directly."""
    os.environ.setdefault(ENV_LEGACY_KERAS, "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as keras

    return tf, keras
