"""The Paillier vector layer: numpy-shaped arrays of Paillier ciphertexts.

A small API where operators do the work (after python-paillier):

    pk, sk = generate_keypair(2048)
    a = pk.encrypt(np.array([1.5, -2.0]))       # EncryptedArray, fixed point
    b = a + a * 3 + np.array([0.5, 0.5])        # homomorphic add / scalar mul
    sk.decrypt(b)                               # -> array([6.5, -7.5])
    s = X.T @ a  or  a.rmatmul(X.T)             # encrypted X^T a
    g = a.group_sum(bins, n_groups)             # sums of ciphertexts per bin
    data = a.to_bytes(); load_ciphertexts(data, pk)   # wire format (plain or packed)

Many values per ciphertext where only sums are needed (`vfl.paillier.packing`):

    p = encrypt_packed(pk, gamma, precision=24, headroom_bits=80)   # (N, K) in N ciphertexts
    stats = X.T @ p                                                  # (F, K) slotwise
    counts = pack(bin_sums.reshape(-1), bound=n_rows)                # compress before decrypting

Fast paths are automatic: DJN randomizers from fixed-base tables, CRT
encryption when this process holds the private key, CRT decryption,
Pippenger multi-exponentiation for `X @ enc`, every core (`configure`).
Keys are interoperable with `phe` (`PublicKey.from_phe`, `.to_phe()`),
ciphertexts too (`EncryptedArray.to_phe()` / `EncryptedArray.from_phe(numbers, pk)`).
"""

from vfl.paillier._parallel import Settings, configure, settings, shutdown, workers
from vfl.paillier._parallel import start as start_workers
from vfl.paillier.array import EncryptedArray, random_mask, unmask
from vfl.paillier.encoding import DEFAULT_PRECISION_BITS, decode, encode
from vfl.paillier.keys import (
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    PrivateKey,
    PublicKey,
    generate_keypair,
    phe_backend_problem,
)
from vfl.paillier.packing import (
    PackedEncryptedArray,
    decrypt_masked_residues,
    decrypt_slots,
    encrypt_packed,
    load_ciphertexts,
    pack,
    unmask_slots,
)

__all__ = [
    "DEFAULT_KEY_BITS",
    "DEFAULT_PRECISION_BITS",
    "MIN_KEY_BITS",
    "EncryptedArray",
    "PackedEncryptedArray",
    "PrivateKey",
    "PublicKey",
    "Settings",
    "configure",
    "decode",
    "decrypt_masked_residues",
    "decrypt_slots",
    "encode",
    "load_ciphertexts",
    "encrypt_packed",
    "generate_keypair",
    "pack",
    "phe_backend_problem",
    "random_mask",
    "settings",
    "shutdown",
    "start_workers",
    "unmask",
    "unmask_slots",
    "workers",
]
