"""E-step: the guest combines every party's block log-densities into responsibilities.

Each party computes log N(x_p | mu_kp, Sigma_kp) for its own columns (an N x K
matrix, `GaussianBlock.log_density`). Under independence across parties the
joint log-density is their sum; the guest adds the log mixture weights,
normalises per row with log-sum-exp (scikit-learn's log-domain E-step) and
keeps the responsibilities to itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from vfl.errors import TrainingError


@dataclass
class EStep:
    """log p(x_i) per row and log responsibilities log gamma_ik."""

    log_prob_norm: np.ndarray  # (N,)
    log_resp: np.ndarray  # (N, K)

    @property
    def mean_log_likelihood(self) -> float:
        """The EM lower bound: mean log-likelihood of the rows (scikit-learn's `lower_bound_`)."""
        return float(np.mean(self.log_prob_norm))

    @property
    def responsibilities(self) -> np.ndarray:
        return np.exp(self.log_resp)

    @property
    def labels(self) -> np.ndarray:
        """Cluster assignments: the most responsible component of each row."""
        return np.argmax(self.log_resp, axis=1)


def guest_combine_log_densities(block_log_densities: Sequence[np.ndarray], weights: np.ndarray) -> EStep:
    """Responsibilities from the parties' (N, K) block log-densities and the mixture weights."""
    blocks = [np.asarray(b, dtype=np.float64) for b in block_log_densities]
    shape = blocks[0].shape
    for b in blocks[1:]:
        if b.shape != shape:
            raise TrainingError(f"block log-densities of shapes {shape} and {b.shape} do not match")
    if shape[1] != len(weights):
        raise TrainingError(f"log-densities have {shape[1]} components, the weights {len(weights)}")
    total = blocks[0].copy()
    for b in blocks[1:]:
        total += b
    with np.errstate(divide="ignore"):
        weighted = total + np.log(weights)
    if not np.all(np.isfinite(total)):
        raise TrainingError("a block log-density is not finite; the fit diverged")
    log_prob_norm = logsumexp(weighted, axis=1)
    if not np.all(np.isfinite(log_prob_norm)):
        raise TrainingError("a row has zero probability under every component; the fit diverged")
    with np.errstate(under="ignore"):
        log_resp = weighted - log_prob_norm[:, None]
    return EStep(log_prob_norm, log_resp)
