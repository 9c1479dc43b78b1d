"""One client's local training in one global round (mini-batch SGD on the logistic loss).

Per batch: per-row gradients (sigmoid(x.w) - y) x, each clipped (`vfl.hfl.dp`),
summed, noised (DP on), divided by the batch size; then the data-independent
terms: L2 `alpha w` and, for FedProx, `mu (w - w_global)`.

Without DP the batches are a shuffled partition of the rows (a numpy
generator, reproducible). With DP every step is a Poisson sample of the rows
and its noise, both drawn from a `DpRandom` (`vfl.hfl.randomness`), and the
sum is divided by the expected batch size (`vfl.hfl.dp`).

With `adaptive` (`AdaptiveStep`) the step is AdaGrad's or Adam's instead of
plain SGD's: per coordinate, from the client's own running statistics of the
(noised, clipped) gradients, kept across rounds and never sent. They use only
what the step already released, so DP is unaffected (post-processing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


ADAGRAD_EPS = 1e-8  # AdaGrad: step g / (sqrt(sum of g^2) + eps)
ADAM_BETAS = (0.9, 0.999)  # Adam: decay of the first and second moment estimates
ADAM_EPS = 1e-8


@dataclass
class AdaptiveStep:
    """One client's adaptive learning rate (`[hfl] adaptive`), its state kept over all its steps and rounds.

    Per coordinate j, with g the step's whole gradient (loss + L2 + FedProx terms) and lr `learning_rate`:
    - "adagrad": G_j += g_j^2; step lr * g_j / (sqrt(G_j) + 1e-8).
    - "adam": t += 1; m = 0.9 m + 0.1 g; v = 0.999 v + 0.001 g^2;
      step lr * (m / (1 - 0.9^t)) / (sqrt(v / (1 - 0.999^t)) + 1e-8).
    - "off": step lr * g (plain SGD, the default).
    """

    kind: str = "off"
    t: int = 0
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)

    def direction(self, g: np.ndarray) -> np.ndarray:
        """What the learning rate multiplies in this step (updates the state)."""
        if self.kind == "off":
            return g
        if self.v is None:
            self.m, self.v = np.zeros_like(g), np.zeros_like(g)
        self.t += 1
        if self.kind == "adagrad":
            self.v = self.v + g * g
            return g / (np.sqrt(self.v) + ADAGRAD_EPS)
        if self.kind == "adam":
            b1, b2 = ADAM_BETAS
            assert self.m is not None
            self.m = b1 * self.m + (1 - b1) * g
            self.v = b2 * self.v + (1 - b2) * g * g
            return (self.m / (1 - b1 ** self.t)) / (np.sqrt(self.v / (1 - b2 ** self.t)) + ADAM_EPS)
        raise VflError(f"unknown adaptive learning rate {self.kind!r}")


def local_update(w_global: np.ndarray, X: np.ndarray, y: np.ndarray, opts: HflOptions,
                 rng: np.random.Generator, dp_random: DpRandom | None = None,
                 adaptive: AdaptiveStep | None = None) -> np.ndarray:
    """The client's model after `local_epochs` passes of SGD from the global model.

    `X` already carries the intercept column (`with_intercept`). Without DP,
    `rng` shuffles the batches (a run is reproducible); with DP, `dp_random`
    draws the Poisson samples and the noise, and `rng` is not used.
    `adaptive`: the client's AdaGrad/Adam state (None: plain SGD steps).
    """
    w = np.array(w_global, dtype=np.float64)
    prox = opts.mu if opts.aggregation == "fedprox" else 0.0
    step = adaptive or AdaptiveStep()
    if opts.dp == "off":
        for _ in range(opts.local_epochs):
            for idx in batches(len(y), opts.batch_size, rng):
                g = _gradient_sum(w, X[idx], y[idx], opts.clip, 2) / len(idx)
                w = w - opts.learning_rate * step.direction(g + opts.alpha * w + prox * (w - w_global))
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
        w = w - opts.learning_rate * step.direction(g + opts.alpha * w + prox * (w - w_global))
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


def validation_score(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Held-out accuracy with add-one smoothing, (correct + 1) / (rows + 2): in (0, 1), so no client's
    weight is ever 0 and the weights' sum never vanishes (`[hfl] weighting = "validation"`)."""
    e = evaluate(w, X, y)
    return (e["correct"] + 1) / (e["n"] + 2)
