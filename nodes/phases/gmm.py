"""Phase "gmm": FL-EM-GMM, the federated EM algorithm for a block-diagonal Gaussian mixture.

The guest drives (it is the "server" of the algorithm); the host follows. Every
round starts with the guest's `step` message and the host's reply; the steps:

    setup     guest: settings and row count; host: "ready" (its own checks, its column count)
    kmeans    (init = "kmeans") host: its block's squared distances to its centres, less each
              row's smallest (none at iteration 0); guest: nearest centres, then an
              encrypted M-step for the means only (or, once the assignments repeat, the
              full M-step that starts EM)
    init      an encrypted M-step from the guest's initial responsibilities
    em        host: its block's log-densities less each row's largest, and the sum of
              those (E-step); guest: responsibilities, lower bound; then the encrypted
              M-step (vfl.gmm.mstep)
    final     host: the same under the best initialisation's parameters; guest:
              final responsibilities, labels and BIC for this K
    select    the K with the lowest BIC; both keep that model and write it

An encrypted M-step is the messages `responsibilities` (guest -> host: the
responsibilities under the guest's key, component sizes nk), `masked_statistics`
(host -> guest: its statistics plus uniform masks) and
`decrypted_masked_statistics` (guest -> host: the raw decryptions, still
masked); each party then forms its own block. One round per step; each party
commits its own block and the shared weights every round.

Either side that fails sends `{"abort": reason}` where the peer is waiting, so
both stop with the reason. Nothing is written to the run directory unless the
fit completed. docs/protocols/gmm.md says what each party learns.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nodes.communication import COMMUNICATION_FILE
from nodes.config import JobConfig, options_of
from nodes.context import PartyContext
from nodes.errors import NodeError
from nodes.session import PeerAborted, Session, as_session, raise_if_aborted
from nodes.transport.base import Payload, PhaseChannel
from nodes.ui import console, progress, table
from vfl.data import PartyData
from vfl.errors import DataError, TrainingError, VflError
from vfl.gmm import (
    EStep,
    GaussianBlock,
    GmmOptions,
    adjusted_rand_index,
    best_permutation_accuracy,
    bic,
    block_parameters,
    block_squared_distances,
    check_block,
    check_masked_statistics,
    check_rows_for_k,
    cluster_counts,
    component_sizes,
    contingency,
    features_fit,
    guest_assign_clusters,
    guest_combine_host_log_densities,
    guest_combine_log_densities,
    guest_decrypt_masked_statistics,
    guest_encrypt_responsibilities,
    guest_random_from_data_responsibilities,
    guest_random_responsibilities,
    guest_random_rows,
    host_encrypted_statistics,
    host_mask_statistics,
    host_relative_distances,
    host_relative_log_densities,
    host_unmask_statistics,
    kmeans_centers,
    one_hot,
    pack_residues,
    split_statistics,
    statistic_feature_bound,
    statistic_features,
    unpack_residues,
)
from vfl.gmm.model import PartyMixture, mixture_weights
from vfl.paillier import EncryptedArray

PHASE = "gmm"
# How long a party waits for the peer's next message. It covers the peer's
# heavy computing (the host's encrypted statistics over all rows can take many
# minutes at 2048 bits); a peer that goes away is reported by the transport.
COMPUTE_TIMEOUT = 24 * 3600.0


class GmmProtocolError(NodeError):
    """The peer sent something the FL-EM-GMM protocol does not allow."""


def options_from_config(config: JobConfig) -> GmmOptions:
    """The [gmm] section (and [job] seed) as validated GmmOptions."""
    return options_of(config, GmmOptions).validate()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------
# results


@dataclass
class GuestGmmResult:
    """What the guest ends with: its model part, the responsibilities, labels and the EM trace."""

    options: GmmOptions
    model: PartyMixture
    resp: np.ndarray
    labels: np.ndarray
    lower_bound: float
    lower_bounds: list[float]  # best initialisation's lower bound per EM iteration
    all_lower_bounds: list[list[float]]  # every initialisation's
    n_iter: int
    converged: bool
    best_init: int
    log_likelihood: float  # mean log-likelihood at the final parameters
    bic: float
    bic_by_k: dict[int, float]
    host_features: int
    initial: list[tuple[np.ndarray, GaussianBlock]]  # per initialisation of the chosen K
    iteration_seconds: list[float] = field(default_factory=list)
    kmeans_iterations: list[int] = field(default_factory=list)
    ari: float | None = None
    accuracy: float | None = None
    host_columns: dict[str, int] = field(default_factory=dict)  # per host (several hosts: metrics.json "hosts")

    @property
    def k(self) -> int:
        return self.model.k


@dataclass
class HostGmmResult:
    """What the host ends with: its model part (its block, the shared weights)."""

    model: PartyMixture
    initial: list[tuple[np.ndarray, GaussianBlock]]

    @property
    def k(self) -> int:
        return self.model.k


# --------------------------------------------------------------------------
# messaging with aborts


class _Link:
    """The phase channels to this party's peers (a host: the guest; the guest: every host, which all
    follow the same steps) plus where the peers currently wait, so a failure can be reported there."""

    def __init__(self, party: PartyContext | Session) -> None:
        session = as_session(party)
        self.ctx = session.ctx
        self.chs: dict[str, PhaseChannel] = {p: session.channel(p, PHASE) for p in session.peers}
        self.peer_waits: tuple[str, int | None] = ("", None)  # (tag, round; None: its next round)

    @property
    def peers(self) -> list[str]:
        return list(self.chs)

    def send(self, tag: str, payload: Payload, round_no: int) -> None:
        """The same message to every peer."""
        for ch in self.chs.values():
            ch.send(tag, payload, round=round_no)

    def send_to(self, peer: str, tag: str, payload: Payload, round_no: int) -> None:
        self.chs[peer].send(tag, payload, round=round_no)

    def recv(self, tag: str, round_no: int) -> Payload:
        """The one peer's message (a host's link, or a guest of one host)."""
        (peer,) = self.chs
        return self.recv_from(peer, tag, round_no)

    def recv_from(self, peer: str, tag: str, round_no: int) -> Payload:
        msg = self.chs[peer].recv(tag, round=round_no, timeout=COMPUTE_TIMEOUT)
        raise_if_aborted(msg, peer, "stopped the fit")
        return msg

    def recv_all(self, tag: str, round_no: int) -> list[Payload]:
        """Every peer's message `tag`, in peer order."""
        return [self.recv_from(p, tag, round_no) for p in self.chs]

    def abort(self, reason: str, skip: str = "") -> None:
        """Tell the peers (but `skip`, the one that stopped) why this party stops (best effort)."""
        tag, round_no = self.peer_waits
        if not tag:
            return
        if round_no is None:
            round_no = self.ctx.next_round()
        for peer, ch in self.chs.items():
            if peer == skip:
                continue
            try:
                ch.send(tag, {"abort": reason}, round=round_no)
            except Exception:  # noqa: BLE001 - the peer may have gone; our own error is what matters
                pass


