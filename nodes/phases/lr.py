"""Phase `lr`: vertical logistic regression with Paillier between guest and host, no arbiter.

The protocol steps are `vfl.lr.protocol` functions of the same names; this
module moves their messages (tags below, all under phase "lr") and keeps the
schedule. Per job round (every `[lr] round_every` epochs) each party commits its
own weights. docs/protocols/lr.md has the full picture and what each side learns.

Messages (round r; e = epoch, b = batch, both 0-based):

    host  -> guest  hello                  row count, ID-order digest, host column count
    guest -> host   setup                  options, validation IDs (or an error)
    host  -> guest  ready                  the host's checks passed (or an error)
    guest -> host   e{e}.b{b}.offsets      Enc_g(c), c = 0.25 u_g - 0.5 y' (sent while the host encrypts)
    host  -> guest  e{e}.b{b}.scores       Enc_h(X_h w_h), Enc_h(host loss share)
    guest -> host   e{e}.b{b}.residuals    Enc_h(X_g^T d + r_g), Enc_h(loss + r_l)
    host  -> guest  e{e}.b{b}.gradients    Enc_g(X_h^T d + r_h), residues of the guest's gradient and loss
    guest -> host   e{e}.b{b}.decrypted    residues of the host's gradient, status
    host  -> guest  e{e}.val_scores        Enc_h(X_hv w_h), Enc_h(host share of the validation loss)
    guest -> host   e{e}.val_loss          Enc_h(validation loss + r)
    host  -> guest  e{e}.val_loss_decrypted
    guest -> host   e{e}.end               continue/stop, improved (keep these weights), status
    host  -> guest  final_scores           X_h w_h of every row in plaintext (evaluation = inference)

Large batches are row-packed per direction (`vfl.lr.rowpack`, decided by both parties from
public values): `offsets` / `scores` / `val_scores` then carry S rows per ciphertext, the
gradients are (columns*S, S) packed products with every slot masked, `residuals` and
`val_loss` add `loss_cross`, and the key owner returns per-column sums of the wanted slots.
On the ordinary path a party's masked gradient travels packed in the public
`vfl.lr.protocol.gradient_layout` iff its columns fit COLUMN_BOUND (`row_packing` in
`setup` / `ready`), else masked mod n per value; the receiver checks which.

Outputs: model.json (own part only) on both sides; at the guest predictions.csv,
metrics.json, plots/lr_*.png and a printed summary. `ctx.state["lr"]` holds the
result for later phases.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from nodes.communication import COMMUNICATION_FILE
from nodes.config import JobConfig, options_of
from nodes.context import PartyContext
from nodes.errors import ConfigError
from nodes.session import ABORT, PeerAborted, Session, abort_reason, as_session, raise_if_aborted
from nodes.transport.base import Payload, PhaseChannel, TransportError
from nodes.ui import console, progress, table
from vfl.binning import Preprocessing, preprocessing_from_json
from vfl.data import PartyData
from vfl.errors import DataError, PaillierError, TrainingError, VflError
from vfl.lr.model import LrPartModel
from vfl.lr.options import LrOptions
from vfl.lr.privacy import LabelNoise, epsilon, host_norm_bounds, label_delta
from vfl.lr.protocol import (
    Masked,
    check_packed_gradient,
    decrypt_masked,
    guest_gradient_masked,
    guest_loss_masked,
    guest_predict_proba,
    guest_residual_offsets_encrypted,
    guest_residuals_encrypted,
    host_gradient_masked,
    host_partial_scores_encrypted,
    host_partial_scores_plain,
    unmask_values,
)
from vfl.lr.reference import check_guest_side, check_host_side
from vfl.lr.rowpack import (
    BatchPacking,
    RowLayout,
    check_products,
    check_rows,
    columns_fit,
    decrypt_loss,
    decrypt_products,
    guest_gradient_masked_packed,
    guest_loss_masked_packed,
    guest_residual_offsets_packed,
    guest_residuals_packed,
    host_gradient_masked_packed,
    host_partial_scores_packed,
    offsets_bound,
    plan_batch,
    plan_validation,
    scores_bound,
)
from vfl.lr.schedule import (
    TrainingMonitor,
    epoch_batches,
    ids_digest,
    learning_rate,
    penalty_value,
    rows_for_ids,
    update_weights,
    validation_rows,
)
from vfl.lr.setup import PreparedParty, prepare_party
from vfl.lr.taylor import signed_labels
from vfl.metrics import binary_metrics, evaluation
from vfl.paillier import EncryptedArray, PackedEncryptedArray, PublicKey

PHASE = "lr"
PREDICTIONS_HEADER = ["id", "label", "predict_result", "predict_score", "predict_detail", "type"]


class LrResult(TypedDict, total=False):
    """What the phase leaves in ctx.state["lr"] (and returns)."""

    model: dict[str, Any]  # this party's model.json content
    epochs: int
    stop_reason: str
    rounds: list[int]
    metrics: dict[str, Any]  # guest only: metrics.json content
    host_noise: list[np.ndarray]  # guest only: the noise it added to the host's gradient sum, per batch (secret)
    hosts_noise: dict[str, list[np.ndarray]]  # guest of several hosts: that noise per host


def options_from_config(config: JobConfig) -> LrOptions:
    """The [lr] section (and [job] seed) as training options; bad values are config errors."""
    try:
        return options_of(config, LrOptions).check()  # type: ignore[no-any-return]
    except TrainingError as exc:
        raise ConfigError(str(exc)) from None


# -- messaging ------------------------------------------------------------------


@dataclass
class _Link:
    """The phase channel at the current round, with errors that say where the peer dropped out."""

    ch: PhaseChannel
    peer: str
    timeout: float
    round: int = 0

    def send(self, tag: str, payload: Payload, where: str) -> None:
        try:
            self.ch.send(tag, payload, round=self.round)
        except TransportError as exc:
            raise TransportError(f"lr: the {self.peer} dropped out {where} ({exc})") from None

    def recv(self, tag: str, where: str) -> Payload:
        try:
            return self.ch.recv(tag, round=self.round, timeout=self.timeout)
        except TransportError as exc:
            raise TransportError(f"lr: the {self.peer} dropped out {where} ({exc})") from None


def _field(payload: Payload, name: str, kind: type | tuple[type, ...], tag: str) -> Any:
    if name not in payload or not isinstance(payload[name], kind):
        raise TransportError(f"lr: malformed message {tag}: field {name!r} missing or of the wrong type")
    return payload[name]


def _enc(payload: Payload, name: str, tag: str, size: int, key: PublicKey) -> EncryptedArray:
    """A ciphertext vector field of the expected length under the expected key."""
    enc = _field(payload, name, EncryptedArray, tag)
    if len(enc.shape) != 1 or enc.shape[0] != size:  # (a packed array's shape is its values')
        raise TransportError(f"lr: message {tag}: field {name!r} has shape {enc.shape}, expected ({size},)")
    if enc.public_key != key:
        raise TransportError(f"lr: message {tag}: field {name!r} is encrypted under an unexpected key")
    return enc


def _packed(payload: Payload, name: str, tag: str, check: Any) -> PackedEncryptedArray:
    """A packed ciphertext field validated by `check` (a `vfl.lr.rowpack` check) against the agreed layout."""
    enc = _field(payload, name, EncryptedArray, tag)
    try:
        return check(enc)
    except PaillierError as exc:
        raise TransportError(f"lr: malformed message {tag}: field {name!r}: {exc}") from None


def _rows_check(lay: RowLayout, key: PublicKey, precision: int, bound: int) -> Any:
    return lambda enc: check_rows(enc, lay, key, precision, bound)


def _products_check(columns: int, lay: RowLayout, key: PublicKey) -> Any:
    return lambda enc: check_products(enc, columns, lay, key)


def _gradient(payload: Payload, name: str, tag: str, columns: int, key: PublicKey, rows: int, precision: int,
              packed: bool) -> EncryptedArray:
    """A masked gradient on the ordinary path: packed in the public `gradient_layout` iff agreed at setup."""
    enc = _enc(payload, name, tag, columns, key)
    try:
        if packed:
            return check_packed_gradient(enc, columns, key, rows, precision)
        if isinstance(enc, PackedEncryptedArray):
            raise PaillierError("a masked gradient arrived packed, but packing was not agreed at setup")
    except PaillierError as exc:
        raise TransportError(f"lr: malformed message {tag}: field {name!r}: {exc}") from None
    return enc


def _residues(payload: Payload, name: str, tag: str, size: int) -> list[int]:
    res = _field(payload, name, list, tag)
    if len(res) != size or not all(isinstance(v, int) and not isinstance(v, bool) for v in res):
        raise TransportError(f"lr: message {tag}: field {name!r} must hold {size} integers")
    return res


def _check_status(payload: Payload, tag: str) -> None:
    """The guest's control messages carry status "ok" or "error" with the reason."""
    status = _field(payload, "status", str, tag)
    if status != "ok":  # the guest's abort, in LR's control-message form
        raise_if_aborted({ABORT: payload.get("error", "no reason given")}, "guest", "stopped training")


