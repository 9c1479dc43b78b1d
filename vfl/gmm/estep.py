"""E-step: the guest combines every party's block log-densities into responsibilities.

Each party computes log N(x_p | mu_kp, Sigma_kp) for its own columns (an N x K
matrix, `GaussianBlock.log_density`). Under independence across parties the
joint log-density is their sum; the guest adds the log mixture weights,
normalises per row with log-sum-exp (scikit-learn's log-domain E-step) and
keeps the responsibilities to itself.

The host does not send its log-densities but their differences to its own best
component of each row (`host_relative_log_densities`): a per-row shift leaves the
responsibilities unchanged (softmax over k), and the guest learns no row's level
log p_h(x_i | k), only log p_h(x_i | k) - log p_h(x_i | k'). The host adds the sum
of the removed levels (one number) so that the log-likelihood stays exact.

With several hosts each host sends its own (relative log-densities, level total) and
the guest adds them all (`guest_combine_host_log_densities`): a host's message is the
same as in a two-party job, and it never sees another host's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from vfl.errors import TrainingError

# Relative values are rounded to one grid for all rows, 2^(e - GRID_BITS) with 2^e above the
# largest |value| of the message: 2^5 times coarser than the float spacing of the largest
# values, so no value keeps the float spacing (hence the binary magnitude) of the numbers
# its row was computed from. Halves round up (not to even, which would favour even
# multiples for the rows whose values sit on the coarsest float spacing). Deterministic,
# so the same model gives the same message (training's final step and `predict` agree).
# Error: at most half a grid step, 2^-49 of the largest |value|.
GRID_BITS = 48


def _on_public_grid(relative: np.ndarray, largest: float) -> np.ndarray:
    """`relative` rounded to the grid set by the message's largest magnitude (halves up)."""
    _, exponent = np.frexp(largest)  # largest < 2^exponent
    grid = np.ldexp(1.0, int(exponent) - GRID_BITS)
    return np.floor(relative / grid + 0.5) * grid


def host_relative_log_densities(log_density: np.ndarray) -> tuple[np.ndarray, float]:
    """What the host sends for an E-step: (log-densities minus each row's largest, sum of those largest).

    The (N, K) values are log p_h(x_i | k) - max_k' log p_h(x_i | k') on a grid common to
    all rows; the sum over rows of the removed maxima lets the guest's log-likelihood equal
    the centralized one (`guest_combine_log_densities`' `host_level_total`).
    """
    ld = np.asarray(log_density, dtype=np.float64)
    if not np.all(np.isfinite(ld)):
        raise TrainingError("a block log-density is not finite; the fit diverged")
    level = ld.max(axis=1)
    return _on_public_grid(ld - level[:, None], float(np.max(np.abs(ld)))), float(np.sum(level))


def host_relative_distances(squared_distances: np.ndarray) -> np.ndarray:
    """What the host sends for a k-means step: squared distances minus each row's smallest.

    The nearest centre (argmin of the parties' sum) is unchanged; the guest learns no row's
    distance to the host's centres, only the differences between centres.
    """
    d = np.asarray(squared_distances, dtype=np.float64)
    return _on_public_grid(d - d.min(axis=1)[:, None], float(np.max(np.abs(d))))


@dataclass
class EStep:
    """log p(x_i) per row (less the host's row level) and log responsibilities log gamma_ik."""

    log_prob_norm: np.ndarray  # (N,) log p(x_i) - c_i, c_i the level the host removed from row i
    log_resp: np.ndarray  # (N, K)
    level_total: float = 0.0  # sum_i c_i (0: nothing removed)

    @property
    def mean_log_likelihood(self) -> float:
        """The EM lower bound: mean log-likelihood of the rows (scikit-learn's `lower_bound_`)."""
        if self.level_total == 0.0:
            return float(np.mean(self.log_prob_norm))
        return float((np.sum(self.log_prob_norm) + self.level_total) / len(self.log_prob_norm))

    @property
    def responsibilities(self) -> np.ndarray:
        return np.exp(self.log_resp)

    @property
    def labels(self) -> np.ndarray:
        """Cluster assignments: the most responsible component of each row."""
        return np.argmax(self.log_resp, axis=1)


def guest_combine_log_densities(block_log_densities: Sequence[np.ndarray], weights: np.ndarray,
                                host_level_total: float = 0.0) -> EStep:
    """Responsibilities from the parties' (N, K) block log-densities and the mixture weights.

    A block may be shifted per row (the host's relative log-densities); `host_level_total`
    is the sum of those shifts, which the mean log-likelihood adds back.
    """
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
    return EStep(log_prob_norm, log_resp, float(host_level_total))


def guest_combine_host_log_densities(own_log_density: np.ndarray,
                                     host_messages: Sequence[tuple[np.ndarray, float]],
                                     weights: np.ndarray) -> EStep:
    """The guest's E-step over N host blocks: its own (N, K) log-densities plus every host's
    `host_relative_log_densities` message (relative values, level total), in host order.

    With one host it is exactly `guest_combine_log_densities([own, relative], weights, level_total)`.
    """
    if not host_messages:
        raise TrainingError("an E-step over hosts needs at least one host's log-densities")
    blocks = [own_log_density] + [np.asarray(rel, dtype=np.float64) for rel, _ in host_messages]
    level_total = 0.0
    for _, level in host_messages:
        level_total += float(level)
    return guest_combine_log_densities(blocks, weights, level_total)
