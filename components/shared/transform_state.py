"""The transform state: what the analyze pass learned, and the preprocessing layer built from it.

The transform component writes it (``transform.json``); training builds the model's
preprocessing from it; the exported model directory carries a copy, so evaluation, serving and
batch prediction all read the same numbers. The preprocessing is a Keras layer of TensorFlow ops
inside the exported model: serving runs the very same preprocessing as training on RAW inputs.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.components.shared import derived as derived_ops
from mlengine.components.shared.featurespec import MAX_CROSS_SIZE, FeatureSpec, spec_from_dict
from mlengine.components.shared.userfiles import read_json_object
from mlengine.constants import TRANSFORM_FILE
from mlengine.errors import MlengineError

NUMERIC_KEY = "numeric"  # key of the dense z-scored block in the preprocessing output
REQUIRED_KEYS = ("spec", "nbuckets", "numeric", "boundaries", "vocabularies", "benchmark")


@dataclass(frozen=True)
class TransformState:
    """Moments, bucket boundaries, vocabularies and the benchmark line of one training split."""

    spec: FeatureSpec
    nbuckets: int
    rows: int
    numeric: dict[str, dict[str, float]]  # feature -> {"mean", "std"}
    boundaries: dict[str, list[float]]  # bucketized feature -> sorted edges
    vocabularies: dict[str, list]  # learned string vocabularies (declared ones stay in the spec)
    benchmark: dict[str, Any]  # {"feature", "slope", "intercept"}: the rule-based baseline
    # regression: {"mean", "std", "transform"} of the label; classification: {"class_counts"} (vocabulary
    # order, the training split's rows per class) and "transform": "none" (class labels are never scaled)
    label: dict[str, Any] = field(default_factory=dict)

    # --- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "nbuckets": self.nbuckets, "rows": self.rows, "numeric": self.numeric,
                "label": self.label, "boundaries": self.boundaries, "vocabularies": self.vocabularies,
                "benchmark": self.benchmark}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "transform state") -> TransformState:
        missing = [key for key in REQUIRED_KEYS if key not in raw]
        if missing:
            raise MlengineError(f"{source}: transform state has no {missing[0]!r} field")
        return cls(spec=spec_from_dict(raw["spec"], source=f"{source}:spec"), nbuckets=int(raw["nbuckets"]),
                   rows=int(raw.get("rows", 0)), numeric=raw["numeric"], boundaries=raw["boundaries"],
                   vocabularies=raw["vocabularies"], benchmark=raw["benchmark"], label=raw.get("label") or {})

    def save(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/transform.json``; returns its path."""
        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TRANSFORM_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path_or_dir: str | Path) -> TransformState:
        """Read ``transform.json`` or a directory holding it (a transform artifact or a model dir)."""
        raw = read_json_object(path_or_dir, what="transform", file_name=TRANSFORM_FILE)
        return cls.from_dict(raw, source=str(path_or_dir))

    # --- lookups ------------------------------------------------------------------------------
    @property
    def label_mean(self) -> float:
        """The training label mean: recorded by analyze, else where the benchmark line passes the feature mean."""
        if "mean" in self.label:
            return float(self.label["mean"])
        bench = self.benchmark
        if bench.get("feature"):
            return float(bench["slope"]) * float(self.numeric[bench["feature"]]["mean"]) + float(bench["intercept"])
        return float(bench["intercept"])

    @property
    def label_transform(self) -> str:
        """standardize, log1p or none (a state written before label scaling existed: none)."""
        return str(self.label.get("transform", "none"))

    @property
    def label_scale(self) -> tuple[float, float]:
        """(center, scale) of the transformed label: the model predicts (T(label) - center) / scale."""
        if self.label_transform == "none" or "std" not in self.label:
            return 0.0, 1.0
        std = float(self.label["std"])
        return float(self.label["mean"]), std if std > 0 else 1.0

    @property
    def class_counts(self) -> list[int]:
        """Training rows per class in vocabulary order (a classification state; [] otherwise)."""
        return [int(c) for c in self.label.get("class_counts", [])]

    @property
    def class_prior(self) -> list[float]:
        """The training split's class shares in vocabulary order: the benchmark's prediction ([] for regression)."""
        counts = self.class_counts
        total = sum(counts)
        return [c / total for c in counts] if total else []

    def _regression_only(self, what: str) -> None:
        if self.spec.is_classification:
            raise MlengineError(f"{what}: {self.spec.label.name!r} is a class label; only regression labels are scaled")

    def encode_label(self, label, tf):
        """Label (original unit) -> the standardised target the network is trained on (TF ops)."""
        self._regression_only("encode_label")
        center, scale = self.label_scale
        value = tf.math.log1p(label) if self.label_transform == "log1p" else label
        return (value - center) / scale

    def decode_label(self, z, tf):
        """The network's standardised output -> a prediction in the label's unit (TF ops)."""
        self._regression_only("decode_label")
        center, scale = self.label_scale
        value = z * scale + center
        return tf.math.expm1(value) if self.label_transform == "log1p" else value

    def vocabulary(self, name: str) -> list | None:
        """The vocabulary of a categorical: declared in the spec, else learned by analyze (None for int ranges)."""
        col = self.spec.column(name)
        if col.vocabulary is not None:
            return list(col.vocabulary)
        return self.vocabularies.get(name)

    def sparse_features(self) -> list[dict[str, Any]]:
        """Each id-valued output of the preprocessing: key, kind, cardinality, deep embedding dim.

        Bucket ids feed only the wide part (dim None); categorical and cross ids feed both parts.
        """
        spec = self.spec
        cardinality: dict[str, int] = {}
        out = []
        for name in spec.bucketized:
            cardinality[name] = len(self.boundaries[name]) + 1
            out.append({"key": f"bucketized/{name}", "kind": "bucketized", "cardinality": cardinality[name],
                        "dim": None})
        for name in spec.categorical:
            cardinality[name] = spec.categorical_cardinality(name, self.vocabulary(name))
            out.append({"key": f"categorical/{name}", "kind": "categorical", "cardinality": cardinality[name],
                        "dim": spec.embedding_dim})
        for cross in spec.crosses:
            size = math.prod(cardinality[name] for name in cross.inputs)
            out.append({"key": f"cross/{cross.name}", "kind": "cross", "cardinality": min(size, MAX_CROSS_SIZE),
                        "hashed": size > MAX_CROSS_SIZE, "dim": cross.embedding_dim or spec.embedding_dim})
        return out

    def build_preprocessing(self):
        """A Keras layer: dict of raw 1-D tensors -> {"numeric": [B, n] float32, "<kind>/<name>": [B] int64}."""
        return _preprocessing_class()(self)


