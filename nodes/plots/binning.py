"""Binning pictures for the guest's run directory: label counts per bin, and WoE per bin.

One small panel per feature (the top features by IV), bins on the x axis in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nodes.plots import save_figure
from vfl.binning import FeatureBinning

_COLS = 3


def _grid(n: int, title: str) -> tuple[plt.Figure, list[plt.Axes]]:
    rows = max(1, math.ceil(n / _COLS))
    cols = min(_COLS, max(1, n))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    fig.suptitle(title)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_bin_counts(features: Sequence[FeatureBinning], path: Path) -> Path:
    """Event (label 1) vs non-event (label 0) counts in every bin of each feature."""
    fig, axes = _grid(len(features), "Label counts per bin (event = label 1)")
    for ax, f in zip(axes, features, strict=True):
        t = f.table
        assert t is not None, "counts are known to the guest only"
        x = np.arange(f.n_bins)
        ax.bar(x - 0.2, t.event_count, width=0.4, label="event", color="#d95f02")
        ax.bar(x + 0.2, t.non_event_count, width=0.4, label="non-event", color="#1b9e77")
        ax.set_title(f"{f.name} (IV {t.iv:.3f})", fontsize=10)
        ax.set_xlabel("bin")
        ax.set_ylabel("rows")
        ax.set_xticks(x)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncols=2, fontsize=9)
    return save_figure(fig, path)


def plot_woe(features: Sequence[FeatureBinning], path: Path) -> Path:
    """WoE = ln(non_event% / event%) of every bin of each feature."""
    fig, axes = _grid(len(features), "Weight of Evidence per bin")
    for ax, f in zip(axes, features, strict=True):
        t = f.table
        assert t is not None, "WoE is known to the guest only"
        x = np.arange(f.n_bins)
        colors = ["#1b9e77" if w >= 0 else "#d95f02" for w in t.woe]
        ax.bar(x, t.woe, color=colors)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"{f.name} (IV {t.iv:.3f})", fontsize=10)
        ax.set_xlabel("bin")
        ax.set_ylabel("WoE")
        ax.set_xticks(x)
    return save_figure(fig, path)