def _where(epoch: int, batch: int | None = None) -> str:
    return f"during epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")


# -- the guest ------------------------------------------------------------------


def run_guest(party: PartyContext | Session) -> LrResult:
    """Train as the guest (labels, intercept, coordinator); writes model, predictions, metrics, plots.
    With several hosts, the N-host steps (below, `_run_guest_hosts`)."""
    session = as_session(party)
    if session.multihost:
        return _run_guest_hosts(session)
    ctx = session.ctx
    data = _party_data(ctx, "guest")
    opts = options_from_config(ctx.config)
    precision = ctx.config.paillier.precision
    link = _Link(ctx.channel(PHASE), "host", ctx.config.lr.step_timeout)
    pk_h = _peer_key(ctx)
    n = data.n_rows
    val = validation_rows(n, opts.validation, opts.seed) if n >= 2 else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(n), val)
    y = np.asarray(data.y, dtype=np.int8)
    y_pm = signed_labels(y)

    link.round = ctx.next_round()
    hello = link.recv("hello", "before training started")
    host_rows = _field(hello, "n_rows", int, "hello")
    host_features = _field(hello, "n_features", int, "hello")
    try:
        if host_rows != n or _field(hello, "ids_digest", str, "hello") != ids_digest(data.ids):
            raise DataError(f"guest and host rows are not aligned ({n} guest rows, {host_rows} host rows, "
                            "or a different ID order); run the intersection phase first")
        guest = prepare_party("guest", data.features, data.X, train, opts, _warm_start(ctx, "guest"))
        check_guest_side(guest, y[train], opts, len(train), host_features)
    except VflError as exc:
        link.send("setup", {"status": "error", "error": str(exc)}, "before training started")
        raise
    guest_fits = columns_fit(guest.X)
    link.send("setup", {"status": "ok", "options": opts.to_json(), "guest_columns": int(guest.X.shape[1]),
                        "validation_ids": [str(v) for v in data.ids[val].tolist()],
                        "row_packing": guest_fits}, "before training started")
    ready = link.recv("ready", "before training started")
    if _field(ready, "status", str, "ready") != "ok":  # the host's abort, in LR's control-message form
        raise_if_aborted({ABORT: ready.get("error", "no reason given")}, "host", "refused to train")
    host_fits = _field(ready, "row_packing", bool, "ready")
    n_batches = len(epoch_batches(len(train), opts.batch_size, opts.seed, 0))
    noise = _label_noise(ready, guest, train, opts, opts.epochs * n_batches)
    host_noise: list[np.ndarray] = []

    w = guest.weights.copy()
    best = w.copy()
    monitor = TrainingMonitor(opts, has_validation=len(val) > 0, n_columns=guest.X.shape[1] + host_features)
    rounds: list[int] = []
    reason = ""
    epochs_in_round = 0
    start = 0
    resumed = ctx.state.pop("lr_resume", None)
    if resumed is not None:  # a resumed job: continue after the epoch of the restored round
        w, best, start, rounds = _resumed(resumed, len(w))
        _restore_monitor(monitor, resumed["monitor"])
        if noise is not None:  # the noise's state follows the weights' path: replay it
            for epoch in range(start):
                for rows in epoch_batches(len(train), opts.batch_size, opts.seed, epoch):
                    noise.advance(train[rows], learning_rate(opts, epoch))
    with progress("lr: training (guest)", total=opts.epochs * n_batches) as advance:
        for epoch in range(start, opts.epochs):
            lr = learning_rate(opts, epoch)
            epoch_loss = 0.0
            for b, rows in enumerate(epoch_batches(len(train), opts.batch_size, opts.seed, epoch)):
                idx = train[rows]
                plan = plan_batch(len(idx), ctx.public_key, pk_h, precision, guest.X.shape[1], host_features,
                                  guest_fits, host_fits)
                w, batch_loss = _guest_batch(link, ctx, guest, w, idx, y_pm[idx], opts, lr, precision,
                                             monitor, host_features, pk_h, epoch, b, plan, noise, host_noise)
                epoch_loss += batch_loss * len(idx) / len(train)
                advance()
            val_loss = _guest_validation_loss(link, guest, w, val, y_pm[val], precision, pk_h, epoch) \
                if len(val) else None
            try:
                decision = monitor.end_epoch(epoch, epoch_loss, val_loss)
            except TrainingError as exc:
                link.send(f"e{epoch}.end", {"status": "error", "error": str(exc)}, _where(epoch))
                raise
            link.send(f"e{epoch}.end", {"status": "ok", "stop": decision.stop, "improved": decision.improved},
                      _where(epoch))
            if decision.improved:
                best = w.copy()
            epochs_in_round += 1
            if decision.stop:
                reason = decision.reason
                break
            if epochs_in_round == ctx.config.lr.round_every:
                _commit(ctx, link.round, guest, w, epoch_loss, rounds,
                        {"epoch": epoch, "w": w, "best": best, "rounds": [*rounds, link.round],
                         "monitor": _monitor_state(monitor)})
                link.round, epochs_in_round = ctx.next_round(), 0
    final = best if monitor.keeps_best else w
    model = guest.model(final)

    scores = link.recv("final_scores", "after training (final scores)")
    u_h = _field(scores, "scores", np.ndarray, "final_scores").astype(np.float64)
    if u_h.shape != (n,):
        raise TransportError(f"lr: host sent {u_h.shape} final scores for {n} rows")
    _commit(ctx, link.round, guest, final, monitor.losses[-1], rounds)

    proba = guest_predict_proba(model, data.X, u_h)
    metrics = _evaluate(y, proba, train, val)
    training = {"epochs": len(monitor.losses), "stop_reason": reason, "best_epoch": monitor.best_epoch + 1,
                "kept": "best validation epoch" if monitor.keeps_best else "last epoch",
                "loss": monitor.losses, "validation_loss": monitor.validation_losses,
                "options": opts.to_json(), "rounds": rounds,
                "label_privacy": _label_privacy(opts, len(monitor.losses) * n_batches, len(train))}
    metrics_doc = {"algorithm": "lr", **metrics, "training": training}
    model_doc = model_json(ctx, model, len(monitor.losses))
    _write_guest_outputs(ctx, data, y, proba, train, val, model_doc, metrics_doc, monitor)
    result: LrResult = {"model": model_doc, "epochs": len(monitor.losses), "stop_reason": reason,
                        "rounds": rounds, "metrics": metrics_doc, "host_noise": host_noise}
    ctx.state["lr"] = result
    return result