def _expect_array(msg: Payload, name: str, shape: tuple[int, ...]) -> np.ndarray:
    value = msg.get(name)
    if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != np.float64:
        got = getattr(value, "shape", type(value).__name__)
        raise GmmProtocolError(f"field {name!r}: expected float64 {shape}, got {got}")
    if not np.all(np.isfinite(value)):
        raise GmmProtocolError(f"field {name!r} has NaN or infinite values")
    return value


def _expect_encrypted(msg: Payload, name: str, key: Any, shape: tuple[int, ...]) -> EncryptedArray:
    value = msg.get(name)
    if not isinstance(value, EncryptedArray) or value.shape != shape:
        got = getattr(value, "shape", type(value).__name__)
        raise GmmProtocolError(f"field {name!r}: expected ciphertexts {shape}, got {got}")
    if value.public_key != key:
        raise GmmProtocolError(f"field {name!r} is not encrypted under the guest's key")
    return value


def _block_params(step: str, k: int, init: int, iteration: int, weights: np.ndarray | None,
                  block: GaussianBlock | None = None, centers: np.ndarray | None = None) -> dict[str, Any]:
    """What a party commits to in a round: its own block (or k-means centres) and the shared weights."""
    out: dict[str, Any] = {"phase": PHASE, "step": step, "k": k, "init": init, "iteration": iteration}
    if weights is not None:
        out["weights"] = weights
    if block is not None:
        out.update(covariance=block.covariance, means=block.means, covariances=block.covariances)
    if centers is not None:
        out["centers"] = centers
    return out


def _expect_number(msg: Payload, name: str) -> float:
    value = msg.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GmmProtocolError(f"field {name!r}: expected a finite number, got {value!r}")
    return float(value)


def _log_density_message(block: GaussianBlock, X: np.ndarray) -> Payload:
    """The host's E-step reply: its block's log-densities less each row's level, and the levels' sum."""
    relative, level_total = host_relative_log_densities(block.log_density(X))
    return {"log_density": relative, "level_total": level_total}


def _own_data(ctx: PartyContext) -> PartyData:
    if ctx.data is None:
        raise DataError(f"{ctx.role} has no aligned rows for the Gaussian mixture")
    return ctx.data


def _precision(ctx: PartyContext) -> int:
    return int(ctx.config.paillier.precision)


# --------------------------------------------------------------------------
# guest


