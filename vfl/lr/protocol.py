"""The steps of two-party vertical logistic regression on Paillier ciphertexts, no arbiter.

Each party has its own key pair: Enc_g (guest's) and Enc_h (host's). One batch
of m aligned rows, guest columns X_g (with a ones column for the intercept),
host columns X_h, labels y' in {-1, 1} at the guest (docs/protocols/lr.md):

 1. host  `host_partial_scores_encrypted`: Enc_h(u_h), u_h = X_h w_h, and
          Enc_h(0.125 |u_h|^2 + m R(w_h)), the host's share of the batch loss.
 2. guest `guest_residuals_encrypted`: Enc_h(d) = 0.25 Enc_h(u_h) + (0.25 u_g - 0.5 y').
 3. guest `guest_gradient_masked`: Enc_h(X_g^T d + r_g), r_g uniform mod n_h.
    guest `guest_loss_masked`: Enc_h(sum of Taylor losses + m R(w) + r_l).
    guest `guest_residuals_masked`: Enc_h(d + s) and Enc_g(-s), s uniform mod n_h.
 4. host  `decrypt_masked` of the guest's gradient and loss (uniformly random residues).
    host  `host_gradient_masked`: decrypts t = d + s (uniformly random), computes
          Enc_g(X_h^T t - X_h^T s + r_h) = Enc_g(X_h^T d + r_h).
 5. guest `decrypt_masked` of the host's gradient (uniformly random residues).
 6. both  `unmask_values`: each removes its own mask and gets its own gradient.

Whatever a party returns that was computed from the other party's ciphertexts
is rerandomized, so that the key owner cannot relate it to what it sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vfl.errors import PaillierError
from vfl.lr.model import LrPartModel, predict_proba
from vfl.lr.taylor import LOG2
from vfl.paillier import DEFAULT_PRECISION_BITS, EncryptedArray, PrivateKey, PublicKey, random_mask
from vfl.paillier.array import unmask


@dataclass
class Masked:
    """Ciphertexts masked for the key owner to decrypt, and the mask the sender keeps."""

    enc: EncryptedArray  # Enc(value + mask), rerandomized: send this
    mask: np.ndarray  # uniform residues mod n: keep this
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


def decrypt_masked(sk: PrivateKey, enc: EncryptedArray) -> list[int]:
    """The key owner's step: decrypt masked ciphertexts to residues mod n (uniformly random)."""
    return [int(v) for v in sk.decrypt_raw(enc).ravel().tolist()]


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
                          precision: int = DEFAULT_PRECISION_BITS) -> Masked:
    """Step 3 (guest): Enc_h(X_g^T d + r_g), for the host to decrypt and return.

    X_g is the batch's guest columns (with the ones column for the intercept last).
    """
    return mask_for_owner(enc_d.rmatmul(X_g.T, precision=precision))


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
    enc = enc_u_h.rmatmul(c[None, :], precision=precision) + np.array([own]) + host_share
    return mask_for_owner(enc)


def guest_residuals_masked(enc_d: EncryptedArray, pk_g: PublicKey) -> tuple[EncryptedArray, EncryptedArray]:
    """Step 3 (guest): Enc_h(d + s) and Enc_g(-s) for a fresh s uniform mod n_h.

    The host decrypts d + s (uniformly random to it) and, with Enc_g(-s), forms its
    gradient under the guest's key (`host_gradient_masked`).
    """
    s = random_mask(enc_d.public_key, enc_d.shape)
    enc_ds = enc_d.add_residues(s).rerandomize()
    neg_s = [(-int(v)) % pk_g.n for v in s.ravel().tolist()]
    return enc_ds, _encrypt_residues(pk_g, neg_s, enc_d.shape, enc_d.precision)


def quantize(X: np.ndarray, precision: int) -> np.ndarray:
    """X rounded to the fixed-point grid 2^-precision (so X * 2^precision is an exact integer)."""
    return np.ldexp(np.rint(np.ldexp(np.asarray(X, dtype=np.float64), precision)), -precision)


def host_gradient_masked(sk_h: PrivateKey, enc_d_plus_s: EncryptedArray, enc_neg_s: EncryptedArray,
                         X_h: np.ndarray, precision: int = DEFAULT_PRECISION_BITS) -> Masked:
    """Step 4 (host): Enc_g(X_h^T d + r_h) from Enc_h(d + s) and Enc_g(-s).

    t = d + s mod n_h is decrypted (uniformly random, so it hides d); then
    X_h^T t + Enc_g(X_h^T (-s)) = Enc_g(X_h^T d) mod n_g, masked with r_h for the guest
    to decrypt. (Exact unless some d_i + s_i wraps mod n_h: probability below m |d| 2^-n_bits.)
    X_h is put on the fixed-point grid first, so that the plaintext product and the
    homomorphic one use the same integers.
    """
    if enc_d_plus_s.shape != enc_neg_s.shape or enc_d_plus_s.shape[0] != X_h.shape[0]:
        raise PaillierError(f"residual messages of shapes {enc_d_plus_s.shape} and {enc_neg_s.shape} "
                            f"do not match a batch of {X_h.shape[0]} rows")
    pk_g = enc_neg_s.public_key
    t = sk_h.decrypt_raw(enc_d_plus_s)
    Xq = quantize(X_h, precision)
    enc = enc_neg_s.rmatmul(Xq.T, precision=precision)  # Enc_g(-X^T s)
    X_int = _to_int_object(np.ldexp(Xq.T, precision))
    plain = X_int.dot(t) if t.size else np.zeros(Xq.shape[1], dtype=object)  # X^T t, exact integers
    mask = random_mask(pk_g, enc.shape)
    shifted = np.empty(enc.shape, dtype=object)
    shifted[:] = [(int(p) + int(r)) % pk_g.n for p, r in zip(np.ravel(plain).tolist(), mask.tolist(), strict=True)]
    return Masked(enc.add_residues(shifted).rerandomize(), mask, enc.precision)


def _to_int_object(values: np.ndarray) -> np.ndarray:
    """Integral float64 values -> an object array of exact Python ints."""
    out = np.empty(values.shape, dtype=object)
    out.ravel()[:] = [int(v) for v in values.ravel().tolist()] if values.size else []
    return out


def _encrypt_residues(pk: PublicKey, residues: list[int], shape: tuple[int, ...],
                      precision: int) -> EncryptedArray:
    """Encrypt raw residues mod n (no fixed-point encoding), labelled with `precision`."""
    cipher = np.empty(len(residues), dtype=object)
    cipher[:] = pk.raw_encrypt(residues)
    return EncryptedArray(pk, cipher.reshape(shape), precision)


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
