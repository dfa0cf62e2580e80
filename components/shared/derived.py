"""Derived-feature ops, once in numpy (analyze pass, benchmark) and once in TensorFlow (inside
the exported model). Both follow the same formula so training and serving agree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

EARTH_RADIUS_KM = 6371.0


def haversine_km_np(lat1, lon1, lat2, lon2):
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _divide_no_nan(a, b):
    """0 where the divisor is 0, as tf.math.divide_no_nan does at serving time."""
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


_NUMPY_OPS = {
    "haversine_km": haversine_km_np,
    "difference": lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64),
    "ratio": lambda a, b: _divide_no_nan(np.asarray(a, np.float64), np.asarray(b, np.float64)),
    "product": lambda a, b: np.asarray(a, np.float64) * np.asarray(b, np.float64),
    "log1p": lambda a: np.log1p(np.maximum(np.asarray(a, np.float64), 0.0)),
}


def add_derived_np(spec, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return the raw columns plus every derived feature of the spec, computed with numpy."""
    out = dict(columns)
    for derived in spec.derived:
        out[derived.name] = _NUMPY_OPS[derived.op](*(out[name] for name in derived.inputs))
    return out


def derived_tf(op: str, inputs: Sequence):
    """The TensorFlow twin of one numpy op: computed in float64 (small coordinate differences lose
    metres in float32), returned as float32."""
    import tensorflow as tf

    return tf.cast(_derived_tf64(tf, op, [tf.cast(x, tf.float64) for x in inputs]), tf.float32)


def _derived_tf64(tf, op: str, xs: list):
    if op == "haversine_km":
        lat1, lon1, lat2, lon2 = (x * (np.pi / 180.0) for x in xs)
        a = tf.sin((lat2 - lat1) / 2) ** 2 + tf.cos(lat1) * tf.cos(lat2) * tf.sin((lon2 - lon1) / 2) ** 2
        return 2 * EARTH_RADIUS_KM * tf.asin(tf.sqrt(tf.clip_by_value(a, 0.0, 1.0)))
    if op == "difference":
        return xs[0] - xs[1]
    if op == "ratio":
        return tf.math.divide_no_nan(xs[0], xs[1])
    if op == "product":
        return xs[0] * xs[1]
    if op == "log1p":
        return tf.math.log1p(tf.maximum(xs[0], 0.0))
    raise ValueError(f"unknown derived op {op!r}")