class _GuestFit:
    """The guest's side of the protocol for one job (all K, all initialisations)."""

    def __init__(self, ctx: PartyContext, link: _Link, data: PartyData, options: GmmOptions, d_host: list[int],
                 packed_statistics: list[bool]) -> None:
        self.ctx, self.link, self.data, self.opts = ctx, link, data, options
        self.d_hosts = d_host  # per host, in link order
        self.packed_statistics = packed_statistics  # each host's columns within FEATURE_BOUND (its declaration)
        self.X = np.asarray(data.X, dtype=np.float64)
        self.n = data.n_rows
        self.iteration_seconds: list[float] = []

    # -- one round's pieces -----------------------------------------------
    def begin(self, step: str, k: int, init: int, iteration: int, reply: str) -> tuple[int, list[Payload]]:
        """Start a round: announce the step; return the round and every host's reply."""
        r = self.ctx.next_round()
        self.link.peer_waits = ("step", r)
        self.link.send("step", {"step": step, "k": k, "init": init, "iteration": iteration}, r)
        # after replying, the host waits for the M-step's first message, or for the next step
        self.link.peer_waits = ("responsibilities", r) if step in ("kmeans", "init", "em") else ("step", None)
        return r, self.link.recv_all(reply, r)

    def host_statistics_count(self, statistics: str, d: int) -> int:
        if statistics == "means":
            return d
        return 2 * d if self.opts.covariance == "diag" else d + d * (d + 1) // 2

    def host_block_output(self, msg: Payload, name: str, k: int) -> np.ndarray:
        return _expect_array(msg, name, (self.n, k))

    def m_step(self, r: int, resp: np.ndarray, nk: np.ndarray, statistics: str) -> np.ndarray:
        """The encrypted M-step messages; returns the guest's own statistics gamma^T F (plaintext)."""
        enc = guest_encrypt_responsibilities(self.ctx.public_key, resp)  # once: the same to every host
        self.link.send("responsibilities", {"responsibilities": enc, "nk": nk, "statistics": statistics}, r)
        self.link.peer_waits = ("decrypted_masked_statistics", r)
        for h, d, packed in zip(self.link.peers, self.d_hosts, self.packed_statistics, strict=True):
            msg = self.link.recv_from(h, "masked_statistics", r)
            shape = (enc.shape[0], self.host_statistics_count(statistics, d))
            masked = _expect_encrypted(msg, "statistics", self.ctx.public_key, shape)
            try:
                check_masked_statistics(masked, self.ctx.public_key, shape, self.n, statistics,
                                        _precision(self.ctx), packed)
            except VflError as exc:
                raise GmmProtocolError(f"field 'statistics'{'' if len(self.d_hosts) == 1 else ' of ' + h}: "
                                       f"{exc}") from None
            residues = guest_decrypt_masked_statistics(self.ctx.private_key, masked)
            self.link.send_to(h, "decrypted_masked_statistics",
                              {"residues": pack_residues(residues, self.ctx.public_key)}, r)
        self.link.peer_waits = ("step", None)
        F = statistic_features(self.X, self.opts.covariance, statistics)  # type: ignore[arg-type]
        return resp.T @ F

    def block_of(self, obj: dict[str, Any]) -> GaussianBlock:
        """Own block from its JSON (a resumed job's checkpoint)."""
        return GaussianBlock.from_covariances(obj["covariance"], np.asarray(obj["means"], dtype=np.float64),
                                              np.asarray(obj["covariances"], dtype=np.float64), party="guest",
                                              features=self.data.features)

    def block_from(self, stats: np.ndarray, nk: np.ndarray) -> GaussianBlock:
        d = self.X.shape[1]
        s1, s2 = split_statistics(stats, d, self.opts.covariance)
        assert s2 is not None
        means, covs = block_parameters(nk, s1, s2, self.opts.covariance, self.opts.reg_covar)
        return GaussianBlock.from_covariances(self.opts.covariance, means, covs, party="guest",
                                              features=self.data.features)

    # -- initialisation ---------------------------------------------------
    def initialize(self, k: int, init: int, rs: np.random.RandomState) -> tuple[np.ndarray, GaussianBlock, int]:
        """Rounds that produce the initial parameters; returns (weights, own block, k-means iterations)."""
        if self.opts.init == "kmeans":
            return self.kmeans(k, init, rs)
        if self.opts.init == "random":
            resp = guest_random_responsibilities(self.n, k, rs)
        else:
            resp = guest_random_from_data_responsibilities(self.n, k, rs)
        r, _ = self.begin("init", k, init, 0, "ack")
        weights, block = self.initial_m_step(r, resp)
        self.ctx.commit_round(r, PHASE, _block_params("init", k, init, 0, weights, block))
        return weights, block, 0

    def initial_m_step(self, r: int, resp: np.ndarray) -> tuple[np.ndarray, GaussianBlock]:
        nk = component_sizes(resp)
        stats = self.m_step(r, resp, nk, "moments")
        return mixture_weights(nk, self.n, initial=True), self.block_from(stats, nk)

    def kmeans(self, k: int, init: int, rs: np.random.RandomState) -> tuple[np.ndarray, GaussianBlock, int]:
        """Federated Lloyd k-means from K random rows; its final assignments start EM."""
        rows = guest_random_rows(self.n, k, rs)
        resp = np.zeros((self.n, k))
        resp[rows, np.arange(k)] = 1.0
        r, _ = self.begin("kmeans", k, init, 0, "ack")
        counts = np.ones(k)
        centers = kmeans_centers(counts, self.m_step(r, resp, counts, "means"), None)
        self.ctx.commit_round(r, PHASE, _block_params("kmeans", k, init, 0, None, centers=centers))
        previous: np.ndarray | None = None
        for it in range(1, self.opts.kmeans_max_iter + 1):
            r, msgs = self.begin("kmeans", k, init, it, "distances")
            host_dist = [self.host_block_output(msg, "distances", k) for msg in msgs]
            labels = guest_assign_clusters([block_squared_distances(self.X, centers), *host_dist])
            resp = one_hot(labels, k)
            if (previous is not None and np.array_equal(labels, previous)) or it == self.opts.kmeans_max_iter:
                weights, block = self.initial_m_step(r, resp)
                self.ctx.commit_round(r, PHASE, _block_params("kmeans", k, init, it, weights, block))
                return weights, block, it
            counts = cluster_counts(labels, k)
            centers = kmeans_centers(counts, self.m_step(r, resp, counts, "means"), centers)
            self.ctx.commit_round(r, PHASE, _block_params("kmeans", k, init, it, None, centers=centers))
            previous = labels
        raise AssertionError("unreachable")

    # -- EM -----------------------------------------------------------------
    def e_step(self, msgs: list[Payload], k: int, weights: np.ndarray, block: GaussianBlock) -> EStep:
        if len(msgs) == 1:
            host_ld = self.host_block_output(msgs[0], "log_density", k)
            return guest_combine_log_densities([block.log_density(self.X), host_ld], weights,
                                               _expect_number(msgs[0], "level_total"))
        hosts = [(self.host_block_output(m, "log_density", k), _expect_number(m, "level_total")) for m in msgs]
        return guest_combine_host_log_densities(block.log_density(self.X), hosts, weights)

    def fit_k(self, k: int, resume: dict[str, Any] | None = None) -> dict[str, Any]:
        """EM with n_init initialisations for one K (scikit-learn's loop), then the final E-step.

        `resume`: the state kept at an EM round of this K (a resumed job) to continue from."""
        opts = self.opts
        rs = np.random.RandomState(opts.seed)
        best: dict[str, Any] | None = None
        all_lbs: list[list[float]] = []
        initial: list[tuple[np.ndarray, GaussianBlock]] = []
        kmeans_its: list[int] = []
        start = 0
        if resume is not None:
            name, keys, pos, has_gauss, cached = resume["rs"]
            rs.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
            all_lbs = [list(v) for v in resume["all_lbs"]]
            initial = [(np.asarray(w, dtype=np.float64), self.block_of(b)) for w, b in resume["initial"]]
            kmeans_its = list(resume["kmeans_its"])
            best = None if resume["best"] is None else {
                **resume["best"], "weights": np.asarray(resume["best"]["weights"], dtype=np.float64),
                "block": self.block_of(resume["best"]["block"])}
            start = int(resume["init"])
        for init in range(start, opts.n_init):
            first = 1
            if resume is not None and init == start:  # continue this initialisation after its restored iteration
                weights, block = np.asarray(resume["weights"], dtype=np.float64), self.block_of(resume["block"])
                lower_bound, lbs, converged = float(resume["lower_bound"]), list(resume["lbs"]), bool(resume["converged"])
                n_iter = int(resume["n_iter"])
                first = opts.max_iter + 1 if converged else n_iter + 1
            else:
                weights, block, kit = self.initialize(k, init, rs)
                initial.append((weights, block))
                kmeans_its.append(kit)
                lower_bound, lbs, converged, n_iter = -np.inf, [], False, 0
            label = f"EM k={k}" + (f" init {init + 1}/{opts.n_init}" if opts.n_init > 1 else "")
            with progress(label, opts.max_iter) as advance:
                for n_iter in range(first, opts.max_iter + 1):  # noqa: B007 - used after the loop
                    t0 = time.perf_counter()
                    r, msg = self.begin("em", k, init, n_iter, "log_density")
                    e = self.e_step(msg, k, weights, block)
                    prev, lower_bound = lower_bound, e.mean_log_likelihood
                    lbs.append(lower_bound)
                    resp = e.responsibilities
                    nk = component_sizes(resp)
                    stats = self.m_step(r, resp, nk, "moments")
                    weights, block = mixture_weights(nk, self.n, initial=False), self.block_from(stats, nk)
                    done = bool(abs(lower_bound - prev) < opts.tol)
                    state = None if k != self.opts.candidates[0] else {"gmm": {
                        "k": k, "init": init, "n_iter": n_iter, "weights": weights, "block": block.to_json(),
                        "lower_bound": lower_bound, "lbs": lbs, "converged": done, "all_lbs": all_lbs,
                        "initial": [(w, b.to_json()) for w, b in initial], "kmeans_its": kmeans_its,
                        "best": None if best is None else {**{a: v for a, v in best.items() if a != "block"},
                                                            "block": best["block"].to_json()},
                        "rs": list(rs.get_state())}}
                    self.ctx.commit_round(r, PHASE, _block_params("em", k, init, n_iter, weights, block),
                                          loss=-lower_bound, resume=state)
                    self.iteration_seconds.append(time.perf_counter() - t0)
                    advance()
                    if done:
                        converged = True
                        break
            all_lbs.append(lbs)
            if best is None or lower_bound > best["lower_bound"]:
                best = {"lower_bound": lower_bound, "weights": weights, "block": block, "n_iter": n_iter,
                        "lower_bounds": lbs, "converged": converged, "best_init": init}
        assert best is not None
        r, msg = self.begin("final", k, best["best_init"], best["n_iter"], "log_density")
        final = self.e_step(msg, k, best["weights"], best["block"])
        self.ctx.commit_round(r, PHASE, _block_params("final", k, best["best_init"], best["n_iter"],
                                                      best["weights"], best["block"]))
        score = final.mean_log_likelihood
        best.update(final=final, log_likelihood=score, all_lower_bounds=all_lbs, initial=initial,
                    kmeans_iterations=kmeans_its,
                    bic=bic(score, self.n, k, [self.X.shape[1], *self.d_hosts], opts.covariance))
        return best

    def select(self, fits: dict[int, dict[str, Any]]) -> int:
        """The K with the lowest BIC; the round in which both parties keep that model."""
        best_k = min(fits, key=lambda k: (fits[k]["bic"], k))
        f = fits[best_k]
        r, _ = self.begin("select", best_k, f["best_init"], f["n_iter"], "ack")
        self.link.peer_waits = ("", None)
        self.ctx.commit_round(r, PHASE, _block_params("select", best_k, f["best_init"], f["n_iter"],
                                                      f["weights"], f["block"]))
        return best_k


