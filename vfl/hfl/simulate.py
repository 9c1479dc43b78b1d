"""The whole federation in one process: the plaintext reference and the engine of parameter sweeps.

Uses exactly the functions and random streams the nodes use (`client_streams`,
`split_rows`, `local_update`, `encrypt_update`, `sum_ciphertexts`,
`decrypt_aggregate`), so a `vflchain run` with the same shards, options and
seed yields the same global models, and `encrypt=None` is the plaintext
FedAvg/FedProx reference that the encrypted aggregation must equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vfl.hfl.aggregate import decrypt_aggregate, encrypt_update, fedavg, sum_ciphertexts
from vfl.hfl.dp import DpAccountant
from vfl.hfl.local import evaluate, local_update, with_intercept
from vfl.hfl.options import HflOptions
from vfl.paillier import PrivateKey, PublicKey


def client_streams(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(split rng, training rng) of client `index` (1-based) in a job with `seed`."""
    split, train = np.random.SeedSequence([seed, 7919, index]).spawn(2)
    return np.random.default_rng(split), np.random.default_rng(train)


def split_rows(n: int, validation: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of one client."""
    perm = rng.permutation(n)
    n_val = int(round(validation * n)) if validation > 0 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class ClientState:
    """One client's view: its training and held-out rows (intercept column added), rng, accountant."""

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    rng: np.random.Generator
    accountant: DpAccountant

    @classmethod
    def make(cls, X: np.ndarray, y: np.ndarray, opts: HflOptions, seed: int, index: int) -> ClientState:
        split_rng, train_rng = client_streams(seed, index)
        tr, va = split_rows(len(y), opts.validation, split_rng)
        Xi = with_intercept(np.asarray(X, dtype=np.float64), opts.fit_intercept)
        yf = np.asarray(y, dtype=np.float64)
        return cls(Xi[tr], yf[tr], Xi[va], yf[va], train_rng, DpAccountant(opts))

    @property
    def n(self) -> int:
        return len(self.y)

    def train(self, w_global: np.ndarray, opts: HflOptions) -> np.ndarray:
        w = local_update(w_global, self.X, self.y, opts, self.rng)
        self.accountant.spend(opts.local_epochs)
        return w


@dataclass
class History:
    """Per round (0 = the initial model): pooled held-out accuracy and mean log loss; the models."""

    accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    models: list[np.ndarray] = field(default_factory=list)
    epsilon_spent: list[float] = field(default_factory=list)

    def record(self, w: np.ndarray, clients: Sequence[ClientState]) -> None:
        counts = [evaluate(w, c.X_val, c.y_val) for c in clients]
        n = sum(c["n"] for c in counts)
        self.accuracy.append(sum(c["correct"] for c in counts) / n if n else float("nan"))
        self.loss.append(sum(c["loss_sum"] for c in counts) / n if n else float("nan"))
        self.models.append(w.copy())
        self.epsilon_spent.append(clients[0].accountant.spent()[0])


def initial_model(d: int, opts: HflOptions) -> np.ndarray:
    """Every job starts from zeros (d features, + 1 intercept)."""
    return np.zeros(d + (1 if opts.fit_intercept else 0))


def run_federation(shards: Sequence[tuple[np.ndarray, np.ndarray]], opts: HflOptions, seed: int,
                   keys: tuple[PublicKey, PrivateKey] | None = None, precision: int = 48) -> History:
    """Train for `opts.rounds`; with `keys`, aggregate over ciphertexts as the coordinator does."""
    opts.validate()
    clients = [ClientState.make(X, y, opts, seed, i + 1) for i, (X, y) in enumerate(shards)]
    w = initial_model(shards[0][0].shape[1], opts)
    hist = History()
    hist.record(w, clients)
    for _ in range(opts.rounds):
        locals_ = [c.train(w, opts) for c in clients]
        counts = [c.n for c in clients]
        if keys is None:
            w = fedavg(locals_, counts)
        else:
            pk, sk = keys
            agg = sum_ciphertexts([encrypt_update(pk, wi, n, precision) for wi, n in zip(locals_, counts, strict=True)])
            w = decrypt_aggregate(sk, agg, sum(counts))
        hist.record(w, clients)
    return hist


def centralized_accuracy(shards: Sequence[tuple[np.ndarray, np.ndarray]], opts: HflOptions, seed: int) -> float:
    """Centralized baseline: scikit-learn LogisticRegression on the pooled training rows, scored on the
    pooled held-out rows (the same rows every federated run is scored on)."""
    from sklearn.linear_model import LogisticRegression

    clients = [ClientState.make(X, y, opts, seed, i + 1) for i, (X, y) in enumerate(shards)]
    X = np.vstack([c.X for c in clients])[:, :shards[0][0].shape[1]]
    y = np.concatenate([c.y for c in clients])
    Xv = np.vstack([c.X_val for c in clients])[:, :shards[0][0].shape[1]]
    yv = np.concatenate([c.y_val for c in clients])
    model = LogisticRegression(max_iter=1000).fit(X, y)
    return float((model.predict(Xv) == yv).mean())
