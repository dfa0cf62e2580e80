"""Import TensorFlow with the Keras this project trains with (tf-keras), quietly.

tf-keras is the Keras whose MultiWorkerMirroredStrategy and ParameterServerStrategy ``fit``
work on TF 2.21; the environment variable must be set before TensorFlow loads.
"""

from __future__ import annotations

import os

from mlengine.constants import ENV_LEGACY_KERAS

_MODULES: tuple | None = None


def import_tf():
    """Return ``(tf, keras)`` with ``keras`` being tf-keras; call it instead of importing directly."""
    global _MODULES
    # cached: called inside a traced tf.function, AutoGraph would try to convert os.environ.setdefault and
    # log a warning whose text is the whole environment (the MinIO credentials of a pipeline pod included)
    if _MODULES is None:
        os.environ.setdefault(ENV_LEGACY_KERAS, "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        import tf_keras as keras

        _MODULES = (tf, keras)
    return _MODULES


def configure_tf_threads(threads: int | None, *, intra_op: int | None = None) -> None:
    """Set both TensorFlow thread pools to ``threads``; no-op for None/0 (TF's own choice).

    ``intra_op`` sizes the pool one op splits its work over apart (e.g. 1 where several threads
    each make their own model calls: parallel across calls, not within one).
    """
    if not threads:
        return
    tf, _ = import_tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(intra_op or threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:
        pass  # TensorFlow already started its runtime in this process: keep what it has