def run_guest(party: PartyContext | Session) -> GuestGmmResult:
    """The guest's FL-EM-GMM: drives the rounds, keeps the responsibilities, writes the results.
    With several hosts every step goes to all of them (docs/protocols/gmm.md "N hosts")."""
    session = as_session(party)
    ctx = session.ctx
    data = _own_data(ctx)
    options = options_from_config(ctx.config)
    link = _Link(session)
    r = ctx.next_round()
    try:
        for k in options.candidates:
            check_rows_for_k(data.n_rows, k)
        check_block(data.X, data.features, "guest")
    except DataError as exc:
        link.send("setup", {"abort": str(exc)}, r)
        raise
    link.send("setup", {"options": options.to_json(), "n_rows": data.n_rows}, r)
    d_hosts, packed = [], []
    for h in link.peers:
        ready = link.recv_from(h, "ready", r)
        d_host = ready.get("n_features")
        if not isinstance(d_host, int) or d_host < 1:
            raise GmmProtocolError(f"{h} reported {d_host!r} feature columns")
        packed_statistics = ready.get("packed_statistics")
        if not isinstance(packed_statistics, bool):
            raise GmmProtocolError(f"the {h} did not say whether its statistics are packed")
        d_hosts.append(d_host)
        packed.append(packed_statistics)
    ctx.commit_round(r, PHASE, {"phase": PHASE, "step": "setup", "options": options.to_json(),
                                "features": data.features})
    link.peer_waits = ("step", None)
    fit = _GuestFit(ctx, link, data, options, d_hosts, packed)
    try:
        resume = ctx.state.pop("gmm_resume", None)  # a resumed job: EM of the first K goes on from there
        if resume is not None and resume.get("k") != options.candidates[0]:
            raise GmmProtocolError(f"the checkpoint's resume state is for K={resume.get('k')}")
        fits = {k: fit.fit_k(k, resume if i == 0 else None) for i, k in enumerate(options.candidates)}
        best_k = fit.select(fits)
    except (VflError, NodeError) as exc:  # a host's abort goes on to the other hosts
        link.abort(str(exc), skip=exc.peer if isinstance(exc, PeerAborted) else "")
        raise
    f = fits[best_k]
    final: EStep = f["final"]
    result = GuestGmmResult(
        options=options, model=PartyMixture(list(data.features), f["weights"], f["block"]),
        resp=final.responsibilities, labels=final.labels, lower_bound=f["lower_bound"],
        lower_bounds=f["lower_bounds"], all_lower_bounds=f["all_lower_bounds"], n_iter=f["n_iter"],
        converged=f["converged"], best_init=f["best_init"], log_likelihood=f["log_likelihood"],
        bic=f["bic"], bic_by_k={k: fits[k]["bic"] for k in fits}, host_features=sum(d_hosts),
        initial=f["initial"], iteration_seconds=fit.iteration_seconds,
        kmeans_iterations=f["kmeans_iterations"], host_columns=dict(zip(link.peers, d_hosts, strict=True)))
    if data.y is not None:
        result.ari = adjusted_rand_index(data.y, result.labels)
        result.accuracy, _ = best_permutation_accuracy(data.y, result.labels, result.k)
    write_guest_outputs(ctx, data, result)
    ctx.state["gmm"] = result
    console().print(summary_table(result, data))
    return result


