"""Vertical logistic regression with one guest and N hosts: the extra steps (docs/protocols/lr.md, "N hosts").

The score splits as u = u_g + u_1 + ... + u_N, so the residual d = c + 1/4 sum_k u_k with
c = 1/4 u_g - 1/2 y' (the guest's) needs every host's scores. No party holds another's key,
and no ciphertext under the guest's key that carries a host's data ever reaches the guest,
so the sum is never formed in one place; each term goes where it is needed:

- the guest's gradient X_g^T d = sum_k X_g^T (1/4 u_k [+ c for k = 1]): one product per host
  on Enc_k(u_k) (`guest_host_residuals_encrypted`). So that the guest learns only the sum, host k
  sends Enc_{k+1}(-sigma_k) (`host_gradient_share_masks`, cyclically), which the guest adds into
  host k+1's product before masking it (`guest_gradient_share_masked`); host k adds sigma_k to its
  decryption (`host_add_gradient_share`), and the sigma cancel in the exact integer sum
  (`guest_gradient_from_shares`);
- host i's gradient X_i^T d = X_i^T (c + 1/4 u_i) (the two-party `host_gradient_masked` on the
  guest's Enc_g(c)) + 1/4 sum_{j != i} X_i^T u_j: host i computes each cross term on host j's
  Enc_j(u_j) (relayed by the guest), masked with statistically hiding slot masks that are exact
  integers (`host_cross_gradient_masked`); host j decrypts it (masked values); the guest adds
  those integers to host i's decrypted own part and its label noise
  (`guest_host_gradient_residues`); host i removes all its masks (`host_unmask_gradient`) and
  learns only X_i^T d + noise, as in a two-party job;
- the loss: sum l = [guest's own terms] + sum_k [c.u_k + 1/8 |u_k|^2 + m R(w_k)]
  + 1/4 sum_{j<k} u_j.u_k. Host j computes the pair term on Enc_k(u_k) plus a mask rho_jk
  (`host_pair_loss_encrypted`) that it has already subtracted from its own loss share
  (`host_partial_scores_masked`); the guest adds the pair terms under key k into host k's loss
  part (`guest_loss_part_masked`), host k decrypts it masked, and the guest sums the exact
  integers (`loss_part_integer`, `guest_batch_loss`): every part is masked, only the batch loss
  is learned.

With one host every function here reduces to the two-party step (the driver
`fit_in_process` then calls exactly the two-party functions). Row packing
(`vfl.lr.rowpack`) is for two-party jobs only: with N >= 2 hosts every batch takes the
ordinary path, and the exact-integer masks need every party's columns within COLUMN_BOUND
(standardized columns are).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vfl.data import check_binary_labels
from vfl.errors import PaillierError, TrainingError
from vfl.lr.model import LrPartModel
from vfl.lr.options import LrOptions
from vfl.lr.privacy import LabelNoise, host_norm_bounds
from vfl.lr.protocol import (
    COLUMN_BOUND,
    LOSS_PRECISION_BITS,
    MATRIX_PRECISION_BITS,
    SCORE_BOUND,
    HostScores,
    Masked,
    check_scores,
    columns_fit,
    decrypt_masked,
    gradient_precision,
    gradient_product_bound,
    guest_gradient_masked,
    guest_loss_masked,
    guest_residual_offsets_encrypted,
    guest_residuals_encrypted,
    host_gradient_masked,
    host_partial_scores_encrypted,
    mask_for_owner,
    mask_packed_for_owner,
    unmask_values,
)
from vfl.lr.reference import check_guest_side, check_host_side
from vfl.lr.schedule import (
    TrainingMonitor,
    epoch_batches,
    learning_rate,
    penalty_value,
    update_weights,
    validation_rows,
)
from vfl.lr.setup import PreparedParty, prepare_party
from vfl.lr.taylor import LOG2, signed_labels
from vfl.paillier import DEFAULT_PRECISION_BITS, EncryptedArray, PrivateKey, PublicKey
from vfl.paillier.packing import (
    MASK_HEADROOM_BITS,
    STAT_BITS,
    check_packed_layout,
    public_int_bound,
    slot_bits_for,
    slots_for,
)

# A public bound on |any loss part| (real units, per row) that the pair masks must hide:
# |c.u_k|, |1/8 u_k^2|, |1/4 u_j.u_k| <= SCORE_BOUND^2 per row, the penalty a few more bits.
_LOSS_PART_BOUND_PER_ROW = 2.0 ** 44


def loss_precision(precision: int = DEFAULT_PRECISION_BITS) -> int:
    """Fixed-point precision of every loss part: the scores' precision plus c's (LOSS_PRECISION_BITS)."""
    return precision + min(precision, LOSS_PRECISION_BITS)


def pair_mask_bits(rows: int, precision: int = DEFAULT_PRECISION_BITS) -> int:
    """Width of a pair mask rho: the public loss-part bound of a `rows`-row batch plus STAT_BITS."""
    return public_int_bound(_LOSS_PART_BOUND_PER_ROW * max(rows, 1), loss_precision(precision)).bit_length() \
        + STAT_BITS


def pair_partners(host: int, n_hosts: int) -> list[int]:
    """The hosts (0-based) whose scores `host` multiplies its own by in the loss: every later one."""
    return list(range(host + 1, n_hosts))


def draw_pair_masks(host: int, n_hosts: int, rows: int,
                    precision: int = DEFAULT_PRECISION_BITS) -> dict[int, int]:
    """Host `host`'s fresh masks rho (OS CSPRNG), one per later host, for one batch's loss."""
    bits = pair_mask_bits(rows, precision)
    return {k: secrets.randbits(bits) for k in pair_partners(host, n_hosts)}


# -- host steps -------------------------------------------------------------------


def host_partial_scores_masked(pk_k: PublicKey, X_k: np.ndarray, w_k: np.ndarray, penalty_sum: float,
                               pair_masks: dict[int, int],
                               precision: int = DEFAULT_PRECISION_BITS) -> HostScores:
    """Step 1 (host k): Enc_k(u_k) and its loss share Enc_k(1/8 |u_k|^2 + m R(w_k) - sum rho) at
    `loss_precision`, the rho being its pair masks (`draw_pair_masks`). No masks: the two-party step."""
    if not pair_masks:
        return host_partial_scores_encrypted(pk_k, X_k, w_k, penalty_sum, precision)
    u = X_k @ w_k
    check_scores(u, "host")
    share = pk_k.encrypt(np.array([0.125 * float(u @ u) + penalty_sum]), precision=loss_precision(precision))
    share = share.add_residues(np.array([-sum(pair_masks.values())], dtype=object))
    return HostScores(pk_k.encrypt(u, precision=precision), share)


def host_cross_gradient_masked(enc_u_j: EncryptedArray, X_i: np.ndarray,
                               precision: int = DEFAULT_PRECISION_BITS) -> Masked:
    """Step 2 (host i): Enc_j(1/4 X_i^T u_j + r) on host j's scores, for host j to decrypt.

    Packed with statistically hiding slot masks r (exact non-negative integers: the
    decrypted values are integers that the guest adds to host i's gradient under its own key)
    in the public `gradient_layout`, and re-randomized. Needs host i's columns within COLUMN_BOUND.
    """
    if enc_u_j.ndim != 1 or enc_u_j.shape[0] != X_i.shape[0]:
        raise PaillierError(f"another host's scores of shape {enc_u_j.shape} do not match a batch of "
                            f"{X_i.shape[0]} rows")
    if not columns_fit(X_i):
        raise PaillierError(f"with several hosts every host's columns must stay within {COLUMN_BOUND:.0f} "
                            "in magnitude (set [lr] standardize)")
    enc = enc_u_j.mul(np.float64(0.25), precision=2).rmatmul(X_i.T, precision=min(precision, MATRIX_PRECISION_BITS))
    if enc.precision != gradient_precision(precision):
        raise PaillierError(f"another host's scores at precision {enc_u_j.precision}, expected {precision}")
    return mask_packed_for_owner(enc, gradient_product_bound(X_i.shape[0], precision))


def host_pair_loss_encrypted(enc_u_k: EncryptedArray, u_j: np.ndarray, mask: int,
                             precision: int = DEFAULT_PRECISION_BITS) -> EncryptedArray:
    """Step 2 (host j < k): Enc_k(1/4 u_j.u_k + rho_jk) at `loss_precision`, re-randomized.

    rho_jk is the mask host j subtracted from its own loss share, so it cancels in the batch loss.
    """
    u = np.asarray(u_j, dtype=np.float64)
    if enc_u_k.ndim != 1 or enc_u_k.shape != u.shape:
        raise PaillierError(f"another host's scores of shape {enc_u_k.shape} do not match {u.shape[0]} rows")
    check_scores(u, "host")
    enc = enc_u_k.rmatmul((0.25 * u)[None, :], precision=min(precision, LOSS_PRECISION_BITS))
    return enc.add_residues(np.array([mask], dtype=object)).rerandomize()


def host_unmask_gradient(residues: Sequence[int], own: Masked, cross: Sequence[Masked]) -> np.ndarray:
    """Step 5 (host i): its gradient sum X_i^T d (+ the guest's noise) from the residues the guest
    returned: removes the masks of its own part and of every cross term."""
    n = own.enc.public_key.n
    extra = np.zeros(len(residues), dtype=object)
    for m in cross:
        flat = np.asarray(m.mask, dtype=object).ravel()
        if flat.size != len(residues):
            raise PaillierError(f"a cross-term mask of {flat.size} values for {len(residues)} residues")
        extra = extra + flat
    corrected = [(int(v) - int(e)) % n for v, e in zip(residues, extra.tolist(), strict=True)]
    return unmask_values(corrected, own)


def next_host(host: int, n_hosts: int) -> int:
    """The host (0-based) under whose key host `host` sends its gradient share mask: the next, cyclically."""
    return (host + 1) % n_hosts


def gradient_share_bits(rows: int, precision: int = DEFAULT_PRECISION_BITS) -> int:
    """Width of a gradient share mask sigma: the public bound of a gradient entry plus STAT_BITS."""
    return gradient_product_bound(rows, precision).bit_length() + STAT_BITS


def host_gradient_share_masks(pk_next: PublicKey, columns: int, rows: int,
                              precision: int = DEFAULT_PRECISION_BITS) -> tuple[EncryptedArray, np.ndarray]:
    """Step 1 (host k, N >= 2): fresh masks sigma_k (one per guest column, OS CSPRNG) and
    Enc_{k+1}(-sigma_k) at the guest gradient's precision, for the guest to add into host k+1's part."""
    bits = gradient_share_bits(rows, precision)
    sigma = np.empty(columns, dtype=object)
    sigma[:] = [secrets.randbits(bits) for _ in range(columns)]
    enc = pk_next.encrypt(np.zeros(columns), precision=gradient_precision(precision))
    return enc.add_residues(-sigma), sigma


def host_add_gradient_share(residues: Sequence[int], sigma: np.ndarray, key: PublicKey) -> list[int]:
    """Step 4 (host k, N >= 2): its decryption of the guest's gradient part plus its own sigma_k, mod n_k."""
    if len(residues) != len(sigma):
        raise PaillierError(f"{len(residues)} decrypted values for {len(sigma)} share masks")
    return [(int(r) + int(m)) % key.n for r, m in zip(residues, sigma.tolist(), strict=True)]


def gradient_share_layout(key: PublicKey, rows: int, precision: int = DEFAULT_PRECISION_BITS) -> tuple[int, int]:
    """(slot bits, declared bound after masking) of a guest gradient part carrying a share mask:
    public values only, like `vfl.lr.protocol.gradient_layout` with room for -sigma."""
    bound = gradient_product_bound(rows, precision) + (1 << gradient_share_bits(rows, precision))
    slot_bits = slot_bits_for(bound, MASK_HEADROOM_BITS)
    slots_for(key, slot_bits)
    return slot_bits, bound + (1 << (bound.bit_length() + STAT_BITS))


def check_gradient_share(enc: object, columns: int, key: PublicKey, rows: int,
                         precision: int = DEFAULT_PRECISION_BITS) -> EncryptedArray:
    """Host k's check of the guest's gradient part before decrypting it: the agreed packed layout."""
    slot_bits, bound = gradient_share_layout(key, rows, precision)
    return check_packed_layout(enc, key, (columns,), slot_bits, gradient_precision(precision), bound,
                               what="a masked gradient part")


# -- guest steps ------------------------------------------------------------------


def guest_host_residuals_encrypted(enc_u_k: EncryptedArray, u_g: np.ndarray, y_pm: np.ndarray,
                                   with_offsets: bool) -> EncryptedArray:
    """Step 3 (guest), per host: Enc_k(1/4 u_k + c) for the first host (the two-party step),
    Enc_k(1/4 u_k) for the others, so that the guest's masked gradients add up to X_g^T d."""
    if with_offsets:
        return guest_residuals_encrypted(enc_u_k, u_g, y_pm)
    if enc_u_k.shape != np.shape(u_g):
        raise PaillierError(f"a host sent {enc_u_k.shape[0]} partial scores for a batch of {np.shape(u_g)[0]}")
    return enc_u_k.mul(np.float64(0.25), precision=2)


def guest_gradient_share_masked(enc_d_k: EncryptedArray, X_g: np.ndarray, share: EncryptedArray,
                                precision: int = DEFAULT_PRECISION_BITS) -> Masked:
    """Step 3 (guest, N >= 2), per host k: Enc_k(X_g^T d_k - sigma_{k-1} + r), d_k its residual part,
    sigma_{k-1} the previous host's share mask (received under host k's key). Packed in the public
    `gradient_share_layout`, every slot masked statistically, re-randomized; needs the guest's
    columns within COLUMN_BOUND (standardized)."""
    if not columns_fit(X_g):
        raise PaillierError(f"with several hosts the guest's columns must stay within {COLUMN_BOUND:.0f} "
                            "in magnitude (set [lr] standardize)")
    enc = enc_d_k.rmatmul(X_g.T, precision=min(precision, MATRIX_PRECISION_BITS))
    if share.public_key != enc.public_key or share.shape != enc.shape or share.precision != enc.precision:
        raise PaillierError("a gradient share mask is not under this host's key at the gradient's shape and precision")
    bound = gradient_product_bound(X_g.shape[0], precision) + (1 << gradient_share_bits(X_g.shape[0], precision))
    return mask_packed_for_owner(enc + share, bound)


def guest_gradient_from_shares(residues: Sequence[Sequence[int]], parts: Sequence[Masked]) -> np.ndarray:
    """Step 5 (guest, N >= 2): its gradient sum X_g^T d from every host's decrypted part (own masks
    removed; exact signed integers whose share masks cancel), decoded once."""
    total: np.ndarray | None = None
    precision = parts[0].precision
    for res, part in zip(residues, parts, strict=True):
        n = part.enc.public_key.n
        mask = np.asarray(part.mask, dtype=object).ravel().tolist()
        if len(res) != len(mask) or part.precision != precision:
            raise PaillierError(f"{len(res)} residues for a gradient part of {len(mask)} values")
        vals = [(int(a) - int(b)) % n for a, b in zip(res, mask, strict=True)]
        ints = np.asarray([v - n if v > n // 2 else v for v in vals], dtype=object)
        total = ints if total is None else total + ints
    assert total is not None
    return np.asarray([np.ldexp(float(int(v)), -precision) for v in total.tolist()], dtype=np.float64)


def guest_loss_part_masked(enc_u_k: EncryptedArray, u_g: np.ndarray, y_pm: np.ndarray,
                           share_k: EncryptedArray, pair_terms: Sequence[EncryptedArray],
                           guest_penalty_sum: float, with_own: bool,
                           precision: int = DEFAULT_PRECISION_BITS) -> Masked:
    """Step 3 (guest), per host k: Enc_k(c.u_k + share_k + sum_{j<k} pair_jk [+ own terms]) + a
    uniform mask mod n_k, for host k to decrypt. The first host's part carries the guest's own
    terms (log 2 - 1/2 y'u_g + 1/8 u_g^2 summed, and its penalty), as in the two-party step."""
    if with_own and not pair_terms:
        return guest_loss_masked(enc_u_k, u_g, y_pm, share_k, guest_penalty_sum, precision)
    c = 0.25 * u_g - 0.5 * y_pm
    enc = enc_u_k.rmatmul(c[None, :], precision=min(precision, LOSS_PRECISION_BITS)) + share_k
    if with_own:
        own = float(np.sum(LOG2 - 0.5 * y_pm * u_g + 0.125 * u_g * u_g)) + guest_penalty_sum
        enc = enc + np.array([own])
    for term in pair_terms:
        if term.public_key != enc.public_key or term.shape != (1,):
            raise PaillierError("a pair loss term is not one ciphertext under this host's key")
        enc = enc + term
    return mask_for_owner(enc)


def loss_part_integer(residues: Sequence[int], masked: Masked) -> int:
    """The guest's own mask removed from a decrypted loss part: the exact signed integer (at the
    part's precision), to be summed with the other parts before decoding (they carry pair masks)."""
    if len(residues) != 1:
        raise PaillierError(f"expected one loss residue, got {len(residues)}")
    n = masked.enc.public_key.n
    v = (int(residues[0]) - int(np.asarray(masked.mask, dtype=object).ravel()[0])) % n
    return v - n if v > n // 2 else v


def guest_batch_loss(parts: Sequence[int], precision: int) -> float:
    """Sum of the hosts' loss parts (exact integers at `precision` bits): the pair masks cancel."""
    return float(np.ldexp(float(sum(int(p) for p in parts)), -precision)) if parts else 0.0


def centered(residues: Sequence[int], key: PublicKey) -> list[int]:
    """Residues mod n as signed integers in (-n/2, n/2] (a masked cross term's exact value)."""
    n = key.n
    return [int(v) - n if int(v) > n // 2 else int(v) for v in residues]


def guest_host_gradient_residues(own_residues: Sequence[int], cross: Sequence[Sequence[int]],
                                 noise: Sequence[int] | None, key: PublicKey) -> list[int]:
    """Step 4 (guest), per host i: its decrypted own part + the other hosts' decryptions of its
    cross terms (signed integers, `centered`) + the label noise, mod the guest's n."""
    n = key.n
    out = [int(v) for v in own_residues]
    for part in cross:
        if len(part) != len(out):
            raise PaillierError(f"a cross term of {len(part)} values for a gradient of {len(out)}")
        out = [a + int(b) for a, b in zip(out, part, strict=True)]
    if noise is not None:
        out = [a + int(e) for a, e in zip(out, noise, strict=True)]
    return [v % n for v in out]


# -- the in-process driver (tests, the Python API) ---------------------------------


@dataclass
class MultiHostFit:
    """What `fit_in_process` returns: each party's model, the guest's losses and label noise."""

    guest: LrPartModel
    hosts: list[LrPartModel]
    losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    host_noise: list[list[np.ndarray]] = field(default_factory=list)  # per host, per batch (the guest's secret)
    epochs_run: int = 0
    stop_reason: str = ""


@dataclass
class _Host:
    party: PreparedParty
    pk: PublicKey
    sk: PrivateKey
    w: np.ndarray
    best: np.ndarray


def _scores_round(hosts: list[_Host], idx: np.ndarray, opts: LrOptions, precision: int, penalty: bool
                  ) -> tuple[list[HostScores], list[dict[int, EncryptedArray]]]:
    """Steps 1-2 of the loss over `idx`: every host's scores and share, then its pair terms.
    Returns (scores per host, the pair terms under each host's key by the host that computed them)."""
    m = len(idx)
    n_hosts = len(hosts)
    masks = [draw_pair_masks(k, n_hosts, m, precision) if n_hosts > 1 else {} for k in range(n_hosts)]
    scores = [host_partial_scores_masked(h.pk, h.party.X[idx], h.w,
                                         m * penalty_value(h.w, opts) if penalty else 0.0, masks[k], precision)
              for k, h in enumerate(hosts)]
    pairs: list[dict[int, EncryptedArray]] = [{} for _ in hosts]
    for j, h in enumerate(hosts):  # host j, on the scores the guest relays from every later host k
        u_j = h.party.X[idx] @ h.w
        for k in pair_partners(j, n_hosts):
            pairs[k][j] = host_pair_loss_encrypted(scores[k].scores, u_j, masks[j][k], precision)
    return scores, pairs


def _loss(guest: PreparedParty, w_g: np.ndarray, hosts: list[_Host], idx: np.ndarray, y_pm: np.ndarray,
          opts: LrOptions, precision: int, penalty: bool,
          scores: list[HostScores], pairs: list[dict[int, EncryptedArray]]) -> float:
    """Steps 3-4 of the loss: the guest's masked parts, each host's decryption, the exact sum."""
    u_g = guest.X[idx] @ w_g
    g_pen = len(idx) * penalty_value(w_g[guest.regularized], opts) if penalty else 0.0
    ints = []
    for k, h in enumerate(hosts):
        part = guest_loss_part_masked(scores[k].scores, u_g, y_pm, scores[k].loss_share,
                                      [pairs[k][j] for j in sorted(pairs[k])], g_pen, k == 0, precision)
        ints.append(loss_part_integer(decrypt_masked(h.sk, part.enc), part))  # host k decrypts
    return guest_batch_loss(ints, part.enc.precision)


def fit_in_process(X_g: np.ndarray, X_hosts: Sequence[np.ndarray], y: np.ndarray, opts: LrOptions,
                   guest_keys: tuple[PublicKey, PrivateKey],
                   host_keys: Sequence[tuple[PublicKey, PrivateKey]],
                   precision: int = DEFAULT_PRECISION_BITS) -> MultiHostFit:
    """Train with a guest and N hosts in one process, calling every step as the phase does.

    Real Paillier with the given keys; each party computes only with what it holds or was sent.
    With `opts.label_noise` > 0 the guest's noise per host and batch is in `host_noise`, for
    `fit_reference_hosts` to replay. Row packing is not used (N-host batches take the ordinary path).
    """
    opts.check()
    if len(X_hosts) != len(host_keys) or not X_hosts:
        raise TrainingError(f"{len(X_hosts)} host blocks for {len(host_keys)} host key pairs")
    pk_g, sk_g = guest_keys
    n = X_g.shape[0]
    val = validation_rows(n, opts.validation, opts.seed)
    train = np.setdiff1d(np.arange(n), val)
    y = np.asarray(y, dtype=np.int8)
    y_pm = signed_labels(y)
    guest = prepare_party("guest", [f"x{i}" for i in range(X_g.shape[1])], X_g, train, opts)
    hosts: list[_Host] = []
    for (pk, sk), X in zip(host_keys, X_hosts, strict=True):
        party = prepare_party("host", [f"x{i}" for i in range(X.shape[1])], X, train, opts)
        hosts.append(_Host(party, pk, sk, party.weights.copy(), party.weights.copy()))
    for h in hosts:  # setup: the guest checks against every host, every host against the guest
        check_guest_side(guest, y[train], opts, len(train), h.party.n_features)
        check_host_side(h.party, opts, len(train), guest.X.shape[1])
    check_binary_labels(y[train], "training labels")
    n_hosts = len(hosts)
    guest_fits = columns_fit(guest.X)
    noise = [LabelNoise(guest.X, train, *host_norm_bounds(h.party.X[train]), opts, guest.regularized)
             for h in hosts] if opts.label_noise > 0 else None
    fit = MultiHostFit(guest.model(guest.weights), [h.party.model(h.w) for h in hosts],
                       host_noise=[[] for _ in hosts])
    w_g = guest.weights.copy()
    best_g = w_g.copy()
    monitor = TrainingMonitor(opts, has_validation=len(val) > 0,
                              n_columns=guest.X.shape[1] + sum(h.party.X.shape[1] for h in hosts))
    for epoch in range(opts.epochs):
        lr = learning_rate(opts, epoch)
        epoch_loss = 0.0
        for b, rows in enumerate(epoch_batches(len(train), opts.batch_size, opts.seed, epoch)):
            idx = train[rows]
            m = len(idx)
            Xg = guest.X[idx]
            u_g = Xg @ w_g
            enc_c = guest_residual_offsets_encrypted(pk_g, u_g, y_pm[idx], precision)  # to every host
            scores, pairs = _scores_round(hosts, idx, opts, precision, True)
            # hosts: own part on Enc_g(c), cross terms on every other host's relayed scores
            own = [host_gradient_masked(enc_c, h.party.X[idx] @ h.w, h.party.X[idx], precision,
                                        columns_fit(h.party.X)) for h in hosts]
            cross = [{j: host_cross_gradient_masked(scores[j].scores, h.party.X[idx], precision)
                      for j in range(n_hosts) if j != i} for i, h in enumerate(hosts)]
            # guest: its gradient, one masked product per host, each decrypted by that host
            if n_hosts == 1:
                gm = guest_gradient_masked(guest_residuals_encrypted(scores[0].scores, u_g, y_pm[idx]),
                                           Xg, precision, guest_fits)
                grad_g = unmask_values(decrypt_masked(hosts[0].sk, gm.enc), gm)
            else:  # every host's share mask, under the next host's key, cancels in the guest's sum
                shares = [host_gradient_share_masks(hosts[next_host(k, n_hosts)].pk, Xg.shape[1], m, precision)
                          for k in range(n_hosts)]
                parts, residues = [], []
                for k, h in enumerate(hosts):
                    part = guest_gradient_share_masked(
                        guest_host_residuals_encrypted(scores[k].scores, u_g, y_pm[idx], k == 0), Xg,
                        shares[(k - 1) % n_hosts][0], precision)
                    checked = check_gradient_share(part.enc, Xg.shape[1], h.pk, m, precision)  # host k checks
                    residues.append(host_add_gradient_share(decrypt_masked(h.sk, checked), shares[k][1], h.pk))
                    parts.append(part)
                grad_g = guest_gradient_from_shares(residues, parts)
            loss = _loss(guest, w_g, hosts, idx, y_pm[idx], opts, precision, True, scores, pairs) / m
            monitor.check_batch(loss, epoch, b)
            for i, h in enumerate(hosts):
                decrypted = [centered(decrypt_masked(hosts[j].sk, cross[i][j].enc), hosts[j].pk)
                             for j in sorted(cross[i])]  # host j decrypts host i's cross term under its key
                ints = None
                if noise is not None:
                    ints, real = noise[i].sample(h.party.X.shape[1], opts.label_noise * noise[i].sensitivity(idx),
                                                 own[i].enc.precision)
                    fit.host_noise[i].append(real)
                residues = guest_host_gradient_residues(decrypt_masked(sk_g, own[i].enc), decrypted, ints, pk_g)
                grad = host_unmask_gradient(residues, own[i], [cross[i][j] for j in sorted(cross[i])]) / m
                h.w = update_weights(h.w, grad, lr, opts, h.party.regularized)
            if noise is not None:
                for nz in noise:
                    nz.advance(idx, lr)
            w_g = update_weights(w_g, grad_g / m, lr, opts, guest.regularized)
            epoch_loss += loss * m / len(train)
        val_loss = None
        if len(val):
            scores, pairs = _scores_round(hosts, val, opts, precision, False)
            val_loss = _loss(guest, w_g, hosts, val, y_pm[val], opts, precision, False, scores, pairs) / len(val)
        decision = monitor.end_epoch(epoch, epoch_loss, val_loss)
        fit.epochs_run = epoch + 1
        if decision.improved:
            best_g = w_g.copy()
            for h in hosts:
                h.best = h.w.copy()
        if decision.stop:
            fit.stop_reason = decision.reason
            break
    keep = monitor.keeps_best
    fit.guest = guest.model(best_g if keep else w_g)
    fit.hosts = [h.party.model(h.best if keep else h.w) for h in hosts]
    fit.losses, fit.validation_losses = list(monitor.losses), list(monitor.validation_losses)
    return fit


__all__ = [
    "MultiHostFit", "SCORE_BOUND", "centered", "check_gradient_share", "draw_pair_masks", "fit_in_process",
    "gradient_share_bits", "gradient_share_layout", "guest_batch_loss", "guest_gradient_from_shares",
    "guest_gradient_share_masked", "guest_host_gradient_residues", "guest_host_residuals_encrypted",
    "guest_loss_part_masked", "host_add_gradient_share", "host_cross_gradient_masked",
    "host_gradient_share_masks", "host_pair_loss_encrypted", "host_partial_scores_masked",
    "host_unmask_gradient", "loss_part_integer", "loss_precision", "next_host", "pair_mask_bits",
    "pair_partners",
]
