"""The steps of two-party vertical logistic regression on Paillier ciphertexts, no arbiter.

Each party has its own key pair: Enc_g (guest's) and Enc_h (host's). One batch
of m aligned rows, guest columns X_g (with a ones column for the intercept),
host columns X_h, labels y' in {-1, 1} at the guest (docs/protocols/lr.md):

 1. host  `host_partial_scores_encrypted`: Enc_h(u_h), u_h = X_h w_h, and
          Enc_h(0.125 |u_h|^2 + m R(w_h)), the host's share of the batch loss.
 2. guest `guest_residuals_encrypted`: Enc_h(d) = 0.25 Enc_h(u_h) + (0.25 u_g - 0.5 y').
 3. guest `guest_gradient_masked`: Enc_h(X_g^T d + r_g), r_g uniform mod n_h.
    guest `guest_loss_masked`: Enc_h(sum of Taylor losses + m R(w) + r_l).
    guest `guest_residual_offsets_encrypted`: Enc_g(c), c = 0.25 u_g - 0.5 y', under
          its own key (it needs nothing from the host: sent while step 1 runs).
 4. host  `decrypt_masked` of the guest's gradient and loss (uniformly random residues).
    host  `host_gradient_masked`: Enc_g(d) = Enc_g(c) + 0.25 u_h, then
          Enc_g(X_h^T d + r_h) homomorphically. No per-row decryption anywhere.
 5. guest `decrypt_masked` of the host's gradient (uniformly random residues).
 6. both  `unmask_values`: each removes its own mask and gets its own gradient.

Whatever a party returns that was computed from the other party's ciphertexts
is rerandomized, so that the key owner cannot relate it to what it sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from vfl.errors import PaillierError, TrainingError
from vfl.lr.model import LrPartModel, predict_proba
from vfl.lr.taylor import LOG2
from vfl.paillier import (
    DEFAULT_PRECISION_BITS,
    EncryptedArray,
    PrivateKey,
    PublicKey,
    decrypt_masked_residues,
    pack,
    random_mask,
)
from vfl.paillier.array import unmask
from vfl.paillier.packing import (
    MASK_HEADROOM_BITS,
    STAT_BITS,
    check_packed_layout,
    public_int_bound,
    slot_bits_for,
    slots_for,
)

# Fractional bits of the plaintext columns in X^T Enc(d): the cost of the product is
# proportional to their bit length (Pippenger), and 2^-21 (5e-7) rounding per value is far
# below what standardized columns need: each gradient entry is within
# rows * 2^-21 * max|d| of X^T d, and the federated weights match the plaintext reference
# to ~3e-8 on breast (2e-9 at 24 bits, for ~13 % more product work).
MATRIX_PRECISION_BITS = 20
# Fractional bits of c in the loss product c^T Enc(u_h): 2^-33 per row keeps the batch loss within
# ~1e-10 of the reference for scores of order 1 (the tests hold it to 1e-9), at 2/3 of 48 bits' cost.
LOSS_PRECISION_BITS = 32
# Partial scores beyond this magnitude mean training diverged (sigmoid saturates at |u| ~ 40);
# both parties refuse to send or use them, which gives the packed gradients a proven slot bound.
SCORE_BOUND = 2.0 ** 20
# A public bound on |X_ij| (real units) of the columns a packed product multiplies by:
# standardized columns stay below sqrt(rows). A party with larger columns says so at setup,
# and what it computes on is not packed (its gradients are masked per value mod n).
COLUMN_BOUND = 2.0 ** 16


def _matrix_precision(precision: int) -> int:
    return min(precision, MATRIX_PRECISION_BITS)


@dataclass
class Masked:
    """Ciphertexts masked for the key owner to decrypt, and the mask the sender keeps."""

    enc: EncryptedArray  # Enc(value + mask), rerandomized: send this
    mask: np.ndarray  # uniform residues mod n (or statistically hiding slot masks): keep this
    precision: int  # fixed-point precision of the value


@dataclass
class HostScores:
    """Step 1's message: the host's encrypted partial scores and loss share."""

    scores: EncryptedArray  # Enc_h(X_h w_h), one per row
    loss_share: EncryptedArray  # Enc_h(0.125 sum u_h^2 + m R(w_h)), shape (1,)


def mask_for_owner(enc: EncryptedArray) -> Masked:
    """Add a uniform mask mod n and rerandomize: the key owner decrypts only noise."""
    mask = random_mask(enc.public_key, enc.shape)
    return Masked(enc.add_residues(mask).rerandomize(), mask, enc.precision)


def mask_packed_for_owner(enc: EncryptedArray, bound: int) -> Masked:
    """Pack a vector many values to a ciphertext, mask every slot, rerandomize the few ciphertexts.

    `bound` is a PUBLIC bound on |value| in integer units (at the precision of `enc`): it
    sizes the slots and travels in the header. Each slot gets a mask uniform in
    [0, 2^(b + STAT_BITS)) for b-bit values: statistically hiding (distance <= 2^-80 per
    value). The key owner decrypts ceil(size / slots) ciphertexts instead of `size`, and
    the sender re-randomizes as few (a strong re-randomization costs ~8 ms at 2048 bits).
    """
    packed = pack(enc, bound=Fraction(bound, 1 << enc.precision), headroom_bits=MASK_HEADROOM_BITS)
    masked, mask = packed.masked(STAT_BITS)
    return Masked(masked.rerandomize(), mask, enc.precision)


def columns_fit(X: np.ndarray) -> bool:
    """Whether a party's columns stay within COLUMN_BOUND (then its products can be packed)."""
    return bool(X.size == 0 or float(np.max(np.abs(X))) <= COLUMN_BOUND)