# --------------------------------------------------------------------------
# host


class _HostFit:
    """The host's side: follows the guest's steps, keeps its block's parameters per (K, init)."""

    def __init__(self, ctx: PartyContext, link: _Link, data: PartyData, options: GmmOptions) -> None:
        self.ctx, self.link, self.data, self.opts = ctx, link, data, options
        self.X = np.asarray(data.X, dtype=np.float64)
        self.n = data.n_rows
        self.features = {s: statistic_features(self.X, options.covariance, s)  # type: ignore[arg-type]
                         for s in ("means", "moments")}
        self.packed_statistics = features_fit(self.X)  # declared at setup (a public bound, not the values)
        self.centers: dict[tuple[int, int], np.ndarray] = {}
        self.params: dict[tuple[int, int], tuple[np.ndarray, GaussianBlock]] = {}
        self.initial: dict[tuple[int, int], tuple[np.ndarray, GaussianBlock]] = {}
        self.failed: str | None = None
        resume = ctx.state.pop("gmm_resume", None)  # a resumed job: the blocks kept at an EM round
        if resume is not None:
            for name, table in (("params", self.params), ("initial", self.initial)):
                for k, init, w, b in resume[name]:
                    table[(int(k), int(init))] = (np.asarray(w, dtype=np.float64), GaussianBlock.from_covariances(
                        b["covariance"], np.asarray(b["means"], dtype=np.float64),
                        np.asarray(b["covariances"], dtype=np.float64), party="host", features=data.features))

    def resume_state(self) -> dict[str, Any]:
        """What a resumed job needs of the host's fit: every (K, init)'s current and initial block."""
        return {"gmm": {name: [(k, init, w, b.to_json()) for (k, init), (w, b) in table.items()]
                        for name, table in (("params", self.params), ("initial", self.initial))}}

    def m_step(self, r: int, k: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The host's part of an encrypted M-step; returns (nk, its statistics gamma^T F, which kind).

        Errors after the masked statistics are sent surface at the next step (`failed`).
        """
        msg = self.link.recv("responsibilities", r)
        self.link.peer_waits = ("masked_statistics", r)
        nk = _expect_array(msg, "nk", (k,))
        statistics = msg.get("statistics")
        if statistics not in ("means", "moments"):
            raise GmmProtocolError(f"unknown statistics {statistics!r}")
        enc = msg.get("responsibilities")
        sent = enc.shape[0] if isinstance(enc, EncryptedArray) and enc.shape[0] in (k - 1, k) else k - 1
        enc = _expect_encrypted(msg, "responsibilities", self.ctx.peer_key, (sent, self.n))
        F = self.features[statistics]
        enc_stats = host_encrypted_statistics(enc, F, _precision(self.ctx), statistic_feature_bound(statistics)
                                              if self.packed_statistics else None)
        masked, mask = host_mask_statistics(enc_stats)
        self.link.send("masked_statistics", {"statistics": masked}, r)
        self.link.peer_waits = ("", None)  # the guest's next wait is the next step's reply
        got = self.link.recv("decrypted_masked_statistics", r)
        if not isinstance(got.get("residues"), bytes):
            raise GmmProtocolError("field 'residues' is missing")
        residues = unpack_residues(got["residues"], masked.shape, self.ctx.peer_key)
        stats = host_unmask_statistics(residues, mask, enc_stats.precision, self.ctx.peer_key, F, k)
        return nk, stats, statistics

    def moments_to_block(self, k: int, init: int, nk: np.ndarray, stats: np.ndarray, initial: bool) -> None:
        s1, s2 = split_statistics(stats, self.X.shape[1], self.opts.covariance)
        assert s2 is not None
        means, covs = block_parameters(nk, s1, s2, self.opts.covariance, self.opts.reg_covar)
        block = GaussianBlock.from_covariances(self.opts.covariance, means, covs, party="host",
                                               features=self.data.features)
        weights = mixture_weights(nk, self.n, initial=initial)
        self.params[(k, init)] = (weights, block)
        if initial:
            self.initial[(k, init)] = (weights, block)

    def serve(self) -> tuple[int, int]:
        """Follow steps until "select"; returns the chosen (K, init)."""
        with progress("EM (host)", None) as advance:
            while True:
                r = self.ctx.next_round()
                self.link.peer_waits = ("", None)
                step = self.link.recv("step", r)
                kind, k, init, it = step.get("step"), int(step["k"]), int(step["init"]), int(step["iteration"])
                if k not in self.opts.candidates or not 0 <= init < self.opts.n_init:
                    raise GmmProtocolError(f"step {kind!r} for K={k}, init {init} is outside the settings")
                reply = {"kmeans": "distances" if it > 0 else "ack", "init": "ack", "em": "log_density",
                         "final": "log_density", "select": "ack"}.get(kind)
                if reply is None:
                    raise GmmProtocolError(f"unknown step {kind!r}")
                self.link.peer_waits = (reply, r)
                if self.failed:
                    raise TrainingError(self.failed)
                if reply == "ack":
                    self.link.send("ack", {"ok": True}, r)
                elif kind == "kmeans":
                    dist = host_relative_distances(block_squared_distances(self.X, self.centers[(k, init)]))
                    self.link.send("distances", {"distances": dist}, r)
                else:
                    weights, block = self._current(k, init)
                    self.link.send("log_density", _log_density_message(block, self.X), r)
                if kind == "select":
                    self.ctx.commit_round(r, PHASE, _block_params("select", k, init, it, *self._current(k, init)))
                    return k, init
                if kind == "final":
                    self.ctx.commit_round(r, PHASE, _block_params("final", k, init, it, *self._current(k, init)))
                    continue
                try:
                    nk, stats, statistics = self.m_step(r, k)
                    if statistics == "means":
                        s1, _ = split_statistics(stats, self.X.shape[1], self.opts.covariance, "means")
                        centers = kmeans_centers(nk, s1, self.centers.get((k, init)) if it > 0 else None)
                        self.centers[(k, init)] = centers
                        params = _block_params(kind, k, init, it, None, centers=centers)
                    else:
                        self.moments_to_block(k, init, nk, stats, initial=kind in ("init", "kmeans"))
                        params = _block_params(kind, k, init, it, *self._current(k, init))
                except PeerAborted:
                    raise
                except (VflError, NodeError) as exc:
                    if self.link.peer_waits[0]:
                        raise
                    self.failed = str(exc)  # the guest waits for the next step's reply: report it there
                    continue
                self.ctx.commit_round(r, PHASE, params, resume=self.resume_state()
                                      if kind == "em" and k == self.opts.candidates[0] else None)
                if kind == "em":
                    advance()

    def _current(self, k: int, init: int) -> tuple[np.ndarray, GaussianBlock]:
        if (k, init) not in self.params:
            raise GmmProtocolError(f"no parameters yet for K={k}, init {init}")
        return self.params[(k, init)]


def run_host(party: PartyContext | Session) -> HostGmmResult:
    """A host's FL-EM-GMM: checks the settings and its columns, then follows the guest's steps
    (the same with several hosts: it sees only the guest's messages)."""
    session = as_session(party)
    ctx = session.ctx
    data = _own_data(ctx)
    link = _Link(session)
    r = ctx.next_round()
    setup = link.recv("setup", r)
    link.peer_waits = ("ready", r)
    try:
        own = options_from_config(ctx.config)
        theirs = GmmOptions.from_json(setup.get("options"))  # type: ignore[arg-type]
        if theirs != own:
            diff = [f"{k}: guest {v!r}, host {own.to_json()[k]!r}" for k, v in theirs.to_json().items()
                    if own.to_json()[k] != v]
            raise GmmProtocolError("the guest's [gmm] settings differ from the host's (" + "; ".join(diff) + ")")
        if setup.get("n_rows") != data.n_rows:
            raise GmmProtocolError(f"the guest has {setup.get('n_rows')} aligned rows, the host {data.n_rows}")
        for k in own.candidates:
            check_rows_for_k(data.n_rows, k)
        check_block(data.X, data.features, "host")
        if ctx.peer_key is None:
            raise GmmProtocolError("the host does not know the guest's public key")
    except (VflError, NodeError) as exc:
        link.abort(str(exc))
        raise
    link.send("ready", {"n_features": len(data.features), "packed_statistics": features_fit(data.X)}, r)
    ctx.commit_round(r, PHASE, {"phase": PHASE, "step": "setup", "options": own.to_json(),
                                "features": data.features})
    fit = _HostFit(ctx, link, data, own)
    try:
        k, init = fit.serve()
    except (VflError, NodeError) as exc:
        if not isinstance(exc, PeerAborted):
            link.abort(str(exc))
        raise
    weights, block = fit.params[(k, init)]
    result = HostGmmResult(PartyMixture(list(data.features), weights, block),
                           [fit.initial[(k, i)] for i in range(own.n_init)])
    ctx.rundir.write_json("model.json", model_json(ctx, result.model))
    ctx.state["gmm"] = result
    return result


# --------------------------------------------------------------------------
# inference: assign new aligned rows to clusters


def model_json(ctx: PartyContext, model: PartyMixture) -> dict[str, Any]:
    """model.json: DESIGN.md's fields, plus the party's role and the job id (which ties both parts together).

    No preprocessing: FL-EM-GMM fits the raw columns, so new rows need only the same columns.
    """
    return {**model.to_json(), "role": ctx.role, "job_id": ctx.job_id}


def load_model(path: str | Path) -> PartyMixture:
    """Read a party's model.json (a file or the run directory holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.json"
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: no such model file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: not JSON ({exc})") from None
    return PartyMixture.from_json(obj, str(p))


def _check_model_columns(model: PartyMixture, data: PartyData, party: str) -> np.ndarray:
    if list(data.features) != list(model.features):
        missing = [f for f in model.features if f not in data.features]
        if missing:
            raise DataError(f"{party} data has no column {missing[0]!r} that its model needs")
        data = data.select(model.features)
    return np.asarray(data.X, dtype=np.float64)


def run_predict_guest(party: PartyContext | Session, model: PartyMixture) -> tuple[np.ndarray, np.ndarray]:
    """Assign the guest's aligned rows to clusters: (responsibilities (N, K), labels).

    The host sends its block's log-densities of the new rows less each row's level
    (as in training); the guest adds its own and the log weights.
    Writes predictions.csv (type "predict").
    """
    session = as_session(party)
    ctx = session.ctx
    data = _own_data(ctx)
    X = _check_model_columns(model, data, "guest")
    link = _Link(session)
    r = ctx.next_round()
    link.send("predict", {"n_rows": data.n_rows, "k": model.k}, r)
    msgs = link.recv_all("log_density", r)
    hosts = [(_expect_array(m, "log_density", (data.n_rows, model.k)), _expect_number(m, "level_total"))
             for m in msgs]
    e = (guest_combine_log_densities([model.block.log_density(X), hosts[0][0]], model.weights, hosts[0][1])
         if len(hosts) == 1 else guest_combine_host_log_densities(model.block.log_density(X), hosts, model.weights))
    ctx.state["gmm_predict_log_likelihood"] = e.mean_log_likelihood
    text = predictions_csv(data, e.responsibilities, e.labels, "predict")
    ctx.commit_round(r, PHASE, {"phase": PHASE, "step": "predict", "rows": data.n_rows,
                                "model": model.to_json(),
                                "predictions_sha256": hashlib.sha256(text.encode()).hexdigest()})
    ctx.rundir.write_text("predictions.csv", text)
    return e.responsibilities, e.labels


def run_predict_host(party: PartyContext | Session, model: PartyMixture) -> None:
    """The host's side of cluster assignment: its block's relative log-densities of its aligned rows."""
    session = as_session(party)
    ctx = session.ctx
    data = _own_data(ctx)
    link = _Link(session)
    r = ctx.next_round()
    req = link.recv("predict", r)
    link.peer_waits = ("log_density", r)
    try:
        if req.get("n_rows") != data.n_rows or req.get("k") != model.k:
            raise GmmProtocolError(f"the guest asks for {req.get('n_rows')} rows and K={req.get('k')}; "
                                   f"the host has {data.n_rows} rows and a model with K={model.k}")
        X = _check_model_columns(model, data, "host")
    except (VflError, NodeError) as exc:
        link.abort(str(exc))
        raise
    try:
        reply = _log_density_message(model.block, X)
    except VflError as exc:
        link.abort(str(exc))
        raise
    link.send("log_density", reply, r)
    ctx.commit_round(r, PHASE, {"phase": PHASE, "step": "predict", "rows": data.n_rows, "model": model.to_json()})


# --------------------------------------------------------------------------
# outputs


def predictions_csv(data: PartyData, resp: np.ndarray, labels: np.ndarray, kind: str) -> str:
    """The seed paper's Table 2 layout: id, label, predict_result (cluster), predict_score
    (its responsibility), predict_detail (all responsibilities as JSON), type."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label", "predict_result", "predict_score", "predict_detail", "type"])
    for i, rid in enumerate(data.ids.tolist()):
        detail = json.dumps({str(j): float(v) for j, v in enumerate(resp[i])}, separators=(",", ":"))
        label = "" if data.y is None else int(data.y[i])
        w.writerow([rid, label, int(labels[i]), repr(float(resp[i, labels[i]])), detail, kind])
    return buf.getvalue()


