"""FL-EM-GMM figures: log-likelihood per EM iteration, the guest's 2-D view of the clusters, BIC by K."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from nodes.plots import save_figure  # noqa: E402


def plot_log_likelihood(lower_bounds: Sequence[Sequence[float]], best_init: int, path: Path) -> Path:
    """Mean log-likelihood (the EM lower bound) per iteration, one line per initialisation."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for i, lbs in enumerate(lower_bounds):
        its = np.arange(1, len(lbs) + 1)
        best = i == best_init
        ax.plot(its, lbs, marker="o", ms=3, lw=2 if best else 1, alpha=1 if best else 0.5,
                label=f"init {i + 1}" + (" (best)" if best else ""))
    ax.set_xlabel("EM iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean log-likelihood")
    ax.set_title("FL-EM-GMM: log-likelihood per iteration")
    if len(lower_bounds) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=None)


def principal_components(X: np.ndarray, n: int = 2) -> np.ndarray:
    """Projection of the centred rows on their first `n` principal axes (SVD)."""
    Xc = np.asarray(X, dtype=np.float64) - np.mean(X, axis=0)
    if Xc.shape[1] < n:
        return np.hstack([Xc, np.zeros((Xc.shape[0], n - Xc.shape[1]))])
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ vt[:n].T


def plot_clusters_2d(X_guest: np.ndarray, clusters: np.ndarray, labels: np.ndarray | None, path: Path) -> Path:
    """The guest's rows on its first two principal components, coloured by cluster (marker: label)."""
    P = principal_components(X_guest)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    cmap = plt.get_cmap("tab10")
    markers = ["o", "^", "s", "D"]
    label_values = np.unique(labels) if labels is not None else np.array([0])
    for c in np.unique(clusters):
        for j, v in enumerate(label_values):
            sel = clusters == c if labels is None else (clusters == c) & (labels == v)
            if not np.any(sel):
                continue
            name = f"cluster {c}" + (f", label {v}" if labels is not None else "")
            ax.scatter(P[sel, 0], P[sel, 1], s=12, color=cmap(int(c) % 10), marker=markers[j % len(markers)],
                       alpha=0.7, label=name, edgecolors="none")
    ax.set_xlabel("guest PC 1")
    ax.set_ylabel("guest PC 2")
    ax.set_title("Clusters on the guest's features (2-D projection)")
    ax.legend(fontsize=7, markerscale=1.5)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=None)


def plot_bic(bic_by_k: Mapping[int, float], path: Path) -> Path:
    """BIC for each candidate K (the lowest is chosen)."""
    ks = sorted(bic_by_k)
    vals = [bic_by_k[k] for k in ks]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    ax.plot(ks, vals, marker="o")
    best = ks[int(np.argmin(vals))]
    ax.axvline(best, color="grey", ls="--", lw=1)
    ax.set_xlabel("K (components)")
    ax.set_ylabel("BIC")
    ax.set_title(f"Model selection by BIC: K = {best}")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=None)
