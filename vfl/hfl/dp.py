"""Differential privacy of a client's training rows: noise calibration and the privacy accountant.

Neighbouring datasets differ by adding or removing one training row. Each
mini-batch gradient is the sum of per-row gradients, each clipped to norm
`clip` (L2 for Gaussian noise, L1 for Laplace noise), so one row changes a
batch sum by at most `clip` in that norm. An epoch splits the rows into
disjoint batches (a data-independent random partition), so by parallel
composition an epoch costs what one noisy batch sum costs. The whole training
is `rounds x local_epochs` such passes, composed:

- Laplace: pure epsilon-DP; each pass gets epsilon / T (basic composition);
  per-coordinate noise Laplace(b = clip / (epsilon / T)).
- Gaussian: zero-concentrated DP (Bun & Steinke 2016). The total rho is the
  largest with rho + 2 sqrt(rho ln(1/delta)) <= epsilon; each pass gets rho / T,
  sigma = clip / sqrt(2 rho / T); after k passes the spent budget is
  epsilon_k = k rho/T + 2 sqrt(k rho/T ln(1/delta)) at the same delta.

Everything after the noisy sums (the FedProx term, L2, aggregation,
encryption) is post-processing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vfl.hfl.options import HflOptions


def total_rho(epsilon: float, delta: float) -> float:
    """The largest zCDP rho whose (epsilon, delta)-DP conversion stays within epsilon."""
    log_term = math.log(1.0 / delta)
    return (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2


def noise_scale(opts: HflOptions) -> float:
    """Per-coordinate noise scale of one noisy batch sum: Laplace b or Gaussian sigma (0 without DP)."""
    if opts.dp == "off":
        return 0.0
    passes = opts.noisy_passes
    if opts.dp == "laplace":
        return opts.clip * passes / opts.epsilon
    return opts.clip / math.sqrt(2.0 * total_rho(opts.epsilon, opts.delta) / passes)


def clip_rows(grads: np.ndarray, clip: float, norm: int) -> np.ndarray:
    """Scale each row (one example's gradient) down to norm <= clip (norm 1 or 2); clip 0: unchanged."""
    if clip <= 0:
        return grads
    norms = np.linalg.norm(grads, ord=norm, axis=1)
    scale = np.minimum(1.0, clip / np.maximum(norms, 1e-300))
    return grads * scale[:, None]


def draw_noise(opts: HflOptions, size: int, rng: np.random.Generator) -> np.ndarray:
    """The noise added to one batch sum."""
    scale = noise_scale(opts)
    if opts.dp == "laplace":
        return rng.laplace(0.0, scale, size)
    if opts.dp == "gaussian":
        return rng.normal(0.0, scale, size)
    return np.zeros(size)


@dataclass
class DpAccountant:
    """Budget spent by one client after each completed pass over its training rows."""

    opts: HflOptions
    passes: int = 0

    def spend(self, passes: int = 1) -> None:
        self.passes += passes

    def spent(self) -> tuple[float, float]:
        """(epsilon, delta) spent so far; (inf, 0) would never occur: without DP this is (inf, 1)."""
        o = self.opts
        if o.dp == "off":
            return math.inf, 1.0
        if self.passes == 0:
            return 0.0, 0.0
        if o.dp == "laplace":
            return o.epsilon * self.passes / o.noisy_passes, 0.0
        rho = total_rho(o.epsilon, o.delta) * self.passes / o.noisy_passes
        return rho + 2.0 * math.sqrt(rho * math.log(1.0 / o.delta)), o.delta

    def record(self, round_no: int) -> dict[str, object]:
        """One line of privacy.jsonl."""
        eps, delta = self.spent()
        return {"round": round_no, "mechanism": self.opts.dp, "clip": self.opts.clip,
                "noise_scale": noise_scale(self.opts), "passes": self.passes,
                "epsilon_spent": None if math.isinf(eps) else eps, "delta_spent": delta,
                "epsilon_budget": self.opts.epsilon if self.opts.dp != "off" else None}