def offsets_bound(precision: int) -> int:
    """Public bound of c = 0.25 u_g - 0.5 y' in integer units (precision + 2 bits)."""
    return public_int_bound(0.25 * SCORE_BOUND + 0.5, precision + 2)


def _residual_int_bound(precision: int) -> int:
    """|d| = |c + 0.25 u| <= 0.5 SCORE_BOUND + 0.5 at precision + 2 bits, with rounding slack."""
    return 2 * offsets_bound(precision) + 2


def gradient_product_bound(terms: int, precision: int) -> int:
    """Public bound of X^T d over `terms` rows (or packed ciphertexts), |X| <= COLUMN_BOUND, integer units."""
    return terms * public_int_bound(COLUMN_BOUND, _matrix_precision(precision)) * _residual_int_bound(precision)


def gradient_precision(precision: int) -> int:
    """Fixed-point precision of X^T Enc(d): d at precision + 2 bits, the columns at the matrix precision."""
    return precision + 2 + _matrix_precision(precision)


def gradient_layout(pk: PublicKey, rows: int, precision: int) -> tuple[int, int]:
    """(slot bits, declared bound after masking) of a packed masked gradient of a `rows`-row batch.

    Public values only (batch size, precision, SCORE_BOUND, COLUMN_BOUND, key size): both
    parties compute it, the sender packs with it, the key owner checks it (`check_packed_gradient`).
    """
    bound = gradient_product_bound(rows, precision)
    slot_bits = slot_bits_for(bound, MASK_HEADROOM_BITS)
    slots_for(pk, slot_bits)  # refuses a slot that does not fit the key
    return slot_bits, bound + (1 << (bound.bit_length() + STAT_BITS))


def check_packed_gradient(enc: object, columns: int, key: PublicKey, rows: int, precision: int) -> EncryptedArray:
    """A received masked gradient of a `rows`-row batch checked against the agreed packed layout."""
    slot_bits, bound = gradient_layout(key, rows, precision)
    return check_packed_layout(enc, key, (columns,), slot_bits, gradient_precision(precision), bound,
                               what="a masked gradient")


def _mask_gradient(enc: EncryptedArray, X: np.ndarray, precision: int, packed: bool) -> Masked:
    """Mask X^T Enc(d): packed with public slot bounds if the columns fit COLUMN_BOUND, else per value mod n."""
    if not packed:
        return mask_for_owner(enc)
    if not columns_fit(X):
        raise PaillierError(f"columns beyond {COLUMN_BOUND:.0f} in magnitude cannot be packed: "
                            "their gradient needs the unpacked path")
    if enc.precision != gradient_precision(precision):
        raise PaillierError(f"residuals at precision {enc.precision - _matrix_precision(precision)}, "
                            f"expected {precision + 2}")
    return mask_packed_for_owner(enc, gradient_product_bound(X.shape[0], precision))


