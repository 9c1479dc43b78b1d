"""Binary classification metrics computed by the guest: AUC, KS, accuracy, precision, recall, F1.

Pure numpy, so that the federated run and the plaintext reference score
predictions with exactly the same code. `y` holds 0/1 labels, `score` the
predicted probability of class 1 (any monotone score works for AUC and KS).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from vfl.errors import DataError


class BinaryMetrics(TypedDict):
    auc: float
    ks: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    n: int
    positives: int


def _check(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yy = np.asarray(y).astype(np.int64).ravel()
    ss = np.asarray(score, dtype=np.float64).ravel()
    if yy.shape != ss.shape:
        raise DataError(f"{len(yy)} labels but {len(ss)} scores")
    if not np.all(np.isfinite(ss)):
        raise DataError("scores contain NaN or infinite values")
    if yy.size and not np.all((yy == 0) | (yy == 1)):
        raise DataError("labels must be 0 or 1")
    return yy, ss


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest threshold first; starts at (0, 0)."""
    yy, ss = _check(y, score)
    order = np.argsort(-ss, kind="mergesort")
    ys, s_sorted = yy[order], ss[order]
    last_of_run = np.r_[np.nonzero(np.diff(s_sorted))[0], ys.size - 1] if ys.size else np.array([], int)
    tps = np.cumsum(ys)[last_of_run]
    fps = (last_of_run + 1) - tps
    pos, neg = max(int(yy.sum()), 0), int(yy.size - yy.sum())
    tpr = np.r_[0.0, tps / pos] if pos else np.r_[0.0, np.zeros(len(tps))]
    fpr = np.r_[0.0, fps / neg] if neg else np.r_[0.0, np.zeros(len(fps))]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thresholds


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN when only one class is present."""
    yy, ss = _check(y, score)
    pos = int(yy.sum())
    neg = yy.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    fpr, tpr, _ = roc_curve(yy, ss)
    return float(np.trapezoid(tpr, fpr))


def ks(y: np.ndarray, score: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: max over thresholds of TPR - FPR."""
    yy, _ = _check(y, score)
    if yy.sum() == 0 or yy.sum() == yy.size:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    return float(np.max(tpr - fpr))


def binary_metrics(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> BinaryMetrics:
    """All metrics of one split; class 1 is predicted when `proba >= threshold`."""
    yy, pp = _check(y, proba)
    pred = (pp >= threshold).astype(np.int64)
    tp = int(np.sum((pred == 1) & (yy == 1)))
    fp = int(np.sum((pred == 1) & (yy == 0)))
    fn = int(np.sum((pred == 0) & (yy == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "auc": auc(yy, pp),
        "ks": ks(yy, pp),
        "accuracy": float(np.mean(pred == yy)) if yy.size else float("nan"),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "n": int(yy.size),
        "positives": int(yy.sum()),
    }
