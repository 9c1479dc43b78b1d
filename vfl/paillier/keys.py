"""Paillier key pairs, interoperable with python-paillier (`phe`).

Encryption uses g = n + 1, so Enc(m) = (1 + m n) * R mod n^2 with the
Damgård–Jurik–Nielsen randomizer R = hs^a: hs = h^n for a random unit h
(chosen once per key and process), a uniform of ceil(k/2) bits for a k-bit n.
The powers hs^a come from fixed-base tables. A process that holds the private
key encrypts under its own key in the CRT domain (mod p^2 and q^2: about twice
as fast), and decrypts by the CRT. Ciphertexts are ordinary Paillier
ciphertexts either way: `phe` decrypts ours and we decrypt its.
See docs/paillier.md for the security level of each choice.
"""

from __future__ import annotations

import hashlib
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
from phe import paillier
from phe import util as phe_util

from vfl.errors import PaillierError
from vfl.paillier import _kernels, _parallel, _randomness
from vfl.paillier.array import EncryptedArray
from vfl.paillier.encoding import DEFAULT_PRECISION_BITS, encode, is_integer_array

DEFAULT_KEY_BITS = 2048
MIN_KEY_BITS = 1024

# Elements per unit of parallel work: small enough to bound memory, large enough
# that the per-task overhead (about a millisecond) is noise.
ENCRYPT_CHUNK = (32, 4096)  # below 2 * 32 values: one batch in this process, no table
DECRYPT_CHUNK = (32, 2048)


def phe_backend_problem() -> str | None:
    """Why `phe` would run at pure-Python speed, or None if it really uses gmpy2."""
    if not getattr(phe_util, "HAVE_GMP", False):
        return ("phe is NOT using gmpy2: Paillier will be 10-100x slower. Install gmpy2 "
                "(pip install gmpy2) in the same environment as phe.")
    try:
        probe = phe_util.powmod(1 << 40, (1 << 40) + 1, (1 << 80) + 13)
    except Exception as exc:  # noqa: BLE001 - any failure means phe's gmpy2 path is broken
        return f"phe's gmpy2 arithmetic fails ({exc}); Paillier interop is unusable"
    if probe != pow(1 << 40, (1 << 40) + 1, (1 << 80) + 13):
        return "phe's gmpy2 arithmetic returns wrong results; reinstall gmpy2 and phe"
    return None


def warn_if_phe_is_slow() -> bool:
    """Warn loudly (RuntimeWarning) if phe does not use gmpy2; True if it does."""
    problem = phe_backend_problem()
    if problem:
        warnings.warn(problem, RuntimeWarning, stacklevel=2)
    return problem is None


warn_if_phe_is_slow()


def _check_bits(bits: int) -> None:
    if bits < MIN_KEY_BITS:
        raise PaillierError(
            f"Paillier keys shorter than {MIN_KEY_BITS} bits are refused ({bits} requested); "
            f"use {DEFAULT_KEY_BITS}"
        )


# n -> the PrivateKey this process holds for it: encryption under an own key takes the CRT path.
_owners: weakref.WeakValueDictionary[int, PrivateKey] = weakref.WeakValueDictionary()