def check_scores(u: np.ndarray, who: str) -> None:
    """Refuse partial scores beyond SCORE_BOUND: training has diverged (and packed slot bounds rely on it)."""
    if np.size(u) and not float(np.max(np.abs(u))) <= SCORE_BOUND:
        raise TrainingError(f"the {who}'s partial scores exceed {SCORE_BOUND:.0f} in magnitude: training "
                            "diverged or its columns are huge; lower [lr] learning_rate or set [lr] standardize")


def decrypt_masked(sk: PrivateKey, enc: EncryptedArray) -> list[int]:
    """The key owner's step: decrypt masked ciphertexts to residues mod n (random to it).

    A packed array decrypts to its masked slot values, returned mod n in the values' order.
    """
    return [int(v) for v in decrypt_masked_residues(sk, enc).ravel().tolist()]


def unmask_values(residues: list[int] | np.ndarray, masked: Masked) -> np.ndarray:
    """Remove the own mask from residues the key owner returned; decode to float64."""
    res = np.empty(len(residues), dtype=object)
    res[:] = [int(v) for v in residues]
    if res.shape != masked.mask.shape:
        raise PaillierError(f"expected {masked.mask.size} residues, got {res.size}")
    return unmask(res, masked.mask, masked.precision, masked.enc.public_key)


def host_partial_scores_encrypted(pk_h: PublicKey, X_h: np.ndarray, w_h: np.ndarray,
                                  penalty_sum: float = 0.0,
                                  precision: int = DEFAULT_PRECISION_BITS) -> HostScores:
    """Step 1 (host): Enc_h(u_h) and Enc_h(0.125 |u_h|^2 + penalty_sum) for a batch.

    `penalty_sum` is m R(w_h) for training batches (0 for validation rows).
    """
    u = X_h @ w_h
    check_scores(u, "host")
    share = np.array([0.125 * float(u @ u) + penalty_sum])
    return HostScores(pk_h.encrypt(u, precision=precision), pk_h.encrypt(share, precision=precision))


def guest_residuals_encrypted(enc_u_h: EncryptedArray, u_g: np.ndarray, y_pm: np.ndarray) -> EncryptedArray:
    """Step 2 (guest): Enc_h(d) = 0.25 Enc_h(u_h) + (0.25 u_g - 0.5 y'), homomorphically.

    u_g includes the intercept. 0.25 is exact at 2 fractional bits (a multiplier of 1).
    """
    if enc_u_h.shape != u_g.shape:
        raise PaillierError(f"host sent {enc_u_h.shape[0]} partial scores for a batch of {u_g.shape[0]}")
    return enc_u_h.mul(np.float64(0.25), precision=2) + (0.25 * u_g - 0.5 * y_pm)


def guest_gradient_masked(enc_d: EncryptedArray, X_g: np.ndarray,
                          precision: int = DEFAULT_PRECISION_BITS, packed: bool = False) -> Masked:
    """Step 3 (guest): Enc_h(X_g^T d + r_g), for the host to decrypt and return.

    X_g is the batch's guest columns (with the ones column for the intercept last).
    `packed` (agreed at setup: the guest's columns fit COLUMN_BOUND): the gradient is
    packed with statistically hiding slot masks sized by the public `gradient_layout`
    (|d| <= 0.5 SCORE_BOUND + 0.5, both parties refuse larger scores); else every value
    gets a uniform mask mod n.
    """
    enc = enc_d.rmatmul(X_g.T, precision=_matrix_precision(precision))
    return _mask_gradient(enc, X_g, precision, packed)