def metrics_json(result: GuestGmmResult, data: PartyData) -> dict[str, Any]:
    """metrics.json for a GMM fit (DESIGN.md: log-likelihood, BIC, iterations, ARI where labels exist)."""
    sizes = np.bincount(result.labels, minlength=result.k)
    out: dict[str, Any] = {
        "algorithm": "gmm", "k": result.k, "covariance": result.options.covariance,
        "rows": data.n_rows, "guest_features": len(data.features), "host_features": result.host_features,
        "log_likelihood": result.log_likelihood, "lower_bound": result.lower_bound,
        "log_likelihood_per_iteration": result.lower_bounds,
        "log_likelihood_per_iteration_by_init": result.all_lower_bounds,
        "iterations": result.n_iter, "converged": result.converged,
        "n_init": result.options.n_init, "best_init": result.best_init, "init": result.options.init,
        "bic": result.bic, "bic_by_k": {str(k): v for k, v in sorted(result.bic_by_k.items())},
        "weights": result.model.weights.tolist(), "cluster_sizes": sizes.tolist(),
        "communication": COMMUNICATION_FILE,  # bytes, messages and seconds per phase/round (nodes.communication)
    }
    if len(result.host_columns) > 1:  # several hosts: the columns of each
        out["hosts"] = dict(result.host_columns)
    if data.y is not None:
        values, tab = contingency(data.y, result.labels, result.k)
        out["adjusted_rand_index"] = result.ari
        out["best_permutation_accuracy"] = result.accuracy
        out["clusters_by_label"] = {str(c): {str(int(v)): int(tab[c, j]) for j, v in enumerate(values)}
                                    for c in range(result.k)}
    return out