def _guest_batch(link: _Link, ctx: PartyContext, guest: PreparedParty, w: np.ndarray, idx: np.ndarray,
                 y_pm: np.ndarray, opts: LrOptions, lr: float, precision: int,
                 monitor: TrainingMonitor, host_features: int, pk_h: PublicKey, epoch: int,
                 b: int, plan: BatchPacking, noise: LabelNoise | None,
                 host_noise: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """One batch at the guest: residuals, masked gradients and loss; returns new weights and the loss.

    With `plan.offsets` the guest's Enc_g(c) travels row-packed, with `plan.scores` the host's
    Enc_h(u_h) (`vfl.lr.rowpack`); the messages keep their tags. With `noise` the guest adds
    Gaussian noise to the host's gradient it returns, and appends it to `host_noise`.
    """
    where, tag = _where(epoch, b), f"e{epoch}.b{b}"
    m = len(idx)
    Xb = guest.X[idx]
    u_g = Xb @ w
    offsets = (guest_residual_offsets_packed(ctx.public_key, u_g, y_pm, plan.offsets, precision) if plan.offsets
               else guest_residual_offsets_encrypted(ctx.public_key, u_g, y_pm, precision))
    link.send(f"{tag}.offsets", {"offsets": offsets}, where)
    msg = link.recv(f"{tag}.scores", where)
    share = _enc(msg, "loss_share", f"{tag}.scores", 1, pk_h)
    penalty_sum = m * penalty_value(w[guest.regularized], opts)
    if plan.scores:
        enc_u = _packed(msg, "scores", f"{tag}.scores", _rows_check(plan.scores, pk_h, precision, scores_bound(precision)))
        grad_m = guest_gradient_masked_packed(guest_residuals_packed(enc_u, u_g, y_pm), Xb, precision)
        packed_loss = guest_loss_masked_packed(enc_u, u_g, y_pm, share, penalty_sum, precision)
        loss_m = packed_loss.masked
        residuals: Payload = {"gradient": grad_m.enc, "loss": packed_loss.rest, "loss_cross": packed_loss.cross}
    else:
        enc_u = _enc(msg, "scores", f"{tag}.scores", m, pk_h)
        grad_m = guest_gradient_masked(guest_residuals_encrypted(enc_u, u_g, y_pm), Xb, precision, plan.guest_fits)
        loss_m = guest_loss_masked(enc_u, u_g, y_pm, share, penalty_sum, precision)
        residuals = {"gradient": grad_m.enc, "loss": loss_m.enc}
    link.send(f"{tag}.residuals", residuals, where)
    back = link.recv(f"{tag}.gradients", where)
    host_grad = (_packed(back, "gradient", f"{tag}.gradients",
                         _products_check(host_features, plan.offsets, ctx.public_key)) if plan.offsets
                 else _gradient(back, "gradient", f"{tag}.gradients", host_features, ctx.public_key, m, precision,
                                plan.host_fits))
    grad = unmask_values(_residues(back, "guest_gradient", f"{tag}.gradients", guest.X.shape[1]), grad_m) / m
    loss = float(unmask_values(_residues(back, "loss", f"{tag}.gradients", 1), loss_m)[0]) / m
    try:
        monitor.check_batch(loss, epoch, b)
    except TrainingError as exc:
        link.send(f"{tag}.decrypted", {"status": "error", "error": str(exc)}, where)
        raise
    decrypted = (decrypt_products(ctx.private_key, host_grad, host_features)  # type: ignore[arg-type]
                 if plan.offsets else decrypt_masked(ctx.private_key, host_grad))
    if noise is not None:
        ints, real = noise.sample(host_features, opts.label_noise * noise.sensitivity(idx), host_grad.precision)
        n = ctx.public_key.n
        decrypted = [(v + e) % n for v, e in zip(decrypted, ints, strict=True)]
        host_noise.append(real)
        noise.advance(idx, lr)
    link.send(f"{tag}.decrypted", {"status": "ok", "gradient": decrypted}, where)
    return update_weights(w, grad, lr, opts, guest.regularized), loss


def _label_noise(ready: Payload, guest: PreparedParty, train: np.ndarray, opts: LrOptions,
                 max_batches: int) -> LabelNoise | None:
    """The guest's noise on the host's gradient (None without `label_noise`), from the host's row-norm bound."""
    if opts.label_noise <= 0:
        return None
    norms = [_field(ready, name, float, "ready") for name in ("row_norm", "op_norm")]
    if not all(math.isfinite(v) and v > 0 for v in norms):
        raise TransportError(f"lr: malformed message ready: host norms {norms} are not positive numbers")
    eps = epsilon(opts.label_noise, max_batches, label_delta(len(train)))
    console().print(f"lr: label noise {opts.label_noise:g} x sensitivity on the host's gradient: "
                    f"epsilon <= {eps:.3g} at delta {label_delta(len(train)):.2g} over at most {max_batches} batches")
    return LabelNoise(guest.X, train, norms[0], norms[1], opts, guest.regularized)


def _label_privacy(opts: LrOptions, batches: int, n_train: int, hosts: int = 1) -> dict[str, Any]:
    """metrics.json's account of the hosts' view of the labels: noise multiplier, batches, (epsilon, delta).
    With N hosts (one noise per host) the accounting composes N * batches releases."""
    delta = label_delta(n_train)
    eps = epsilon(opts.label_noise, hosts * batches, delta) if opts.label_noise > 0 else None
    out = {"label_noise": opts.label_noise, "batches": batches, "epsilon": eps, "delta": delta}
    if hosts > 1:
        out["hosts"] = hosts
    return out


def _guest_validation_loss(link: _Link, guest: PreparedParty, w: np.ndarray, val: np.ndarray,
                           y_pm: np.ndarray, precision: int, pk_h: PublicKey, epoch: int) -> float:
    """Taylor loss on the validation rows (no penalty), learned by the guest as one number."""
    where = _where(epoch) + " (validation)"
    msg = link.recv(f"e{epoch}.val_scores", where)
    share = _enc(msg, "loss_share", f"e{epoch}.val_scores", 1, pk_h)
    lay = plan_validation(len(val), pk_h, precision)
    if lay:
        enc_p = _packed(msg, "scores", f"e{epoch}.val_scores", _rows_check(lay, pk_h, precision, scores_bound(precision)))
        packed_loss = guest_loss_masked_packed(enc_p, guest.X[val] @ w, y_pm, share, 0.0, precision)
        masked = packed_loss.masked
        link.send(f"e{epoch}.val_loss", {"loss": packed_loss.rest, "loss_cross": packed_loss.cross}, where)
    else:
        enc_u = _enc(msg, "scores", f"e{epoch}.val_scores", len(val), pk_h)
        masked = guest_loss_masked(enc_u, guest.X[val] @ w, y_pm, share, 0.0, precision)
        link.send(f"e{epoch}.val_loss", {"loss": masked.enc}, where)
    back = link.recv(f"e{epoch}.val_loss_decrypted", where)
    return float(unmask_values(_residues(back, "loss", f"e{epoch}.val_loss_decrypted", 1), masked)[0]) / len(val)


# -- the host -------------------------------------------------------------------


def run_host(party: PartyContext | Session) -> LrResult:
    """Train as the host (its columns only); writes its model.json. One of several: `_run_host_of_many`."""
    session = as_session(party)
    if session.multihost:
        return _run_host_of_many(session)
    ctx = session.ctx
    data = _party_data(ctx, "host")
    own = options_from_config(ctx.config)
    precision = ctx.config.paillier.precision
    link = _Link(ctx.channel(PHASE), "guest", ctx.config.lr.step_timeout)
    pk_g = _peer_key(ctx)
    n = data.n_rows

    link.round = ctx.next_round()
    link.send("hello", {"n_rows": n, "ids_digest": ids_digest(data.ids), "n_features": len(data.features)},
              "before training started")
    setup = link.recv("setup", "before training started")
    _check_status(setup, "setup")
    try:
        opts = LrOptions.from_json(_field(setup, "options", dict, "setup"))
        diff = opts.differences(own)
        if diff:
            raise TrainingError("guest and host configs differ in [lr]/[job] (guest vs host): " + "; ".join(diff))
        val = np.sort(rows_for_ids(data.ids, _field(setup, "validation_ids", list, "setup")))
        if len(np.unique(val)) != len(val):
            raise DataError("the guest's validation IDs repeat")
        train = np.setdiff1d(np.arange(n), val)
        host = prepare_party("host", data.features, data.X, train, opts, _warm_start(ctx, "host"))
        guest_columns = _field(setup, "guest_columns", int, "setup")
        check_host_side(host, opts, len(train), guest_columns)
    except VflError as exc:
        link.send("ready", {"status": "error", "error": str(exc)}, "before training started")
        raise
    guest_fits = _field(setup, "row_packing", bool, "setup")
    host_fits = columns_fit(host.X)
    ready: Payload = {"status": "ok", "row_packing": host_fits}
    if opts.label_noise > 0:  # the guest calibrates its noise on the host's gradient with it
        ready["row_norm"], ready["op_norm"] = host_norm_bounds(host.X[train])
    link.send("ready", ready, "before training started")

    w = host.weights.copy()
    best = w.copy()
    rounds: list[int] = []
    epochs_run = 0
    epochs_in_round = 0
    start = 0
    resumed = ctx.state.pop("lr_resume", None)
    if resumed is not None:  # a resumed job: continue after the epoch of the restored round
        w, best, start, rounds = _resumed(resumed, len(w))
        epochs_run = start
    n_batches = len(epoch_batches(len(train), opts.batch_size, opts.seed, 0))
    with progress("lr: training (host)", total=opts.epochs * n_batches) as advance:
        for epoch in range(start, opts.epochs):
            lr = learning_rate(opts, epoch)
            for b, rows in enumerate(epoch_batches(len(train), opts.batch_size, opts.seed, epoch)):
                plan = plan_batch(len(rows), pk_g, ctx.public_key, precision, guest_columns, host.X.shape[1],
                                  guest_fits, host_fits)
                w = _host_batch(link, ctx, host, w, train[rows], opts, lr, precision, pk_g,
                                guest_columns, epoch, b, plan)
                advance()
            if len(val):
                _host_validation_loss(link, ctx, host, w, val, precision, epoch)
            end = link.recv(f"e{epoch}.end", _where(epoch))
            _check_status(end, f"e{epoch}.end")
            epochs_run = epoch + 1
            if _field(end, "improved", bool, f"e{epoch}.end"):
                best = w.copy()
            epochs_in_round += 1
            if _field(end, "stop", bool, f"e{epoch}.end"):
                break
            if epochs_in_round == ctx.config.lr.round_every:
                _commit(ctx, link.round, host, w, None, rounds,
                        {"epoch": epoch, "w": w, "best": best, "rounds": [*rounds, link.round]})
                link.round, epochs_in_round = ctx.next_round(), 0
    final = best if opts.early_stopping else w
    model = host.model(final)
    link.send("final_scores", {"scores": host_partial_scores_plain(model, data.X)}, "after training")
    _commit(ctx, link.round, host, final, None, rounds)
    model_doc = model_json(ctx, model, epochs_run)
    ctx.rundir.write_json("model.json", model_doc)
    console().print(table("lr: host summary", ["item", "value"],
                          [["epochs", epochs_run], ["own features", len(data.features)],
                           ["rounds committed", len(rounds)]]))
    result: LrResult = {"model": model_doc, "epochs": epochs_run, "rounds": rounds}
    ctx.state["lr"] = result
    return result


def _host_batch(link: _Link, ctx: PartyContext, host: PreparedParty, w: np.ndarray, idx: np.ndarray,
                opts: LrOptions, lr: float, precision: int, pk_g: PublicKey, guest_columns: int,
                epoch: int, b: int, plan: BatchPacking) -> np.ndarray:
    """One batch at the host: encrypted partial scores, masked decryptions, own gradient (`plan`: row packing)."""
    where, tag = _where(epoch, b), f"e{epoch}.b{b}"
    m = len(idx)
    Xb = host.X[idx]
    u_h = Xb @ w
    pk = ctx.public_key
    scores = (host_partial_scores_packed(pk, Xb, w, plan.scores, m * penalty_value(w, opts), precision)
              if plan.scores else host_partial_scores_encrypted(pk, Xb, w, m * penalty_value(w, opts), precision))
    link.send(f"{tag}.scores", {"scores": scores.scores, "loss_share": scores.loss_share}, where)
    offsets_msg = link.recv(f"{tag}.offsets", where)
    if plan.offsets:
        packed_c = _packed(offsets_msg, "offsets", f"{tag}.offsets",
                           _rows_check(plan.offsets, pk_g, precision + 2, offsets_bound(precision)))
        grad_m: Masked = host_gradient_masked_packed(packed_c, u_h, Xb, precision)
    else:
        grad_m = host_gradient_masked(_enc(offsets_msg, "offsets", f"{tag}.offsets", m, pk_g), u_h, Xb, precision,
                                      plan.host_fits)
    msg = link.recv(f"{tag}.residuals", where)
    # Only vectors of the agreed sizes and layouts get decrypted: the guest's gradient, one loss.
    loss = _enc(msg, "loss", f"{tag}.residuals", 1, pk)
    if plan.scores:
        own_p = _packed(msg, "gradient", f"{tag}.residuals", _products_check(guest_columns, plan.scores, pk))
        cross = _packed(msg, "loss_cross", f"{tag}.residuals", _products_check(1, plan.scores, pk))
        guest_grad, loss_res = decrypt_products(ctx.private_key, own_p, guest_columns), \
            decrypt_loss(ctx.private_key, cross, loss)
    else:
        own = _gradient(msg, "gradient", f"{tag}.residuals", guest_columns, pk, m, precision, plan.guest_fits)
        guest_grad, loss_res = decrypt_masked(ctx.private_key, own), decrypt_masked(ctx.private_key, loss)
    link.send(f"{tag}.gradients", {"gradient": grad_m.enc, "guest_gradient": guest_grad, "loss": loss_res}, where)
    back = link.recv(f"{tag}.decrypted", where)
    _check_status(back, f"{tag}.decrypted")
    grad = unmask_values(_residues(back, "gradient", f"{tag}.decrypted", host.X.shape[1]), grad_m) / m
    return update_weights(w, grad, lr, opts, host.regularized)


def _host_validation_loss(link: _Link, ctx: PartyContext, host: PreparedParty, w: np.ndarray,
                          val: np.ndarray, precision: int, epoch: int) -> None:
    where = _where(epoch) + " (validation)"
    pk = ctx.public_key
    lay = plan_validation(len(val), pk, precision)
    scores = (host_partial_scores_packed(pk, host.X[val], w, lay, 0.0, precision) if lay
              else host_partial_scores_encrypted(pk, host.X[val], w, 0.0, precision))
    link.send(f"e{epoch}.val_scores", {"scores": scores.scores, "loss_share": scores.loss_share}, where)
    msg = link.recv(f"e{epoch}.val_loss", where)
    enc = _enc(msg, "loss", f"e{epoch}.val_loss", 1, pk)
    if lay:
        cross = _packed(msg, "loss_cross", f"e{epoch}.val_loss", _products_check(1, lay, pk))
        residues = decrypt_loss(ctx.private_key, cross, enc)
    else:
        residues = decrypt_masked(ctx.private_key, enc)
    link.send(f"e{epoch}.val_loss_decrypted", {"loss": residues}, where)


# -- several hosts (docs/protocols/lr.md "N hosts"; the step order of vfl.lr.multihost.fit_in_process) ----
#
# Per batch (tags e{e}.b{b}.*), the guest G and hosts host1..hostN (host i, 0-based index i):
#     G -> every host   offsets     Enc_g(c)
#     host k -> G       scores      Enc_k(u_k), Enc_k(loss share - its pair masks), Enc_{k+1}(-sigma_k)
#     G -> host i       relay       every other host j's Enc_j(u_j) ("scores.<host j>")
#     host i -> G       cross       Enc_g(own masked gradient part), per j != i Enc_j(1/4 X_i^T u_j + r)
#                                   ("cross.<host j>"), per later k Enc_k(1/4 u_i.u_k + rho_ik) ("pair.<host k>")
#     G -> host k       residuals   Enc_k(guest gradient part - sigma_{k-1} + r), Enc_k(loss part + r),
#                                   every host i's cross term under k's key ("cross.<host i>")
#     host k -> G       gradients   its decryptions (+ sigma_k for the guest's gradient part)
#     G -> host i       decrypted   host i's gradient residues (own part + the others' decryptions + noise)
# Validation: val_scores, val_relay (later hosts' scores), val_pairs, val_loss, val_loss_decrypted.
# Then e{e}.end and final_scores, as with one host. A party that fails sends {"abort": reason} as the
# next message each peer waits for; the guest forwards a host's abort to the other hosts.


class _Star:
    """The N-host LR messages of one party: to and from peers by name at the current round, and what
    each peer waits for next (`plan`), where an error is sent as `{"abort": reason}`."""

    def __init__(self, session: Session, timeout: float) -> None:
        self.session = session
        self.timeout = timeout
        self.round = 0
        self.pending: dict[str, list[str]] = {}

    def plan(self, *tags: str, peers: tuple[str, ...] | None = None) -> None:
        """Each peer (all by default) waits next for these messages of this party, in order."""
        for p in self.session.peers if peers is None else peers:
            self.pending[p] = list(tags)

    def send(self, peer: str, tag: str, payload: Payload, where: str) -> None:
        queue = self.pending.get(peer, [])
        if tag in queue:
            del queue[:queue.index(tag) + 1]
        try:
            self.session.channel(peer, PHASE).send(tag, payload, round=self.round)
        except TransportError as exc:
            raise TransportError(f"lr: the {peer} dropped out {where} ({exc})") from None

    def recv(self, peer: str, tag: str, where: str) -> Payload:
        try:
            msg = self.session.channel(peer, PHASE).recv(tag, round=self.round, timeout=self.timeout)
        except TransportError as exc:
            raise TransportError(f"lr: the {peer} dropped out {where} ({exc})") from None
        raise_if_aborted(msg, peer, "stopped training")
        return msg

    def abort(self, exc: BaseException) -> None:
        """Tell every peer still waiting on this party (but the one that stopped) why it stopped."""
        skip = exc.peer if isinstance(exc, PeerAborted) else ""
        reason = abort_reason(exc)
        for peer, queue in self.pending.items():
            if peer != skip and queue:
                try:
                    self.session.channel(peer, PHASE).send(queue[0], {ABORT: reason}, round=self.round)
                except Exception:  # noqa: BLE001 - that peer may be gone; this party's own error is what matters
                    pass
        self.pending.clear()


def _batch_tags(tag: str, role: str) -> tuple[str, ...]:
    """The messages a party sends in one batch, in order."""
    if role == "guest":
        return (f"{tag}.offsets", f"{tag}.relay", f"{tag}.residuals", f"{tag}.decrypted")
    return (f"{tag}.scores", f"{tag}.cross", f"{tag}.gradients")


def _run_guest_hosts(session: Session) -> LrResult:
    """The guest of several hosts: every host's scores and gradients go through the N-host steps."""
    ctx = session.ctx
    star = _Star(session, ctx.config.lr.step_timeout)
    try:
        return _guest_hosts(session, star)
    except BaseException as exc:
        star.abort(exc)
        raise


def _guest_hosts(session: Session, star: _Star) -> LrResult:
    from vfl.lr import multihost as mh

    ctx = session.ctx
    hosts = session.peers
    data = _party_data(ctx, "guest")
    opts = options_from_config(ctx.config)
    precision = ctx.config.paillier.precision
    keys = {h: session.peer_key(h) for h in hosts}
    n = data.n_rows
    val = validation_rows(n, opts.validation, opts.seed) if n >= 2 else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(n), val)
    y = np.asarray(data.y, dtype=np.int8)
    y_pm = signed_labels(y)
    if ctx.state.pop("lr_resume", None) is not None:
        raise TrainingError("lr: resuming a job with several hosts is not supported")

    star.round = ctx.next_round()
    star.plan("setup")
    cols: dict[str, int] = {}
    try:
        for h in hosts:
            hello = star.recv(h, "hello", "before training started")
            cols[h] = _field(hello, "n_features", int, "hello")
            if _field(hello, "n_rows", int, "hello") != n or _field(hello, "ids_digest", str, "hello") != \
                    ids_digest(data.ids):
                raise DataError(f"the guest's and {h}'s rows are not aligned; run the intersection phase first")
        guest = prepare_party("guest", data.features, data.X, train, opts, _warm_start(ctx, "guest"))
        for h in hosts:
            check_guest_side(guest, y[train], opts, len(train), cols[h])
        if not columns_fit(guest.X):
            raise TrainingError("lr: with several hosts the guest's columns must stay within bounds "
                                "(set [lr] standardize)")
    except VflError as exc:
        for h in hosts:
            star.send(h, "setup", {"status": "error", "error": str(exc)}, "before training started")
        raise
    for h in hosts:
        star.send(h, "setup", {"status": "ok", "options": opts.to_json(), "guest_columns": int(guest.X.shape[1]),
                               "validation_ids": [str(v) for v in data.ids[val].tolist()], "row_packing": False,
                               "hosts": list(hosts), "host_columns": cols}, "before training started")
    star.plan("e0.b0.offsets")  # what the hosts wait for once they are ready
    readies = {h: star.recv(h, "ready", "before training started") for h in hosts}
    for h, ready in readies.items():
        if _field(ready, "status", str, "ready") != "ok":
            raise_if_aborted({ABORT: ready.get("error", "no reason given")}, h, "refused to train")
    n_batches = len(epoch_batches(len(train), opts.batch_size, opts.seed, 0))
    noises = {h: _label_noise(readies[h], guest, train, opts, opts.epochs * n_batches * len(hosts)) for h in hosts}
    host_noise: dict[str, list[np.ndarray]] = {h: [] for h in hosts}

    w = guest.weights.copy()
    best = w.copy()
    monitor = TrainingMonitor(opts, has_validation=len(val) > 0, n_columns=guest.X.shape[1] + sum(cols.values()))
    rounds: list[int] = []
    reason = ""
    epochs_in_round = 0
    with progress("lr: training (guest)", total=opts.epochs * n_batches) as advance:
        for epoch in range(opts.epochs):
            lr = learning_rate(opts, epoch)
            epoch_loss = 0.0
            for b, rows in enumerate(epoch_batches(len(train), opts.batch_size, opts.seed, epoch)):
                idx = train[rows]
                star.plan(*_batch_tags(f"e{epoch}.b{b}", "guest"))
                w, batch_loss = _guest_hosts_batch(star, ctx, guest, w, idx, y_pm[idx], opts, lr, precision,
                                                   monitor, cols, keys, epoch, b, noises, host_noise, mh)
                epoch_loss += batch_loss * len(idx) / len(train)
                advance()
            star.plan(f"e{epoch}.val_relay", f"e{epoch}.val_loss", f"e{epoch}.end") if len(val) else \
                star.plan(f"e{epoch}.end")
            val_loss = _guest_hosts_loss(star, guest, w, val, y_pm[val], opts, precision, keys, f"e{epoch}.val",
                                         _where(epoch) + " (validation)", mh) / len(val) if len(val) else None
            try:
                decision = monitor.end_epoch(epoch, epoch_loss, val_loss)
            except TrainingError as exc:
                for h in hosts:
                    star.send(h, f"e{epoch}.end", {"status": "error", "error": str(exc)}, _where(epoch))
                raise
            for h in hosts:
                star.send(h, f"e{epoch}.end", {"status": "ok", "stop": decision.stop, "improved": decision.improved},
                          _where(epoch))
            if decision.improved:
                best = w.copy()
            epochs_in_round += 1
            if decision.stop:
                reason = decision.reason
                break
            if epochs_in_round == ctx.config.lr.round_every:
                _commit(ctx, star.round, guest, w, epoch_loss, rounds)
                star.round, epochs_in_round = ctx.next_round(), 0
    final = best if monitor.keeps_best else w
    model = guest.model(final)

    u_h = np.zeros(n)
    for h in hosts:
        scores = star.recv(h, "final_scores", "after training (final scores)")
        part = _field(scores, "scores", np.ndarray, "final_scores").astype(np.float64)
        if part.shape != (n,):
            raise TransportError(f"lr: {h} sent {part.shape} final scores for {n} rows")
        u_h = u_h + part
    _commit(ctx, star.round, guest, final, monitor.losses[-1], rounds)

    proba = guest_predict_proba(model, data.X, u_h)
    metrics = _evaluate(y, proba, train, val)
    training = {"epochs": len(monitor.losses), "stop_reason": reason, "best_epoch": monitor.best_epoch + 1,
                "kept": "best validation epoch" if monitor.keeps_best else "last epoch",
                "loss": monitor.losses, "validation_loss": monitor.validation_losses,
                "options": opts.to_json(), "rounds": rounds, "hosts": list(hosts),
                "label_privacy": _label_privacy(opts, len(monitor.losses) * n_batches, len(train), len(hosts))}
    metrics_doc = {"algorithm": "lr", **metrics, "training": training}
    model_doc = model_json(ctx, model, len(monitor.losses))
    _write_guest_outputs(ctx, data, y, proba, train, val, model_doc, metrics_doc, monitor)
    result: LrResult = {"model": model_doc, "epochs": len(monitor.losses), "stop_reason": reason,
                        "rounds": rounds, "metrics": metrics_doc,
                        "host_noise": [a for h in hosts for a in host_noise[h]], "hosts_noise": host_noise}
    ctx.state["lr"] = result
    return result


