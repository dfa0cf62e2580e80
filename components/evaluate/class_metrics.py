"""Classification metrics accumulated batch by batch in bounded memory (numpy only).

Each class's predicted probability is counted in a fine histogram (one-vs-rest: rows of the class
and all rows), so the ranking metrics need no copy of the test split: ROC AUC counts the pairs a
bin separates and half the pairs inside one bin (the tie rule of scikit-learn's ``roc_auc_score``);
the average precision steps through the bins from the top (``average_precision_score``'s rule with
a bin as one threshold). The bins are even in the log-odds ``log(p / (1 - p))`` between
``-LOGIT_LIMIT`` and ``LOGIT_LIMIT``, so a confident model's probabilities near 0 and 1 stay apart
too: two probabilities whose log-odds differ by more than 0.0007 fall in different bins, and both
figures agree with scikit-learn on every set whose distinct scores are that far apart.

The same counts give the ROC and precision-recall curves and the reliability (calibration) curve;
the confusion matrix (rows true, columns predicted, vocabulary order) counts the argmax class.
"""

from __future__ import annotations

import math

import numpy as np

from mlengine.errors import DataError

ROC_BINS = 100_000  # probability bins of the whole test split
SLICE_BINS = 256  # coarser bins per slice value (many values are counted at once)
CALIBRATION_BINS = 10  # bins of the reliability plot
CURVE_POINTS = 200  # points a curve keeps for the reports and the Kubeflow UI
PROBABILITY_FLOOR = 1e-15  # log loss of a zero probability is finite, as in scikit-learn's log_loss
LOGIT_LIMIT = 36.0  # log-odds of 1 - 2e-16: the range of float64 probabilities