def write_guest_outputs(ctx: PartyContext, data: PartyData, result: GuestGmmResult) -> None:
    """model.json, predictions.csv (the clusters assignment distribution), metrics.json, plots."""
    from nodes import plots

    metrics = metrics_json(result, data)
    for v in (result.log_likelihood, result.bic, *result.model.weights.tolist()):
        if not math.isfinite(v):
            raise TrainingError("the fit produced a non-finite result; nothing written")
    ctx.rundir.write_json("model.json", model_json(ctx, result.model))
    ctx.rundir.write_text("predictions.csv", predictions_csv(data, result.resp, result.labels, "train"))
    ctx.rundir.write_json("metrics.json", metrics)
    plots.later("gmm", "plot_log_likelihood", result.all_lower_bounds, result.best_init,
                ctx.rundir.plot_path("gmm_log_likelihood.png"))
    plots.later("gmm", "plot_clusters_2d", data.X, result.labels, data.y, ctx.rundir.plot_path("gmm_clusters.png"))
    if len(result.bic_by_k) > 1:
        plots.later("gmm", "plot_bic", result.bic_by_k, ctx.rundir.plot_path("gmm_bic.png"))


def summary_table(result: GuestGmmResult, data: PartyData) -> Any:
    """A printed table: one row per cluster, and the fit's totals in the title."""
    sizes = np.bincount(result.labels, minlength=result.k)
    extra = ""
    if result.ari is not None:
        extra = f", ARI {result.ari:.4f}, accuracy {result.accuracy:.4f}"
    title = (f"FL-EM-GMM: K={result.k} ({result.options.covariance}), {result.n_iter} iterations"
             f"{' (converged)' if result.converged else ''}, log-likelihood {result.log_likelihood:.6g}, "
             f"BIC {result.bic:.6g}{extra}")
    rows: list[list[Any]] = []
    labelled = data.y is not None
    if labelled:
        values, tab = contingency(data.y, result.labels, result.k)
    for c in range(result.k):
        row: list[Any] = [c, float(result.model.weights[c]), int(sizes[c])]
        if labelled:
            row.append(", ".join(f"{int(v)}: {int(tab[c, j])}" for j, v in enumerate(values)))
        rows.append(row)
    cols = ["cluster", "weight", "rows"] + (["rows by label"] if labelled else [])
    return table(title, cols, rows)


