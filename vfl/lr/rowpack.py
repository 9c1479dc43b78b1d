"""Row packing for large LR batches: S rows' values in one ciphertext, products slot by slot.

On the ordinary path (`vfl.lr.protocol`) each party encrypts one value per row and
batch under its own key: the guest Enc_g(c), the host Enc_h(u_h). Row packing
encrypts S consecutive rows' values in one ciphertext instead (slot t of ciphertext
g is row g*S + t), so a batch of N rows costs ceil(N/S) encryptions.

The party computing X^T Enc(packed) cannot multiply the slots of one ciphertext by
different plaintexts, so it forms, for every column j and slot s,

    R_(j,s) = prod_g P_g ^ X[g*S + s, j]          (a (d*S, ceil(N/S)) plaintext matrix)

Slot s of R_(j,s) holds the wanted partial sum sum_g X[gS+s, j] v[gS+s]; the other
slots hold cross terms sum_g X[gS+s, j] v[gS+s'], which reveal the computing party's
columns. So EVERY slot of every R_(j,s) gets a statistically hiding mask (STAT_BITS = 80
bits above the slot's bound) and every R_(j,s) a strong re-randomization before the key
owner decrypts them. The key owner returns, per column j, the sum over s of the masked
slot s of R_(j,s) (mod n): the computing party removes the sum of those masks and has
X_j^T v, exactly what the ordinary path gives it, nothing per slot or per row subset.

Every bound that sizes a slot is public (`SCORE_BOUND`, `COLUMN_BOUND`, the precision,
the batch size, the key size): the slot width, the packed arrays' declared bounds and
the mask widths reveal nothing about either party's values. A party whose columns
exceed `COLUMN_BOUND` says so at setup, and batches it computes on are not packed.

Cost per batch and direction: saves N (1 - 1/S) encryptions; adds d*S strong
re-randomizations and decryptions, and makes the products' Pippenger sums run over
N/S bases instead of N (about 25 % dearer per term at 100k rows). `row_packing_pays`
decides from these measured costs; small batches (breast) keep the ordinary path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vfl.errors import PaillierError
from vfl.lr.protocol import (  # noqa: F401 - columns_fit stays part of this module's API
    COLUMN_BOUND,
    LOSS_PRECISION_BITS,
    SCORE_BOUND,
    HostScores,
    Masked,
    _matrix_precision,
    check_scores,
    columns_fit,
    gradient_product_bound,
    mask_for_owner,
    offsets_bound,
)
from vfl.lr.taylor import LOG2
from vfl.paillier import EncryptedArray, PackedEncryptedArray, PrivateKey, PublicKey, decrypt_slots
from vfl.paillier.encoding import scaled_integers
from vfl.paillier.packing import (
    MASK_HEADROOM_BITS,
    STAT_BITS,
    encrypt_packed,
    slot_bits_for,
    usable_bits,
)
from vfl.paillier.packing import public_int_bound as _int_bound

# Measured costs (2048 bits, 2 workers), in units of one own-key encryption (~0.3-0.4 ms):
# the extra cost of one product term per column and row (Pippenger over N/S bases instead
# of N: ~25 % of a ~25 us term), and the strong re-randomization plus decryption of one
# packed result (~9 ms).
PRODUCT_TERM_COST = 0.025
RESULT_COST = 30.0


@dataclass(frozen=True)
class RowLayout:
    """The public slot layout of one packed row vector: `slots` rows of `slot_bits` bits per ciphertext."""

    rows: int
    slot_bits: int
    slots: int

    @property
    def groups(self) -> int:
        """Ciphertexts per packed vector: ceil(rows / slots)."""
        return -(-self.rows // self.slots)


def scores_bound(precision: int) -> int:
    """Public bound of the host's packed u_h (precision bits)."""
    return _int_bound(SCORE_BOUND, precision)


def loss_product_bound(groups: int, precision: int) -> int:
    """Public bound of a slot of c^T Enc(u_h) over `groups` packed ciphertexts."""
    c = _int_bound(0.25 * SCORE_BOUND + 0.5, min(precision, LOSS_PRECISION_BITS))
    return groups * c * scores_bound(precision)


