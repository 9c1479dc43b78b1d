"""Initial responsibilities, drawn at the guest from `RandomState(seed)` in scikit-learn's order.

- "random": uniform random responsibilities, normalised per row
  (scikit-learn's init_params="random").
- "random_from_data": K distinct random rows, each the only member of one
  component (scikit-learn's "random_from_data").
- "kmeans": federated Lloyd k-means started from those K rows. A k-means
  iteration is an E-step with squared distances in place of log-densities
  (each party sends its block's N x K squared distances; the guest adds them
  and assigns each row to the nearest centre) and an M-step for the means
  only, with one-hot responsibilities encrypted exactly like EM's. When the
  assignments stop changing, their one-hot responsibilities start EM.

The guest's random choices never leave it: the host sees only encrypted
responsibilities, so it never learns which rows were drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def guest_random_responsibilities(n_rows: int, k: int, random_state: np.random.RandomState) -> np.ndarray:
    """Uniform random responsibilities normalised per row, shape (N, K)."""
    resp = random_state.uniform(size=(n_rows, k))
    resp /= resp.sum(axis=1)[:, None]
    return resp


def guest_random_rows(n_rows: int, k: int, random_state: np.random.RandomState) -> np.ndarray:
    """K distinct row indices."""
    return random_state.choice(n_rows, size=k, replace=False)


def one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    """(N, K) responsibilities with a single 1 per row at its label."""
    out = np.zeros((len(labels), k))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def guest_random_from_data_responsibilities(n_rows: int, k: int,
                                            random_state: np.random.RandomState) -> np.ndarray:
    """Responsibilities with component j owning exactly row `rows[j]` (and nothing else)."""
    resp = np.zeros((n_rows, k))
    resp[guest_random_rows(n_rows, k, random_state), np.arange(k)] = 1.0
    return resp


def block_squared_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """||x_ip - c_kp||^2 over one party's columns, shape (N, K)."""
    X = np.asarray(X, dtype=np.float64)
    diff = X[:, None, :] - centers[None, :, :]
    return np.einsum("nkd,nkd->nk", diff, diff)


def guest_assign_clusters(block_distances: Sequence[np.ndarray]) -> np.ndarray:
    """Nearest centre per row from the parties' block squared distances (ties: lowest index)."""
    total = np.asarray(block_distances[0], dtype=np.float64).copy()
    for b in block_distances[1:]:
        total += b
    return np.argmin(total, axis=1)


def cluster_counts(labels: np.ndarray, k: int) -> np.ndarray:
    """Rows per cluster (float64, as sent to the host)."""
    return np.bincount(labels, minlength=k).astype(np.float64)


def kmeans_centers(counts: np.ndarray, s1: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """New centres S1 / count; an empty cluster keeps its previous centre."""
    centers = s1 / np.maximum(counts, 1.0)[:, None]
    if previous is not None:
        empty = counts == 0
        centers[empty] = previous[empty]
    return centers
