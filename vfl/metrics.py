"""Binary classification metrics computed by the guest: AUC, KS, accuracy, precision, recall, F1,
the confusion matrix, precision-recall curve and average precision, and decile lift/gain.

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


# -- the evaluation FATE users expect: confusion matrix, precision-recall, lift and gain ----------

DEFAULT_THRESHOLD = 0.5  # class 1 when score >= threshold (binary_metrics, predictions.csv predict_result)
PR_CURVE_POINTS = 201  # metrics.json keeps at most this many points of a precision-recall curve


class ConfusionMatrix(TypedDict):
    threshold: float
    tn: int
    fp: int
    fn: int
    tp: int
    matrix: list[list[int]]  # [[tn, fp], [fn, tp]]: rows actual 0/1, columns predicted 0/1 (scikit-learn's layout)


class LiftRow(TypedDict):
    decile: int  # 1 = the tenth of rows with the highest scores
    rows: int
    positives: int
    score_min: float
    score_max: float
    response_rate: float  # positives / rows of this decile
    cumulative_positives: int
    gain: float  # cumulative share of all positives found in deciles 1..d
    lift: float  # this decile's response rate / the overall rate
    cumulative_lift: float  # response rate of deciles 1..d / the overall rate


def confusion_matrix(y: np.ndarray, score: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> ConfusionMatrix:
    """Counts of actual x predicted class, class 1 predicted when `score >= threshold`."""
    yy, ss = _check(y, score)
    pred = ss >= threshold
    tn = int(np.sum(~pred & (yy == 0)))
    fp = int(np.sum(pred & (yy == 0)))
    fn = int(np.sum(~pred & (yy == 1)))
    tp = int(np.sum(pred & (yy == 1)))
    return {"threshold": float(threshold), "tn": tn, "fp": fp, "fn": fn, "tp": tp, "matrix": [[tn, fp], [fn, tp]]}


def precision_recall_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) as scikit-learn returns them: thresholds ascending over the distinct
    scores, precision[i] and recall[i] of predicting 1 when score >= thresholds[i], then a last point
    (precision 1, recall 0) with no threshold. A threshold that predicts no positive has precision 0;
    with no positive label the recall is 1 everywhere (scikit-learn's conventions)."""
    yy, ss = _check(y, score)
    if yy.size == 0:
        raise DataError("no rows to compute a precision-recall curve on")
    order = np.argsort(-ss, kind="mergesort")
    ys, s_sorted = yy[order], ss[order]
    last_of_run = np.r_[np.nonzero(np.diff(s_sorted))[0], ys.size - 1]
    tps = np.cumsum(ys)[last_of_run].astype(np.float64)
    fps = (last_of_run + 1) - tps
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    thresholds = s_sorted[last_of_run]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Sum over thresholds of (R_n - R_{n-1}) P_n (scikit-learn's average_precision_score, no
    interpolation); NaN when no label is positive."""
    yy, _ = _check(y, score)
    if yy.size == 0 or yy.sum() == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, score)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def lift_gain(y: np.ndarray, score: np.ndarray, groups: int = 10) -> list[LiftRow]:
    """Lift and gain table by decile (`groups` = 10): rows ranked by descending score (ties keep row
    order), cut into `groups` parts whose sizes differ by at most one (the first parts the larger)."""
    yy, ss = _check(y, score)
    if groups < 1:
        raise DataError(f"lift/gain needs at least 1 group, got {groups}")
    if yy.size == 0:
        return []
    order = np.argsort(-ss, kind="mergesort")
    total_pos, overall = int(yy.sum()), float(yy.mean())
    rows: list[LiftRow] = []
    cum_pos, cum_rows = 0, 0
    for d, part in enumerate(np.array_split(order, min(groups, yy.size)), start=1):
        pos = int(yy[part].sum())
        cum_pos += pos
        cum_rows += len(part)
        rate = pos / len(part)
        rows.append({"decile": d, "rows": int(len(part)), "positives": pos,
                     "score_min": float(ss[part].min()), "score_max": float(ss[part].max()),
                     "response_rate": rate, "cumulative_positives": cum_pos,
                     "gain": cum_pos / total_pos if total_pos else float("nan"),
                     "lift": rate / overall if overall else float("nan"),
                     "cumulative_lift": (cum_pos / cum_rows) / overall if overall else float("nan")})
    return rows


def thin_curve(xs: np.ndarray, ys: np.ndarray, points: int = PR_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `points` of a curve, evenly spaced by index, both ends kept (for files, not for areas)."""
    if len(xs) <= points:
        return np.asarray(xs), np.asarray(ys)
    idx = np.unique(np.round(np.linspace(0, len(xs) - 1, points)).astype(np.int64))
    return np.asarray(xs)[idx], np.asarray(ys)[idx]


def evaluation(y: np.ndarray, score: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, object]:
    """What metrics.json adds per split beside `binary_metrics`: average precision, the confusion matrix
    at `threshold`, the decile lift/gain table and the precision-recall curve (thinned to
    PR_CURVE_POINTS points; recall ascending). JSON-ready, NaN kept as float (callers map it to null)."""
    yy, ss = _check(y, score)
    out: dict[str, object] = {"average_precision": average_precision(yy, ss),
                              "confusion_matrix": confusion_matrix(yy, ss, threshold),
                              "lift_gain": lift_gain(yy, ss)}
    if yy.size and 0 < yy.sum():
        precision, recall, _ = precision_recall_curve(yy, ss)
        r, p = thin_curve(recall[::-1], precision[::-1])
        out["pr_curve"] = {"recall": [float(v) for v in r], "precision": [float(v) for v in p],
                           "points": int(len(r)), "of": int(len(recall))}
    return out
