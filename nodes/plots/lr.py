"""Logistic regression figures: loss curve, ROC curves, KS curve (PNG files in the run directory)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from nodes.plots import save_figure  # noqa: E402
from vfl.metrics import auc, roc_curve  # noqa: E402


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