# -- predict steps (nodes.algorithms) -----------------------------------------------


def load_predict_model(doc: dict[str, Any], f: Path, role: str) -> tuple[PartyMixture, None]:
    """This party's mixture block from model.json (`doc`, read from `f`); GMM has no preprocessing."""
    return PartyMixture.from_json(doc, str(f)), None


def predict_step_guest(party: PartyContext | Session, pm: Any) -> int:
    """Phase `predict` at the guest (a nodes.phases.predict.PartyModel); the rows scored."""
    resp, labels = run_predict_guest(party, pm.model)
    _gmm_outputs(as_session(party).ctx, pm, resp, labels)
    return len(labels)


def predict_step_host(party: PartyContext | Session, pm: Any) -> int:
    """Phase `predict` at a host; the rows scored."""
    run_predict_host(party, pm.model)
    return _own_data(as_session(party).ctx).n_rows


def _gmm_outputs(ctx: PartyContext, pm: Any, resp: np.ndarray, labels: np.ndarray) -> None:
    """metrics.json and the 2-D cluster plot of a GMM prediction job."""
    from nodes.plots.gmm import plot_clusters_2d
    from vfl.gmm import adjusted_rand_index, best_permutation_accuracy, contingency

    data = ctx.data
    assert data is not None
    k = pm.model.k
    ll = ctx.state.get("gmm_predict_log_likelihood")
    sizes = np.bincount(labels, minlength=k)
    metrics: dict[str, Any] = {"algorithm": "gmm", "k": k, "rows": data.n_rows,
                               "log_likelihood": ll, "cluster_sizes": sizes.tolist(),
                               "training_job": pm.training_job}
    rows = [["rows", data.n_rows], ["clusters (rows each)", ", ".join(map(str, sizes.tolist()))],
            ["mean log-likelihood", f"{ll:.6g}" if isinstance(ll, float) else "-"]]
    if data.y is not None:
        values, tab = contingency(data.y, labels, k)
        metrics["adjusted_rand_index"] = adjusted_rand_index(data.y, labels)
        metrics["best_permutation_accuracy"], _ = best_permutation_accuracy(data.y, labels, k)
        metrics["clusters_by_label"] = {str(c): {str(int(v)): int(tab[c, j]) for j, v in enumerate(values)}
                                        for c in range(k)}
        rows += [["ARI", f"{metrics['adjusted_rand_index']:.4f}"],
                 ["best-permutation accuracy", f"{metrics['best_permutation_accuracy']:.4f}"]]
    if not (np.all(np.isfinite(resp)) and isinstance(ll, float) and np.isfinite(ll)):
        raise VflError("predict: non-finite responsibilities or log-likelihood; no metrics written")
    ctx.rundir.write_json("metrics.json", metrics)
    if data.X.shape[0] >= 2 and data.X.shape[1] >= 1:
        X = data.select(list(pm.model.features)).X
        plot_clusters_2d(X, labels, data.y, ctx.rundir.plot_path("gmm_predict_clusters.png"))
    console().print(table(f"predict: FL-EM-GMM, K={k}", ["item", "value"], rows))