def _as_object(values: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


@dataclass(eq=False)
class PublicKey:
    """A Paillier public key (n); encrypts numpy arrays into `EncryptedArray`s."""

    n: int
    nsquare: gmpy2.mpz = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.n = int(self.n)
        if self.n.bit_length() < MIN_KEY_BITS - 8:
            _check_bits(self.n.bit_length())
        if self.n % 2 == 0:
            raise PaillierError("malformed public key: n is even")
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

    # -- randomizers ------------------------------------------------------
    @property
    def owned(self) -> bool:
        """True if this process holds the private key (encryption takes the CRT path)."""
        return self.n in _owners

    def _obfuscator_source(self) -> tuple[str, str, tuple[Any, ...]]:
        """(randomizer kernel, encryption kernel, key spec) for this process."""
        window = _parallel.settings().window
        owner = _owners.get(self.n)
        if owner is not None:
            return "obfuscators_crt", "encrypt_crt", (int(owner._p), int(owner._q), window)
        return "obfuscators_public", "encrypt_public", (self.n, window)

    def raw_obfuscators(self, count: int) -> list[gmpy2.mpz]:
        """`count` fresh DJN randomizers hs^a mod n^2 (Enc(0) values), from the pool first."""
        kernel, _, spec = self._obfuscator_source()
        out = self._from_pool(kernel, spec, count)
        rest = count - len(out)
        ranges = _parallel.split(rest, *ENCRYPT_CHUNK)
        for vec in _parallel.run(kernel, [(*spec, b - a) for a, b in ranges]):
            out.extend(vec.values)
        return out

    def raw_uniform_obfuscators(self, count: int) -> list[gmpy2.mpz]:
        """`count` values r^n mod n^2 with r uniform in Z_n^* (standard Paillier randomness).

        Slower than `raw_obfuscators` (a full-length exponent each), but their
        distribution is exactly uniform over the n-th residues, which matters
        when hiding a ciphertext's origin from the key owner (`rerandomize`).
        """
        ranges = _parallel.split(count, 8, 1024)
        out: list[gmpy2.mpz] = []
        for vec in _parallel.run("obfuscators_uniform", [(self.n, b - a) for a, b in ranges]):
            out.extend(vec.values)
        return out

    def warm_up(self) -> None:
        """Build this key's fixed-base tables now where encryptions will run (in every worker,
        roughly, or in this process without workers), so that the first timed encryption does
        not pay for them. With workers, this process encrypts only batches too small for a
        table (below ENCRYPT_CHUNK's minimum), so it never builds one (~0.6 s of CPU each)."""
        kernel, _, spec = self._obfuscator_source()
        if _parallel.workers() > 1:
            _parallel.run(kernel, [(*spec, _kernels.TABLE_THRESHOLD)] * _parallel.workers())
        elif kernel == "obfuscators_public":
            _kernels.public_math(self.n, spec[-1]).table()
        else:
            _kernels.crt_math(*spec).tables()

    def precompute(self, count: int) -> None:
        """Start computing `count` randomizers in the background for later encryptions."""
        kernel, _, spec = self._obfuscator_source()
        _randomness.pool_for(kernel, spec).fill(count)

    def _from_pool(self, kernel: str, spec: tuple[Any, ...], count: int) -> list[Any]:
        pool = _randomness.existing_pool(kernel, spec)
        size = _parallel.settings().pool_size
        if pool is None and size:
            pool = _randomness.pool_for(kernel, spec)
            pool.fill(size)
        return pool.take(count) if pool is not None and count else []

    # -- encryption -------------------------------------------------------
    def raw_encrypt(self, residues: list[int]) -> list[gmpy2.mpz]:
        """Encrypt plaintext residues in [0, n): (1 + m n) R mod n^2."""
        residues = list(residues)
        obf_kernel, enc_kernel, spec = self._obfuscator_source()
        pooled = self._from_pool(obf_kernel, spec, len(residues))
        k = len(pooled)
        out = _kernels.combine_encrypt(gmpy2.mpz(self.n), self.nsquare, residues[:k], pooled)
        rest = residues[k:]
        ranges = _parallel.split(len(rest), *ENCRYPT_CHUNK)
        args = [(*spec, _kernels.IntVec(rest[a:b])) for a, b in ranges]
        for vec in _parallel.run(enc_kernel, args):
            out.extend(vec.values)
        return out

    def encrypt(self, values: np.ndarray | float, precision: int | None = None) -> EncryptedArray:
        """Encrypt a numpy array (or scalar) at `precision` fractional bits.

        Integer arrays are encrypted exactly at precision 0 unless told otherwise.
        """
        arr = np.asarray(values)
        if precision is None:
            precision = 0 if is_integer_array(arr) else DEFAULT_PRECISION_BITS
        residues = encode(arr, precision, self.n)
        cipher = self.raw_encrypt(residues.ravel().tolist())
        return EncryptedArray(self, _as_object(cipher, arr.shape), precision)


@dataclass(eq=False)
class PrivateKey:
    """A Paillier private key (p, q): CRT decryption, and fast CRT encryption under its own key.

    While a PrivateKey exists, encryptions under its public key in this process
    (`pk.encrypt`, `sk.encrypt`) take the CRT path.
    """

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
        _owners[self.public_key.n] = self

    @classmethod
    def from_phe(cls, sk: paillier.PaillierPrivateKey) -> PrivateKey:
        return cls(PublicKey.from_phe(sk.public_key), int(sk.p), int(sk.q))

    def to_phe(self) -> paillier.PaillierPrivateKey:
        return paillier.PaillierPrivateKey(self.public_key.to_phe(), int(self._p), int(self._q))

    def _spec(self) -> tuple[int, int, int]:
        return int(self._p), int(self._q), _parallel.settings().window

    # -- encryption under the own key ----------------------------------------
    def encrypt(self, values: np.ndarray | float, precision: int | None = None) -> EncryptedArray:
        """Encrypt under the own public key on the CRT fast path (same as `public_key.encrypt`)."""
        _owners[self.public_key.n] = self
        return self.public_key.encrypt(values, precision)

    # -- decryption ---------------------------------------------------------
    def raw_decrypt(self, ciphertexts: list[int], small: bool = False) -> list[gmpy2.mpz]:
        """Decrypt raw ciphertexts to residues in [0, n) using the CRT.

        `small=True` first tries the p half alone, which suffices (at half the cost)
        for plaintexts of magnitude below about 2^(|p| - 160); others fall back to
        the full CRT, so the result is the same either way (`_kernels.CrtMath.decrypt_small`).
        """
        cs = [gmpy2.mpz(c) for c in ciphertexts]
        spec = self._spec()
        kernel = "decrypt_small" if small else "decrypt_crt"
        out: list[gmpy2.mpz] = []
        ranges = _parallel.split(len(cs), *DECRYPT_CHUNK)
        for vec in _parallel.run(kernel, [(*spec, _kernels.IntVec(cs[a:b])) for a, b in ranges]):
            out.extend(vec.values)
        return out

    def decrypt_raw(self, enc: EncryptedArray) -> np.ndarray:
        """Decrypt to residues mod n (object array of ints), without decoding: for unmasking."""
        self._check_key(enc)
        res = self.raw_decrypt(enc.cipher.ravel().tolist())
        return _as_object([int(v) for v in res], enc.cipher.shape)

    def decrypt(self, enc: EncryptedArray) -> np.ndarray:
        """Decrypt and decode to float64 (a packed array decodes to its slot values)."""
        self._check_key(enc)
        small = not getattr(enc, "packed", False)  # fixed-point values are small; packed ones are not
        res = self.raw_decrypt(enc.cipher.ravel().tolist(), small=small)
        return enc._decode_residues(_as_object([int(v) for v in res], enc.cipher.shape))

    def _check_key(self, enc: EncryptedArray) -> None:
        if enc.public_key != self.public_key:
            raise PaillierError("ciphertexts were encrypted under a different public key")


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """Generate a Paillier key pair of `bits` bits (>= 1024)."""
    _check_bits(bits)
    pk, sk = paillier.generate_paillier_keypair(n_length=bits)
    public = PublicKey.from_phe(pk)
    return public, PrivateKey(public, int(sk.p), int(sk.q))
