"""Estimators with scikit-learn conventions over `run_job`: fit and predict are federated jobs.

`X` is always a mapping {party: its rows} (vflchain.inputs: DataFrames, arrays, CSV paths, ...),
because in vertical FL no one holds a whole row; rows are matched by ID (PSI) as in any job.
`fit` trains (one job, `result_` keeps it); `predict_proba` / `predict` score new rows with
the trained parties' models (a prediction job, as `vflchain predict`) and return one row per
guest row, in the guest's order (NaN for a guest row no other party has).

    est = VerticalLogisticRegression(epochs=10, key_bits=1024, insecure_test_keys=True)
    est.fit({"guest": guest_df, "host": host_df}, y)
    est.predict_proba({"guest": new_guest_df, "host": new_host_df})[:, 1]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, ClusterMixin

from nodes.errors import ConfigError
from vflchain.api import JobResult, run_job
from vflchain.inputs import PartyInput, party_table


def _guest_ids(X: Mapping[str, PartyInput]) -> list[str]:
    """The guest's row IDs in its input order."""
    if not isinstance(X, Mapping) or "guest" not in X:
        raise ConfigError("X must be a mapping {party: rows} with the guest's rows under \"guest\"")
    table = party_table(X["guest"], "guest", "guest")
    if isinstance(table, Path):
        from nodes.datafiles import load_party_csv

        table = load_party_csv(table, "guest", require_labels=False)
    return table.ids.tolist()


