"""The plaintext reference: the same algorithm run centrally on the joined data.

Same validation split, scaling, initial weights, batches, learning-rate
schedule, penalty, Taylor loss, divergence/convergence/early-stopping rules as
the federated protocol (they share vfl.lr.schedule and vfl.lr.setup); only the
gradient and the loss are computed in plain float64 here. The federated weights
must equal these to fixed-point precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vfl.data import check_binary_labels
from vfl.errors import DataError
from vfl.lr.model import LrPartModel
from vfl.lr.options import LrOptions
from vfl.lr.privacy import check_label_bits
from vfl.lr.schedule import (
    TrainingMonitor,
    check_batch_privacy,
    epoch_batches,
    learning_rate,
    min_batch_rows,
    penalty_value,
    update_weights,
    validation_rows,
)
from vfl.lr.setup import PreparedParty, prepare_party
from vfl.lr.taylor import check_block_stability, residuals, sample_losses, signed_labels


@dataclass
class ReferenceFit:
    guest: LrPartModel
    host: LrPartModel
    train_rows: np.ndarray
    validation_rows: np.ndarray
    losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    stop_reason: str = ""
    best_epoch: int = -1
    epochs_run: int = 0


def check_guest_side(guest: PreparedParty, y_train: np.ndarray, opts: LrOptions, n_train: int,
                     host_features: int) -> None:
    """The guest's checks before training: both classes, stability of its columns, batch privacy.

    Without label noise the batches must also be too large for the host's gradient to
    carry their labels (`vfl.lr.privacy.check_label_bits`).
    """
    check_binary_labels(y_train, "training labels")
    check_block_stability(guest.X, opts.learning_rate, opts.alpha, "the guest's",
                          guest.X.shape[1] + host_features, opts.standardize)
    check_batch_privacy(n_train, opts.batch_size, host_features, "host")
    check_label_bits(n_train, min_batch_rows(n_train, opts.batch_size), host_features, opts.label_noise)


def check_host_side(host: PreparedParty, opts: LrOptions, n_train: int, guest_columns: int) -> None:
    """The host's checks before training: stability of its columns, batch privacy."""
    check_block_stability(host.X, opts.learning_rate, opts.alpha, "the host's",
                          host.X.shape[1] + guest_columns, opts.standardize)
    check_batch_privacy(n_train, opts.batch_size, guest_columns, "guest")


def fit_reference(X_g: np.ndarray, X_h: np.ndarray, y: np.ndarray, opts: LrOptions,
                  guest_features: list[str] | None = None, host_features: list[str] | None = None,
                  warm_guest: LrPartModel | None = None, warm_host: LrPartModel | None = None,
                  host_noise: Sequence[np.ndarray] | None = None) -> ReferenceFit:
    """Train on the joined rows (same order as the parties' aligned rows).

    `host_noise`: the noise the guest added to the host's gradient sum X_h^T d, one
    array per batch in order (`ctx.state["lr"]["host_noise"]` of the guest's run); None
    trains without noise.
    """
    opts.check()
    n = X_g.shape[0]
    gf = guest_features or [f"x{i}" for i in range(X_g.shape[1])]
    hf = host_features or [f"x{i}" for i in range(X_h.shape[1])]
    val = validation_rows(n, opts.validation, opts.seed)
    train = np.setdiff1d(np.arange(n), val)
    guest = prepare_party("guest", gf, X_g, train, opts, warm_guest)
    host = prepare_party("host", hf, X_h, train, opts, warm_host)
    y_pm = signed_labels(y)
    check_guest_side(guest, np.asarray(y)[train], opts, len(train), host.n_features)
    check_host_side(host, opts, len(train), guest.X.shape[1])

    w_g, w_h = guest.weights.copy(), host.weights.copy()
    best_g, best_h = w_g.copy(), w_h.copy()
    monitor = TrainingMonitor(opts, has_validation=len(val) > 0, n_columns=guest.X.shape[1] + host.X.shape[1])
    fit = ReferenceFit(guest.model(w_g), host.model(w_h), train, val)
    noise = iter(host_noise) if host_noise is not None else None
    for epoch in range(opts.epochs):
        lr = learning_rate(opts, epoch)
        epoch_loss = 0.0
        for b, rows in enumerate(epoch_batches(len(train), opts.batch_size, opts.seed, epoch)):
            idx = train[rows]
            m = len(idx)
            Xg, Xh, yb = guest.X[idx], host.X[idx], y_pm[idx]
            u = Xg @ w_g + Xh @ w_h
            d = residuals(u, yb)
            total = float(np.sum(sample_losses(u, yb))) + m * (
                penalty_value(w_g[guest.regularized], opts) + penalty_value(w_h, opts))
            batch_loss = total / m
            monitor.check_batch(batch_loss, epoch, b)
            sum_h = Xh.T @ d if noise is None else Xh.T @ d + np.asarray(next(noise), dtype=np.float64)
            grad_g, grad_h = (Xg.T @ d) / m, sum_h / m
            w_g = update_weights(w_g, grad_g, lr, opts, guest.regularized)
            w_h = update_weights(w_h, grad_h, lr, opts, host.regularized)
            epoch_loss += batch_loss * m / len(train)
        val_loss = None
        if len(val):
            uv = guest.X[val] @ w_g + host.X[val] @ w_h
            val_loss = float(np.sum(sample_losses(uv, y_pm[val]))) / len(val)
        decision = monitor.end_epoch(epoch, epoch_loss, val_loss)
        fit.epochs_run = epoch + 1
        if decision.improved:
            best_g, best_h = w_g.copy(), w_h.copy()
        if decision.stop:
            fit.stop_reason = decision.reason
            break
    if monitor.keeps_best:
        w_g, w_h = best_g, best_h
    fit.guest, fit.host = guest.model(w_g), host.model(w_h)
    fit.losses, fit.validation_losses = list(monitor.losses), list(monitor.validation_losses)
    fit.best_epoch = monitor.best_epoch
    return fit