def layout(pk: PublicKey, rows: int, precision: int, gradient: bool = True) -> RowLayout:
    """The widest packing under key `pk` whose every product slot, masked, fits: public values only.

    `gradient` False: the packed vector only enters the loss product (validation scores).
    """
    usable = usable_bits(pk)
    for s in range(max(1, usable // 64), 0, -1):
        groups = -(-rows // s)
        bound = loss_product_bound(groups, precision)
        if gradient:
            bound = max(bound, gradient_product_bound(groups, precision))
        bits = slot_bits_for(bound, MASK_HEADROOM_BITS)
        if bits * s <= usable:
            return RowLayout(rows, bits, usable // bits)  # (as many slots as that width holds)
    raise PaillierError(f"a {pk.bits}-bit key cannot pack rows of a {rows}-row batch")


def row_packing_pays(rows: int, columns: int, slots: int) -> bool:
    """Whether packing a batch of `rows` saves time when the other party multiplies by `columns` columns.

    Saves rows (1 - 1/S) encryptions; costs columns*S packed results (re-randomization and
    decryption) and a dearer product per column and row (`PRODUCT_TERM_COST`).
    """
    if slots < 2:
        return False
    saved = rows * ((1 - 1 / slots) - columns * PRODUCT_TERM_COST)
    return saved > columns * slots * RESULT_COST


# -- the encrypting party ---------------------------------------------------------


def encrypt_rows(pk: PublicKey, values: np.ndarray, lay: RowLayout, precision: int, bound: int) -> PackedEncryptedArray:
    """Values of one batch, `lay.slots` rows per ciphertext, declared bound `bound` (public)."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (lay.rows,):
        raise PaillierError(f"{v.shape[0]} values for a packed layout of {lay.rows} rows")
    return encrypt_packed(pk, v[None, :], precision=precision, slot_bits=lay.slot_bits, bound=bound)


def guest_residual_offsets_packed(pk_g: PublicKey, u_g: np.ndarray, y_pm: np.ndarray, lay: RowLayout,
                                  precision: int) -> PackedEncryptedArray:
    """Packed `guest_residual_offsets_encrypted`: Enc_g(c), c = 0.25 u_g - 0.5 y', S rows per ciphertext."""
    check_scores(u_g, "guest")
    c = 0.25 * np.asarray(u_g, dtype=np.float64) - 0.5 * y_pm
    return encrypt_rows(pk_g, c, lay, precision + 2, offsets_bound(precision))


def host_partial_scores_packed(pk_h: PublicKey, X_h: np.ndarray, w_h: np.ndarray, lay: RowLayout,
                               penalty_sum: float, precision: int) -> HostScores:
    """Packed `host_partial_scores_encrypted`: Enc_h(u_h) S rows per ciphertext, and the loss share."""
    u = X_h @ w_h
    check_scores(u, "host")
    share = np.array([0.125 * float(u @ u) + penalty_sum])
    return HostScores(encrypt_rows(pk_h, u, lay, precision, scores_bound(precision)),
                      pk_h.encrypt(share, precision=precision))


def check_rows(enc: object, lay: RowLayout, key: PublicKey, precision: int, bound: int) -> PackedEncryptedArray:
    """Validate a received packed row vector against the agreed layout; PaillierError names the mismatch."""
    if not isinstance(enc, PackedEncryptedArray):
        raise PaillierError("expected packed rows, got an unpacked ciphertext array")
    if enc.public_key != key:
        raise PaillierError("packed rows encrypted under an unexpected key")
    got = (enc.vshape, enc.slot_bits, enc.precision)
    want = ((1, lay.rows), lay.slot_bits, precision)
    if got != want or enc.slots != lay.slots or enc.bound > bound:
        raise PaillierError(f"packed rows with shape/slot bits/precision {got} and bound of "
                            f"{enc.bound.bit_length()} bits, expected {want} within {bound.bit_length()} bits")
    return enc


# -- the computing party ------------------------------------------------------------


def _slot_matrix(M: np.ndarray, slots: int) -> np.ndarray:
    """(d, N) plaintexts -> (d*S, ceil(N/S)): row (j, s) is M[j, s::S] (zero-padded)."""
    d, n = M.shape
    groups = -(-n // slots)
    padded = np.zeros((d, groups * slots), dtype=np.float64)
    padded[:, :n] = M
    return padded.reshape(d, groups, slots).transpose(0, 2, 1).reshape(d * slots, groups)


def _max_row_weight(k: np.ndarray) -> int:
    """max_j sum_i |k_ji| exactly (int64 row sums could overflow: estimate in float64 first)."""
    if k.size == 0:
        return 0
    if k.dtype != object and float(np.abs(k).sum(axis=1, dtype=np.float64).max()) < 2.0 ** 62:
        return int(np.abs(k).sum(axis=1).max())
    return max(sum(abs(int(v)) for v in row) for row in k.tolist())


def _masked_products(enc: PackedEncryptedArray, M: np.ndarray, mat_precision: int, bound: int) -> Masked:
    """R_(j,s) for every row j of M and slot s, all slots masked, re-randomized; keeps the wanted slots' masks.

    `bound` is the public bound of every slot of R (it sizes the masks); the actual
    bound from M and the packed values' bound must stay within it.
    """
    lay_slots = enc.slots
    d = M.shape[0]
    k = scaled_integers(_slot_matrix(M, lay_slots), mat_precision, what="multiply ciphertexts by")
    if enc.bound * _max_row_weight(k) > bound:
        raise PaillierError("packed row products could exceed their public slot bound: columns beyond "
                            f"{COLUMN_BOUND:.0f} or scores beyond {SCORE_BOUND:.0f}")
    flat = EncryptedArray(enc.public_key, enc.cipher[0].copy(), enc.precision)
    prod = flat.rmatmul(k, precision=0)
    R = PackedEncryptedArray(enc.public_key, prod.cipher.reshape(d * lay_slots, 1), enc.precision + mat_precision,
                             slot_bits=enc.slot_bits, count=lay_slots, bound=bound, vshape=(d * lay_slots, lay_slots))
    masked, mask = R.masked(STAT_BITS)
    wanted = np.empty(d, dtype=object)
    wanted[:] = [sum(int(mask[j * lay_slots + s, s]) for s in range(lay_slots)) for j in range(d)]
    return Masked(masked.rerandomize(), wanted, R.precision)


def guest_residuals_packed(enc_u_h: PackedEncryptedArray, u_g: np.ndarray, y_pm: np.ndarray) -> PackedEncryptedArray:
    """Packed `guest_residuals_encrypted`: Enc_h(d) = 0.25 Enc_h(u_h) + (0.25 u_g - 0.5 y'), slotwise."""
    if enc_u_h.vshape != (1, u_g.shape[0]):
        raise PaillierError(f"host sent {enc_u_h.vshape} packed partial scores for a batch of {u_g.shape[0]}")
    return enc_u_h.mul(np.float64(0.25), precision=2) + (0.25 * u_g - 0.5 * y_pm)[None, :]


def guest_gradient_masked_packed(enc_d: PackedEncryptedArray, X_g: np.ndarray, precision: int) -> Masked:
    """Packed-rows `guest_gradient_masked`: the (d_g*S) masked products R_(j,s) of X_g^T Enc_h(d)."""
    groups = enc_d.cipher.shape[1]
    return _masked_products(enc_d, X_g.T, _matrix_precision(precision), gradient_product_bound(groups, precision))


def host_gradient_masked_packed(enc_c: PackedEncryptedArray, u_h: np.ndarray, X_h: np.ndarray,
                                precision: int) -> Masked:
    """Packed-rows `host_gradient_masked`: Enc_g(d) = Enc_g(c) + 0.25 u_h slotwise, then the masked R_(j,s)."""
    if enc_c.vshape != (1, X_h.shape[0]) or np.shape(u_h) != (X_h.shape[0],):
        raise PaillierError(f"packed residual offsets of shape {enc_c.vshape} do not match a batch of "
                            f"{X_h.shape[0]} rows")
    enc_d = enc_c + (0.25 * np.asarray(u_h, dtype=np.float64))[None, :]
    groups = enc_c.cipher.shape[1]
    return _masked_products(enc_d, X_h.T, _matrix_precision(precision), gradient_product_bound(groups, precision))


@dataclass
class PackedLoss:
    """The batch loss with packed scores: the masked cross products, the rest, and one combined mask."""

    cross: PackedEncryptedArray  # R_s = prod_g Enc_h(u_h)_g ^ c[g*S + s], every slot masked: send
    rest: EncryptedArray  # Enc_h(own terms + host share + r_l), shape (1,): send
    masked: Masked  # the combined mask (sum of the wanted slots' masks + r_l), for `unmask_values`


def guest_loss_masked_packed(enc_u_h: PackedEncryptedArray, u_g: np.ndarray, y_pm: np.ndarray,
                             host_share: EncryptedArray, guest_penalty_sum: float, precision: int) -> PackedLoss:
    """Packed-rows `guest_loss_masked`: the host decrypts and returns one residue, the masked batch loss.

    The cross term sum_i c_i u_h,i comes from S one-row products R_s (slot s wanted,
    the others masked cross terms); the host sums the wanted slots with the rest.
    """
    if enc_u_h.vshape != (1, u_g.shape[0]):
        raise PaillierError(f"host sent {enc_u_h.vshape} packed partial scores for {u_g.shape[0]} rows")
    check_scores(u_g, "guest")
    c = 0.25 * u_g - 0.5 * y_pm
    own = float(np.sum(LOG2 - 0.5 * y_pm * u_g + 0.125 * u_g * u_g)) + guest_penalty_sum
    lp = min(precision, LOSS_PRECISION_BITS)
    groups = enc_u_h.cipher.shape[1]
    cross = _masked_products(enc_u_h, c[None, :], lp, loss_product_bound(groups, precision))
    rest = mask_for_owner(host_share.with_precision(cross.precision) + np.array([own]))
    n = host_share.public_key.n
    mask = np.empty(1, dtype=object)
    mask[0] = (int(cross.mask[0]) + int(rest.mask[0])) % n
    assert isinstance(cross.enc, PackedEncryptedArray)
    return PackedLoss(cross.enc, rest.enc, Masked(rest.enc, mask, cross.precision))


# -- the key owner ----------------------------------------------------------------


def check_products(enc: object, columns: int, lay: RowLayout, key: PublicKey) -> PackedEncryptedArray:
    """Validate received packed products: `columns`*S ciphertexts of the agreed slot layout."""
    if not isinstance(enc, PackedEncryptedArray):
        raise PaillierError("expected packed row products, got an unpacked ciphertext array")
    if enc.public_key != key:
        raise PaillierError("packed row products encrypted under an unexpected key")
    want = ((columns * lay.slots, lay.slots), lay.slot_bits)
    if (enc.vshape, enc.slot_bits) != want or enc.slots != lay.slots:
        raise PaillierError(f"packed row products of shape {enc.vshape} and {enc.slot_bits}-bit slots, "
                            f"expected {want[0]} and {lay.slot_bits}-bit slots")
    return enc


def decrypt_products(sk: PrivateKey, enc: PackedEncryptedArray, columns: int) -> list[int]:
    """The key owner's step for packed products: per column j, sum_s (masked slot s of R_(j,s)) mod n.

    Every slot it decrypts is masked; it returns only the per-column sums of the wanted
    slots, so the computing party learns X_j^T v and nothing per slot.
    """
    slots = enc.count
    vals = decrypt_slots(sk, enc)
    n = sk.public_key.n
    return [sum(int(vals[j * slots + s, s]) for s in range(slots)) % n for j in range(columns)]


def decrypt_loss(sk: PrivateKey, cross: PackedEncryptedArray, rest: EncryptedArray) -> list[int]:
    """The host's step for a packed-scores loss: Dec(rest) + the wanted slots of the cross products, mod n."""
    n = sk.public_key.n
    return [(decrypt_products(sk, cross, 1)[0] + int(sk.decrypt_raw(rest).ravel()[0])) % n]


# -- which batches are packed -----------------------------------------------------------


@dataclass(frozen=True)
class BatchPacking:
    """Which of a batch's two per-row vectors travel packed (None: the ordinary path)."""

    offsets: RowLayout | None  # the guest's Enc_g(c); the host multiplies by its columns
    scores: RowLayout | None  # the host's Enc_h(u_h); the guest multiplies by its columns and c
    guest_fits: bool = False  # ordinary path: the guest's gradient is packed (its columns fit COLUMN_BOUND)
    host_fits: bool = False  # ordinary path: the host's gradient is packed


def plan_batch(rows: int, pk_g: PublicKey, pk_h: PublicKey, precision: int, guest_columns: int,
               host_columns: int, guest_fits: bool, host_fits: bool) -> BatchPacking:
    """Both parties' identical decision for a batch of `rows`, from public values only.

    `guest_columns` includes the intercept; the guest's products also include the loss (one
    more row). A direction is packed when the multiplying party's columns fit COLUMN_BOUND
    and `row_packing_pays`.
    """
    off = layout(pk_g, rows, precision)
    sc = layout(pk_h, rows, precision)
    return BatchPacking(off if host_fits and row_packing_pays(rows, host_columns, off.slots) else None,
                        sc if guest_fits and row_packing_pays(rows, guest_columns + 1, sc.slots) else None,
                        guest_fits, host_fits)


def plan_validation(rows: int, pk_h: PublicKey, precision: int) -> RowLayout | None:
    """The layout of the host's validation scores (only the loss product uses them), or None."""
    if rows == 0:
        return None
    lay = layout(pk_h, rows, precision, gradient=False)
    return lay if row_packing_pays(rows, 1, lay.slots) else None
