"""M-step with Paillier-encrypted sufficient statistics (the host's block).

The protocol, one EM iteration's M-step (guest key pair (pk_g, sk_g)):

1. `guest_encrypt_responsibilities`: the guest encrypts its responsibilities
   under its own key, one row per component, and sends them with the component
   sizes nk (plaintext; they give the shared mixture weights). When every
   row's responsibilities sum to one (all of EM) only K - 1 components are
   sent: the host derives the last component's statistics from its column
   totals. (Initial one-hot responsibilities of K drawn rows send all K.)
2. `host_encrypted_statistics`: the host computes [[gamma_k]]^T @ F for its
   statistic features F (vfl.gmm.model.statistic_features) with plaintext x
   ciphertext products: Enc(sum_i gamma_ik F_ij).
   The statistics are then packed many to a ciphertext (`vfl.paillier.packing.pack`)
   with a PUBLIC slot bound (it travels in the header): 0 <= gamma <= 1 and
   |F_ij| <= `statistic_feature_bound` (FEATURE_BOUND on every raw column, agreed at
   setup) give |gamma^T F_j| <= N * that bound (`statistics_layout`). A host whose
   columns exceed FEATURE_BOUND says so at setup and sends unpacked statistics.
3. `host_mask_statistics`: the host adds a statistically hiding mask to each slot
   (uniform in [0, 2^(b+80)) for b-bit slot bounds, STAT_BITS: distance <= 2^-80 from
   uniform) and re-randomizes the few packed ciphertexts (unpacked arrays: a uniform
   residue mod n per statistic, perfect hiding).
4. `guest_decrypt_masked_statistics`: the guest checks the layout against the public
   one (`check_masked_statistics`), decrypts to masked values (which look random to
   it) and returns them as residues mod n (`pack_residues`).
5. `host_unmask_statistics`: the host removes its masks and decodes: it alone
   learns its statistics, and forms its block's parameters
   (vfl.gmm.model.block_parameters).

Fixed point: responsibilities are encoded at RESPONSIBILITY_PRECISION
fractional bits (64: an encoding error of 2^-65 per value costs nothing, since
the ciphertext size does not depend on it), features at the given precision
capped at FEATURE_PRECISION (32 bits: the cost of F^T [[gamma]] is proportional
to the features' bit length), so a statistic carries 96 fractional bits and its
error divided by the component size n_k (what means and covariances use) is at
most 2^-33, far below the 1e-6 the results must match to (24 bits were too few:
k-means assignments near a tie flipped and EM took a different path on wine).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from vfl.errors import PaillierError
from vfl.paillier import (
    EncryptedArray,
    PackedEncryptedArray,
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

RESPONSIBILITY_PRECISION = 64
FEATURE_PRECISION = 32
# A public bound on |x| of the raw columns whose statistics are packed (sizes the slots and
# masks). A host with larger values says so at setup; its statistics then travel unpacked.
FEATURE_BOUND = 2.0 ** 16


def rows_sum_to_one(resp: np.ndarray) -> bool:
    """Whether each row's responsibilities sum to one (to rounding), so one component can be derived."""
    return bool(np.all(np.abs(resp.sum(axis=1) - 1.0) <= 1e-12))


def guest_encrypt_responsibilities(public_key: PublicKey, resp: np.ndarray) -> EncryptedArray:
    """[[gamma_k]] under the guest's key, one row per component: shape (K - 1, N) when rows sum
    to one (the host derives the last), else (K, N)."""
    resp = np.asarray(resp, dtype=np.float64)
    sent = resp[:, :-1] if rows_sum_to_one(resp) else resp
    return public_key.encrypt(np.ascontiguousarray(sent.T), precision=RESPONSIBILITY_PRECISION)


def features_fit(X: np.ndarray) -> bool:
    """Whether raw columns stay within FEATURE_BOUND (then their statistics can be packed)."""
    return bool(np.size(X) == 0 or float(np.max(np.abs(X))) <= FEATURE_BOUND)


def statistic_feature_bound(statistics: str) -> float:
    """Public bound on |F_ij| of `statistic_features` for columns within FEATURE_BOUND (>= 1)."""
    return FEATURE_BOUND if statistics == "means" else FEATURE_BOUND * FEATURE_BOUND


def statistics_int_bound(rows: int, resp_precision: int, feature_precision: int, feature_bound: float) -> int:
    """Public bound of |gamma^T F_j| in integer units: rows * (1 at resp_precision) * feature_bound."""
    return rows * public_int_bound(1.0, resp_precision) * public_int_bound(feature_bound, feature_precision)


def statistics_layout(public_key: PublicKey, rows: int, statistics: str, precision: int) -> tuple[int, int, int]:
    """(slot bits, declared bound after masking, precision) of packed masked statistics: public values only."""
    fp = min(precision, FEATURE_PRECISION)
    bound = statistics_int_bound(rows, RESPONSIBILITY_PRECISION, fp, statistic_feature_bound(statistics))
    slot_bits = slot_bits_for(bound, MASK_HEADROOM_BITS)
    slots_for(public_key, slot_bits)  # refuses a slot that does not fit the key
    return slot_bits, bound + (1 << (bound.bit_length() + STAT_BITS)), RESPONSIBILITY_PRECISION + fp


