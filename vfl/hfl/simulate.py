"""The whole federation in one process: the plaintext reference and the engine of parameter sweeps.

Uses exactly the functions the nodes use (`ClientState`, `split_rows`,
`local_update`, `encrypt_update`, `sum_ciphertexts`, `decrypt_aggregate`), and
`keys=None` is the plaintext FedAvg/FedProx reference that the encrypted
aggregation must equal.

Randomness: the held-out split and the batches of training without DP come
from the job seed, so DP-off runs are reproducible and a `vflchain run` equals
the in-process run. With DP on, each client's Poisson samples and noise come
from a secret key (`vfl.hfl.randomness.secret_stream`), as in the nodes: two
runs differ. `reproducible=True` derives them from the seed instead, for
experiments only: such runs are NOT private and are labelled so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vfl.hfl.aggregate import (
    aggregation_weight,
    decrypt_aggregate,
    decrypt_weighted,
    encrypt_update,
    encrypt_weight,
    fedavg,
    sum_ciphertexts,
)
from vfl.hfl.dp import DpAccountant
from vfl.hfl.local import AdaptiveStep, evaluate, local_update, validation_score, with_intercept
from vfl.hfl.options import HflOptions
from vfl.hfl.randomness import DpRandom, secret_stream, seeded_stream
from vfl.paillier import PrivateKey, PublicKey


def client_streams(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(held-out split rng, batch rng of training without DP) of client `index` (1-based) in a job with
    `seed`. Public randomness: nothing that DP relies on comes from it."""
    split, train = np.random.SeedSequence([seed, 7919, index]).spawn(2)
    return np.random.default_rng(split), np.random.default_rng(train)


def split_rows(n: int, validation: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of one client."""
    perm = rng.permutation(n)
    n_val = int(round(validation * n)) if validation > 0 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class ClientState:
    """One client's view: its training and held-out rows (intercept column added), random sources,
    accountant."""

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    rng: np.random.Generator  # batches without DP (from the seed)
    dp_random: DpRandom  # Poisson samples and noise with DP (secret unless reproducible)
    accountant: DpAccountant
    adaptive: AdaptiveStep = field(default_factory=AdaptiveStep)  # its own AdaGrad/Adam state, over all rounds

    @classmethod
    def make(cls, X: np.ndarray, y: np.ndarray, opts: HflOptions, seed: int, index: int,
             reproducible: bool = False) -> ClientState:
        """Client `index` (1-based) of a job with `seed`; `reproducible=True` (simulation only) derives the
        DP randomness from the seed: NOT private."""
        split_rng, train_rng = client_streams(seed, index)
        tr, va = split_rows(len(y), opts.validation, split_rng)
        Xi = with_intercept(np.asarray(X, dtype=np.float64), opts.fit_intercept)
        yf = np.asarray(y, dtype=np.float64)
        dp_random = seeded_stream(seed, index) if reproducible else secret_stream()
        return cls(Xi[tr], yf[tr], Xi[va], yf[va], train_rng, dp_random, DpAccountant(opts, len(tr)),
                   AdaptiveStep(opts.adaptive))

    @property
    def private(self) -> bool:
        """False when the DP randomness is replayable from the seed."""
        return self.dp_random.private

    @property
    def n(self) -> int:
        return len(self.y)

    def train(self, w_global: np.ndarray, opts: HflOptions) -> np.ndarray:
        w = local_update(w_global, self.X, self.y, opts, self.rng, self.dp_random, self.adaptive)
        self.accountant.spend(opts.local_epochs)
        return w

    def weight(self, w_local: np.ndarray, opts: HflOptions) -> float:
        """Its aggregation weight a_i for this round's local model (`[hfl] weighting`)."""
        score = validation_score(w_local, self.X_val, self.y_val) if opts.weighting == "validation" else 1.0
        return aggregation_weight(self.n, score, opts.weighting)


@dataclass
class History:
    """Per round (0 = the initial model): pooled held-out accuracy and mean log loss; the models."""

    accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    models: list[np.ndarray] = field(default_factory=list)
    epsilon_spent: list[float] = field(default_factory=list)
    reproducible: bool = False  # DP noise and sampling replayable from the seed: NOT private

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
                   keys: tuple[PublicKey, PrivateKey] | None = None, precision: int = 48,
                   reproducible: bool = False) -> History:
    """Train for `opts.rounds`; with `keys`, aggregate over ciphertexts as the coordinator does.
    `reproducible=True`: DP noise and sampling from the seed (NOT private; `History.reproducible`)."""
    opts.validate()
    clients = [ClientState.make(X, y, opts, seed, i + 1, reproducible) for i, (X, y) in enumerate(shards)]
    w = initial_model(shards[0][0].shape[1], opts)
    hist = History(reproducible=reproducible)
    hist.record(w, clients)
    for _ in range(opts.rounds):
        locals_ = [c.train(w, opts) for c in clients]
        weights = [c.weight(wi, opts) for c, wi in zip(clients, locals_, strict=True)]
        if keys is None:
            w = fedavg(locals_, weights)
        else:
            pk, sk = keys
            agg = sum_ciphertexts([encrypt_update(pk, wi, a, precision) for wi, a in zip(locals_, weights, strict=True)])
            if opts.weighting == "samples":
                w = decrypt_aggregate(sk, agg, sum(c.n for c in clients))
            else:
                w = decrypt_weighted(sk, agg, sum_ciphertexts([encrypt_weight(pk, a, precision) for a in weights]))
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
