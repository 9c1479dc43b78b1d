"""One party's block of a block-diagonal Gaussian mixture, and its sufficient statistics.

Independence across parties: component k's density is the product of each
party's block density N(x_p | mu_kp, Sigma_kp), Sigma_kp diagonal ("diag") or
full ("full") within the party. A party's block is fitted from the component
sizes nk and the sufficient statistics of its own columns,

    S1[k] = sum_i gamma_ik x_i           (the first moments)
    S2[k] = sum_i gamma_ik x_i * x_i     ("diag")   or   sum_i gamma_ik x_i x_i^T ("full")

which are linear in the responsibilities: stats = gamma^T @ F for the
"statistic features" F of the party's rows (`statistic_features`). The guest
computes them in plaintext; the host computes them on encrypted
responsibilities (vfl.gmm.mstep). The formulas mirror scikit-learn's
GaussianMixture: means = S1 / nk, diagonal variances = S2 / nk - means**2 +
reg_covar; full covariances = S2 / nk - means means^T + reg_covar * I.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import linalg

from vfl.errors import TrainingError
from vfl.gmm.options import COVARIANCES, Covariance

Statistics = Literal["means", "moments"]  # first moments only (k-means) or first and second


class DegenerateComponentError(TrainingError):
    """A component's covariance collapsed (a variance <= 0, or a covariance not positive definite)."""


def statistic_features(X: np.ndarray, covariance: Covariance, statistics: Statistics = "moments") -> np.ndarray:
    """The columns F whose responsibility-weighted sums gamma^T @ F are the sufficient statistics.

    "means": F = X. "moments": F = [X, X*X] ("diag") or [X, x_a*x_b for a <= b] ("full",
    upper triangle in row-major order), shape (N, d + d) or (N, d + d(d+1)/2).
    """
    X = np.asarray(X, dtype=np.float64)
    if statistics == "means":
        return X
    if covariance == "diag":
        return np.hstack([X, X * X])
    a, b = np.triu_indices(X.shape[1])
    return np.hstack([X, X[:, a] * X[:, b]])


def split_statistics(stats: np.ndarray, d: int, covariance: Covariance,
                     statistics: Statistics = "moments") -> tuple[np.ndarray, np.ndarray | None]:
    """(S1 (K, d), S2 (K, d) or (K, d, d) or None) from gamma^T @ F of shape (K, m)."""
    s1 = stats[:, :d]
    if statistics == "means":
        return s1, None
    rest = stats[:, d:]
    if covariance == "diag":
        return s1, rest
    k = stats.shape[0]
    a, b = np.triu_indices(d)
    s2 = np.zeros((k, d, d))
    s2[:, a, b] = rest
    s2[:, b, a] = rest
    return s1, s2


def component_sizes(resp: np.ndarray) -> np.ndarray:
    """nk = sum_i gamma_ik + 10 eps (scikit-learn's guard against empty components)."""
    return resp.sum(axis=0) + 10 * np.finfo(np.float64).eps


def block_parameters(nk: np.ndarray, s1: np.ndarray, s2: np.ndarray, covariance: Covariance,
                     reg_covar: float) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances of a party's block from its sufficient statistics."""
    means = s1 / nk[:, None]
    if covariance == "diag":
        return means, s2 / nk[:, None] - means**2 + reg_covar
    cov = s2 / nk[:, None, None] - means[:, :, None] * means[:, None, :]
    cov += reg_covar * np.eye(means.shape[1])[None, :, :]
    return means, cov


def precisions_cholesky(covariances: np.ndarray, covariance: Covariance, *, party: str = "",
                        features: Sequence[str] | None = None) -> np.ndarray:
    """Cholesky factors of the precisions (as scikit-learn); refuses collapsed components."""
    who = f"{party}'s block: " if party else ""
    if not np.all(np.isfinite(covariances)):
        raise DegenerateComponentError(f"{who}a covariance is not finite; the fit diverged")
    hint = "too few rows support it; decrease [gmm] k or increase [gmm] reg_covar"
    if covariance == "diag":
        bad = np.argwhere(covariances <= 0.0)
        if len(bad):
            k, j = (int(v) for v in bad[0])
            name = features[j] if features is not None else f"column {j}"
            raise DegenerateComponentError(
                f"{who}component {k} has a collapsing covariance (variance {covariances[k, j]:.3g} "
                f"on feature {name!r}); {hint}")
        return 1.0 / np.sqrt(covariances)
    k_count, d, _ = covariances.shape
    out = np.empty_like(covariances)
    for k in range(k_count):
        try:
            chol = linalg.cholesky(covariances[k], lower=True)
        except linalg.LinAlgError:
            raise DegenerateComponentError(
                f"{who}component {k} has a collapsing covariance (not positive definite); {hint}") from None
        out[k] = linalg.solve_triangular(chol, np.eye(d), lower=True).T
    return out


