"""Logistic regression figures: loss curve, ROC, KS, precision-recall, lift/gain and confusion matrices
(PNG files in the run directory)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from nodes.plots import save_figure  # noqa: E402
from nodes.rundir import RunDir  # noqa: E402
from vfl.metrics import (  # noqa: E402
    DEFAULT_THRESHOLD,
    auc,
    average_precision,
    confusion_matrix,
    lift_gain,
    precision_recall_curve,
    roc_curve,
)


def plot_loss(path: Path, losses: Sequence[float], validation_losses: Sequence[float] = ()) -> Path:
    """Training (and validation) Taylor loss per epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(losses) + 1)
    ax.plot(epochs, losses, marker="o", label="training loss")
    if len(validation_losses):
        ax.plot(np.arange(1, len(validation_losses) + 1), validation_losses, marker="s",
                label="validation loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("Taylor loss")
    ax.set_title("Vertical logistic regression: loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_roc(path: Path, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """ROC curve of each split (name -> (labels, probabilities)) with its AUC."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, p) in splits.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(y, p):.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_ks(path: Path, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Cumulative TPR and FPR against the share of rows ranked by score; KS is the widest gap."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (y, p) in splits.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, thresholds = roc_curve(y, p)
        ascending = np.sort(np.asarray(p, dtype=np.float64))
        above = len(ascending) - np.searchsorted(ascending, thresholds[1:], side="left")
        share = np.r_[0.0, above / len(ascending)]
        gap = tpr - fpr
        k = int(np.argmax(gap))
        line, = ax.plot(share, tpr, label=f"{name} TPR")
        ax.plot(share, fpr, linestyle="--", color=line.get_color(), label=f"{name} FPR")
        ax.vlines(share[k], fpr[k], tpr[k], color=line.get_color(), linewidth=2,
                  label=f"{name} KS {gap[k]:.4f}")
    ax.set_xlabel("share of rows (by descending score)")
    ax.set_ylabel("cumulative rate")
    ax.set_title("KS")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


Splits = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _two_class(splits: Splits) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: (y, p) for name, (y, p) in splits.items() if len(np.unique(y)) == 2}


def plot_pr(path: Path, splits: Splits) -> Path:
    """Precision-recall curve of each split with its average precision; the dotted line is the base rate."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, p) in _two_class(splits).items():
        precision, recall, _ = precision_recall_curve(y, p)
        line, = ax.step(recall, precision, where="post", label=f"{name} (AP {average_precision(y, p):.4f})")
        ax.axhline(float(np.mean(y)), color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left")
    return save_figure(fig, path)


def plot_lift_gain(path: Path, splits: Splits) -> Path:
    """Cumulative gain (left) and lift per decile (right) of each split, rows ranked by descending score."""
    fig, (gain_ax, lift_ax) = plt.subplots(1, 2, figsize=(10, 4))
    gain_ax.plot([0, 100], [0, 100], color="grey", linestyle="--", linewidth=1, label="random")
    names = list(_two_class(splits))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        y, p = splits[name]
        rows = lift_gain(y, p)
        share = np.r_[0, np.cumsum([r["rows"] for r in rows])] / len(y) * 100
        gain_ax.plot(share, np.r_[0, [100 * r["gain"] for r in rows]], marker="o", ms=3, label=name)
        deciles = np.array([r["decile"] for r in rows], dtype=np.float64)
        lift_ax.bar(deciles + (i - (len(names) - 1) / 2) * width, [r["lift"] for r in rows], width=width,
                    label=name)
    gain_ax.set_xlabel("% of rows (by descending score)")
    gain_ax.set_ylabel("% of positives found (gain)")
    gain_ax.set_title("Cumulative gain")
    gain_ax.grid(alpha=0.3)
    gain_ax.legend(loc="lower right")
    lift_ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    lift_ax.set_xlabel("decile (1 = highest scores)")
    lift_ax.set_ylabel("lift (decile response rate / overall rate)")
    lift_ax.set_xticks(range(1, 11))
    lift_ax.set_title("Lift by decile")
    lift_ax.legend()
    return save_figure(fig, path)


def plot_confusion(path: Path, splits: Splits, threshold: float = DEFAULT_THRESHOLD) -> Path:
    """Confusion matrix of each split at `threshold` (class 1 when score >= threshold), counts in the cells."""
    fig, axes = plt.subplots(1, max(len(splits), 1), figsize=(3.6 * max(len(splits), 1), 3.4), squeeze=False)
    for ax, (name, (y, p)) in zip(axes[0], splits.items(), strict=False):
        m = np.array(confusion_matrix(y, p, threshold)["matrix"])
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
        ax.set_xticks([0, 1], ["0", "1"])
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(f"{name} (score >= {threshold:g})")
    return save_figure(fig, path)


def plot_evaluation(rundir: RunDir, prefix: str, splits: Splits) -> list[Path]:
    """<prefix>pr.png, <prefix>lift_gain.png and <prefix>confusion.png in the run directory's plots."""
    plot_path = rundir.plot_path
    return [plot_pr(plot_path(f"{prefix}pr.png"), splits),
            plot_lift_gain(plot_path(f"{prefix}lift_gain.png"), splits),
            plot_confusion(plot_path(f"{prefix}confusion.png"), splits)]
