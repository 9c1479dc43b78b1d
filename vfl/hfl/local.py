"""One client's local training in one global round (mini-batch SGD on the logistic loss).

Per batch: per-row gradients (sigmoid(x.w) - y) x, each clipped (`vfl.hfl.dp`),
summed, noised (DP on), divided by the batch size; then the data-independent
terms: L2 `alpha w` and, for FedProx, `mu (w - w_global)`.

Without DP the batches are a shuffled partition of the rows (a numpy
generator, reproducible). With DP every step is a Poisson sample of the rows
and its noise, both drawn from a `DpRandom` (`vfl.hfl.randomness`), and the
sum is divided by the expected batch size (`vfl.hfl.dp`).
"""

from __future__ import annotations

import numpy as np

from vfl.errors import VflError
from vfl.hfl.dp import clip_rows, plan
from vfl.hfl.options import HflOptions
from vfl.hfl.randomness import DpRandom


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
                 rng: np.random.Generator, dp_random: DpRandom | None = None) -> np.ndarray:
    """The client's model after `local_epochs` passes of SGD from the global model.

    `X` already carries the intercept column (`with_intercept`). Without DP,
    `rng` shuffles the batches (a run is reproducible); with DP, `dp_random`
    draws the Poisson samples and the noise, and `rng` is not used.
    """
    w = np.array(w_global, dtype=np.float64)
    prox = opts.mu if opts.aggregation == "fedprox" else 0.0
    if opts.dp == "off":
        for _ in range(opts.local_epochs):
            for idx in batches(len(y), opts.batch_size, rng):
                g = _gradient_sum(w, X[idx], y[idx], opts.clip, 2) / len(idx)
                w = w - opts.learning_rate * (g + opts.alpha * w + prox * (w - w_global))
        return w
    if dp_random is None:
        raise VflError("differentially private training needs a DpRandom source (vfl.hfl.randomness)")
    p = plan(opts, len(y))
    norm = 1 if opts.dp == "laplace" else 2
    draw = dp_random.laplace if opts.dp == "laplace" else dp_random.normal
    for _ in range(opts.local_epochs * p.steps_per_epoch):
        idx = dp_random.poisson_sample(len(y), p.q)
        g = _gradient_sum(w, X[idx], y[idx], opts.clip, norm) + draw(p.noise_scale, len(w))
        g = g / p.expected_batch
        w = w - opts.learning_rate * (g + opts.alpha * w + prox * (w - w_global))
    return w


def _gradient_sum(w: np.ndarray, xb: np.ndarray, yb: np.ndarray, clip: float, norm: int) -> np.ndarray:
    """Sum over the batch of the per-row logistic-loss gradients, each clipped to `clip` in `norm`."""
    grads = (sigmoid(xb @ w) - yb)[:, None] * xb
    return clip_rows(grads, clip, norm).sum(axis=0)


def evaluate(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Counts a coordinator may add up: rows, correct predictions (threshold 0.5), summed log loss."""
    if len(y) == 0:
        return {"n": 0, "correct": 0, "loss_sum": 0.0}
    p = np.clip(sigmoid(X @ w), 1e-12, 1 - 1e-12)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()
    return {"n": int(len(y)), "correct": int(((p >= 0.5) == (y == 1)).sum()), "loss_sum": float(loss)}