def _bin_of(probabilities: np.ndarray, bins: int) -> np.ndarray:
    """The histogram bin of each probability: even steps in log-odds, clipped to the limits."""
    p = np.clip(probabilities, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        logit = np.clip(np.log(p) - np.log1p(-p), -LOGIT_LIMIT, LOGIT_LIMIT)
    return np.minimum(((logit + LOGIT_LIMIT) / (2 * LOGIT_LIMIT) * bins).astype(np.int64), bins - 1)


def _bin_probability(positions: np.ndarray, bins: int) -> np.ndarray:
    """The probability at a (fractional) bin position: 0 is the lower edge of the first bin."""
    return 1.0 / (1.0 + np.exp(-(positions / bins * 2 * LOGIT_LIMIT - LOGIT_LIMIT)))


def class_ids(values: np.ndarray, classes: tuple | list, where: str = "label") -> np.ndarray:
    """Vocabulary positions of label values (strings or ints); a value outside it is an error."""
    index = {value: position for position, value in enumerate(classes)}
    uniques, inverse = np.unique(np.asarray(values), return_inverse=True)
    ids = np.empty(len(uniques), dtype=np.int64)
    for position, value in enumerate(uniques.tolist()):
        if value not in index:
            raise DataError(f"{where}: value {value!r} is not in the label vocabulary {list(classes)}")
        ids[position] = index[value]
    return ids[inverse.reshape(-1)]


class ClassScores:
    """Log loss, accuracy, confusion counts and per-class probability histograms of a stream of rows."""

    def __init__(self, num_classes: int, bins: int = ROC_BINS) -> None:
        self.num_classes = num_classes
        self.bins = bins
        self.rows = 0
        self.log_loss_sum = 0.0
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.positives = np.zeros((num_classes, bins), dtype=np.int64)  # rows of class k by bin of p_k
        self.totals = np.zeros((num_classes, bins), dtype=np.int64)  # all rows by bin of p_k

    def update(self, probabilities: np.ndarray, true_ids: np.ndarray) -> None:
        probabilities = np.asarray(probabilities, np.float64).reshape(len(true_ids), self.num_classes)
        if not len(true_ids):
            return
        rows = np.arange(len(true_ids))
        chosen = np.clip(probabilities[rows, true_ids], PROBABILITY_FLOOR, 1.0)
        self.log_loss_sum -= float(np.log(chosen).sum())
        predicted = probabilities.argmax(axis=1)
        self.confusion += np.bincount(true_ids * self.num_classes + predicted,
                                      minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)
        binned = _bin_of(probabilities, self.bins)
        for k in range(self.num_classes):
            self.totals[k] += np.bincount(binned[:, k], minlength=self.bins)
            self.positives[k] += np.bincount(binned[true_ids == k, k], minlength=self.bins)
        self.rows += len(true_ids)

    # --- scalar metrics --------------------------------------------------------------------------
    @property
    def log_loss(self) -> float:
        return self.log_loss_sum / self.rows if self.rows else math.nan

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion)) / self.rows if self.rows else math.nan

    def class_auc(self, k: int) -> float | None:
        """ROC AUC of class k against the rest; None when the rows hold only one side."""
        pos = self.positives[k][::-1].astype(np.float64)  # from the highest probability down
        neg = self.totals[k][::-1] - self.positives[k][::-1]
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            return None
        above = np.cumsum(pos) - pos  # positives in higher bins
        return float(np.dot(neg, above + 0.5 * pos) / (total_pos * total_neg))

    @property
    def roc_auc(self) -> float | None:
        """Binary: the AUC of the second class; multiclass: the one-vs-rest macro average."""
        if self.num_classes == 2:
            return self.class_auc(1)
        aucs = [auc for auc in (self.class_auc(k) for k in range(self.num_classes)) if auc is not None]
        return float(np.mean(aucs)) if aucs else None

    def average_precision(self, k: int = 1) -> float | None:
        """PR AUC (average precision) of class k; None without rows of the class."""
        tp, fp = self._cumulative(k)
        total_pos = self.positives[k].sum()
        if total_pos == 0:
            return None
        recall = tp / total_pos
        precision = tp / np.maximum(tp + fp, 1)
        return float(np.dot(np.diff(recall, prepend=0.0), precision))

    def per_class(self, classes: list) -> list[dict]:
        """Precision, recall, F1 and support of each class (0 where undefined, as scikit-learn's zero_division=0)."""
        out = []
        predicted = self.confusion.sum(axis=0)
        support = self.confusion.sum(axis=1)
        for k, name in enumerate(classes):
            hit = float(self.confusion[k, k])
            precision = hit / predicted[k] if predicted[k] else 0.0
            recall = hit / support[k] if support[k] else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": int(support[k])})
        return out

    # --- curves ----------------------------------------------------------------------------------
    def _cumulative(self, k: int, pooled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """True and false positives at each non-empty bin taken as the threshold, from the top down."""
        positives = self.positives.sum(axis=0) if pooled else self.positives[k]
        totals = self.totals.sum(axis=0) if pooled else self.totals[k]
        occupied = np.flatnonzero(totals[::-1])
        tp = np.cumsum(positives[::-1].astype(np.float64))[occupied]
        fp = np.cumsum((totals - positives)[::-1].astype(np.float64))[occupied]
        return tp, fp

    def _thresholds(self, k: int, pooled: bool = False) -> np.ndarray:
        totals = self.totals.sum(axis=0) if pooled else self.totals[k]
        occupied = np.flatnonzero(totals[::-1])
        return _bin_probability(self.bins - 1 - occupied, self.bins)  # each bin's lower edge

    def roc_curve(self, k: int = 1, pooled: bool = False) -> dict[str, list[float]]:
        """fpr, tpr and thresholds (descending), from (0, 0) to (1, 1), at most CURVE_POINTS points.

        ``pooled``: every class's one-vs-rest rows together (the micro-averaged curve of a multiclass model).
        """
        tp, fp = self._cumulative(k, pooled)
        thresholds = self._thresholds(k, pooled)
        total_pos, total_neg = (tp[-1], fp[-1]) if tp.size else (0.0, 0.0)
        if not total_pos or not total_neg:
            return {"fpr": [], "tpr": [], "thresholds": []}
        keep = _spread(tp.size, CURVE_POINTS - 1)
        return {"fpr": [0.0, *(fp[keep] / total_neg).tolist()], "tpr": [0.0, *(tp[keep] / total_pos).tolist()],
                "thresholds": [1.0, *thresholds[keep].tolist()]}

    def pr_curve(self, k: int = 1) -> dict[str, list[float]]:
        """precision and recall at each threshold (descending), at most CURVE_POINTS points."""
        tp, fp = self._cumulative(k)
        if not tp.size or not tp[-1]:
            return {"precision": [], "recall": []}
        keep = _spread(tp.size, CURVE_POINTS)
        return {"precision": (tp[keep] / np.maximum(tp[keep] + fp[keep], 1)).tolist(),
                "recall": (tp[keep] / tp[-1]).tolist()}

    def calibration(self, k: int, bins: int = CALIBRATION_BINS) -> dict[str, list[float]]:
        """Mean predicted probability of class k and the observed share of class k, per probability bin."""
        centres = _bin_probability(np.arange(self.bins) + 0.5, self.bins)
        group = np.minimum((centres * bins).astype(np.int64), bins - 1)
        totals = np.bincount(group, weights=self.totals[k], minlength=bins)
        positives = np.bincount(group, weights=self.positives[k], minlength=bins)
        predicted = np.bincount(group, weights=self.totals[k] * centres, minlength=bins)
        filled = totals > 0
        return {"predicted": (predicted[filled] / totals[filled]).tolist(),
                "observed": (positives[filled] / totals[filled]).tolist(), "rows": totals[filled].astype(int).tolist()}


def _spread(size: int, points: int) -> np.ndarray:
    """Indices of at most ``points`` entries of ``range(size)``, evenly spread, the last one included."""
    if size <= points:
        return np.arange(size)
    return np.unique(np.linspace(0, size - 1, points).round().astype(np.int64))


def summary(scores: ClassScores, classes: list) -> dict:
    """The headline figures of one accumulator: log loss, accuracy, ROC AUC, PR AUC (binary)."""
    return {"rows": scores.rows, "log_loss": scores.log_loss, "accuracy": scores.accuracy, "roc_auc": scores.roc_auc,
            "pr_auc": scores.average_precision(1) if len(classes) == 2 else None}
