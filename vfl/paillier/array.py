"""`EncryptedArray`: a numpy-shaped array of Paillier ciphertexts at one fixed-point precision.

Every element shares the key and the precision (fractional bits), so sums never
mix exponents. Ciphertexts are gmpy2 integers in a numpy object array. The
heavy operations run as `_kernels` on the configured backend (`_parallel`):
elementwise products with per-element exponents, `X @ enc` by Pippenger's
multi-exponentiation, per-bin sums over joint bin cells, decryption.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np
from phe import paillier

from vfl.errors import PaillierError
from vfl.paillier import _kernels, _parallel
from vfl.paillier._kernels import IntVec
from vfl.paillier.encoding import (
    DEFAULT_PRECISION_BITS,
    decode,
    encode,
    is_integer_array,
    scaled_integers,
)
from vfl.paillier.wire import dumps, parse_plain

if TYPE_CHECKING:  # keys build arrays (PublicKey.encrypt), so arrays take their key as given
    from vfl.paillier.keys import PublicKey

Plain = np.ndarray | float | int

# (min, max) elements per unit of parallel work, per kind of operation
_CHEAP_CHUNK = (8192, 32768)  # one multiplication per element (add, add_plain, product)
_MUL_CHUNK = (64, 4096)  # one exponentiation per element
_MULTIEXP_CHUNK = (2048, 65536)  # rows per tile; Pippenger: bigger tiles amortize the buckets
_GROUP_CHUNK = (4096, 65536)  # rows per tile of per-bin sums
_MIN_PARALLEL_WORK = 4096  # row-features below which a matrix operation stays in this thread
# `X @ enc` for a row of X with at most this many distinct values (binned or WoE-encoded
# features), and at most 1/_LOW_CARD_RATIO of its length: sum the ciphertexts per value,
# then raise each sum to its value (`_multiexp_by_value`)
_LOW_CARD_VALUES = 256
_LOW_CARD_RATIO = 8


def _as_object(values: Sequence[object], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out.reshape(shape)


def _is_int(arr: np.ndarray) -> bool:
    return is_integer_array(arr)


def _run_chunked(kernel: str, total: int, chunk: tuple[int, int], make_args: Any) -> list[Any]:
    """Run `kernel` over [0, total) in chunks; make_args(a, b) builds one chunk's arguments."""
    ranges = _parallel.split(total, *chunk)
    return _parallel.run(kernel, [make_args(a, b) for a, b in ranges])