@dataclass
class GaussianBlock:
    """A party's block of all K components: means (K, d) and covariances (K, d) or (K, d, d)."""

    covariance: Covariance
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @classmethod
    def from_covariances(cls, covariance: Covariance, means: np.ndarray, covariances: np.ndarray, *,
                         party: str = "", features: Sequence[str] | None = None) -> GaussianBlock:
        if covariance not in COVARIANCES:
            raise TrainingError(f"unknown covariance type {covariance!r}")
        if not np.all(np.isfinite(means)):
            raise DegenerateComponentError(f"{party}'s block: a component mean is not finite; the fit diverged")
        prec = precisions_cholesky(covariances, covariance, party=party, features=features)
        return cls(covariance, np.asarray(means, dtype=np.float64), np.asarray(covariances, dtype=np.float64), prec)

    @property
    def k(self) -> int:
        return self.means.shape[0]

    @property
    def d(self) -> int:
        return self.means.shape[1]

    def log_density(self, X: np.ndarray) -> np.ndarray:
        """log N(x_i | mu_k, Sigma_k) of this block's columns, shape (N, K) (scikit-learn's formulas)."""
        X = np.asarray(X, dtype=np.float64)
        d = self.d
        if self.covariance == "diag":
            prec_chol = self.precisions_cholesky
            log_det = np.sum(np.log(prec_chol), axis=1)
            precisions = prec_chol**2
            quad = (np.sum(self.means**2 * precisions, axis=1) - 2.0 * (X @ (self.means * precisions).T)
                    + (X**2 @ precisions.T))
        else:
            k_count = self.k
            log_det = np.array([np.sum(np.log(np.diag(self.precisions_cholesky[k]))) for k in range(k_count)])
            quad = np.empty((X.shape[0], k_count))
            for k in range(k_count):
                pc = self.precisions_cholesky[k]
                y = X @ pc - self.means[k] @ pc
                quad[:, k] = np.sum(np.square(y), axis=1)
        return -0.5 * (d * math.log(2 * math.pi) + quad) + log_det

    def to_json(self) -> dict[str, Any]:
        return {"covariance": self.covariance, "means": self.means.tolist(),
                "covariances": self.covariances.tolist()}


def block_parameter_count(k: int, d: int, covariance: Covariance) -> int:
    """Free parameters of one party's block with K components and d columns."""
    cov = k * d if covariance == "diag" else k * d * (d + 1) // 2
    return cov + k * d


def bic(mean_log_likelihood: float, n_rows: int, k: int, block_dims: Sequence[int],
        covariance: Covariance) -> float:
    """Bayesian information criterion of a block-diagonal mixture (scikit-learn's definition).

    -2 * N * mean log-likelihood + p * log N, p = (K - 1) weights + every block's parameters.
    """
    p = k - 1 + sum(block_parameter_count(k, d, covariance) for d in block_dims)
    return -2.0 * mean_log_likelihood * n_rows + p * math.log(n_rows)


def mixture_weights(nk: np.ndarray, n_rows: int, initial: bool) -> np.ndarray:
    """Mixture weights from component sizes: nk / N at initialisation, nk / sum(nk) after an EM step.

    (scikit-learn's `_initialize` and `_m_step`; both parties call this on the same nk.)
    """
    return nk / n_rows if initial else nk / nk.sum()


@dataclass
class PartyMixture:
    """One party's part of a fitted mixture (its model.json): its columns' block and the shared weights."""

    features: list[str]
    weights: np.ndarray
    block: GaussianBlock

    @property
    def k(self) -> int:
        return len(self.weights)

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md "Model files": {"algorithm": "gmm", "features", "covariance", "weights", "means", "covariances"}."""
        return {"algorithm": "gmm", "features": list(self.features), "covariance": self.block.covariance,
                "k": self.k, "weights": self.weights.tolist(), "means": self.block.means.tolist(),
                "covariances": self.block.covariances.tolist()}

    @classmethod
    def from_json(cls, obj: Any, source: str = "model.json") -> PartyMixture:
        """Parse and check a saved model; one-line errors naming the problem."""
        if not isinstance(obj, dict) or obj.get("algorithm") != "gmm":
            raise TrainingError(f"{source}: not a Gaussian mixture model (algorithm != \"gmm\")")
        try:
            features = [str(f) for f in obj["features"]]
            covariance = obj["covariance"]
            weights = np.asarray(obj["weights"], dtype=np.float64)
            means = np.asarray(obj["means"], dtype=np.float64)
            covs = np.asarray(obj["covariances"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(f"{source}: malformed model ({exc})") from None
        k, d = len(weights), len(features)
        want = (k, d) if covariance == "diag" else (k, d, d)
        if covariance not in COVARIANCES:
            raise TrainingError(f"{source}: covariance must be \"diag\" or \"full\", got {covariance!r}")
        if means.shape != (k, d) or covs.shape != want:
            raise TrainingError(f"{source}: means {means.shape} / covariances {covs.shape} do not match "
                                f"{k} components and {d} features")
        if not (np.all(np.isfinite(weights)) and np.all(weights > 0) and abs(weights.sum() - 1) < 1e-6):
            raise TrainingError(f"{source}: mixture weights must be positive and sum to 1")
        block = GaussianBlock.from_covariances(covariance, means, covs, party=source, features=features)
        return cls(features, weights, block)