@dataclass
class ReferenceFitHosts:
    """`fit_reference_hosts`' result: the guest's model and one per host."""

    guest: LrPartModel
    hosts: list[LrPartModel]
    train_rows: np.ndarray
    validation_rows: np.ndarray
    losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    stop_reason: str = ""
    best_epoch: int = -1
    epochs_run: int = 0


def fit_reference_hosts(X_g: np.ndarray, X_hosts: Sequence[np.ndarray], y: np.ndarray, opts: LrOptions,
                        guest_features: list[str] | None = None,
                        host_features: Sequence[list[str]] | None = None,
                        host_noise: Sequence[Sequence[np.ndarray]] | None = None) -> ReferenceFitHosts:
    """`fit_reference` with N host blocks: the same algorithm on the joined rows, each host's
    weights updated from its own gradient X_k^T d plus the noise the guest added to it.

    `host_noise[k]` is the guest's noise on host k's gradient sum, one array per batch in order
    (`vfl.lr.multihost.MultiHostFit.host_noise`); None trains without noise. With one host it
    gives `fit_reference`'s numbers.
    """
    opts.check()
    n = X_g.shape[0]
    if not X_hosts:
        raise DataError("the reference needs at least one host block")
    gf = guest_features or [f"x{i}" for i in range(X_g.shape[1])]
    hfs = list(host_features) if host_features is not None else [
        [f"x{i}" for i in range(X.shape[1])] for X in X_hosts]
    val = validation_rows(n, opts.validation, opts.seed)
    train = np.setdiff1d(np.arange(n), val)
    guest = prepare_party("guest", gf, X_g, train, opts)
    hosts = [prepare_party("host", f, X, train, opts) for f, X in zip(hfs, X_hosts, strict=True)]
    y_pm = signed_labels(y)
    for h in hosts:
        check_guest_side(guest, np.asarray(y)[train], opts, len(train), h.n_features)
        check_host_side(h, opts, len(train), guest.X.shape[1])

    w_g = guest.weights.copy()
    ws = [h.weights.copy() for h in hosts]
    best_g, best_h = w_g.copy(), [w.copy() for w in ws]
    monitor = TrainingMonitor(opts, has_validation=len(val) > 0,
                              n_columns=guest.X.shape[1] + sum(h.X.shape[1] for h in hosts))
    fit = ReferenceFitHosts(guest.model(w_g), [h.model(w) for h, w in zip(hosts, ws, strict=True)], train, val)
    noise = [iter(nz) for nz in host_noise] if host_noise is not None else None
    for epoch in range(opts.epochs):
        lr = learning_rate(opts, epoch)
        epoch_loss = 0.0
        for b, rows in enumerate(epoch_batches(len(train), opts.batch_size, opts.seed, epoch)):
            idx = train[rows]
            m = len(idx)
            Xg, yb = guest.X[idx], y_pm[idx]
            u = Xg @ w_g
            for h, w in zip(hosts, ws, strict=True):
                u = u + h.X[idx] @ w
            d = residuals(u, yb)
            penalty = penalty_value(w_g[guest.regularized], opts) + sum(penalty_value(w, opts) for w in ws)
            batch_loss = (float(np.sum(sample_losses(u, yb))) + m * penalty) / m
            monitor.check_batch(batch_loss, epoch, b)
            grad_g = (Xg.T @ d) / m
            for k, h in enumerate(hosts):
                total = h.X[idx].T @ d
                if noise is not None:
                    total = total + np.asarray(next(noise[k]), dtype=np.float64)
                ws[k] = update_weights(ws[k], total / m, lr, opts, h.regularized)
            w_g = update_weights(w_g, grad_g, lr, opts, guest.regularized)
            epoch_loss += batch_loss * m / len(train)
        val_loss = None
        if len(val):
            uv = guest.X[val] @ w_g
            for h, w in zip(hosts, ws, strict=True):
                uv = uv + h.X[val] @ w
            val_loss = float(np.sum(sample_losses(uv, y_pm[val]))) / len(val)
        decision = monitor.end_epoch(epoch, epoch_loss, val_loss)
        fit.epochs_run = epoch + 1
        if decision.improved:
            best_g, best_h = w_g.copy(), [w.copy() for w in ws]
        if decision.stop:
            fit.stop_reason = decision.reason
            break
    if monitor.keeps_best:
        w_g, ws = best_g, best_h
    fit.guest = guest.model(w_g)
    fit.hosts = [h.model(w) for h, w in zip(hosts, ws, strict=True)]
    fit.losses, fit.validation_losses = list(monitor.losses), list(monitor.validation_losses)
    fit.best_epoch = monitor.best_epoch
    return fit
