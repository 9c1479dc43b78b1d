"""The Paillier number crunching: pure functions on raw integers, run in any process.

Every function here takes and returns plain integers (gmpy2 `mpz`), `IntVec`s
(lists of them that travel between processes as fixed-width big-endian bytes),
numpy integer arrays and Python scalars, so that the same code runs in the
calling thread, in a local process pool, or as a Ray task (`_parallel`).
Nothing here knows about fixed-point encoding, shapes or `phe` objects.

Per-process caches hold what is worth computing once per key: the DJN base
hs = h^n and its fixed-base tables (mod n^2 for the public path, mod p^2 and
q^2 for the key owner's CRT path), and the CRT decryption constants.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gmpy2
import numpy as np

mpz = gmpy2.mpz
ONE = mpz(1)

# -- raw integer vectors ------------------------------------------------------------


class IntVec:
    """A list of non-negative integers; crosses process boundaries as fixed-width
    big-endian bytes (`_ipc`), never as Python or phe objects."""

    __slots__ = ("values",)

    def __init__(self, values: Iterable[Any]) -> None:
        self.values: list[Any] = values if isinstance(values, list) else list(values)

    def __len__(self) -> int:
        return len(self.values)


def to_blob(values: Sequence[Any]) -> tuple[int, bytes]:
    """(width, bytes): each value as `width` big-endian bytes."""
    if not values:
        return 0, b""
    vs = [v if isinstance(v, type(ONE)) else mpz(v) for v in values]
    width = max(1, (max(vs).bit_length() + 7) // 8)
    return width, b"".join(v.to_bytes(width, "big") for v in vs)


def from_blob(width: int, blob: bytes) -> list[Any]:
    if width == 0:
        return []
    if len(blob) % width:
        raise ValueError("integer blob length is not a multiple of its width")
    frm = mpz.from_bytes
    return [frm(blob[i : i + width], "big") for i in range(0, len(blob), width)]


# -- small helpers -----------------------------------------------------------------


def _obj(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values) if not isinstance(values, np.ndarray) else values
    return out


def batch_invert(values: list[Any], mod: Any) -> list[Any]:
    """Inverses of many units mod `mod` with one modular inversion (Montgomery's trick)."""
    if not values:
        return []
    prefix = [values[0]]
    for v in values[1:]:
        prefix.append(prefix[-1] * v % mod)
    inv = gmpy2.invert(prefix[-1], mod)
    out = [ONE] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inv * prefix[i - 1] % mod
        inv = inv * values[i] % mod
    out[0] = inv
    return out


def random_unit_jacobi_minus_one(n: Any) -> Any:
    """A uniformly random h in Z_n^* with Jacobi symbol (h/n) = -1."""
    while True:
        h = mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.jacobi(h, n) == -1:
            return h


# -- fixed-base exponentiation ------------------------------------------------------


class FixedBase:
    """base^a mod m for many exponents a < 2^exp_bits, by a table of window `w` bits.

    Table i holds base^(d * 2^(w*i)) for every digit d < 2^w, so one power costs
    ceil(exp_bits / w) multiplications and no squarings; a batch runs as numpy
    object-array operations (one gather, one multiply, one reduction per window).
    Memory: 2^w * ceil(exp_bits / w) residues.
    """

    def __init__(self, base: Any, mod: Any, exp_bits: int, window: int) -> None:
        self.mod = mod
        self.exp_bits = exp_bits
        self.window = window
        self.nwin = -(-exp_bits // window)
        size = 1 << window
        tables = []
        g = mpz(base) % mod
        for _ in range(self.nwin):
            t = [ONE] * size
            acc = ONE
            for d in range(1, size):
                acc = acc * g % mod
                t[d] = acc
            tables.append(_obj(t))
            g = acc * g % mod  # base^(2^(w*(i+1)))
        self.tables = tables

    def pow_digits(self, digits: np.ndarray) -> np.ndarray:
        """Powers for exponents given as (count, nwin) window digits, least significant first."""
        t = self.tables
        acc = t[0][digits[:, 0]]
        mod = self.mod
        for i in range(1, self.nwin):
            acc = acc * t[i][digits[:, i]]
            acc %= mod
        return acc


def random_digits(count: int, exp_bits: int, window: int) -> np.ndarray:
    """Window digits of `count` uniformly random exponents of ceil(exp_bits / window) * window
    bits, from the OS CSPRNG (each digit from its own 16 random bits, masked)."""
    nwin = -(-exp_bits // window)
    raw = np.frombuffer(secrets.token_bytes(2 * count * nwin), dtype=np.uint16)
    return (raw & ((1 << window) - 1)).astype(np.intp).reshape(count, nwin)


# -- per-key state (cached per process) --------------------------------------------

DEFAULT_WINDOW = 10
SMALL_MARGIN_BITS = 160  # decrypt_small: accept p-half results below 2^(|p| - 160)
TABLE_THRESHOLD = 96  # below this many powers (and no table yet), exponentiate directly
_CACHE_KEYS = 4


def djn_exp_bits(n: Any) -> int:
    """Length of the DJN random exponent: ceil(k/2) bits for a k-bit modulus."""
    return (int(n).bit_length() + 1) // 2


class PublicMath:
    """What encrypting under someone's public key n needs: the DJN base and its table."""

    def __init__(self, n: int, window: int) -> None:
        self.n = mpz(n)
        self.nsq = self.n * self.n
        self.window = window
        self.exp_bits = djn_exp_bits(n)
        self.hs = gmpy2.powmod(random_unit_jacobi_minus_one(self.n), self.n, self.nsq)
        self._table: FixedBase | None = None
        self._lock = threading.Lock()

    def table(self) -> FixedBase:
        with self._lock:
            if self._table is None:
                self._table = FixedBase(self.hs, self.nsq, self.exp_bits, self.window)
            return self._table

    def obfuscators(self, count: int) -> list[Any]:
        """`count` DJN randomizers hs^a mod n^2, a uniform of ceil(k/2) bits."""
        if count <= 0:
            return []
        if self._table is None and count < TABLE_THRESHOLD:
            exps = [mpz(secrets.randbits(self.exp_bits)) for _ in range(count)]
            return list(gmpy2.powmod_exp_list(self.hs, exps, self.nsq))
        return self.table().pow_digits(random_digits(count, self.exp_bits, self.window)).tolist()


class CrtMath:
    """The key owner's fast paths: CRT encryption (tables mod p^2, q^2) and CRT decryption."""

    def __init__(self, p: int, q: int, window: int) -> None:
        p, q = mpz(p), mpz(q)
        if q < p:
            p, q = q, p
        self.p, self.q = p, q
        self.n = p * q
        self.nsq = self.n * self.n
        self.psq, self.qsq = p * p, q * q
        self.window = window
        self.exp_bits = djn_exp_bits(self.n)
        h = random_unit_jacobi_minus_one(self.n)
        self.hs_p = gmpy2.powmod(h, self.n, self.psq)
        self.hs_q = gmpy2.powmod(h, self.n, self.qsq)
        self.psq_inv_q = gmpy2.invert(self.psq, self.qsq)
        g = self.n + 1
        self.pm1, self.qm1 = p - 1, q - 1
        self.hp = gmpy2.invert((gmpy2.powmod(g, p - 1, self.psq) - 1) // p, p)
        self.hq = gmpy2.invert((gmpy2.powmod(g, q - 1, self.qsq) - 1) // q, q)
        self.p_inv_q = gmpy2.invert(p, q)
        self._tables: tuple[FixedBase, FixedBase] | None = None
        self._lock = threading.Lock()

    def tables(self) -> tuple[FixedBase, FixedBase]:
        with self._lock:
            if self._tables is None:
                self._tables = (FixedBase(self.hs_p, self.psq, self.exp_bits, self.window),
                                FixedBase(self.hs_q, self.qsq, self.exp_bits, self.window))
            return self._tables

    def _halves(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        if self._tables is None and count < TABLE_THRESHOLD:
            exps = [mpz(secrets.randbits(self.exp_bits)) for _ in range(count)]
            return (_obj(gmpy2.powmod_exp_list(self.hs_p, exps, self.psq)),
                    _obj(gmpy2.powmod_exp_list(self.hs_q, exps, self.qsq)))
        tp, tq = self.tables()
        digits = random_digits(count, self.exp_bits, self.window)
        return tp.pow_digits(digits), tq.pow_digits(digits)

    def obfuscators(self, count: int) -> list[Any]:
        """The same DJN randomizers hs^a mod n^2 as `PublicMath`, computed mod p^2 and q^2."""
        if count <= 0:
            return []
        rp, rq = self._halves(count)
        x = (rq - rp) * self.psq_inv_q % self.qsq
        return (rp + x * self.psq).tolist()

    def encrypt(self, residues: Sequence[Any]) -> list[Any]:
        """(1 + m n) hs^a mod n^2 for plaintext residues m, entirely in the CRT domain."""
        count = len(residues)
        if count == 0:
            return []
        rp, rq = self._halves(count)
        m = _obj([mpz(v) for v in residues])
        # (1 + m n) mod p^2 = 1 + p * (m q mod p): the plaintext part costs a 1024-bit product
        cp = rp * (1 + (m * self.q % self.p) * self.p) % self.psq
        cq = rq * (1 + (m * self.p % self.q) * self.q) % self.qsq
        x = (cq - cp) * self.psq_inv_q % self.qsq
        return (cp + x * self.psq).tolist()

    def decrypt(self, ciphers: Sequence[Any]) -> list[Any]:
        """Plaintext residues mod n (CRT: one exponentiation mod p^2 and one mod q^2 each)."""
        if not ciphers:
            return []
        cs = list(ciphers)
        xp = gmpy2.powmod_base_list(cs, self.pm1, self.psq)
        xq = gmpy2.powmod_base_list(cs, self.qm1, self.qsq)
        p, q = self.p, self.q
        mp = (_obj(xp) - 1) // p * self.hp % p
        mq = (_obj(xq) - 1) // q * self.hq % q
        return (mp + (mq - mp) * self.p_inv_q % q * p).tolist()

    def small_bits(self) -> int:
        """Plaintexts below 2^small_bits in magnitude decrypt from the p half alone."""
        return int(self.p.bit_length()) - SMALL_MARGIN_BITS

    def decrypt_small(self, ciphers: Sequence[Any]) -> list[Any]:
        """Like `decrypt`, at half the cost for plaintexts of magnitude below 2^small_bits.

        m mod p is computed first; if its centered value v satisfies |v| < 2^small_bits,
        the plaintext is v (a value of that size is its own residue mod p). Otherwise
        (large or uniformly masked values) the q half is computed and combined as in
        `decrypt`. A plaintext whose true value is large yet lies within 2^small_bits
        of a multiple of p cannot be produced without knowing p, except with
        probability about 2^(small_bits+1) / p = 2^-(SMALL_MARGIN_BITS - 1) per
        ciphertext, so the output equals `decrypt`'s and nothing about p leaks.
        """
        if not ciphers:
            return []
        cs = list(ciphers)
        p, n = self.p, self.n
        xp = gmpy2.powmod_base_list(cs, self.pm1, self.psq)
        mp = ((_obj(xp) - 1) // p * self.hp % p).tolist()
        half, limit = p >> 1, ONE << self.small_bits()
        out: list[Any] = [None] * len(cs)
        slow: list[int] = []
        for i, m in enumerate(mp):
            v = m - p if m > half else m
            if -limit < v < limit:
                out[i] = v % n
            else:
                slow.append(i)
        if slow:
            q = self.q
            xq = gmpy2.powmod_base_list([cs[i] for i in slow], self.qm1, self.qsq)
            mq = (_obj(xq) - 1) // q * self.hq % q
            m_p = _obj([mp[i] for i in slow])
            full = (m_p + (mq - m_p) * self.p_inv_q % q * p).tolist()
            for i, v in zip(slow, full, strict=True):
                out[i] = v
        return out


_lock = threading.Lock()
_public_cache: OrderedDict[tuple[int, int], PublicMath] = OrderedDict()
_crt_cache: OrderedDict[tuple[int, int, int], CrtMath] = OrderedDict()


def _cached(cache: OrderedDict, key: tuple, make: Callable[[], Any]) -> Any:
    with _lock:
        obj = cache.get(key)
        if obj is not None:
            cache.move_to_end(key)
            return obj
    obj = make()  # outside the lock: building the object costs exponentiations
    with _lock:
        obj = cache.setdefault(key, obj)
        cache.move_to_end(key)
        while len(cache) > _CACHE_KEYS:
            cache.popitem(last=False)
    return obj


def public_math(n: int, window: int = DEFAULT_WINDOW) -> PublicMath:
    return _cached(_public_cache, (int(n), window), lambda: PublicMath(n, window))


def crt_math(p: int, q: int, window: int = DEFAULT_WINDOW) -> CrtMath:
    p, q = (int(p), int(q)) if p < q else (int(q), int(p))
    return _cached(_crt_cache, (p, q, window), lambda: CrtMath(p, q, window))


def clear_caches() -> None:
    """Forget every key's tables in this process (tests, memory)."""
    with _lock:
        _public_cache.clear()
        _crt_cache.clear()


# -- kernels: the units of work the backends run ------------------------------------


def k_obfuscators_public(n: int, window: int, count: int) -> IntVec:
    return IntVec(public_math(n, window).obfuscators(count))


def k_obfuscators_crt(p: int, q: int, window: int, count: int) -> IntVec:
    return IntVec(crt_math(p, q, window).obfuscators(count))


def k_encrypt_public(n: int, window: int, residues: IntVec) -> IntVec:
    pm = public_math(n, window)
    obf = pm.obfuscators(len(residues))
    return IntVec(combine_encrypt(pm.n, pm.nsq, residues.values, obf))


def k_encrypt_crt(p: int, q: int, window: int, residues: IntVec) -> IntVec:
    return IntVec(crt_math(p, q, window).encrypt(residues.values))


def k_decrypt_crt(p: int, q: int, window: int, ciphers: IntVec) -> IntVec:
    return IntVec(crt_math(p, q, window).decrypt(ciphers.values))


def k_decrypt_small(p: int, q: int, window: int, ciphers: IntVec) -> IntVec:
    return IntVec(crt_math(p, q, window).decrypt_small(ciphers.values))


def k_obfuscators_uniform(n: int, count: int) -> IntVec:
    """`count` values r^n mod n^2 for r uniform in Z_n^*: exactly standard Paillier randomness."""
    nn = mpz(n)
    rs = []
    while len(rs) < count:
        r = mpz(secrets.randbelow(int(nn) - 1) + 1)
        if gmpy2.gcd(r, nn) == 1:
            rs.append(r)
    return IntVec(gmpy2.powmod_base_list(rs, nn, nn * nn) if rs else [])


def combine_encrypt(n: Any, nsq: Any, residues: Sequence[Any], obf: Sequence[Any]) -> list[Any]:
    """(1 + m n) R mod n^2 = R + n (m R mod n) mod n^2, for residues m and randomizers R."""
    if not len(residues):
        return []
    m = _obj([mpz(v) for v in residues])
    r = _obj(obf)
    return ((r + (m * r % n) * n) % nsq).tolist()


def k_mul(nsq: int, ciphers: IntVec, exps: np.ndarray | list[int]) -> IntVec:
    """c_i^(k_i) mod n^2 elementwise, k_i signed; negatives by one batched inversion."""
    mod = mpz(nsq)
    ks = exps.tolist() if isinstance(exps, np.ndarray) else list(exps)
    out: list[Any] = []
    neg_at: list[int] = []
    for i, (c, k) in enumerate(zip(ciphers.values, ks, strict=True)):
        if k == 1:
            out.append(c)
        elif k == 0:
            out.append(ONE)
        elif k > 0:
            out.append(gmpy2.powmod(c, k, mod))
        else:
            out.append(c if k == -1 else gmpy2.powmod(c, -k, mod))
            neg_at.append(i)
    if neg_at:
        inv = batch_invert([out[i] for i in neg_at], mod)
        for i, v in zip(neg_at, inv, strict=True):
            out[i] = v
    return IntVec(out)


def k_pow_common(nsq: int, ciphers: IntVec, exp: int) -> IntVec:
    """c_i^k mod n^2 for one exponent k >= 0 (GIL-free gmpy2 list routine)."""
    return IntVec(list(gmpy2.powmod_base_list(ciphers.values, mpz(exp), mpz(nsq))))


def k_add(nsq: int, a: IntVec, b: IntVec) -> IntVec:
    return IntVec((_obj(a.values) * _obj(b.values) % mpz(nsq)).tolist())


def k_add_plain(n: int, ciphers: IntVec, residues: IntVec) -> IntVec:
    """c (1 + m n) mod n^2 elementwise."""
    nn = mpz(n)
    c = _obj(ciphers.values)
    m = _obj(residues.values)
    return IntVec((c * (1 + m * nn) % (nn * nn)).tolist())


def k_product(nsq: int, ciphers: IntVec) -> IntVec:
    """The product of all ciphertexts (a homomorphic sum), as a one-element IntVec."""
    return IntVec([tree_product(_obj(ciphers.values), mpz(nsq))])


def tree_product(values: np.ndarray, mod: Any) -> Any:
    """Product of an object array mod `mod` by pairwise vectorized rounds."""
    v = values
    if len(v) == 0:
        return ONE
    while len(v) > 1:
        half = len(v) // 2
        head = v[: 2 * half : 2] * v[1 : 2 * half : 2] % mod
        v = np.concatenate([head, v[2 * half :]]) if len(v) % 2 else head
    return v[0]


def group_products(values: np.ndarray, ids: np.ndarray, n_groups: int, mod: Any) -> np.ndarray:
    """Products of `values` per group id in [0, n_groups) (1 for an empty group), mod `mod`.

    Sorts by id, then multiplies neighbours of equal id pairwise in vectorized
    rounds: len(values) - (#non-empty groups) multiplications in all.
    """
    out = np.empty(n_groups, dtype=object)
    out[:] = [ONE] * n_groups
    if len(values) == 0:
        return out
    order = np.argsort(ids, kind="stable")
    g = ids[order]
    v = values[order]
    while True:
        same = g[1:] == g[:-1]
        if not same.any():
            break
        starts = np.flatnonzero(np.r_[True, ~same])
        run_start = np.repeat(starts, np.diff(np.r_[starts, len(g)]))
        rank = np.arange(len(g)) - run_start
        left = np.flatnonzero((rank % 2 == 0) & np.r_[same, False])
        v[left] = v[left] * v[left + 1] % mod
        keep = np.ones(len(g), dtype=bool)
        keep[left + 1] = False
        g, v = g[keep], v[keep]
    out[g] = v
    return out


def _bucket_aggregate(buckets: np.ndarray, mod: Any) -> np.ndarray:
    """For buckets of shape (m, h) (bucket d-1 holds the product for digit d): prod_d B_d^d.

    Summation by parts: 2h multiplications per row, vectorized over the m rows.
    """
    m, h = buckets.shape
    run = np.empty(m, dtype=object)
    run[:] = [ONE] * m
    tot = run.copy()
    started = False
    for d in range(h - 1, -1, -1):
        col = buckets[:, d]
        run = run * col % mod
        if started:
            tot = tot * run % mod
        else:
            tot = run.copy()
            started = True
    return tot


def _choose_window(nbits: int, nnz: int) -> int:
    """Pippenger window c minimizing windows * (terms + buckets) for signed digits."""
    best, best_c = None, 1
    for c in range(1, 21):
        windows = -(-(nbits + 1) // c)
        cost = windows * (nnz + 2 * (1 << (c - 1))) + windows * c
        if best is None or cost < best:
            best, best_c = cost, c
    return best_c


def _signed_digits(mag: np.ndarray, c: int, windows: int) -> list[np.ndarray]:
    """Balanced base-2^c digits (|d| <= 2^(c-1)) of non-negative magnitudes, low first."""
    half, full, mask = 1 << (c - 1), 1 << c, (1 << c) - 1
    out = []
    carry = np.zeros(mag.shape, dtype=np.int64 if mag.dtype != object else object)
    for w in range(windows):
        d = ((mag >> (c * w)) & mask) + carry
        big = d > half
        carry = big.astype(carry.dtype)
        d = np.where(big, d - full, d)
        out.append(d)
    return out


MULTIEXP_BATCH = 1 << 18  # row-features per bucket pass: bounds a worker's memory (~0.3 KB each)


def k_multiexp(nsq: int, ciphers: IntVec, exps: np.ndarray) -> tuple[IntVec, IntVec]:
    """For a (m, L) matrix of signed integer exponents: per row j, prod_i c_i^(k_ji).

    Pippenger's bucket method with balanced digits over all L bases; returns
    (P, Q) with the row result P_j / Q_j (positive and negative digit parts), so
    the caller inverts once per row after combining chunks. Rows are processed
    in batches of about MULTIEXP_BATCH / L, which bounds the memory of the
    intermediate products whatever m.
    """
    mod = mpz(nsq)
    cs = _obj(ciphers.values)
    m, L = exps.shape
    p_out: list[Any] = []
    q_out: list[Any] = []
    step = max(1, MULTIEXP_BATCH // max(L, 1))
    for j in range(0, m, step):
        p, q = _multiexp_rows(cs, exps[j : j + step], mod)
        p_out.extend(p)
        q_out.extend(q)
    return IntVec(p_out), IntVec(q_out)


def _multiexp_rows(cs: np.ndarray, exps: np.ndarray, mod: Any) -> tuple[list[Any], list[Any]]:
    m, L = exps.shape
    ones = [ONE] * m
    if L == 0 or m == 0:
        return ones, list(ones)
    is_obj = exps.dtype == object
    mag = np.abs(exps) if not is_obj else np.vectorize(abs, otypes=[object])(exps)
    neg = exps < 0
    maxmag = int(mag.max()) if mag.size else 0
    if maxmag == 0:
        return ones, list(ones)
    nbits = maxmag.bit_length()
    nnz = int(np.count_nonzero(mag)) // max(m, 1) or 1
    c = _choose_window(nbits, nnz)
    windows = -(-(nbits + 1) // c)
    half = 1 << (c - 1)
    digits = _signed_digits(mag, c, windows)
    acc_p = _obj(ones)
    acc_q = _obj(ones)
    row_ids = np.arange(m, dtype=np.int64)[:, None] * half
    col_idx = np.broadcast_to(np.arange(L), (m, L))
    shift = mpz(1) << c
    first = True
    for w in range(windows - 1, -1, -1):
        d = digits[w]
        if is_obj:
            d = d.astype(np.int64)
        signed = np.where(neg, -d, d)
        if not first:
            acc_p = _obj(gmpy2.powmod_base_list(acc_p.tolist(), shift, mod))
            acc_q = _obj(gmpy2.powmod_base_list(acc_q.tolist(), shift, mod))
        for part, acc_sel in ((signed > 0, 0), (signed < 0, 1)):
            if not part.any():
                continue
            ids = (row_ids + np.abs(signed) - 1)[part]
            vals = cs[col_idx[part]]
            buckets = group_products(vals, ids, m * half, mod).reshape(m, half)
            agg = _bucket_aggregate(buckets, mod)
            if acc_sel == 0:
                acc_p = acc_p * agg % mod
            else:
                acc_q = acc_q * agg % mod
        first = False
    return acc_p.tolist(), acc_q.tolist()


def _plan_blocks(groups: np.ndarray, n_groups: int) -> list[int]:
    """Split feature columns into blocks of 1-4 whose joint cells make per-bin sums cheaper.

    Summing over a block of g features costs (rows + g * cells) multiplications
    instead of g * rows, where cells is the number of distinct bin combinations.
    """
    rows, f = groups.shape
    sizes: list[int] = []
    j = 0
    while j < f:
        best_g, best_cost = 1, float(rows)
        for g in (2, 3, 4):
            if j + g > f or n_groups**g >= 1 << 62:
                break
            ids = _joint_ids(groups[:, j : j + g], n_groups)
            cells = len(np.unique(ids))
            cost = (rows + g * cells) / g
            if cost < best_cost:
                best_g, best_cost = g, cost
        sizes.append(best_g)
        j += best_g
    return sizes


def _joint_ids(block: np.ndarray, n_groups: int) -> np.ndarray:
    ids = np.zeros(block.shape[0], dtype=np.int64)
    for t in range(block.shape[1] - 1, -1, -1):
        ids = ids * n_groups + block[:, t]
    return ids


def k_group_sum(nsq: int, ciphers: IntVec, groups: np.ndarray, n_groups: int) -> IntVec:
    """Per column of `groups` (rows, f): the product of ciphertexts per group id.

    Returns f * n_groups products, column-major by feature.
    """
    mod = mpz(nsq)
    cs = _obj(ciphers.values)
    rows, f = groups.shape
    out: list[Any] = []
    j = 0
    for g in _plan_blocks(groups, n_groups):
        block = groups[:, j : j + g].astype(np.int64)
        if g == 1:
            out.extend(group_products(cs, block[:, 0], n_groups, mod).tolist())
        else:
            ids = _joint_ids(block, n_groups)
            cells, inverse = np.unique(ids, return_inverse=True)
            cell_vals = group_products(cs, inverse.ravel(), len(cells), mod)
            for t in range(g):
                bins = (cells // (n_groups**t)) % n_groups
                out.extend(group_products(cell_vals, bins, n_groups, mod).tolist())
        j += g
    return IntVec(out)


def k_pack(nsq: int, ciphers: IntVec, slots: int, slot_bits: int) -> IntVec:
    """Groups of `slots` ciphertexts -> one each: prod_t c_t^(2^(t * slot_bits)) by Horner's rule."""
    mod = mpz(nsq)
    cs = _obj(ciphers.values).reshape(-1, slots)
    acc = cs[:, slots - 1].tolist()
    shift = ONE << slot_bits
    for t in range(slots - 2, -1, -1):
        acc = gmpy2.powmod_base_list(acc, shift, mod)
        acc = (_obj(acc) * cs[:, t] % mod).tolist()
    return IntVec(acc)


KERNELS: dict[str, Callable[..., Any]] = {
    "obfuscators_public": k_obfuscators_public,
    "obfuscators_crt": k_obfuscators_crt,
    "obfuscators_uniform": k_obfuscators_uniform,
    "encrypt_public": k_encrypt_public,
    "encrypt_crt": k_encrypt_crt,
    "decrypt_crt": k_decrypt_crt,
    "decrypt_small": k_decrypt_small,
    "mul": k_mul,
    "pow_common": k_pow_common,
    "add": k_add,
    "add_plain": k_add_plain,
    "product": k_product,
    "multiexp": k_multiexp,
    "group_sum": k_group_sum,
    "pack": k_pack,
    "psi_hash": lambda blob, lengths, dst: _psi().k_hash(blob, lengths, dst),
    "psi_x25519": lambda secret, blob: _psi().k_x25519(secret, blob),
}

# Kernels that hold secrets (the factors p, q): never sent to a remote (Ray) cluster.
# So are the PSI blinding scalar and the raw IDs hashed to the curve.
SECRET_KERNELS = frozenset({"obfuscators_crt", "encrypt_crt", "decrypt_crt", "decrypt_small",
                            "psi_hash", "psi_x25519"})
# Kernels that spend their time in GIL-releasing gmpy2 list routines: threads suffice.
GIL_FREE_KERNELS = frozenset({"decrypt_crt", "decrypt_small", "obfuscators_uniform", "pow_common", "pack"})


def _psi() -> Any:
    """vfl.psi_curve (the PSI's kernels), imported on first use: most jobs' workers never need it."""
    from vfl import psi_curve

    return psi_curve


def run_kernel(name: str, args: tuple[Any, ...]) -> Any:
    """Entry point in worker processes and Ray tasks."""
    return KERNELS[name](*args)