def _guest_hosts_batch(star: _Star, ctx: PartyContext, guest: PreparedParty, w: np.ndarray, idx: np.ndarray,
                       y_pm: np.ndarray, opts: LrOptions, lr: float, precision: int, monitor: TrainingMonitor,
                       cols: dict[str, int], keys: dict[str, PublicKey], epoch: int, b: int,
                       noises: dict[str, LabelNoise | None], host_noise: dict[str, list[np.ndarray]],
                       mh: Any) -> tuple[np.ndarray, float]:
    """One batch at the guest of several hosts (fit_in_process's order); new weights and the loss."""
    where, tag = _where(epoch, b), f"e{epoch}.b{b}"
    hosts = list(keys)
    m = len(idx)
    Xb = guest.X[idx]
    u_g = Xb @ w
    offsets = guest_residual_offsets_encrypted(ctx.public_key, u_g, y_pm, precision)
    for h in hosts:
        star.send(h, f"{tag}.offsets", {"offsets": offsets}, where)
    scores, shares, sigmas = {}, {}, {}
    for k, h in enumerate(hosts):
        msg = star.recv(h, f"{tag}.scores", where)
        scores[h] = _enc(msg, "scores", f"{tag}.scores", m, keys[h])
        shares[h] = _enc(msg, "loss_share", f"{tag}.scores", 1, keys[h])
        sigmas[h] = _enc(msg, "share_mask", f"{tag}.scores", guest.X.shape[1], keys[hosts[mh.next_host(k, len(hosts))]])
    for h in hosts:
        star.send(h, f"{tag}.relay", {f"scores.{j}": scores[j] for j in hosts if j != h}, where)
    own, cross, pairs = {}, {}, {}
    for i, h in enumerate(hosts):
        msg = star.recv(h, f"{tag}.cross", where)
        own[h] = _gradient(msg, "gradient", f"{tag}.cross", cols[h], ctx.public_key, m, precision, True)
        cross[h] = {j: _enc(msg, f"cross.{j}", f"{tag}.cross", cols[h], keys[j]) for j in hosts if j != h}
        pairs[h] = {k: _enc(msg, f"pair.{k}", f"{tag}.cross", 1, keys[k]) for k in hosts[i + 1:]}
    penalty_sum = m * penalty_value(w[guest.regularized], opts)
    parts, loss_parts = {}, {}
    for k, h in enumerate(hosts):
        prev = hosts[(k - 1) % len(hosts)]
        parts[h] = mh.guest_gradient_share_masked(mh.guest_host_residuals_encrypted(scores[h], u_g, y_pm, k == 0),
                                                  Xb, sigmas[prev], precision)
        loss_parts[h] = mh.guest_loss_part_masked(scores[h], u_g, y_pm, shares[h], [pairs[j][h] for j in hosts[:k]],
                                                  penalty_sum, k == 0, precision)
        star.send(h, f"{tag}.residuals", {"gradient": parts[h].enc, "loss": loss_parts[h].enc,
                                          **{f"cross.{i}": cross[i][h] for i in hosts if i != h}}, where)
    residues, loss_ints, decrypted = [], [], {}
    for h in hosts:
        back = star.recv(h, f"{tag}.gradients", where)
        residues.append(_residues(back, "guest_gradient", f"{tag}.gradients", guest.X.shape[1]))
        loss_ints.append(mh.loss_part_integer(_residues(back, "loss", f"{tag}.gradients", 1), loss_parts[h]))
        decrypted[h] = {i: mh.centered(_residues(back, f"cross.{i}", f"{tag}.gradients", cols[i]), keys[h])
                        for i in hosts if i != h}
    grad = mh.guest_gradient_from_shares(residues, [parts[h] for h in hosts]) / m
    loss = mh.guest_batch_loss(loss_ints, loss_parts[hosts[0]].enc.precision) / m
    try:
        monitor.check_batch(loss, epoch, b)
    except TrainingError as exc:
        for h in hosts:
            star.send(h, f"{tag}.decrypted", {"status": "error", "error": str(exc)}, where)
        raise
    for h in hosts:
        ints = None
        noise = noises[h]
        if noise is not None:
            ints, real = noise.sample(cols[h], opts.label_noise * noise.sensitivity(idx), own[h].precision)
            host_noise[h].append(real)
        out = mh.guest_host_gradient_residues(decrypt_masked(ctx.private_key, own[h]),
                                              [decrypted[j][h] for j in hosts if j != h], ints, ctx.public_key)
        star.send(h, f"{tag}.decrypted", {"status": "ok", "gradient": out}, where)
    for noise in noises.values():
        if noise is not None:
            noise.advance(idx, lr)
    return update_weights(w, grad, lr, opts, guest.regularized), loss


