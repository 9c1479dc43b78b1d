"""A party's own checks of its columns before FL-EM-GMM starts (one-line errors)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vfl.errors import DataError


def check_rows_for_k(n_rows: int, k: int) -> None:
    """EM needs at least as many rows as components (and two rows at all)."""
    if n_rows < 2:
        raise DataError(f"a Gaussian mixture needs at least 2 aligned rows, got {n_rows}")
    if k > n_rows:
        raise DataError(f"[gmm] k = {k} is larger than the {n_rows} aligned rows; choose k <= {n_rows}")


def check_block(X: np.ndarray, features: Sequence[str], party: str) -> None:
    """Refuse an empty block, non-finite values and constant columns (a variance that collapses)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"{party} has no feature columns for the Gaussian mixture")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{party} data has NaN or infinite values")
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0) if X.shape[0] else np.arange(X.shape[1])
    if len(constant):
        j = int(constant[0])
        raise DataError(f"{party} feature {features[j]!r} is constant (every row is {X[0, j]:g}); "
                        "its variance collapses and it cannot separate clusters: drop the column")
