"""What both parties derive identically: the validation split, batches, learning rates, updates, stopping.

The federated run and the plaintext reference call these same functions, so the
only difference between them is how the gradient and the loss are computed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vfl.errors import DataError, TrainingError
from vfl.lr.options import LrOptions
from vfl.lr.taylor import advice

DIVERGENCE_FACTOR = 10.0  # a batch loss this many times the first one means divergence
EPOCH_DIVERGENCE_FACTOR = 2.0  # an epoch loss this many times the best one means divergence
_SPLIT_STREAM = 0x5EED  # separates the validation split's random stream from the batches'


def ids_digest(ids: Sequence[str] | np.ndarray) -> str:
    """SHA-256 over the IDs in order: both parties compare it to confirm the same row order."""
    h = hashlib.sha256()
    for i in np.asarray(ids).tolist():
        b = str(i).encode()
        h.update(len(b).to_bytes(4, "big") + b)
    return h.hexdigest()


def validation_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """Positions (sorted) of the rows the guest holds out for validation."""
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    n_val = int(round(fraction * n))
    n_val = min(max(n_val, 1), n - 1)
    if n < 2 or n_val < 1:
        raise DataError(f"{n} rows cannot be split into training and validation")
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    return np.sort(rng.permutation(n)[:n_val]).astype(np.int64)


def rows_for_ids(ids: np.ndarray, wanted: Sequence[str]) -> np.ndarray:
    """Positions of `wanted` IDs in `ids` (each must be present)."""
    pos = {str(v): i for i, v in enumerate(np.asarray(ids).tolist())}
    out = np.empty(len(wanted), dtype=np.int64)
    for k, w in enumerate(wanted):
        if w not in pos:
            raise DataError(f"validation ID {w!r} is not among this party's aligned rows")
        out[k] = pos[w]
    return out


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch as positions into the training rows.

    Full batch (`batch_size` 0 or >= n): one batch of all rows in order. Otherwise
    a permutation seeded by (seed, epoch) cut into n // batch_size near-equal parts,
    so every batch has at least `batch_size` rows.
    """
    if batch_size <= 0 or batch_size >= n:
        return [np.arange(n, dtype=np.int64)]
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [b.astype(np.int64) for b in np.array_split(perm, n // batch_size)]


def min_batch_rows(n: int, batch_size: int) -> int:
    """The smallest batch `epoch_batches` makes."""
    if batch_size <= 0 or batch_size >= n:
        return n
    return n // (n // batch_size)


def check_batch_privacy(n: int, batch_size: int, peer_features: int, peer: str) -> None:
    """Refuse batches so small that the peer could solve its gradient for per-sample values.

    A party learns X^T v for its own X (m x k) and a secret per-sample vector v of the
    batch; with m <= k rows that linear system can determine v. Each party checks this
    for the *other* party's feature count (it protects its own per-sample values).
    """
    m = min_batch_rows(n, batch_size)
    if m <= peer_features:
        raise TrainingError(
            f"batch_size {batch_size} is too small for privacy: batches of {m} rows but the "
            f"{peer} has {peer_features} columns, so the {peer} could solve its gradient for "
            f"per-sample values; use batch_size >= {peer_features + 1} or 0 (full batch)"
        )


def learning_rate(opts: LrOptions, epoch: int) -> float:
    """Learning rate of 0-based `epoch`: learning_rate / (1 + decay * epoch)."""
    return opts.learning_rate / (1.0 + opts.decay * epoch)


def penalty_value(w: np.ndarray, opts: LrOptions) -> float:
    """R(w): 0.5 alpha |w|^2 (l2), alpha |w|_1 (l1), 0 (none). `w` excludes the intercept."""
    if opts.penalty == "l2":
        return 0.5 * opts.alpha * float(w @ w)
    if opts.penalty == "l1":
        return opts.alpha * float(np.abs(w).sum())
    return 0.0


def update_weights(w: np.ndarray, grad: np.ndarray, lr: float, opts: LrOptions,
                   regularized: np.ndarray | None = None) -> np.ndarray:
    """One step from the data gradient `grad` (mean over the batch).

    l2: w - lr (grad + alpha w); l1: soft-threshold(w - lr grad, lr alpha) (proximal);
    `regularized` marks which entries the penalty applies to (not the intercept).
    """
    mask = np.ones_like(w) if regularized is None else regularized.astype(np.float64)
    if opts.penalty == "l2":
        return w - lr * (grad + opts.alpha * mask * w)
    z = w - lr * grad
    if opts.penalty == "l1":
        shrink = lr * opts.alpha * mask
        return np.sign(z) * np.maximum(np.abs(z) - shrink, 0.0)
    return z


@dataclass
class Decision:
    """What the guest decides at the end of an epoch (and tells the host)."""

    stop: bool
    reason: str  # "" | "converged" | "early_stopping" | "max_epochs"
    improved: bool  # the validation loss reached a new best (keep these weights)


@dataclass
class TrainingMonitor:
    """Divergence, convergence and early-stopping decisions of the guest."""

    opts: LrOptions
    has_validation: bool
    n_columns: int = 0  # joint column count (incl. the intercept), for the advice on divergence
    first_batch_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    best_validation: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def check_batch(self, loss: float, epoch: int, batch: int) -> None:
        """Raise TrainingError when a batch loss is not finite or past the divergence bound."""
        if self.first_batch_loss is None and math.isfinite(loss):
            self.first_batch_loss = loss
        bound = DIVERGENCE_FACTOR * max(self.first_batch_loss or 0.0, math.log(2.0))
        if not math.isfinite(loss) or loss > bound:
            raise TrainingError(self._diverged(
                f"epoch {epoch + 1}, batch {batch + 1}: loss {loss:.4g} rose past {bound:.4g} "
                f"({DIVERGENCE_FACTOR:g} x the first batch's loss)"))

    def end_epoch(self, epoch: int, loss: float, validation_loss: float | None) -> Decision:
        if self.losses and loss > EPOCH_DIVERGENCE_FACTOR * min(self.losses):
            raise TrainingError(self._diverged(
                f"epoch {epoch + 1}: loss {loss:.4g} is more than {EPOCH_DIVERGENCE_FACTOR:g} x "
                f"the best epoch's {min(self.losses):.4g}"))
        previous = self.losses[-1] if self.losses else None
        self.losses.append(loss)
        improved = False
        if validation_loss is not None:
            self.validation_losses.append(validation_loss)
            if validation_loss < self.best_validation:
                self.best_validation, self.best_epoch, self.bad_epochs = validation_loss, epoch, 0
                improved = True
            else:
                self.bad_epochs += 1
        else:
            self.best_epoch, improved = epoch, True
        if self.opts.early_stopping and self.bad_epochs >= self.opts.early_stopping:
            return Decision(True, "early_stopping", improved)
        if previous is not None and abs(previous - loss) < self.opts.tol:
            return Decision(True, "converged", improved)
        if epoch + 1 >= self.opts.epochs:
            return Decision(True, "max_epochs", improved)
        return Decision(False, "", improved)

    @property
    def keeps_best(self) -> bool:
        """With early stopping the final model is the best validation epoch's, else the last."""
        return bool(self.opts.early_stopping)

    def _diverged(self, where: str) -> str:
        o = self.opts
        return (f"training diverged at {where}; learning_rate {o.learning_rate:g} is too large for these "
                f"features (the Taylor loss needs learning_rate*(0.25*lambda_max(X^T X/n) + alpha) < 2): "
                + advice(o.learning_rate, o.alpha, self.n_columns, o.standardize))
