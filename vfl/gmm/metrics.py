"""Agreement of cluster assignments with known labels (the guest's, when it has them)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def adjusted_rand_index(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Adjusted Rand index (Hubert and Arabie): 1 for identical partitions, about 0 for random ones."""
    _, a = np.unique(labels, return_inverse=True)
    _, b = np.unique(clusters, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)

    def pairs(x: np.ndarray) -> float:
        return float(np.sum(x * (x - 1) // 2))

    index, rows, cols = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / pairs(np.array([len(a)]))
    maximum = (rows + cols) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return (index - expected) / (maximum - expected)


def contingency(labels: np.ndarray, clusters: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(label values, counts[cluster, label value])."""
    values, y = np.unique(labels, return_inverse=True)
    table = np.zeros((k, len(values)), dtype=np.int64)
    np.add.at(table, (clusters, y), 1)
    return values, table


def best_permutation_accuracy(labels: np.ndarray, clusters: np.ndarray, k: int) -> tuple[float, dict[int, int]]:
    """Accuracy under the one-to-one cluster -> label matching that maximises it (Hungarian).

    With more clusters than label values, unmatched clusters count as errors.
    Returns (accuracy, {cluster: label}).
    """
    values, table = contingency(labels, clusters, k)
    rows, cols = linear_sum_assignment(-table)
    correct = int(table[rows, cols].sum())
    return correct / len(labels), {int(r): int(values[c]) for r, c in zip(rows, cols, strict=True)}