def _guest_hosts_loss(star: _Star, guest: PreparedParty, w: np.ndarray, rows: np.ndarray, y_pm: np.ndarray,
                      opts: LrOptions, precision: int, keys: dict[str, PublicKey], tag: str, where: str,
                      mh: Any) -> float:
    """The validation loss sum (no penalty): every host's scores and pair terms, each loss part
    decrypted masked by its host, the exact integers summed by the guest."""
    hosts = list(keys)
    m = len(rows)
    scores, shares = {}, {}
    for h in hosts:
        msg = star.recv(h, f"{tag}_scores", where)
        scores[h] = _enc(msg, "scores", f"{tag}_scores", m, keys[h])
        shares[h] = _enc(msg, "loss_share", f"{tag}_scores", 1, keys[h])
    for i, h in enumerate(hosts):
        star.send(h, f"{tag}_relay", {f"scores.{k}": scores[k] for k in hosts[i + 1:]}, where)
    pairs = {}
    for i, h in enumerate(hosts):
        msg = star.recv(h, f"{tag}_pairs", where)
        pairs[h] = {k: _enc(msg, f"pair.{k}", f"{tag}_pairs", 1, keys[k]) for k in hosts[i + 1:]}
    u_g = guest.X[rows] @ w
    parts = {}
    for k, h in enumerate(hosts):
        parts[h] = mh.guest_loss_part_masked(scores[h], u_g, y_pm, shares[h], [pairs[j][h] for j in hosts[:k]],
                                             0.0, k == 0, precision)
        star.send(h, f"{tag}_loss", {"loss": parts[h].enc}, where)
    ints = [mh.loss_part_integer(_residues(star.recv(h, f"{tag}_loss_decrypted", where), "loss",
                                           f"{tag}_loss_decrypted", 1), parts[h]) for h in hosts]
    return float(mh.guest_batch_loss(ints, parts[hosts[0]].enc.precision))


