"""One client's local training in one global round (mini-batch SGD on the logistic loss).

Per batch: per-row gradients (sigmoid(x.w) - y) x, each clipped (`vfl.hfl.dp`),
summed, noised (DP on), divided by the batch size; then the data-independent
terms: L2 `alpha w` and, for FedProx, `mu (w - w_global)`.
"""

from __future__ import annotations

import numpy as np

from vfl.hfl.dp import clip_rows, draw_noise
from vfl.hfl.options import HflOptions


def with_intercept(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """X with a trailing column of ones when the model has an intercept."""
    return np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random partition of range(n) into batches of `batch_size` (0: one batch)."""
    perm = rng.permutation(n)
    size = n if batch_size <= 0 else batch_size
    return [perm[i:i + size] for i in range(0, n, size)]


def local_update(w_global: np.ndarray, X: np.ndarray, y: np.ndarray, opts: HflOptions,
                 rng: np.random.Generator) -> np.ndarray:
    """The client's model after `local_epochs` passes of SGD from the global model.

    `X` already carries the intercept column (`with_intercept`). Uses `rng` for
    the batch partition and the noise, in a fixed order, so a run is reproducible.
    """
    w = np.array(w_global, dtype=np.float64)
    norm = 1 if opts.dp == "laplace" else 2
    prox = opts.mu if opts.aggregation == "fedprox" else 0.0
    for _ in range(opts.local_epochs):
        for idx in batches(len(y), opts.batch_size, rng):
            xb = X[idx]
            grads = (sigmoid(xb @ w) - y[idx])[:, None] * xb
            g = clip_rows(grads, opts.clip, norm).sum(axis=0) + draw_noise(opts, len(w), rng)
            g = g / len(idx) + opts.alpha * w + prox * (w - w_global)
            w = w - opts.learning_rate * g
    return w


def evaluate(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Counts a coordinator may add up: rows, correct predictions (threshold 0.5), summed log loss."""
    if len(y) == 0:
        return {"n": 0, "correct": 0, "loss_sum": 0.0}
    p = np.clip(sigmoid(X @ w), 1e-12, 1 - 1e-12)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()
    return {"n": int(len(y)), "correct": int(((p >= 0.5) == (y == 1)).sum()), "loss_sum": float(loss)}