def guest_loss_masked(enc_u_h: EncryptedArray, u_g: np.ndarray, y_pm: np.ndarray,
                      host_share: EncryptedArray, guest_penalty_sum: float = 0.0,
                      precision: int = DEFAULT_PRECISION_BITS) -> Masked:
    """Step 3 (guest): Enc_h(sum of Taylor losses + penalties + r_l), for the host to decrypt.

    sum_i [log2 - 0.5 y'(u_g + u_h) + 0.125 (u_g + u_h)^2]
      = sum_i [log2 - 0.5 y' u_g + 0.125 u_g^2] + sum_i c_i u_h,i + 0.125 |u_h|^2,
    with c = 0.25 u_g - 0.5 y' and the last term (plus the host's penalty) in `host_share`.
    The guest learns the batch loss only: one number.
    """
    c = 0.25 * u_g - 0.5 * y_pm
    own = float(np.sum(LOG2 - 0.5 * y_pm * u_g + 0.125 * u_g * u_g)) + guest_penalty_sum
    enc = enc_u_h.rmatmul(c[None, :], precision=min(precision, LOSS_PRECISION_BITS)) + np.array([own]) + host_share
    return mask_for_owner(enc)


def guest_residual_offsets_encrypted(pk_g: PublicKey, u_g: np.ndarray, y_pm: np.ndarray,
                                    precision: int = DEFAULT_PRECISION_BITS) -> EncryptedArray:
    """Step 3 (guest): Enc_g(c), c = 0.25 u_g - 0.5 y', under the guest's own key (CRT fast path).

    The host adds 0.25 u_h to get Enc_g(d) (`host_gradient_masked`). Encoded at
    precision + 2 bits, the precision of `guest_residuals_encrypted`'s Enc_h(d), so both
    parties' residuals are the same fixed-point numbers. It does not depend on the
    host's message: the guest can send it before the host's scores arrive.
    """
    check_scores(u_g, "guest")
    return pk_g.encrypt(0.25 * np.asarray(u_g, dtype=np.float64) - 0.5 * y_pm, precision=precision + 2)


def host_gradient_masked(enc_c: EncryptedArray, u_h: np.ndarray, X_h: np.ndarray,
                         precision: int = DEFAULT_PRECISION_BITS, packed: bool = True) -> Masked:
    """Step 4 (host): Enc_g(X_h^T d + r_h) from the guest's Enc_g(c), c = 0.25 u_g - 0.5 y'.

    Enc_g(d) = Enc_g(c) + 0.25 u_h (plaintext, the host's own partial scores), then
    X_h^T Enc_g(d) homomorphically, masked (`packed`, agreed at setup: the host's columns
    fit COLUMN_BOUND: packed with statistically hiding slot masks r_h of the public
    `gradient_layout`; else uniform mod n) for the guest to decrypt, and rerandomized
    (the guest owns the key of the Enc_g(c) it sent).
    No per-row decryption: the host never sees d in any form.
    """
    if enc_c.ndim != 1 or enc_c.shape[0] != X_h.shape[0] or np.shape(u_h) != (X_h.shape[0],):
        raise PaillierError(f"residual offsets of shape {enc_c.shape} do not match a batch of {X_h.shape[0]} rows")
    enc_d = enc_c + 0.25 * np.asarray(u_h, dtype=np.float64)
    enc = enc_d.rmatmul(X_h.T, precision=_matrix_precision(precision))
    return _mask_gradient(enc, X_h, precision, packed)


# -- inference ------------------------------------------------------------------


def host_partial_scores_plain(model: LrPartModel, X_h: np.ndarray) -> np.ndarray:
    """Inference (host): X_h w_h in plaintext, sent to the guest, which needs it to score rows.

    This reveals the host's per-sample partial scores to the guest (docs/protocols/lr.md);
    training never does.
    """
    return model.partial_scores(X_h)


def guest_predict_proba(model: LrPartModel, X_g: np.ndarray, u_h: np.ndarray) -> np.ndarray:
    """Inference (guest): P(y = 1) = sigmoid(u_g + b + u_h)."""
    u_g = model.partial_scores(X_g)
    if u_h.shape != u_g.shape:
        raise PaillierError(f"host sent {u_h.shape[0]} partial scores for {u_g.shape[0]} rows")
    return predict_proba(u_g, u_h)