def _run_host_of_many(session: Session) -> LrResult:
    """A host of several: its own weights and masked gradient; it computes the cross and pair terms
    on the other hosts' encrypted scores the guest relays, and decrypts theirs masked under its key."""
    star = _Star(session, session.ctx.config.lr.step_timeout)
    try:
        return _host_of_many(session, star)
    except BaseException as exc:
        star.abort(exc)
        raise


def _host_of_many(session: Session, star: _Star) -> LrResult:
    from vfl.lr import multihost as mh

    ctx = session.ctx
    data = _party_data(ctx, "host")
    own_opts = options_from_config(ctx.config)
    precision = ctx.config.paillier.precision
    pk_g = session.peer_key("guest")
    n = data.n_rows
    if ctx.state.pop("lr_resume", None) is not None:
        raise TrainingError("lr: resuming a job with several hosts is not supported")

    star.round = ctx.next_round()
    star.plan("hello", "ready")
    star.send("guest", "hello", {"n_rows": n, "ids_digest": ids_digest(data.ids), "n_features": len(data.features)},
              "before training started")
    setup = star.recv("guest", "setup", "before training started")
    _check_status(setup, "setup")
    try:
        opts = LrOptions.from_json(_field(setup, "options", dict, "setup"))
        diff = opts.differences(own_opts)
        if diff:
            raise TrainingError(f"guest and {ctx.role} configs differ in [lr]/[job] (guest vs {ctx.role}): "
                                + "; ".join(diff))
        val = np.sort(rows_for_ids(data.ids, _field(setup, "validation_ids", list, "setup")))
        if len(np.unique(val)) != len(val):
            raise DataError("the guest's validation IDs repeat")
        train = np.setdiff1d(np.arange(n), val)
        host = prepare_party("host", data.features, data.X, train, opts, _warm_start(ctx, "host"))
        guest_columns = _field(setup, "guest_columns", int, "setup")
        hosts = [str(h) for h in _field(setup, "hosts", list, "setup")]  # the order of every per-host step
        sizes = _field(setup, "host_columns", dict, "setup")
        cols = {h: int(sizes[h]) for h in hosts if isinstance(sizes.get(h), int)}
        if len(cols) != len(hosts) or cols.get(ctx.role) != host.X.shape[1] or set(hosts) - set(ctx.host_keys):
            raise DataError(f"lr: the guest's list of hosts {hosts} does not match this {ctx.role}'s")
        check_host_side(host, opts, len(train), guest_columns)
        if not columns_fit(host.X):
            raise TrainingError(f"lr: with several hosts every host's columns must stay within bounds "
                                f"(set [lr] standardize); the {ctx.role}'s do not")
    except VflError as exc:
        star.send("guest", "ready", {"status": "error", "error": str(exc)}, "before training started")
        raise
    ready: Payload = {"status": "ok", "row_packing": True}
    if opts.label_noise > 0:
        ready["row_norm"], ready["op_norm"] = host_norm_bounds(host.X[train])
    star.send("guest", "ready", ready, "before training started")
    me = hosts.index(ctx.role)
    keys = {h: ctx.host_keys[h] for h in hosts}
    nxt = keys[hosts[mh.next_host(me, len(hosts))]]

    w = host.weights.copy()
    best = w.copy()
    rounds: list[int] = []
    epochs_run = 0
    epochs_in_round = 0
    n_batches = len(epoch_batches(len(train), opts.batch_size, opts.seed, 0))
    with progress(f"lr: training ({ctx.role})", total=opts.epochs * n_batches) as advance:
        for epoch in range(opts.epochs):
            lr = learning_rate(opts, epoch)
            for b, rows in enumerate(epoch_batches(len(train), opts.batch_size, opts.seed, epoch)):
                star.plan(*_batch_tags(f"e{epoch}.b{b}", "host"))
                w = _host_of_many_batch(star, ctx, host, w, train[rows], opts, lr, precision, pk_g, keys, nxt,
                                        guest_columns, cols, me, epoch, b, mh)
                advance()
            if len(val):
                star.plan(f"e{epoch}.val_scores", f"e{epoch}.val_pairs", f"e{epoch}.val_loss_decrypted")
                _host_of_many_loss(star, ctx, host, w, val, precision, keys, me, f"e{epoch}.val",
                                   _where(epoch) + " (validation)", mh)
            star.plan()
            end = star.recv("guest", f"e{epoch}.end", _where(epoch))
            _check_status(end, f"e{epoch}.end")
            epochs_run = epoch + 1
            if _field(end, "improved", bool, f"e{epoch}.end"):
                best = w.copy()
            epochs_in_round += 1
            if _field(end, "stop", bool, f"e{epoch}.end"):
                break
            if epochs_in_round == ctx.config.lr.round_every:
                _commit(ctx, star.round, host, w, None, rounds)
                star.round, epochs_in_round = ctx.next_round(), 0
    star.plan("final_scores")
    final = best if opts.early_stopping else w
    model = host.model(final)
    star.send("guest", "final_scores", {"scores": host_partial_scores_plain(model, data.X)}, "after training")
    _commit(ctx, star.round, host, final, None, rounds)
    model_doc = model_json(ctx, model, epochs_run)
    ctx.rundir.write_json("model.json", model_doc)
    console().print(table(f"lr: {ctx.role} summary", ["item", "value"],
                          [["epochs", epochs_run], ["own features", len(data.features)],
                           ["rounds committed", len(rounds)]]))
    result: LrResult = {"model": model_doc, "epochs": epochs_run, "rounds": rounds}
    ctx.state["lr"] = result
    return result