def check_masked_statistics(masked: EncryptedArray, public_key: PublicKey, shape: tuple[int, int], rows: int,
                            statistics: str, precision: int, packed: bool) -> EncryptedArray:
    """The guest's check of received masked statistics: the agreed shape, and packed in the public
    `statistics_layout` iff the host declared its columns within FEATURE_BOUND."""
    if not packed:
        if isinstance(masked, PackedEncryptedArray):
            raise PaillierError("masked statistics arrived packed, but the host declared unpacked statistics")
        return masked
    slot_bits, bound, prec = statistics_layout(public_key, rows, statistics, precision)
    return check_packed_layout(masked, public_key, shape, slot_bits, prec, bound, what="masked statistics")


def host_encrypted_statistics(enc_resp: EncryptedArray, features: np.ndarray, precision: int = FEATURE_PRECISION,
                              feature_bound: float | None = FEATURE_BOUND * FEATURE_BOUND) -> EncryptedArray:
    """[[gamma_k^T F]] for each encrypted component: shape (K - 1, m), via F^T @ [[gamma_k]].

    Packed with slots sized by the public `feature_bound` on |F| (`statistic_feature_bound`);
    None: unpacked (the host's columns exceed FEATURE_BOUND).
    """
    F = np.asarray(features, dtype=np.float64)
    if enc_resp.ndim != 2 or enc_resp.shape[1] != F.shape[0]:
        raise PaillierError(f"encrypted responsibilities of shape {enc_resp.shape} do not match "
                            f"{F.shape[0]} rows")
    precision = min(precision, FEATURE_PRECISION)
    rows = [enc_resp[k].rmatmul(F.T, precision=precision) for k in range(enc_resp.shape[0])]
    stats = _stack(enc_resp.public_key, rows, (enc_resp.shape[0], F.shape[1]), enc_resp.precision + precision)
    if feature_bound is None:
        return stats
    if F.size and not float(np.max(np.abs(F))) <= feature_bound:
        raise PaillierError(f"statistic features beyond {feature_bound:g} in magnitude cannot be packed")
    # 0 <= gamma <= 1 and |F_ij| <= feature_bound: a public, proven slot bound
    bound = statistics_int_bound(F.shape[0], enc_resp.precision, precision, feature_bound)
    return pack(stats, bound=Fraction(bound, 1 << stats.precision), headroom_bits=MASK_HEADROOM_BITS)


def host_mask_statistics(enc_stats: EncryptedArray) -> tuple[EncryptedArray, np.ndarray]:
    """(masked statistics to send, the masks to keep), ciphertexts re-randomized.

    Packed statistics get a statistically hiding mask per slot (few ciphertexts to
    re-randomize and decrypt); unpacked ones a uniform residue mod n each.
    """
    if isinstance(enc_stats, PackedEncryptedArray):
        masked, mask = enc_stats.masked(STAT_BITS)
        return masked.rerandomize(), mask
    mask = random_mask(enc_stats.public_key, enc_stats.shape)
    return enc_stats.add_residues(mask).rerandomize(), mask


def guest_decrypt_masked_statistics(private_key: PrivateKey, masked: EncryptedArray) -> np.ndarray:
    """The masked statistics as residues mod n (random-looking to the guest), in the values' shape."""
    return decrypt_masked_residues(private_key, masked)


def host_unmask_statistics(residues: np.ndarray, mask: np.ndarray, precision: int, public_key: PublicKey,
                           features: np.ndarray, k: int) -> np.ndarray:
    """The host's statistics gamma^T F for all K components, shape (K, m).

    The sent components are unmasked; if only K - 1 were sent, the last is the
    column totals of F minus their sum.
    """
    F = np.asarray(features, dtype=np.float64)
    sent = unmask(residues, mask, precision, public_key) if residues.size else np.zeros((0, F.shape[1]))
    if sent.shape[0] == k:
        return sent
    if sent.shape[0] != k - 1:
        raise PaillierError(f"statistics for {sent.shape[0]} components, expected {k - 1} or {k}")
    last = F.sum(axis=0) - sent.sum(axis=0)
    return np.vstack([sent, last[None, :]])


def pack_residues(residues: np.ndarray, public_key: PublicKey) -> bytes:
    """Residues mod n as fixed-width big-endian integers (the wire form of step 4)."""
    w = (public_key.n.bit_length() + 7) // 8
    return b"".join(int(r).to_bytes(w, "big") for r in np.asarray(residues, dtype=object).ravel().tolist())


def unpack_residues(data: bytes, shape: tuple[int, ...], public_key: PublicKey) -> np.ndarray:
    """Parse `pack_residues` output of the given shape; refuses wrong lengths and values >= n."""
    w = (public_key.n.bit_length() + 7) // 8
    count = int(np.prod(shape)) if shape else 1
    if len(data) != w * count:
        raise PaillierError(f"residues: expected {count} values of {w} bytes, got {len(data)} bytes")
    vals = [int.from_bytes(data[i * w:(i + 1) * w], "big") for i in range(count)]
    if any(v >= public_key.n for v in vals):
        raise PaillierError("residues: a value is not below the key's modulus")
    out = np.empty(count, dtype=object)
    out[:] = vals
    return out.reshape(shape)


def _stack(public_key: PublicKey, rows: list[EncryptedArray], shape: tuple[int, ...],
           precision: int) -> EncryptedArray:
    cipher = np.empty(shape, dtype=object)
    for i, r in enumerate(rows):
        cipher[i] = r.cipher
    return EncryptedArray(public_key, cipher, precision)