def _even(total: int, parts: int) -> list[tuple[int, int]]:
    size = -(-total // max(parts, 1))
    return [(i, min(i + size, total)) for i in range(0, total, size)] if total else []


def _tiles(rows: int, cols: int, chunk: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Split a rows x cols matrix operation into (row range, column range) tiles.

    Columns (outputs: features) are dealt out to the workers first, so that each
    tile keeps all rows and Pippenger / joint bin cells stay as efficient as in
    one piece; rows are split only to bound memory (at most chunk[1] per tile)
    or when there are fewer columns than workers.
    """
    if rows == 0 or cols == 0:
        return []
    min_rows, max_rows = chunk
    w = _parallel.workers()
    parallel = w > 1 and rows * cols >= _MIN_PARALLEL_WORK
    col_parts = min(w, cols) if parallel else 1
    row_parts = -(-rows // max_rows)
    if parallel and col_parts < w:
        row_parts = max(row_parts, min(-(-w // col_parts), max(1, rows // min_rows)))
    return [(r, c) for r in _even(rows, row_parts) for c in _even(cols, col_parts)]


def _in_process(total: int, chunk: tuple[int, int]) -> bool:
    """True when `total` elements of work would run as one chunk in this thread anyway."""
    return _parallel.workers() == 1 or len(_parallel.split(total, *chunk)) <= 1


def _mulmod(a: np.ndarray, b: np.ndarray, nsq: Any) -> np.ndarray:
    """a * b mod n^2 elementwise for object arrays of one shape (a homomorphic add)."""
    if _in_process(a.size, _CHEAP_CHUNK):
        return a * b % nsq
    fa, fb = a.ravel().tolist(), b.ravel().tolist()
    n2 = int(nsq)
    out = _concat(_run_chunked("add", len(fa), _CHEAP_CHUNK,
                               lambda i, j: (n2, IntVec(fa[i:j]), IntVec(fb[i:j]))))
    return _as_object(out, a.shape)


def _concat(vecs: list[IntVec]) -> list[Any]:
    out: list[Any] = []
    for v in vecs:
        out.extend(v.values)
    return out


class EncryptedArray:
    """Ciphertexts under `public_key`, each encoding a value at `precision` fractional bits."""

    __array_priority__ = 1000  # make `ndarray @ EncryptedArray` call our __rmatmul__

    def __init__(self, public_key: PublicKey, cipher: np.ndarray, precision: int) -> None:
        if cipher.dtype != object:
            raise PaillierError("ciphertexts must be an object array of integers")
        self.public_key = public_key
        self.cipher = cipher
        self.precision = int(precision)

    def _new(self, cipher: np.ndarray, precision: int | None = None) -> EncryptedArray:
        return EncryptedArray(self.public_key, cipher, self.precision if precision is None else precision)

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
        return self._new(sub)

    def reshape(self, *shape: int) -> EncryptedArray:
        return self._new(self.cipher.reshape(*shape))

    @property
    def T(self) -> EncryptedArray:  # noqa: N802 - numpy naming
        return self._new(self.cipher.T)

    def __repr__(self) -> str:
        return (f"EncryptedArray(shape={self.shape}, precision={self.precision}, "
                f"key={self.public_key.fingerprint.hex()})")

    # -- helpers ------------------------------------------------------------
    def _same_key(self, other: EncryptedArray) -> None:
        if other.public_key != self.public_key:
            raise PaillierError("cannot combine ciphertexts under different public keys")

    def _flat(self) -> list[Any]:
        return self.cipher.ravel().tolist()

    def with_precision(self, precision: int) -> EncryptedArray:
        """The same values re-encoded at a higher precision (ciphertext ^ 2^k)."""
        k = precision - self.precision
        if k < 0:
            raise PaillierError("cannot lower the precision of ciphertexts")
        if k == 0:
            return self
        return self._new(_as_object(self._pow_common(self._flat(), 1 << k), self.shape), precision)

    def _pow_common(self, flat: list[Any], k: int) -> list[Any]:
        """c^k for every c and one exponent k (negative: inverse), GIL-free threads."""
        nsq = int(self.public_key.nsquare)
        if k == 1:
            return list(flat)
        out = _concat(_run_chunked("pow_common", len(flat), _MUL_CHUNK,
                                   lambda a, b: (nsq, IntVec(flat[a:b]), abs(k))))
        if k < 0:
            out = _kernels.batch_invert(out, self.public_key.nsquare)
        return out

    def _decode_residues(self, residues: np.ndarray) -> np.ndarray:
        """Decrypted residues -> float64 values (packed arrays unpack their slots)."""
        return decode(residues, self.precision, self.public_key.n)

    # -- homomorphic operators ---------------------------------------------
    def __add__(self, other: EncryptedArray | Plain) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            self._same_key(other)
            p = max(self.precision, other.precision)
            a, b = np.broadcast_arrays(self.with_precision(p).cipher, other.with_precision(p).cipher)
            return self._new(_mulmod(a, b, self.public_key.nsquare), p)
        m = encode(np.asarray(other), self.precision, self.public_key.n)
        c, m = np.broadcast_arrays(self.cipher, m)
        return self._new(self._add_plain_residues(c, m))

    def _add_plain_residues(self, c: np.ndarray, m: np.ndarray) -> np.ndarray:
        """c (1 + m n) mod n^2 for ciphertexts c and residues m of one shape."""
        pk = self.public_key
        if _in_process(c.size, _CHEAP_CHUNK):
            n = gmpy2.mpz(pk.n)
            return c * (m * n + 1) % pk.nsquare
        fc, fm = c.ravel().tolist(), m.ravel().tolist()
        out = _concat(_run_chunked("add_plain", len(fc), _CHEAP_CHUNK,
                                   lambda i, j: (pk.n, IntVec(fc[i:j]), IntVec(fm[i:j]))))
        return _as_object(out, c.shape)

    __radd__ = __add__

    def __neg__(self) -> EncryptedArray:
        return self._new(_as_object(self._pow_common(self._flat(), -1), self.shape))

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
            precision = 0 if _is_int(arr) else DEFAULT_PRECISION_BITS
        k = scaled_integers(arr, precision, what="multiply ciphertexts by")
        c, kb = np.broadcast_arrays(self.cipher, k)
        flat_c = c.ravel().tolist()
        uniq = np.unique(kb) if kb.dtype != object else None
        if uniq is not None and len(uniq) == 1:  # one scalar: a GIL-free list routine
            out = self._pow_common(flat_c, int(uniq[0]))
        else:
            flat_k = kb.ravel()
            nsq = int(self.public_key.nsquare)
            out = _concat(_run_chunked("mul", len(flat_c), _MUL_CHUNK,
                                       lambda a, b: (nsq, IntVec(flat_c[a:b]), flat_k[a:b])))
        return self._new(_as_object(out, c.shape), self.precision + precision)

    def __mul__(self, other: Plain) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            raise PaillierError("Paillier cannot multiply two ciphertexts")
        return self.mul(other)

    __rmul__ = __mul__

    def sum(self, axis: int | None = None) -> EncryptedArray:
        """Homomorphic sum along an axis (product of ciphertexts)."""
        nsq = int(self.public_key.nsquare)
        if axis is None:
            flat = self._flat()
            parts = _concat(_run_chunked("product", len(flat), _CHEAP_CHUNK,
                                         lambda a, b: (nsq, IntVec(flat[a:b]))))
            total = _kernels.tree_product(_as_object(parts, (len(parts),)), self.public_key.nsquare)
            return self._new(_as_object([total], ()))
        moved = np.moveaxis(self.cipher, axis, -1)
        rows = moved.reshape(-1, moved.shape[-1])
        v = rows
        mod = self.public_key.nsquare
        if v.shape[1] == 0:
            v = np.empty((rows.shape[0], 1), dtype=object)
            v[:] = _kernels.ONE
        while v.shape[1] > 1:  # pairwise rounds, vectorized over all rows
            half = v.shape[1] // 2
            head = v[:, : 2 * half : 2] * v[:, 1 : 2 * half : 2] % mod
            v = np.concatenate([head, v[:, 2 * half :]], axis=1) if v.shape[1] % 2 else head
        return self._new(v[:, 0].reshape(moved.shape[:-1]))

    def rmatmul(self, matrix: np.ndarray, precision: int | None = None) -> EncryptedArray:
        """`matrix @ self` for a plaintext (m, n) matrix and an encrypted (n,) or (n, k) array.

        The workhorse of gradient steps: X.T @ [[d]] is `enc_d.rmatmul(X.T)`. Runs
        Pippenger's bucket method over all n rows with signed digits; the cost is
        about m * n * b / log2(n) multiplications for b-bit plaintext integers, so
        a lower `precision` for the matrix is directly faster.
        """
        mat = np.asarray(matrix)
        if mat.ndim != 2 or self.ndim not in (1, 2) or mat.shape[1] != self.shape[0]:
            raise PaillierError(f"shape mismatch: {mat.shape} @ {self.shape}")
        if precision is None:
            precision = 0 if _is_int(mat) else DEFAULT_PRECISION_BITS
        k = scaled_integers(mat, precision, what="multiply ciphertexts by")
        if self.ndim == 2:
            cols = [self._multiexp(self.cipher[:, j].tolist(), k) for j in range(self.shape[1])]
            out = np.empty((mat.shape[0], self.shape[1]), dtype=object)
            for j, col in enumerate(cols):
                out[:, j] = col
            return self._new(out, self.precision + precision)
        return self._new(_as_object(self._multiexp(self._flat(), k), (mat.shape[0],)),
                         self.precision + precision)

    def _multiexp(self, flat: list[Any], k: np.ndarray) -> list[Any]:
        """prod_i flat[i]^k[j, i] for every row j of the signed integer matrix k.

        Rows with few distinct values go through `_multiexp_by_value`, the rest
        through Pippenger's bucket method (`_multiexp_pippenger`).
        """
        m, n = k.shape
        low: list[int] = []
        values: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        for j in range(m):
            if len(np.unique(k[j, : 8 * _LOW_CARD_VALUES])) > _LOW_CARD_VALUES:
                continue  # a cheap look at the first values rules out most continuous columns
            vals, inverse = np.unique(k[j], return_inverse=True)
            if len(vals) <= _LOW_CARD_VALUES and len(vals) * _LOW_CARD_RATIO <= n:
                low.append(j)
                values.append(vals)
                codes.append(inverse.ravel())
        if not low:
            return self._multiexp_pippenger(flat, k)
        out: list[Any] = [None] * m
        for j, v in zip(low, self._multiexp_by_value(flat, values, codes), strict=True):
            out[j] = v
        rest = [j for j in range(m) if out[j] is None]
        if rest:
            for j, v in zip(rest, self._multiexp_pippenger(flat, k[rest]), strict=True):
                out[j] = v
        return out

    def _multiexp_by_value(self, flat: list[Any], values: list[np.ndarray],
                           codes: list[np.ndarray]) -> list[Any]:
        """prod_i flat[i]^(values[j][codes[j][i]]) per row j: per-value sums, then one small multi-exp.

        Row j's product is prod_v (prod_{i: code i = v} flat[i])^(value v): the
        per-value products cost about one multiplication per element (fewer over
        joint cells of several rows, `_kernels.k_group_sum`) instead of the
        b / log2(n) of Pippenger for b-bit values, and the second step has only
        as many bases as distinct values. Identical results; binned or WoE-encoded
        features (at most a few dozen values per column) are the common case.
        """
        f = len(values)
        groups = max(len(v) for v in values)
        sums = EncryptedArray(self.public_key, _as_object(flat, (len(flat),)), self.precision).group_sum(
            np.stack(codes, axis=1), groups)
        exps = np.zeros((f, f * groups), dtype=object if any(v.dtype == object for v in values) else np.int64)
        for j, v in enumerate(values):
            exps[j, j * groups : j * groups + len(v)] = v
        return self._multiexp_pippenger(sums.cipher.ravel().tolist(), exps)

    def _multiexp_pippenger(self, flat: list[Any], k: np.ndarray) -> list[Any]:
        """prod_i flat[i]^k[j, i] by Pippenger's bucket method, tiled over the workers."""
        m = k.shape[0]
        nsq = int(self.public_key.nsquare)
        mod = self.public_key.nsquare
        tiles = _tiles(len(flat), m, _MULTIEXP_CHUNK)
        parts = _parallel.run("multiexp", [(nsq, IntVec(flat[a:b]), np.ascontiguousarray(k[c:d, a:b]))
                                           for (a, b), (c, d) in tiles])
        p_tot = [_kernels.ONE] * m
        q_tot = [_kernels.ONE] * m
        for (_, (c, _d)), (pv, qv) in zip(tiles, parts, strict=True):
            for j, (pj, qj) in enumerate(zip(pv.values, qv.values, strict=True)):
                p_tot[c + j] = p_tot[c + j] * pj % mod
                q_tot[c + j] = q_tot[c + j] * qj % mod
        needs = [j for j in range(m) if q_tot[j] != 1]
        if needs:
            inv = _kernels.batch_invert([q_tot[j] for j in needs], mod)
            for j, iv in zip(needs, inv, strict=True):
                p_tot[j] = p_tot[j] * iv % mod
        return p_tot

    def __rmatmul__(self, matrix: np.ndarray) -> EncryptedArray:
        return self.rmatmul(matrix)

    def group_sum(self, groups: np.ndarray, n_groups: int) -> EncryptedArray:
        """Sums of ciphertexts per group.

        `groups` is an int array of shape (n,) or (n, f) with values in [0, n_groups);
        the result has shape (n_groups,) or (f, n_groups). Used for per-bin sums.
        Features are summed in blocks over their joint bin cells where that saves
        multiplications (see `_kernels.k_group_sum`).
        """
        g = np.asarray(groups)
        if self.ndim != 1 or g.ndim not in (1, 2) or g.shape[0] != self.shape[0]:
            raise PaillierError(f"groups of shape {g.shape} do not match ciphertexts {self.shape}")
        if not _is_int(g):
            raise PaillierError(f"group indices must be integers, got {g.dtype}")
        if n_groups < 1:
            raise PaillierError(f"n_groups must be >= 1, got {n_groups}")
        if g.size and (g.min() < 0 or g.max() >= n_groups):
            raise PaillierError(f"group index outside [0, {n_groups})")
        cols = (g[:, None] if g.ndim == 1 else g).astype(np.int64)
        f = cols.shape[1]
        nsq = int(self.public_key.nsquare)
        flat = self._flat()
        tiles = _tiles(len(flat), f, _GROUP_CHUNK)
        parts = _parallel.run("group_sum", [(nsq, IntVec(flat[a:b]), np.ascontiguousarray(cols[a:b, c:d]), n_groups)
                                            for (a, b), (c, d) in tiles])
        out = np.empty((f, n_groups), dtype=object)
        out[:] = _kernels.ONE
        mod = self.public_key.nsquare
        for (_, (c, d)), vec in zip(tiles, parts, strict=True):
            block = _as_object(vec.values, (d - c, n_groups))
            out[c:d] = out[c:d] * block % mod
        if g.ndim == 1:
            out = out[0]
        return self._new(out)

    def rerandomize(self, strong: bool = True) -> EncryptedArray:
        """Multiply every ciphertext by a fresh encryption of zero.

        Use before returning ciphertexts derived from the peer's own ciphertexts,
        so that the peer cannot relate them to what it sent. `strong` (default)
        uses r^n with r uniform in Z_n^*, which hides the origin even from the key
        owner unconditionally; `strong=False` uses the fast DJN randomizers
        (about 10x faster; see docs/paillier.md for what they hide from whom).
        """
        pk = self.public_key
        obf = pk.raw_uniform_obfuscators(self.size) if strong else pk.raw_obfuscators(self.size)
        return self._new(_mulmod(self.cipher, _as_object(obf, self.shape), pk.nsquare))

    # -- masking ------------------------------------------------------------
    def add_residues(self, residues: np.ndarray) -> EncryptedArray:
        """Add raw plaintext residues mod n (e.g. a `random_mask`) without encoding."""
        n = self.public_key.n
        r = np.broadcast_to(np.asarray(residues, dtype=object), self.shape)
        m = _as_object([int(v) % n for v in r.ravel().tolist()], self.shape)
        return self._new(self._add_plain_residues(self.cipher, m))

    # -- interop with phe ---------------------------------------------------
    def to_phe(self) -> list[paillier.EncryptedNumber]:
        if self.precision % 4:
            raise PaillierError("phe interop needs a precision that is a multiple of 4 bits")
        pk = self.public_key.to_phe()
        return [paillier.EncryptedNumber(pk, int(c), -self.precision // 4) for c in self._flat()]

    @classmethod
    def from_phe(cls, numbers: Sequence[paillier.EncryptedNumber], public_key: PublicKey) -> EncryptedArray:
        """phe ciphertexts (one exponent) under `public_key` as an array."""
        if not numbers:
            raise PaillierError("no ciphertexts given")
        exps = {x.exponent for x in numbers}
        if len(exps) != 1:
            raise PaillierError("phe ciphertexts with mixed exponents; decrease_exponent_to first")
        if any(int(x.public_key.n) != int(public_key.n) for x in numbers):
            raise PaillierError("phe ciphertexts under another key than the one given")
        pk = public_key
        cs = [gmpy2.mpz(x.ciphertext(be_secure=False)) for x in numbers]
        return cls(pk, _as_object(cs, (len(cs),)), -4 * exps.pop())

    # -- wire format ----------------------------------------------------------
    def to_bytes(self) -> bytes:
        return dumps(self)

    @classmethod
    def from_bytes(cls, data: bytes, public_key: PublicKey) -> EncryptedArray:
        """Parse `to_bytes` output under `public_key` (plain or packed: `vfl.paillier.load_ciphertexts`)."""
        cipher, precision = parse_plain(data, public_key)
        return cls(public_key, cipher, precision)


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