def _host_of_many_batch(star: _Star, ctx: PartyContext, host: PreparedParty, w: np.ndarray, idx: np.ndarray,
                        opts: LrOptions, lr: float, precision: int, pk_g: PublicKey, keys: dict[str, PublicKey],
                        nxt: PublicKey, guest_columns: int, cols: dict[str, int], me: int, epoch: int, b: int,
                        mh: Any) -> np.ndarray:
    """One batch at host `me` of several (fit_in_process's order); its new weights."""
    where, tag = _where(epoch, b), f"e{epoch}.b{b}"
    hosts = list(keys)
    m = len(idx)
    Xb = host.X[idx]
    u = Xb @ w
    pk, sk = ctx.public_key, ctx.private_key
    masks = mh.draw_pair_masks(me, len(hosts), m, precision)
    scores = mh.host_partial_scores_masked(pk, Xb, w, m * penalty_value(w, opts), masks, precision)
    share_enc, sigma = mh.host_gradient_share_masks(nxt, guest_columns, m, precision)
    star.send("guest", f"{tag}.scores", {"scores": scores.scores, "loss_share": scores.loss_share,
                                         "share_mask": share_enc}, where)
    enc_c = _enc(star.recv("guest", f"{tag}.offsets", where), "offsets", f"{tag}.offsets", m, pk_g)
    relay = star.recv("guest", f"{tag}.relay", where)
    others = {j: _enc(relay, f"scores.{j}", f"{tag}.relay", m, keys[j]) for j in hosts if j != ctx.role}
    own = host_gradient_masked(enc_c, u, Xb, precision, True)
    cross = {j: mh.host_cross_gradient_masked(others[j], Xb, precision) for j in others}
    pairs = {hosts[k]: mh.host_pair_loss_encrypted(others[hosts[k]], u, masks[k], precision)
             for k in mh.pair_partners(me, len(hosts))}
    star.send("guest", f"{tag}.cross", {"gradient": own.enc, **{f"cross.{j}": c.enc for j, c in cross.items()},
                                        **{f"pair.{k}": p for k, p in pairs.items()}}, where)
    msg = star.recv("guest", f"{tag}.residuals", where)
    try:
        part = mh.check_gradient_share(_field(msg, "gradient", EncryptedArray, f"{tag}.residuals"), guest_columns,
                                       pk, m, precision)
    except PaillierError as exc:
        raise TransportError(f"lr: malformed message {tag}.residuals: field 'gradient': {exc}") from None
    loss = _enc(msg, "loss", f"{tag}.residuals", 1, pk)
    theirs = {i: _gradient(msg, f"cross.{i}", f"{tag}.residuals", cols[i], pk, m, precision, True)
              for i in hosts if i != ctx.role}
    star.send("guest", f"{tag}.gradients", {
        "guest_gradient": mh.host_add_gradient_share(decrypt_masked(sk, part), sigma, pk),
        "loss": decrypt_masked(sk, loss), **{f"cross.{i}": decrypt_masked(sk, c) for i, c in theirs.items()}}, where)
    back = star.recv("guest", f"{tag}.decrypted", where)
    _check_status(back, f"{tag}.decrypted")
    grad = mh.host_unmask_gradient(_residues(back, "gradient", f"{tag}.decrypted", host.X.shape[1]), own,
                                   [cross[j] for j in hosts if j != ctx.role]) / m
    return update_weights(w, grad, lr, opts, host.regularized)


def _host_of_many_loss(star: _Star, ctx: PartyContext, host: PreparedParty, w: np.ndarray, rows: np.ndarray,
                       precision: int, keys: dict[str, PublicKey], me: int, tag: str, where: str, mh: Any) -> None:
    hosts = list(keys)
    m = len(rows)
    u = host.X[rows] @ w
    masks = mh.draw_pair_masks(me, len(hosts), m, precision)
    scores = mh.host_partial_scores_masked(ctx.public_key, host.X[rows], w, 0.0, masks, precision)
    star.send("guest", f"{tag}_scores", {"scores": scores.scores, "loss_share": scores.loss_share}, where)
    relay = star.recv("guest", f"{tag}_relay", where)
    later = [hosts[k] for k in mh.pair_partners(me, len(hosts))]
    star.send("guest", f"{tag}_pairs", {
        f"pair.{k}": mh.host_pair_loss_encrypted(_enc(relay, f"scores.{k}", f"{tag}_relay", m, keys[k]), u,
                                                 masks[hosts.index(k)], precision) for k in later}, where)
    enc = _enc(star.recv("guest", f"{tag}_loss", where), "loss", f"{tag}_loss", 1, ctx.public_key)
    star.send("guest", f"{tag}_loss_decrypted", {"loss": decrypt_masked(ctx.private_key, enc)}, where)


# -- inference ------------------------------------------------------------------


def model_json(ctx: PartyContext, model: LrPartModel, epochs: int) -> dict[str, Any]:
    """model.json: the party's weights and scaling, plus what scoring new raw rows needs.

    `preprocess` is what the binning phase applied to the kept columns ([selection]
    woe_transform): at the guest the WoE transform + standardization, at the host the bin
    indicators of its own split points (which never leave it). Without it, feature selection
    is `features` itself (the kept columns, model order); with it, `preprocess.features` are the
    raw columns and `features` its output columns.
    `job_id` ties the two parties' models to one trained job.
    """
    pre = ctx.state.get("preprocess")
    doc = model.to_json(epochs=epochs, job_id=ctx.job_id, preprocess=pre.to_json() if pre is not None else None)
    if doc.get("role") != ctx.role:  # one of several hosts: its own role name ("host2")
        doc["role"] = ctx.role
    return doc


def _model_columns(model: LrPartModel, preprocess: Preprocessing | None, data: PartyData) -> np.ndarray:
    """New raw rows as the model was trained on them: selected columns, then the saved preprocessing."""
    if preprocess is None:
        return model.columns_of(data.features, data.X, data.source)
    if preprocess.columns != list(model.features):
        raise DataError(f"{data.source}: the preprocessing's columns differ from the model's features")
    return preprocess.transform(data.select(preprocess.features).X)


def predict_guest(party: PartyContext | Session, model: LrPartModel,
                  preprocess: Preprocessing | None = None) -> np.ndarray:
    """Score the guest's aligned rows with every party's saved model; writes predictions.csv (type "predict").

    Needs each host's partial scores X_h w_h in plaintext (the guest learns them, and adds them up).
    Labels, when the guest's data has both classes, also give metrics.json and ROC/KS plots.
    """
    session = as_session(party)
    ctx = session.ctx
    data = _party_data(ctx, "guest", labels=False)
    X = _model_columns(model, preprocess, data)
    round_no = ctx.next_round()
    u_h = np.zeros(data.n_rows)
    for peer in session.peers:
        link = _Link(session.channel(peer, PHASE), peer, ctx.config.lr.step_timeout, round_no)
        msg = link.recv("predict_scores", "before sending its partial scores")
        if _field(msg, "ids_digest", str, "predict_scores") != ids_digest(data.ids):
            raise DataError(f"guest and {peer} rows are not aligned for prediction (different IDs or order)")
        part = _field(msg, "scores", np.ndarray, "predict_scores").astype(np.float64)
        if part.shape != (data.n_rows,) or not np.all(np.isfinite(part)):
            raise TransportError(f"lr: the {peer} sent {part.shape} partial scores (or non-finite ones) "
                                 f"for {data.n_rows} rows")
        u_h = part if len(session.peers) == 1 else u_h + part
    proba = guest_predict_proba(model, X, u_h)
    labels = None if data.y is None else np.asarray(data.y, dtype=np.int8)
    text = predictions_csv(data.ids, labels, proba, ["predict"] * len(proba))
    ctx.rundir.write_text("predictions.csv", text)
    rows: list[list[Any]] = [["rows scored", data.n_rows], ["predicted 1", int(np.sum(proba >= 0.5))]]
    if labels is not None and len(np.unique(labels)) == 2:
        from nodes.plots.lr import plot_evaluation, plot_ks, plot_roc

        metrics = split_metrics(labels, proba)
        pm = ctx.state.get("predict_model")
        ctx.rundir.write_json("metrics.json", {"algorithm": "lr", "predict": metrics,
                                               "training_job": getattr(pm, "training_job", None)})
        plot_roc(ctx.rundir.plot_path("lr_predict_roc.png"), {"predict": (labels, proba)})
        plot_ks(ctx.rundir.plot_path("lr_predict_ks.png"), {"predict": (labels, proba)})
        plot_evaluation(ctx.rundir, "lr_predict_", {"predict": (labels, proba)})
        rows += [[k, metrics[k]] for k in ("auc", "ks", "accuracy", "precision", "recall", "f1")]
    elif labels is not None:
        rows.append(["metrics", "not computed: the labels have one class"])
    ctx.commit_round(round_no, PHASE, {"step": "predict", "rows": data.n_rows,
                                       "predictions_sha256": hashlib.sha256(text.encode()).hexdigest()})
    console().print(table("lr: prediction (guest)", ["item", "value"], rows))
    ctx.state["lr_predict"] = proba
    return proba


