"""One party's part of a vertical logistic regression model, and scoring with it.

A party's model holds only its own columns' weights (and, at the guest, the
intercept) plus the scaling it applied to its columns, so that it can score new
rows: the score of a row is the sum of both parties' partial scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vfl.data import Role
from vfl.errors import DataError


@dataclass(frozen=True)
class Scaling:
    """Per-column standardization (x - mean) / scale, fitted on the training rows."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Scaling:
        std = X.std(axis=0) if X.shape[0] else np.ones(X.shape[1])
        std = np.where(std > 0, std, 1.0)
        mean = X.mean(axis=0) if X.shape[0] else np.zeros(X.shape[1])
        return cls(mean.astype(np.float64), std.astype(np.float64))

    @classmethod
    def identity(cls, d: int) -> Scaling:
        return cls(np.zeros(d), np.ones(d))

    def apply(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.scale

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Scaling:
        return cls(np.asarray(obj["mean"], dtype=np.float64), np.asarray(obj["scale"], dtype=np.float64))


@dataclass
class LrPartModel:
    """A party's weights over its own (scaled) columns; `intercept` is the guest's only."""

    role: Role
    features: list[str]
    weights: np.ndarray
    intercept: float | None
    scaling: Scaling

    def partial_scores(self, X: np.ndarray) -> np.ndarray:
        """This party's share of w.x for raw rows X (its own columns, in model order)."""
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise DataError(f"{self.role} model has {len(self.features)} features, rows have "
                            f"{X.shape[1] if X.ndim == 2 else '?'} columns")
        u = self.scaling.apply(X) @ self.weights
        return u + self.intercept if self.intercept is not None else u

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """model.json: DESIGN.md's {"algorithm", "features", "weights", "intercept"} plus scaling."""
        out: dict[str, Any] = {"algorithm": "lr", "role": self.role, "features": list(self.features),
                               "weights": [float(v) for v in self.weights]}
        if self.intercept is not None:
            out["intercept"] = float(self.intercept)
        out["scaling"] = self.scaling.to_json()
        out.update(extra)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = "model.json") -> LrPartModel:
        try:
            if obj.get("algorithm") != "lr":
                raise DataError(f"{source}: not a logistic regression model "
                                f"(algorithm {obj.get('algorithm')!r})")
            features = [str(f) for f in obj["features"]]
            weights = np.asarray(obj["weights"], dtype=np.float64)
            if weights.shape != (len(features),):
                raise DataError(f"{source}: {len(weights)} weights for {len(features)} features")
            role = obj.get("role", "guest" if "intercept" in obj else "host")
            scaling = (Scaling.from_json(obj["scaling"]) if obj.get("scaling")
                       else Scaling.identity(len(features)))
            if scaling.mean.shape != weights.shape or scaling.scale.shape != weights.shape:
                raise DataError(f"{source}: scaling does not match the {len(features)} features")
            intercept = float(obj["intercept"]) if "intercept" in obj else None
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: malformed model: {exc}") from None
        return cls(role, features, weights, intercept, scaling)

    def columns_of(self, features: list[str], X: np.ndarray, source: str) -> np.ndarray:
        """The model's columns, in model order, from a table with columns `features`."""
        pos = {f: i for i, f in enumerate(features)}
        missing = [f for f in self.features if f not in pos]
        if missing:
            raise DataError(f"{source}: the {self.role} model needs column {missing[0]!r}, "
                            "which the data does not have")
        return X[:, [pos[f] for f in self.features]]


def sigmoid(u: np.ndarray) -> np.ndarray:
    """The logistic function, computed stably for large |u|."""
    u = np.asarray(u, dtype=np.float64)
    out = np.empty_like(u)
    pos = u >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-u[pos]))
    e = np.exp(u[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def predict_proba(guest_scores: np.ndarray, host_scores: np.ndarray) -> np.ndarray:
    """P(y = 1) from both parties' partial scores (the guest's includes the intercept)."""
    return sigmoid(np.asarray(guest_scores) + np.asarray(host_scores))
