"""The plaintext reference: block-diagonal EM run centrally on the joined data.

The same algorithm as the federated protocol (same initialisations from the
same seed, scikit-learn's EM loop, lower bound and stopping rule), computed
in the clear on all parties' columns at once. Covariances are estimated
scikit-learn's way (two-pass, around the new means) within each block and
are zero across blocks. With "diag" it is scikit-learn's
GaussianMixture(covariance_type="diag"); the federated result must equal it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vfl.gmm.estep import EStep, guest_combine_log_densities
from vfl.gmm.init import (
    block_squared_distances,
    guest_assign_clusters,
    guest_random_from_data_responsibilities,
    guest_random_responsibilities,
    guest_random_rows,
    kmeans_centers,
    one_hot,
)
from vfl.gmm.model import GaussianBlock, bic, component_sizes
from vfl.gmm.options import Covariance, GmmOptions


@dataclass
class MixtureFit:
    """A fitted block-diagonal mixture with K components (all blocks)."""

    k: int
    weights: np.ndarray
    blocks: list[GaussianBlock]
    lower_bound: float  # best initialisation's last lower bound
    lower_bounds: list[float]  # its lower bound per EM iteration
    n_iter: int
    converged: bool
    best_init: int
    log_likelihood: float  # mean log-likelihood at the final parameters
    bic: float
    resp: np.ndarray
    labels: np.ndarray
    all_lower_bounds: list[list[float]] = field(default_factory=list)
    initial: list[tuple[np.ndarray, list[GaussianBlock]]] = field(default_factory=list)


@dataclass
class ModelSelection:
    """Fits for each candidate K; the one with the lowest BIC is `best`."""

    fits: dict[int, MixtureFit]

    @property
    def best_k(self) -> int:
        return min(self.fits, key=lambda k: (self.fits[k].bic, k))

    @property
    def best(self) -> MixtureFit:
        return self.fits[self.best_k]


def centralized_kmeans(blocks: Sequence[np.ndarray], k: int, random_state: np.random.RandomState,
                       max_iter: int) -> tuple[np.ndarray, int]:
    """Lloyd k-means from K random rows until assignments repeat; (labels, iterations)."""
    n = blocks[0].shape[0]
    rows = guest_random_rows(n, k, random_state)
    centers = [b[rows].astype(np.float64) for b in blocks]
    labels: np.ndarray | None = None
    for it in range(1, max_iter + 1):
        new = guest_assign_clusters([block_squared_distances(b, c) for b, c in zip(blocks, centers, strict=True)])
        if (labels is not None and np.array_equal(new, labels)) or it == max_iter:
            return new, it
        labels = new
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        resp = one_hot(labels, k)
        centers = [kmeans_centers(counts, resp.T @ b, c) for b, c in zip(blocks, centers, strict=True)]
    raise AssertionError("unreachable")


def initial_responsibilities(blocks: Sequence[np.ndarray], options: GmmOptions, k: int,
                             random_state: np.random.RandomState) -> np.ndarray:
    n = blocks[0].shape[0]
    if options.init == "random":
        return guest_random_responsibilities(n, k, random_state)
    if options.init == "random_from_data":
        return guest_random_from_data_responsibilities(n, k, random_state)
    labels, _ = centralized_kmeans(blocks, k, random_state, options.kmeans_max_iter)
    return one_hot(labels, k)


def m_step(blocks: Sequence[np.ndarray], resp: np.ndarray, covariance: Covariance, reg_covar: float,
           initial: bool = False) -> tuple[np.ndarray, list[GaussianBlock]]:
    """Weights and every block's parameters from responsibilities (scikit-learn's estimators)."""
    nk = component_sizes(resp)
    weights = nk / resp.shape[0] if initial else nk / nk.sum()
    out = []
    for p, X in enumerate(blocks):
        means = (resp.T @ X) / nk[:, None]
        if covariance == "diag":
            cov = (resp.T @ (X * X)) / nk[:, None] - means**2 + reg_covar
        else:
            d = X.shape[1]
            cov = np.empty((len(nk), d, d))
            for k in range(len(nk)):
                diff = X - means[k]
                cov[k] = ((resp[:, k] * diff.T) @ diff) / nk[k]
                cov[k].flat[:: d + 1] += reg_covar
        out.append(GaussianBlock.from_covariances(covariance, means, cov, party=f"block {p}"))
    return weights, out


def e_step(blocks: Sequence[np.ndarray], weights: np.ndarray, params: Sequence[GaussianBlock]) -> EStep:
    return guest_combine_log_densities([b.log_density(X) for b, X in zip(params, blocks, strict=True)], weights)


def fit_k(blocks: Sequence[np.ndarray], options: GmmOptions, k: int) -> MixtureFit:
    """EM for one K with `n_init` initialisations, keeping the best lower bound (scikit-learn's loop)."""
    random_state = np.random.RandomState(options.seed)
    best: tuple[float, np.ndarray, list[GaussianBlock], int, list[float], bool, int] | None = None
    all_lbs: list[list[float]] = []
    initial: list[tuple[np.ndarray, list[GaussianBlock]]] = []
    for init in range(options.n_init):
        resp = initial_responsibilities(blocks, options, k, random_state)
        weights, params = m_step(blocks, resp, options.covariance, options.reg_covar, initial=True)
        initial.append((weights, params))
        lower_bound, lbs, converged, n_iter = -np.inf, [], False, 0
        for n_iter in range(1, options.max_iter + 1):  # noqa: B007 - used after the loop
            prev = lower_bound
            e = e_step(blocks, weights, params)
            weights, params = m_step(blocks, e.responsibilities, options.covariance, options.reg_covar)
            lower_bound = e.mean_log_likelihood
            lbs.append(lower_bound)
            if abs(lower_bound - prev) < options.tol:
                converged = True
                break
        all_lbs.append(lbs)
        if best is None or lower_bound > best[0]:
            best = (lower_bound, weights, params, n_iter, lbs, converged, init)
    assert best is not None
    lower_bound, weights, params, n_iter, lbs, converged, best_init = best
    final = e_step(blocks, weights, params)
    n = blocks[0].shape[0]
    score = final.mean_log_likelihood
    return MixtureFit(k, weights, params, lower_bound, lbs, n_iter, converged, best_init, score,
                      bic(score, n, k, [b.shape[1] for b in blocks], options.covariance),
                      final.responsibilities, final.labels, all_lbs, initial)


def centralized_block_em(blocks: Sequence[np.ndarray], options: GmmOptions) -> ModelSelection:
    """Fit every candidate K on the joined blocks; choose by BIC."""
    options.validate()
    blocks = [np.asarray(b, dtype=np.float64) for b in blocks]
    return ModelSelection({k: fit_k(blocks, options, k) for k in options.candidates})