class _Federated(BaseEstimator):
    """What both estimators share: the job's config from the estimator's parameters, and scoring."""

    algorithm = ""

    def _sections(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def _config(self) -> dict[str, dict[str, Any]]:
        cfg: dict[str, dict[str, Any]] = {"job": {"algorithm": self.algorithm, "seed": self.seed},
                                          "paillier": {"key_bits": self.key_bits,
                                                       "insecure_test_keys": self.insecure_test_keys}}
        for section, values in self._sections().items():
            cfg.setdefault(section, {}).update(values)
        for section, values in (self.config or {}).items():  # any other key of the job config
            cfg.setdefault(section, {}).update(values)
        return cfg

    def _fit(self, X: Mapping[str, PartyInput], y: Any) -> JobResult:
        if not isinstance(X, Mapping):
            raise ConfigError("X must be a mapping {party: rows}, e.g. {\"guest\": guest_df, \"host\": host_df}")
        self.result_ = run_job(self._config(), X, labels=y, chain=self.chain)
        self.models_ = self.result_.models
        self.metrics_ = self.result_.metrics
        return self.result_

    def _score_rows(self, X: Mapping[str, PartyInput]) -> tuple[list[str], dict[str, dict[str, str]]]:
        """A prediction job on `X`: (the guest's IDs in input order, predictions.csv rows by ID)."""
        if not hasattr(self, "result_"):
            raise ConfigError(f"this {type(self).__name__} is not fitted yet: call fit first")
        ids = _guest_ids(X)
        res = run_job(self._config(), X, chain=self.chain, model=self.result_.out)
        return ids, {row["id"]: row for row in res.opener.predictions}

    @staticmethod
    def _rows_of(result: JobResult) -> dict[str, dict[str, str]]:
        return {row["id"]: row for row in result.opener.predictions}


class VerticalLogisticRegression(ClassifierMixin, _Federated):
    """Vertical logistic regression (binning, IV selection, Paillier LR), one party's columns each.

    Parameters are the job config's [lr], [binning] and [selection] keys (docs/protocols/lr.md);
    `config` adds any other {section: {key: value}}; `chain` is run_job's.
    Fitted: `result_` (the JobResult), `models_` ({party: model.json}), `metrics_`, `classes_`.
    """

    algorithm = "lr"

    def __init__(self, epochs: int = 20, learning_rate: float = 0.15, batch_size: int = 0, alpha: float = 0.01,
                 penalty: str = "l2", tol: float = 1e-4, validation: float = 0.2, bins: int = 10,
                 iv_threshold: float = 0.02, key_bits: int = 2048, insecure_test_keys: bool = False,
                 seed: int = 42, chain: str | Path | None = None,
                 config: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.epochs, self.learning_rate, self.batch_size, self.alpha = epochs, learning_rate, batch_size, alpha
        self.penalty, self.tol, self.validation, self.bins = penalty, tol, validation, bins
        self.iv_threshold, self.key_bits, self.insecure_test_keys = iv_threshold, key_bits, insecure_test_keys
        self.seed, self.chain, self.config = seed, chain, config

    def _sections(self) -> dict[str, dict[str, Any]]:
        return {"lr": {"epochs": self.epochs, "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                       "alpha": self.alpha, "penalty": self.penalty, "tol": self.tol,
                       "validation": self.validation},
                "binning": {"bins": self.bins}, "selection": {"iv_threshold": self.iv_threshold}}

    def fit(self, X: Mapping[str, PartyInput], y: Any = None) -> VerticalLogisticRegression:
        """Train on the parties' rows; `y`: the guest's labels (0/1) unless its data carries them.

        Raises:
            ConfigError, DataError: bad parameters or data (one line); JobFailed: the job failed.
        """
        self._fit(X, y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Mapping[str, PartyInput]) -> np.ndarray:
        """(n_guest_rows, 2) probabilities of class 0 and 1, in the guest's row order (NaN: no partner row)."""
        ids, rows = self._score_rows(X)
        p1 = np.array([float(rows[i]["predict_score"]) if i in rows else np.nan for i in ids])
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: Mapping[str, PartyInput]) -> np.ndarray:
        """Class labels (0/1) at probability 0.5, in the guest's row order."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


class VerticalGaussianMixture(ClusterMixin, _Federated):
    """FL-EM-GMM: a Gaussian mixture over the parties' columns (block-diagonal across parties).

    Parameters follow scikit-learn's GaussianMixture and map to the job config's [gmm] keys
    (docs/protocols/gmm.md); `config` adds any other {section: {key: value}}.
    Fitted: `result_`, `models_` ({party: model.json: its block's means and covariances}),
    `metrics_`, `weights_`, `labels_` (the training rows' clusters, guest order).
    """

    algorithm = "gmm"

    def __init__(self, n_components: int = 2, covariance_type: str = "diag", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1, init_params: str = "kmeans",
                 key_bits: int = 2048, insecure_test_keys: bool = False, seed: int = 42,
                 chain: str | Path | None = None, config: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.n_components, self.covariance_type, self.tol, self.reg_covar = n_components, covariance_type, tol, reg_covar
        self.max_iter, self.n_init, self.init_params = max_iter, n_init, init_params
        self.key_bits, self.insecure_test_keys, self.seed = key_bits, insecure_test_keys, seed
        self.chain, self.config = chain, config

    def _sections(self) -> dict[str, dict[str, Any]]:
        return {"gmm": {"k": self.n_components, "covariance": self.covariance_type, "tol": self.tol,
                        "reg_covar": self.reg_covar, "max_iter": self.max_iter, "n_init": self.n_init,
                        "init": self.init_params}}

    def fit(self, X: Mapping[str, PartyInput], y: Any = None) -> VerticalGaussianMixture:
        """Fit on the parties' rows (`y`, optional guest labels, only give metrics such as ARI)."""
        result = self._fit(X, y)
        ids = _guest_ids(X)
        rows = self._rows_of(result)
        self.labels_ = np.array([int(rows[i]["predict_result"]) if i in rows else -1 for i in ids])
        self.weights_ = np.asarray((self.metrics_ or {}).get("weights", []), dtype=np.float64)
        return self

    def predict_proba(self, X: Mapping[str, PartyInput]) -> np.ndarray:
        """(n_guest_rows, n_components) responsibilities, in the guest's row order (NaN: no partner row)."""
        ids, rows = self._score_rows(X)
        k = self.n_components
        out = np.full((len(ids), k), np.nan)
        for n, i in enumerate(ids):
            if i in rows:
                detail = json.loads(rows[i]["predict_detail"])
                out[n] = [float(detail[str(j)]) for j in range(k)]
        return out

    def predict(self, X: Mapping[str, PartyInput]) -> np.ndarray:
        """The most likely component of each guest row (-1: no partner row)."""
        proba = self.predict_proba(X)
        ok = ~np.isnan(proba).any(axis=1)
        return np.where(ok, np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1), -1)
