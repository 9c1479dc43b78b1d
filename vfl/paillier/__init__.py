"""The Paillier vector layer: numpy-shaped arrays of Paillier ciphertexts.

A small API where operators do the work (after python-paillier):

    pk, sk = generate_keypair(2048)
    a = pk.encrypt(np.array([1.5, -2.0]))       # EncryptedArray, fixed point
    b = a + a * 3 + np.array([0.5, 0.5])        # homomorphic add / scalar mul
    sk.decrypt(b)                               # -> array([6.5, -7.5])
    s = X.T @ a  or  a.rmatmul(X)               # encrypted X^T a
    g = a.group_sum(bins, n_groups)             # sums of ciphertexts per bin
    data = a.to_bytes(); EncryptedArray.from_bytes(data, pk)   # wire format

Keys are interoperable with `phe` (`PublicKey.from_phe`, `.to_phe()`),
ciphertexts too (`EncryptedArray.to_phe()` / `from_phe`).
"""

from vfl.paillier.array import EncryptedArray, random_mask
from vfl.paillier.encoding import DEFAULT_PRECISION_BITS, decode, encode
from vfl.paillier.keys import (
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    PrivateKey,
    PublicKey,
    generate_keypair,
)

__all__ = [
    "DEFAULT_KEY_BITS",
    "DEFAULT_PRECISION_BITS",
    "MIN_KEY_BITS",
    "EncryptedArray",
    "PrivateKey",
    "PublicKey",
    "decode",
    "encode",
    "generate_keypair",
    "random_mask",
]
