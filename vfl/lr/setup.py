"""Per-party preparation that the federated run and the reference share.

`prepare_party` turns a party's raw aligned columns into what training uses:
scaled columns (with the guest's intercept column), the initial weights (zeros
or a warm-start model's), and the scaling to save with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vfl.data import Role
from vfl.errors import DataError
from vfl.lr.model import LrPartModel, Scaling
from vfl.lr.options import LrOptions


@dataclass
class PreparedParty:
    """A party's training matrix and starting point."""

    role: Role
    features: list[str]
    X: np.ndarray  # scaled rows (all aligned rows), plus a ones column at the guest if fit_intercept
    weights: np.ndarray  # initial weights over X's columns (intercept last at the guest)
    regularized: np.ndarray  # which weights the penalty applies to (not the intercept)
    scaling: Scaling
    intercept: bool

    @property
    def n_features(self) -> int:
        return len(self.features)

    def model(self, weights: np.ndarray) -> LrPartModel:
        """The party's model for weights over X's columns."""
        if self.intercept:
            return LrPartModel(self.role, list(self.features), weights[:-1].copy(), float(weights[-1]),
                               self.scaling)
        return LrPartModel(self.role, list(self.features), weights.copy(),
                           0.0 if self.role == "guest" else None, self.scaling)


def prepare_party(role: Role, features: list[str], X: np.ndarray, train_rows: np.ndarray,
                  opts: LrOptions, warm: LrPartModel | None = None) -> PreparedParty:
    """Scale a party's columns and set its initial weights (zeros, or a warm-start model's)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(features):
        raise DataError(f"{role}: {len(features)} feature names for a matrix of shape {X.shape}")
    intercept = role == "guest" and opts.fit_intercept
    if warm is not None:
        if warm.role != role:
            raise DataError(f"warm start: the {role} was given the {warm.role}'s model")
        if list(warm.features) != list(features):
            raise DataError(f"warm start: the {role} model's features {warm.features} differ from the "
                            f"data's {features}")
        scaling = warm.scaling
        w = warm.weights.astype(np.float64).copy()
        if intercept:
            w = np.r_[w, warm.intercept or 0.0]
    else:
        scaling = Scaling.fit(X[train_rows]) if opts.standardize else Scaling.identity(X.shape[1])
        w = np.zeros(X.shape[1] + (1 if intercept else 0))
    Xs = scaling.apply(X)
    if intercept:
        Xs = np.hstack([Xs, np.ones((Xs.shape[0], 1))])
    regularized = np.ones(w.shape[0], dtype=bool)
    if intercept:
        regularized[-1] = False
    return PreparedParty(role, list(features), Xs, w, regularized, scaling, intercept)
