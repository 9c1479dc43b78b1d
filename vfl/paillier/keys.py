"""Paillier key pairs, interoperable with python-paillier (`phe`).

Encryption uses g = n + 1, so Enc(m) = (1 + m*n) * r^n mod n^2, with the
Damgård–Jurik–Nielsen short-randomness variant r^n = hs^a, hs = h^n for a
random square h and a random exponent a of half the key length (see
docs/paillier.md for the security argument). Decryption uses the CRT over
p^2 and q^2. All heavy loops run in gmpy2 list routines that release the GIL.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gmpy2
import numpy as np
from phe import paillier
from phe import util as phe_util

from vfl.errors import PaillierError
from vfl.paillier import _parallel

if TYPE_CHECKING:
    from vfl.paillier.array import EncryptedArray

DEFAULT_KEY_BITS = 2048
MIN_KEY_BITS = 1024

if not getattr(phe_util, "HAVE_GMP", False):  # pragma: no cover - depends on the install
    warnings.warn(
        "phe is NOT using gmpy2: Paillier will be 10-100x slower. Install gmpy2 "
        "(pip install gmpy2) in the same environment.",
        RuntimeWarning,
        stacklevel=2,
    )


def _check_bits(bits: int) -> None:
    if bits < MIN_KEY_BITS:
        raise PaillierError(
            f"Paillier keys shorter than {MIN_KEY_BITS} bits are refused ({bits} requested); "
            f"use {DEFAULT_KEY_BITS}"
        )


@dataclass(eq=False)
class PublicKey:
    """A Paillier public key (n); encrypts numpy arrays into `EncryptedArray`s."""

    n: int
    nsquare: gmpy2.mpz = field(init=False, repr=False)
    _hs: gmpy2.mpz | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.n = int(self.n)
        if self.n.bit_length() < MIN_KEY_BITS - 8:
            _check_bits(self.n.bit_length())
        self.nsquare = gmpy2.mpz(self.n) * self.n

    # -- identity ---------------------------------------------------------
    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @property
    def max_int(self) -> int:
        return self.n // 3

    @property
    def fingerprint(self) -> bytes:
        """8 bytes identifying the key on the wire: SHA-256 of n, truncated."""
        return hashlib.sha256(self.n.to_bytes((self.bits + 7) // 8, "big")).digest()[:8]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.n == self.n

    def __hash__(self) -> int:
        return hash(self.n)

    # -- interop ----------------------------------------------------------
    @classmethod
    def from_phe(cls, pk: paillier.PaillierPublicKey) -> PublicKey:
        return cls(int(pk.n))

    def to_phe(self) -> paillier.PaillierPublicKey:
        return paillier.PaillierPublicKey(self.n)

    def to_json(self) -> dict[str, str]:
        return {"n": format(self.n, "x")}

    @classmethod
    def from_json(cls, obj: dict[str, str]) -> PublicKey:
        try:
            return cls(int(obj["n"], 16))
        except (KeyError, TypeError, ValueError) as exc:
            raise PaillierError(f"malformed public key: {exc}") from None

    # -- encryption -------------------------------------------------------
    def _djn_base(self) -> gmpy2.mpz:
        """hs = h^n mod n^2 for a random square h (chosen once per key and process)."""
        if self._hs is None:
            x = gmpy2.mpz(secrets.randbelow(self.n - 2) + 2)
            h = (-(x * x)) % self.n
            self._hs = gmpy2.powmod(h, self.n, self.nsquare)
        return self._hs

    def raw_obfuscators(self, count: int) -> list[gmpy2.mpz]:
        """`count` fresh values r^n mod n^2 (DJN: hs^a, a of half the key length)."""
        abits = max(self.bits // 2, 256)
        exps = [gmpy2.mpz(secrets.randbits(abits)) for _ in range(count)]
        hs = self._djn_base()
        nsq = self.nsquare
        return _parallel.map_chunks(lambda ch: gmpy2.powmod_exp_list(hs, ch, nsq), exps)

    def raw_encrypt(self, residues: list[int]) -> list[gmpy2.mpz]:
        """Encrypt plaintext residues in [0, n): (1 + m*n) * r^n mod n^2."""
        n, nsq = gmpy2.mpz(self.n), self.nsquare
        obf = self.raw_obfuscators(len(residues))
        return [((1 + gmpy2.mpz(m) * n) * r) % nsq for m, r in zip(residues, obf, strict=True)]

    def encrypt(self, values: np.ndarray | float, precision: int | None = None) -> EncryptedArray:
        """Encrypt a numpy array (or scalar) at `precision` fractional bits.

        Integer arrays are encrypted exactly at precision 0 unless told otherwise.
        """
        from vfl.paillier.array import EncryptedArray
        from vfl.paillier.encoding import DEFAULT_PRECISION_BITS, encode

        arr = np.asarray(values)
        if precision is None:
            is_int = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
            precision = 0 if is_int else DEFAULT_PRECISION_BITS
        residues = encode(arr, precision, self.n)
        cipher = self.raw_encrypt(residues.ravel().tolist())
        out = np.empty(len(cipher), dtype=object)
        out[:] = cipher
        return EncryptedArray(self, out.reshape(arr.shape), precision)


@dataclass(eq=False)
class PrivateKey:
    """A Paillier private key (p, q) with CRT decryption."""

    public_key: PublicKey
    p: int
    q: int

    def __post_init__(self) -> None:
        p, q = gmpy2.mpz(self.p), gmpy2.mpz(self.q)
        if p * q != self.public_key.n:
            raise PaillierError("private key does not match the public key")
        if q < p:  # keep p < q like phe
            p, q = q, p
        self._p, self._q = p, q
        self._psq, self._qsq = p * p, q * q
        self._pm1, self._qm1 = p - 1, q - 1
        n = gmpy2.mpz(self.public_key.n)
        g = n + 1
        self._hp = gmpy2.invert((gmpy2.powmod(g, p - 1, self._psq) - 1) // p, p)
        self._hq = gmpy2.invert((gmpy2.powmod(g, q - 1, self._qsq) - 1) // q, q)
        self._p_inv_q = gmpy2.invert(p, q)

    @classmethod
    def from_phe(cls, sk: paillier.PaillierPrivateKey) -> PrivateKey:
        return cls(PublicKey.from_phe(sk.public_key), int(sk.p), int(sk.q))

    def to_phe(self) -> paillier.PaillierPrivateKey:
        return paillier.PaillierPrivateKey(self.public_key.to_phe(), int(self._p), int(self._q))

    def raw_decrypt(self, ciphertexts: list[int]) -> list[gmpy2.mpz]:
        """Decrypt raw ciphertexts to residues in [0, n) using the CRT."""
        cs = [gmpy2.mpz(c) for c in ciphertexts]
        p, q, psq, qsq = self._p, self._q, self._psq, self._qsq
        xp = _parallel.map_chunks(lambda ch: gmpy2.powmod_base_list(ch, self._pm1, psq), cs)
        xq = _parallel.map_chunks(lambda ch: gmpy2.powmod_base_list(ch, self._qm1, qsq), cs)
        out = []
        for a, b in zip(xp, xq, strict=True):
            mp = ((a - 1) // p) * self._hp % p
            mq = ((b - 1) // q) * self._hq % q
            out.append(mp + ((mq - mp) * self._p_inv_q % q) * p)
        return out

    def decrypt_raw(self, enc: EncryptedArray) -> np.ndarray:
        """Decrypt to residues mod n (object array), without decoding: for unmasking."""
        self._check_key(enc)
        res = self.raw_decrypt(enc.cipher.ravel().tolist())
        out = np.empty(len(res), dtype=object)
        out[:] = [int(v) for v in res]
        return out.reshape(enc.shape)

    def decrypt(self, enc: EncryptedArray) -> np.ndarray:
        """Decrypt and decode to float64."""
        from vfl.paillier.encoding import decode

        return decode(self.decrypt_raw(enc), enc.precision, self.public_key.n)

    def _check_key(self, enc: EncryptedArray) -> None:
        if enc.public_key != self.public_key:
            raise PaillierError("ciphertexts were encrypted under a different public key")


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """Generate a Paillier key pair of `bits` bits (>= 1024)."""
    _check_bits(bits)
    pk, sk = paillier.generate_paillier_keypair(n_length=bits)
    public = PublicKey.from_phe(pk)
    return public, PrivateKey(public, int(sk.p), int(sk.q))