def predict_host(party: PartyContext | Session, model: LrPartModel, preprocess: Preprocessing | None = None) -> None:
    """Send the host's partial scores of its aligned rows to the guest (inference)."""
    ctx = as_session(party).ctx
    data = _party_data(ctx, "host")
    X = _model_columns(model, preprocess, data)
    link = _Link(ctx.channel(PHASE), "guest", ctx.config.lr.step_timeout)
    link.round = ctx.next_round()
    scores = host_partial_scores_plain(model, X)
    link.send("predict_scores", {"scores": scores, "ids_digest": ids_digest(data.ids)},
              "before receiving the partial scores")
    ctx.commit_round(link.round, PHASE, {"step": "predict", "rows": data.n_rows,
                                         "scores_sha256": hashlib.sha256(scores.tobytes()).hexdigest()})


def load_model(path: str | Path, role: str) -> LrPartModel:
    """A party's model.json, from the file or a run directory (`DIR/model.json` or `DIR/<role>/model.json`)."""
    p = Path(path)
    candidates = [p] if p.is_file() else [p / role / "model.json", p / "model.json"]
    for c in candidates:
        if c.is_file():
            try:
                obj = json.loads(c.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{c}: cannot read the model: {exc}") from None
            if not isinstance(obj, dict):
                raise DataError(f"{c}: not a model file")
            model = LrPartModel.from_json(obj, str(c))
            if model.role != role:
                raise DataError(f"{c}: a {model.role} model, but this party is the {role}")
            return model
    raise DataError(f"{path}: no {role} model.json there")


# -- shared helpers -------------------------------------------------------------------


def _party_data(ctx: PartyContext, role: str, labels: bool = True) -> PartyData:
    if ctx.data is None:
        raise DataError(f"lr: the {role} has no data loaded")
    if role == "guest" and labels and ctx.data.y is None:
        raise DataError(f"{ctx.data.source}: the guest's data has no labels")
    if ctx.data.n_rows == 0:
        raise DataError(f"{ctx.data.source}: no rows to train on")
    return ctx.data


def _peer_key(ctx: PartyContext) -> PublicKey:
    if ctx.peer_key is None:
        raise TrainingError(f"lr: the {ctx.role} does not have the {ctx.peer}'s public key")
    return ctx.peer_key


def _warm_start(ctx: PartyContext, role: str) -> LrPartModel | None:
    path = ctx.config.lr.warm_start
    return load_model(path, role) if path else None


def _commit(ctx: PartyContext, round_no: int, party: PreparedParty, w: np.ndarray, loss: float | None,
            rounds: list[int], resume: dict[str, Any] | None = None) -> None:
    """Commit own weights; `resume`: the training state after this round (epoch done, weights, best
    weights, rounds, the guest's monitor), kept in the checkpoint for a resumed job."""
    model = party.model(w)
    params: dict[str, Any] = {"weights": [float(v) for v in model.weights]}
    if model.intercept is not None:
        params["intercept"] = float(model.intercept)
    ctx.commit_round(round_no, PHASE, params, loss, resume=None if resume is None else {"lr": resume})
    rounds.append(round_no)


def _resumed(state: dict[str, Any], size: int) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """(weights, best weights, first epoch to run, rounds committed) of a checkpoint's "lr" state."""
    try:
        w = np.asarray(state["w"], dtype=np.float64)
        best = np.asarray(state["best"], dtype=np.float64)
        start = int(state["epoch"]) + 1
        rounds = [int(r) for r in state["rounds"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainingError(f"lr: the checkpoint's resume state is malformed ({exc})") from None
    if w.shape != (size,) or best.shape != (size,):
        raise TrainingError(f"lr: the checkpoint holds {w.shape[0]} weights, this party trains {size}")
    return w, best, start, rounds


def _monitor_state(m: TrainingMonitor) -> dict[str, Any]:
    """The guest's TrainingMonitor as JSON (an infinite best validation loss as null)."""
    return {"first_batch_loss": m.first_batch_loss, "losses": list(m.losses),
            "validation_losses": list(m.validation_losses),
            "best_validation": m.best_validation if math.isfinite(m.best_validation) else None,
            "best_epoch": m.best_epoch, "bad_epochs": m.bad_epochs}


def _restore_monitor(m: TrainingMonitor, state: dict[str, Any]) -> None:
    m.first_batch_loss = state["first_batch_loss"]
    m.losses = [float(v) for v in state["losses"]]
    m.validation_losses = [float(v) for v in state["validation_losses"]]
    m.best_validation = math.inf if state["best_validation"] is None else float(state["best_validation"])
    m.best_epoch, m.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])


def _jsonable(x: Any) -> Any:
    """A metrics value with every non-finite float as null (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def split_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """One split's metrics.json entry: AUC, KS, accuracy.. (`binary_metrics`), then average precision,
    the confusion matrix at 0.5, decile lift/gain and the precision-recall curve (`vfl.metrics.evaluation`)."""
    return _jsonable({**binary_metrics(y, proba), **evaluation(y, proba)})


def _evaluate(y: np.ndarray, proba: np.ndarray, train: np.ndarray, val: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"train": split_metrics(y[train], proba[train])}
    if len(val):
        out["validate"] = split_metrics(y[val], proba[val])
    return out


def predictions_csv(ids: np.ndarray, labels: np.ndarray | None, proba: np.ndarray, types: list[str]) -> str:
    """The seed paper's Table 2: id, label, predict_result, predict_score, predict_detail, type."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PREDICTIONS_HEADER)
    for i in range(len(proba)):
        p1 = float(proba[i])
        detail = json.dumps({"0": 1.0 - p1, "1": p1})
        w.writerow([str(ids[i]), "" if labels is None else int(labels[i]), int(p1 >= 0.5), repr(p1), detail,
                    types[i]])
    return buf.getvalue()


def _write_guest_outputs(ctx: PartyContext, data: PartyData, y: np.ndarray, proba: np.ndarray,
                         train: np.ndarray, val: np.ndarray, model_doc: dict[str, Any],
                         metrics_doc: dict[str, Any], monitor: TrainingMonitor) -> None:
    from nodes import plots

    types = ["train"] * data.n_rows
    for i in val.tolist():
        types[i] = "validate"
    ctx.rundir.write_text("predictions.csv", predictions_csv(data.ids, y, proba, types))
    splits = {"train": (y[train], proba[train])}
    if len(val):
        splits["validate"] = (y[val], proba[val])
    plots.later("lr", "plot_loss", ctx.rundir.plot_path("lr_loss.png"), list(monitor.losses),
                list(monitor.validation_losses))
    plots.later("lr", "plot_roc", ctx.rundir.plot_path("lr_roc.png"), splits)
    plots.later("lr", "plot_ks", ctx.rundir.plot_path("lr_ks.png"), splits)
    plots.later("lr", "plot_evaluation", ctx.rundir, "lr_", splits)
    metrics_doc.setdefault("communication", COMMUNICATION_FILE)  # written at the job's end (nodes.communication)
    ctx.rundir.write_json("metrics.json", metrics_doc)
    ctx.rundir.write_json("model.json", model_doc)
    rows = []
    for key in ("auc", "ks", "accuracy", "precision", "recall", "f1"):
        rows.append([key, metrics_doc["train"][key], metrics_doc.get("validate", {}).get(key, "")])
    t = metrics_doc["training"]
    rows.append(["epochs", t["epochs"], ""])
    rows.append(["final loss", monitor.losses[-1], monitor.validation_losses[-1] if monitor.validation_losses else ""])
    console().print(table("lr: guest summary", ["metric", "train", "validate"], rows))


# -- predict steps (nodes.algorithms) -----------------------------------------------


def load_predict_model(doc: dict[str, Any], f: Path, role: str) -> tuple[LrPartModel, Preprocessing | None]:
    """This party's LR model and its saved preprocessing from model.json (`doc`, read from `f`)."""
    preprocess = None
    model = LrPartModel.from_json(doc, str(f))
    if model.role != role:
        raise DataError(f"{f}: a {model.role} model, but this party is the {role}")
    if doc.get("preprocess"):
        preprocess = preprocessing_from_json(doc["preprocess"])
        if preprocess.columns != model.features:
            raise DataError(f"{f}: the preprocessing's columns {preprocess.columns} differ from the "
                            f"model's features {model.features}")
    return model, preprocess


def predict_step_guest(party: PartyContext | Session, pm: Any) -> int:
    """Phase `predict` at the guest (a nodes.phases.predict.PartyModel); the rows scored."""
    return len(predict_guest(party, pm.model, pm.preprocess))


def predict_step_host(party: PartyContext | Session, pm: Any) -> int:
    """Phase `predict` at a host; the rows scored."""
    predict_host(party, pm.model, pm.preprocess)
    return _party_data(as_session(party).ctx, "host").n_rows


__all__ = ["LrResult", "load_model", "options_from_config", "predict_guest",
           "predict_host", "predictions_csv", "run_guest", "run_host"]
