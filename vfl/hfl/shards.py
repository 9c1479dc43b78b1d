"""Non-IID row shards of one labelled table (horizontal split).

`skew` in [0, 1] sets label skew: each row gets the sort key
`skew * y + (1 - skew) * u` with u ~ U(0, 1); rows sorted by key are cut into
N contiguous shards of (nearly) equal size. skew 0: IID shards; skew 1: the
first shards hold (almost) only one class, the last only the other.
"""

from __future__ import annotations

import numpy as np

from vfl.data import PartyData
from vfl.errors import DataError


def label_skew_shards(y: np.ndarray, n_shards: int, skew: float, seed: int) -> list[np.ndarray]:
    """Row indices of each shard (sorted), label-skewed by `skew`."""
    if n_shards < 2:
        raise DataError(f"--horizontal needs at least 2 clients, got {n_shards}")
    if not 0.0 <= skew <= 1.0:
        raise DataError(f"--skew must be in [0, 1], got {skew}")
    if len(y) < 2 * n_shards:
        raise DataError(f"{len(y)} rows cannot make {n_shards} shards")
    rng = np.random.default_rng(seed)
    key = skew * np.asarray(y, dtype=np.float64) + (1.0 - skew) * rng.random(len(y))
    order = np.argsort(key, kind="stable")
    return [np.sort(part) for part in np.array_split(order, n_shards)]


def positive_share(y: np.ndarray, shards: list[np.ndarray]) -> list[float]:
    """Fraction of label 1 in each shard (how skewed the split is)."""
    return [float(np.mean(y[s])) for s in shards]


def breast_horizontal(n_shards: int, skew: float = 0.0, seed: int = 42) -> list[PartyData]:
    """scikit-learn's breast cancer data (y = 1 benign; all 30 columns as x0..x29, standardized with the
    population std) split by rows into `n_shards` clients' tables."""
    from sklearn.datasets import load_breast_cancer

    from vfl.datasets import standardize

    X, y = load_breast_cancer(return_X_y=True)
    X = standardize(np.asarray(X, dtype=np.float64))
    ids = np.asarray([str(i) for i in range(len(y))], dtype=str)
    features = [f"x{i}" for i in range(X.shape[1])]
    return [PartyData("guest", ids[rows], list(features), X[rows], y[rows].astype(np.int8),
                      f"breast:client{k + 1}") for k, rows in enumerate(label_skew_shards(y, n_shards, skew, seed))]
