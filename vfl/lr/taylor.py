"""The second-order Taylor approximation of the logistic loss, and its stability condition.

With labels y' in {-1, 1} and score u = w.x, around u = 0:

    log(1 + exp(-y'u)) ~ log 2 - 0.5 y'u + 0.125 u^2

Its derivative in u is the residual d = 0.25 u - 0.5 y', so the gradient of the
mean loss is X^T d / m: linear in u, which is what makes it computable on
Paillier ciphertexts. The approximate loss is a quadratic with Hessian
0.25 X^T X / n (+ alpha I with L2), so gradient descent converges only when

    learning_rate * (0.25 * lambda_max(X^T X / n) + alpha) < 2.
"""

from __future__ import annotations

import math

import numpy as np

from vfl.errors import TrainingError

LOG2 = math.log(2.0)


def signed_labels(y: np.ndarray) -> np.ndarray:
    """0/1 labels -> -1/+1 (float64)."""
    return 2.0 * np.asarray(y, dtype=np.float64) - 1.0


def residuals(u: np.ndarray, y_pm: np.ndarray) -> np.ndarray:
    """d = 0.25 u - 0.5 y': the loss derivative per sample."""
    return 0.25 * u - 0.5 * y_pm


def sample_losses(u: np.ndarray, y_pm: np.ndarray) -> np.ndarray:
    """Taylor loss per sample: log 2 - 0.5 y'u + 0.125 u^2."""
    return LOG2 - 0.5 * y_pm * u + 0.125 * u * u


def gram_max_eigenvalue(X: np.ndarray, intercept: bool = False) -> float:
    """lambda_max(X^T X / n), with a column of ones appended when `intercept`."""
    n = X.shape[0]
    if n == 0:
        return 0.0
    A = np.hstack([X, np.ones((n, 1))]) if intercept else X
    if A.shape[1] == 0:
        return 0.0
    return float(np.linalg.eigvalsh(A.T @ A / n)[-1])


def stability_factor(lam: float, learning_rate: float, alpha: float) -> float:
    """learning_rate * (0.25 lambda + alpha); gradient descent on the Taylor loss diverges at >= 2."""
    return learning_rate * (0.25 * lam + alpha)


def max_stable_learning_rate(lam: float, alpha: float) -> float:
    return 2.0 / (0.25 * lam + alpha) if 0.25 * lam + alpha > 0 else math.inf


def safe_learning_rate(n_columns: int, alpha: float) -> float:
    """A learning rate that is stable for any `n_columns` standardized columns (incl. the intercept's).

    Standardized columns have mean square 1, so lambda_max(X^T X/n) <= trace = n_columns.
    Both parties know both column counts, so either can name this bound without revealing data.
    """
    return 0.9 * max_stable_learning_rate(float(n_columns), alpha)


def advice(learning_rate: float, alpha: float, n_columns: int, standardized: bool) -> str:
    """What to change when training is (or would be) unstable."""
    if standardized:
        return (f"use learning_rate < {safe_learning_rate(n_columns, alpha):.3g} (stable for any "
                f"{n_columns} standardized columns)")
    return "standardize the features ([lr] standardize = true) or lower learning_rate"


def check_block_stability(X: np.ndarray, learning_rate: float, alpha: float, whose: str,
                          n_columns: int, standardized: bool) -> None:
    """Refuse a learning rate that is unstable for one party's columns alone.

    lambda_max of a block of columns is a lower bound of the joint lambda_max,
    so a violation here means the joint training diverges for sure (checked by
    each party on its own columns, revealing nothing to the other). `n_columns`
    is the joint column count (for the advice).
    """
    lam = gram_max_eigenvalue(X)
    factor = stability_factor(lam, learning_rate, alpha)
    if factor >= 2.0:
        raise TrainingError(
            f"learning_rate {learning_rate:g} is unstable for {whose} columns: "
            f"learning_rate*(0.25*lambda_max(X^T X/n) + alpha) = {factor:.3g} >= 2 "
            f"(lambda_max = {lam:.4g}); {advice(learning_rate, alpha, n_columns, standardized)}"
        )