class _Plain:
    """Holds plain Python values on a Keras layer without Keras tracking them."""

    def __init__(self, **values):
        self.__dict__.update(values)


@functools.cache
def _preprocessing_class():
    from mlengine.components.shared.tf import import_tf

    tf, keras = import_tf()

    class RawPreprocessing(keras.layers.Layer):
        """Derived features, z-scores, bucket ids, categorical ids and cross ids, all in TF ops."""

        def __init__(self, state: TransformState | dict, **kwargs):
            kwargs.setdefault("name", "preprocessing")
            kwargs.setdefault("trainable", False)
            super().__init__(**kwargs)
            if isinstance(state, dict):  # from get_config()
                state = TransformState.from_dict(state)
            # plain Python kept outside Keras attribute tracking (it would wrap dicts and lists)
            self._plain = _Plain(state=state, features=state.sparse_features())
            self.tables = {}
            for name in state.spec.categorical:
                vocabulary = state.vocabulary(name)
                if vocabulary is None:
                    continue
                key_dtype = tf.string if state.spec.column(name).type == "string" else tf.int64
                keys = tf.constant([str(v) for v in vocabulary] if key_dtype == tf.string else vocabulary,
                                   dtype=key_dtype)
                ids = tf.range(1, len(vocabulary) + 1, dtype=tf.int64)  # 0 is out of vocabulary
                self.tables[name] = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, ids), 0)

        @property
        def state(self) -> TransformState:
            return self._plain.state

        @property
        def features(self) -> list[dict[str, Any]]:
            return self._plain.features

        def call(self, inputs):
            state = self.state
            spec = state.spec
            values = {}
            for col in spec.columns:
                tensor = tf.reshape(inputs[col.name], [-1])
                if col.type == "float":
                    tensor = tf.cast(tensor, tf.float32)
                elif col.type == "int":
                    tensor = tf.cast(tensor, tf.int64)
                values[col.name] = tensor
            for item in spec.derived:
                values[item.name] = derived_ops.derived_tf(item.op, [values[n] for n in item.inputs])
            out = {}
            if spec.numeric:
                scaled = []
                for name in spec.numeric:
                    stats = state.numeric[name]
                    std = stats["std"] if stats["std"] > 0 else 1.0
                    value = tf.cast(values[name], tf.float32)
                    if "clip" in stats:  # outliers beyond the analyze pass's wide quantiles
                        value = tf.clip_by_value(value, stats["clip"][0], stats["clip"][1])
                    scaled.append((value - stats["mean"]) / std)
                out[NUMERIC_KEY] = tf.stack(scaled, axis=1)
            ids = {}
            for name in spec.bucketized:
                ids[name] = tf.cast(tf.raw_ops.Bucketize(input=tf.cast(values[name], tf.float32),
                                                         boundaries=state.boundaries[name]), tf.int64)
                out[f"bucketized/{name}"] = ids[name]
            for name in spec.categorical:
                col = spec.column(name)
                if name in self.tables:
                    ids[name] = self.tables[name].lookup(values[name])
                else:
                    low, high = int(col.range[0]), int(col.range[1])
                    raw = values[name]
                    ids[name] = tf.where((raw >= low) & (raw <= high), raw - low + 1, tf.zeros_like(raw))
                out[f"categorical/{name}"] = ids[name]
            cardinality = {f["key"].split("/", 1)[1]: f["cardinality"] for f in self.features if f["kind"] != "cross"}
            for feature in self.features:
                if feature["kind"] != "cross":
                    continue
                name = feature["key"].split("/", 1)[1]
                inputs_of_cross = next(c.inputs for c in spec.crosses if c.name == name)
                if feature.get("hashed"):
                    joined = tf.strings.join([tf.strings.as_string(ids[n]) for n in inputs_of_cross], separator="_")
                    combined = tf.strings.to_hash_bucket_fast(joined, feature["cardinality"])
                else:
                    combined = ids[inputs_of_cross[0]]
                    for n in inputs_of_cross[1:]:
                        combined = combined * cardinality[n] + ids[n]
                out[feature["key"]] = combined
            return out

        def get_config(self):
            return {**super().get_config(), "state": self.state.to_dict()}

    return RawPreprocessing
