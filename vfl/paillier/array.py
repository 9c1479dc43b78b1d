"""`EncryptedArray`: a numpy-shaped array of Paillier ciphertexts at one fixed-point precision.

Every element shares the key and the precision (fractional bits), so sums never
mix exponents. Ciphertexts are gmpy2 integers in a numpy object array.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2
import numpy as np
from phe import paillier

from vfl.errors import PaillierError
from vfl.paillier.encoding import DEFAULT_PRECISION_BITS, decode, encode
from vfl.paillier.keys import PublicKey

Plain = np.ndarray | float | int


def _as_object(values: Sequence[object], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out.reshape(shape)


class EncryptedArray:
    """Ciphertexts under `public_key`, each encoding a value at `precision` fractional bits."""

    __array_priority__ = 1000  # make `ndarray @ EncryptedArray` call our __rmatmul__

    def __init__(self, public_key: PublicKey, cipher: np.ndarray, precision: int) -> None:
        if cipher.dtype != object:
            raise PaillierError("ciphertexts must be an object array of integers")
        self.public_key = public_key
        self.cipher = cipher
        self.precision = int(precision)

    # -- numpy-like surface ----------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.cipher.shape

    @property
    def size(self) -> int:
        return self.cipher.size

    @property
    def ndim(self) -> int:
        return self.cipher.ndim

    def __len__(self) -> int:
        return len(self.cipher)

    def __getitem__(self, index: object) -> EncryptedArray:
        sub = self.cipher[index]
        if not isinstance(sub, np.ndarray):
            sub = _as_object([sub], ())
        return EncryptedArray(self.public_key, sub, self.precision)

    def reshape(self, *shape: int) -> EncryptedArray:
        return EncryptedArray(self.public_key, self.cipher.reshape(*shape), self.precision)

    @property
    def T(self) -> EncryptedArray:  # noqa: N802 - numpy naming
        return EncryptedArray(self.public_key, self.cipher.T, self.precision)

    def __repr__(self) -> str:
        return (f"EncryptedArray(shape={self.shape}, precision={self.precision}, "
                f"key={self.public_key.fingerprint.hex()})")

    # -- helpers ------------------------------------------------------------
    def _same_key(self, other: EncryptedArray) -> None:
        if other.public_key != self.public_key:
            raise PaillierError("cannot combine ciphertexts under different public keys")

    def with_precision(self, precision: int) -> EncryptedArray:
        """The same values re-encoded at a higher precision (ciphertext ^ 2^k)."""
        k = precision - self.precision
        if k < 0:
            raise PaillierError("cannot lower the precision of ciphertexts")
        if k == 0:
            return self
        nsq = self.public_key.nsquare
        e = gmpy2.mpz(1) << k
        flat = [gmpy2.powmod(c, e, nsq) for c in self.cipher.ravel().tolist()]
        return EncryptedArray(self.public_key, _as_object(flat, self.shape), precision)

    def _encode_plain(self, values: Plain, precision: int) -> np.ndarray:
        return encode(np.asarray(values), precision, self.public_key.n)

    # -- homomorphic operators ---------------------------------------------
    def __add__(self, other: EncryptedArray | Plain) -> EncryptedArray:
        nsq = self.public_key.nsquare
        if isinstance(other, EncryptedArray):
            self._same_key(other)
            p = max(self.precision, other.precision)
            a, b = self.with_precision(p), other.with_precision(p)
            return EncryptedArray(self.public_key, (a.cipher * b.cipher) % nsq, p)
        m = self._encode_plain(other, self.precision)
        n = gmpy2.mpz(self.public_key.n)
        g_m = np.vectorize(lambda v: 1 + gmpy2.mpz(v) * n, otypes=[object])(m) if m.size else m
        return EncryptedArray(self.public_key, (self.cipher * g_m) % nsq, self.precision)

    __radd__ = __add__

    def __neg__(self) -> EncryptedArray:
        return self * -1

    def __sub__(self, other: EncryptedArray | Plain) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            return self + (-other)
        return self + (-np.asarray(other))

    def __rsub__(self, other: Plain) -> EncryptedArray:
        return (-self) + other

    def mul(self, values: Plain, precision: int | None = None) -> EncryptedArray:
        """Elementwise product with plaintext values (broadcasting).

        Integer plaintexts multiply exactly (precision 0); floats are encoded at
        `precision` fractional bits (default DEFAULT_PRECISION_BITS), which the
        result's precision adds.
        """
        arr = np.asarray(values)
        if precision is None:
            is_int = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
            precision = 0 if is_int else DEFAULT_PRECISION_BITS
        k = _signed_scaled(arr, precision)
        c, k = np.broadcast_arrays(self.cipher, k)
        nsq = self.public_key.nsquare
        flat = [gmpy2.powmod(ci, ki, nsq) for ci, ki in zip(c.ravel().tolist(), k.ravel().tolist(), strict=True)]
        return EncryptedArray(self.public_key, _as_object(flat, c.shape), self.precision + precision)

    def __mul__(self, other: Plain) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            raise PaillierError("Paillier cannot multiply two ciphertexts")
        return self.mul(other)

    __rmul__ = __mul__

    def sum(self, axis: int | None = None) -> EncryptedArray:
        """Homomorphic sum along an axis (product of ciphertexts)."""
        nsq = self.public_key.nsquare
        if axis is None:
            acc = gmpy2.mpz(1)
            for c in self.cipher.ravel().tolist():
                acc = acc * c % nsq
            return EncryptedArray(self.public_key, _as_object([acc], ()), self.precision)
        moved = np.moveaxis(self.cipher, axis, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        out = []
        for row in flat:
            acc = gmpy2.mpz(1)
            for c in row.tolist():
                acc = acc * c % nsq
            out.append(acc)
        return EncryptedArray(self.public_key, _as_object(out, moved.shape[:-1]), self.precision)

    def rmatmul(self, matrix: np.ndarray, precision: int | None = None) -> EncryptedArray:
        """`matrix @ self` for a plaintext (m, n) matrix and an encrypted (n,) vector.

        The workhorse of gradient steps: X.T @ [[d]] is `enc_d.rmatmul(X.T)`.
        """
        mat = np.asarray(matrix)
        if self.ndim != 1 or mat.ndim != 2 or mat.shape[1] != self.shape[0]:
            raise PaillierError(f"shape mismatch: {mat.shape} @ {self.shape}")
        if precision is None:
            is_int = np.issubdtype(mat.dtype, np.integer) or np.issubdtype(mat.dtype, np.bool_)
            precision = 0 if is_int else DEFAULT_PRECISION_BITS
        k = _signed_scaled(mat, precision)
        nsq = self.public_key.nsquare
        cs = self.cipher.tolist()
        out = []
        for row in k:
            acc = gmpy2.mpz(1)
            for ci, ki in zip(cs, row.tolist(), strict=True):
                if ki:
                    acc = acc * gmpy2.powmod(ci, ki, nsq) % nsq
            out.append(acc)
        return EncryptedArray(self.public_key, _as_object(out, (mat.shape[0],)), self.precision + precision)

    def __rmatmul__(self, matrix: np.ndarray) -> EncryptedArray:
        return self.rmatmul(matrix)

    def group_sum(self, groups: np.ndarray, n_groups: int) -> EncryptedArray:
        """Sums of ciphertexts per group.

        `groups` is an int array of shape (n,) or (n, f) with values in [0, n_groups);
        the result has shape (n_groups,) or (f, n_groups). Used for per-bin sums.
        """
        g = np.asarray(groups)
        if self.ndim != 1 or g.shape[0] != self.shape[0]:
            raise PaillierError(f"groups of shape {g.shape} do not match ciphertexts {self.shape}")
        if g.size and (g.min() < 0 or g.max() >= n_groups):
            raise PaillierError(f"group index outside [0, {n_groups})")
        nsq = self.public_key.nsquare
        cols = g[:, None] if g.ndim == 1 else g
        cs = self.cipher.tolist()
        out = np.empty((cols.shape[1], n_groups), dtype=object)
        for j in range(cols.shape[1]):
            acc = [gmpy2.mpz(1)] * n_groups
            for ci, b in zip(cs, cols[:, j].tolist(), strict=True):
                acc[b] = acc[b] * ci % nsq
            out[j, :] = acc
        if g.ndim == 1:
            out = out[0]
        return EncryptedArray(self.public_key, out, self.precision)

    def rerandomize(self) -> EncryptedArray:
        """Multiply every ciphertext by a fresh encryption of zero.

        Use before returning ciphertexts derived from the peer's own ciphertexts,
        so that the peer cannot relate them to what it sent.
        """
        nsq = self.public_key.nsquare
        obf = self.public_key.raw_obfuscators(self.size)
        flat = [c * r % nsq for c, r in zip(self.cipher.ravel().tolist(), obf, strict=True)]
        return EncryptedArray(self.public_key, _as_object(flat, self.shape), self.precision)

    # -- masking ------------------------------------------------------------
    def add_residues(self, residues: np.ndarray) -> EncryptedArray:
        """Add raw plaintext residues mod n (e.g. a `random_mask`) without encoding."""
        n, nsq = gmpy2.mpz(self.public_key.n), self.public_key.nsquare
        r = np.broadcast_to(np.asarray(residues, dtype=object), self.shape)
        flat = [c * (1 + gmpy2.mpz(m) * n) % nsq
                for c, m in zip(self.cipher.ravel().tolist(), r.ravel().tolist(), strict=True)]
        return EncryptedArray(self.public_key, _as_object(flat, self.shape), self.precision)

    # -- interop with phe ---------------------------------------------------
    def to_phe(self) -> list[paillier.EncryptedNumber]:
        if self.precision % 4:
            raise PaillierError("phe interop needs a precision that is a multiple of 4 bits")
        pk = self.public_key.to_phe()
        return [paillier.EncryptedNumber(pk, int(c), -self.precision // 4)
                for c in self.cipher.ravel().tolist()]

    @classmethod
    def from_phe(cls, numbers: Sequence[paillier.EncryptedNumber]) -> EncryptedArray:
        if not numbers:
            raise PaillierError("no ciphertexts given")
        exps = {x.exponent for x in numbers}
        if len(exps) != 1:
            raise PaillierError("phe ciphertexts with mixed exponents; decrease_exponent_to first")
        pk = PublicKey.from_phe(numbers[0].public_key)
        cs = [gmpy2.mpz(x.ciphertext(be_secure=False)) for x in numbers]
        return cls(pk, _as_object(cs, (len(cs),)), -4 * exps.pop())

    # -- wire format ----------------------------------------------------------
    def to_bytes(self) -> bytes:
        from vfl.paillier.wire import dumps

        return dumps(self)

    @classmethod
    def from_bytes(cls, data: bytes, public_key: PublicKey) -> EncryptedArray:
        from vfl.paillier.wire import loads

        return loads(data, public_key)


def _signed_scaled(values: np.ndarray, precision: int) -> np.ndarray:
    """Plaintext multipliers as signed Python ints at `precision` fractional bits."""
    arr = np.asarray(values)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise PaillierError("cannot multiply ciphertexts by NaN or infinite values")
        scaled = np.rint(np.ldexp(arr, precision))
        return _as_object([int(v) for v in scaled.ravel().tolist()], arr.shape)
    return _as_object([int(v) << precision for v in arr.ravel().tolist()], arr.shape)


def random_mask(public_key: PublicKey, shape: tuple[int, ...] | int) -> np.ndarray:
    """Uniform residues mod n: added to a ciphertext they hide its plaintext perfectly."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape)) if shape else 1
    return _as_object([secrets.randbelow(public_key.n) for _ in range(count)], shape)


def unmask(residues: np.ndarray, mask: np.ndarray, precision: int, public_key: PublicKey) -> np.ndarray:
    """Remove a mask from decrypted residues and decode to float64."""
    n = public_key.n
    r = np.asarray(residues, dtype=object)
    m = np.broadcast_to(np.asarray(mask, dtype=object), r.shape)
    diff = _as_object([(int(a) - int(b)) % n for a, b in zip(r.ravel().tolist(), m.ravel().tolist(), strict=True)], r.shape)
    return decode(diff, precision, n)


__all__ = ["EncryptedArray", "random_mask", "unmask", "encode", "decode"]
