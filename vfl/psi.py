"""ECDH private set intersection on Curve25519 (the maths; the protocol is nodes.phases.intersection).

Each party holds a secret X25519 scalar. An ID is hashed to a curve point with
RFC 9380 `hash_to_curve` (suite curve25519_XMD:SHA-512_ELL2_RO_, our own DST),
then *blinded* with the party's scalar; the peer *re-blinds* what it receives
with its own scalar. Scalar multiplication commutes, so an ID both parties hold
ends as the same doubly blinded value on both sides, while a singly blinded
value reveals nothing about the ID (decisional Diffie-Hellman on Curve25519).

Steps, named as in the protocol:
    psi_hash_ids   ID -> point (u-coordinate, 32 bytes little-endian)
    psi_blind      own points -> own scalar times them            (X25519)
    psi_reblind    the peer's blinded points -> own scalar times them
    psi_match      which own rows' doubly blinded values the peer also has
    psi_align      the intersection's rows in the order both parties use
    psi_check      a digest of the aligned doubly blinded values, to compare

With N hosts (docs/protocols/psi.md, "N hosts") the guest runs the two-party steps
with each host, then:
    psi_intersect_hosts  the guest's rows that every host also holds
    psi_keep_elements    per host, the pair's doubly blinded values of those rows (a sorted set)
    psi_keep_rows        the host's rows among them (only rows it already matched)
and every pair aligns (`psi_align`) and checks (`psi_check`) the final rows.
`intersect_in_process` runs all of it in one process (tests, the Python API).

Cofactor: `hash_to_curve` multiplies by the cofactor 8 (`clear_cofactor`). The
fast path `psi_hash_ids` stops before that step; X25519 clamps every scalar to a
multiple of 8, so its first multiplication clears the cofactor anyway and the
result is the same as blinding the RFC point with scalar clamp(k)/8 (tested).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from vfl.errors import PsiError

# Curve25519 in Montgomery form: v^2 = u^3 + A u^2 + u over GF(p).
P = gmpy2.mpz(2**255 - 19)
A = gmpy2.mpz(486662)
Z = gmpy2.mpz(2)  # RFC 9380 non-square for curve25519
_SQRT_M1 = gmpy2.powmod(gmpy2.mpz(2), (P - 1) // 4, P)
_SQRT_EXP = (P + 3) // 8
ELEMENT_BYTES = 32
PSI_DST = b"VFLCHAIN-PSI-V01-CS02-with-curve25519_XMD:SHA-512_ELL2_RO_"

Point = tuple[int, int] | None  # affine (u, v); None is the point at infinity
T = TypeVar("T")
R = TypeVar("R")


# -- hashing IDs to the curve (RFC 9380) ---------------------------------------

def canonical_id(value: str | int | np.generic) -> bytes:
    """The bytes an ID is hashed from: UTF-8 text; integers as decimal text (so 7 and "7" match)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        raise PsiError(f"ID {value!r} is a boolean, not a string or integer")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return value.encode("utf-8")
    raise PsiError(f"ID {value!r} is a {type(value).__name__}, not a string or integer")


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 5.3.1 expand_message_xmd with SHA-512."""
    if len(dst) > 255:
        raise PsiError("hash-to-curve domain separation tag longer than 255 bytes")
    ell = -(-length // 64)
    if ell > 255:
        raise PsiError("expand_message_xmd: requested length too long")
    dst_prime = dst + bytes([len(dst)])
    h = hashlib.sha512(bytes(128))
    h.update(msg + length.to_bytes(2, "big") + b"\x00" + dst_prime)
    b0 = h.digest()
    b0_int = int.from_bytes(b0, "big")
    prev = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = [prev]
    for i in range(2, ell + 1):
        mixed = (b0_int ^ int.from_bytes(prev, "big")).to_bytes(64, "big")
        prev = hashlib.sha512(mixed + bytes([i]) + dst_prime).digest()
        out.append(prev)
    return b"".join(out)[:length]


def _hash_to_field2(msg: bytes, dst: bytes) -> tuple[gmpy2.mpz, gmpy2.mpz]:
    """Two field elements, L = 48 bytes each (RFC 9380 hash_to_field, count = 2)."""
    ub = expand_message_xmd(msg, dst, 96)
    return (gmpy2.mpz(int.from_bytes(ub[:48], "big")) % P,
            gmpy2.mpz(int.from_bytes(ub[48:], "big")) % P)


def _elligator2_u(u: gmpy2.mpz) -> tuple[gmpy2.mpz, gmpy2.mpz, bool]:
    """Elligator 2 without the square root: (x, g(x), sign wanted for y) (RFC 9380 6.7.1)."""
    tv = (1 + Z * u * u) % P
    x1 = (-A * gmpy2.invert(tv, P)) % P if tv else gmpy2.mpz(0)
    if x1 == 0:
        x1 = (-A) % P
    gx1 = (x1 * (x1 * (x1 + A) + 1)) % P
    if gmpy2.legendre(gx1, P) >= 0:
        return x1, gx1, True  # y with sgn0(y) == 1
    x2 = (-x1 - A) % P
    return x2, (x2 * (x2 * (x2 + A) + 1)) % P, False  # sgn0(y) == 0


def _finish_sqrt(g: gmpy2.mpz, c: gmpy2.mpz, odd: bool) -> gmpy2.mpz:
    """From c = g^((p+3)/8), the square root of g with the wanted parity (p = 5 mod 8)."""
    y = c if (c * c) % P == g else (c * _SQRT_M1) % P
    if (y * y) % P != g:
        raise PsiError("internal error: Elligator 2 produced a non-square")  # pragma: no cover
    if bool(y & 1) != odd:
        y = (P - y) % P
    return y


def point_add(p1: Point, p2: Point) -> Point:
    """Affine addition on the Montgomery curve."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    x1, y1 = p1
    x2, y2 = p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        return point_double(p1)
    lam = ((y2 - y1) * gmpy2.invert((x2 - x1) % P, P)) % P
    x3 = (lam * lam - A - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


def point_double(p1: Point) -> Point:
    if p1 is None or p1[1] == 0:
        return None
    x1, y1 = p1
    lam = ((3 * x1 * x1 + 2 * A * x1 + 1) * gmpy2.invert((2 * y1) % P, P)) % P
    x3 = (lam * lam - A - 2 * x1) % P
    return x3, (lam * (x1 - x3) - y1) % P


def point_mul(k: int, p1: Point) -> Point:
    """Double-and-add scalar multiplication (slow; for tests and checks only)."""
    out: Point = None
    for bit in bin(k)[2:]:
        out = point_double(out)
        if bit == "1":
            out = point_add(out, p1)
    return out


def _map_pairs(msgs: Sequence[bytes], dst: bytes) -> list[Point]:
    """Q0 + Q1 for each message (hash_to_curve before clear_cofactor)."""
    xs: list[gmpy2.mpz] = []
    gs: list[gmpy2.mpz] = []
    odds: list[bool] = []
    for m in msgs:
        for u in _hash_to_field2(m, dst):
            x, g, odd = _elligator2_u(u)
            xs.append(x)
            gs.append(g)
            odds.append(odd)
    roots = _threaded_chunks(lambda ch: gmpy2.powmod_base_list(ch, _SQRT_EXP, P), gs)
    ys = [_finish_sqrt(g, c, odd) for g, c, odd in zip(gs, roots, odds, strict=True)]
    return [point_add((xs[i], ys[i]), (xs[i + 1], ys[i + 1])) for i in range(0, len(xs), 2)]


def hash_to_curve(msg: bytes, dst: bytes = PSI_DST) -> Point:
    """RFC 9380 hash_to_curve, suite curve25519_XMD:SHA-512_ELL2_RO_ (affine (u, v))."""
    (r,) = _map_pairs([msg], dst)
    return point_double(point_double(point_double(r)))


def _u_bytes(p: Point) -> bytes:
    if p is None:
        raise PsiError("an ID hashed to the point at infinity")  # probability ~2^-250
    return int(p[0]).to_bytes(ELEMENT_BYTES, "little")


def psi_hash_ids(ids: Iterable[str | int], dst: bytes = PSI_DST) -> list[bytes]:
    """Each ID's curve point (hash_to_curve without clear_cofactor), as a 32-byte u-coordinate."""
    msgs = [canonical_id(i) for i in ids]
    return [_u_bytes(q) for q in _map_pairs(msgs, dst)]


# -- blinding ----------------------------------------------------------------

class BlindingKey:
    """A party's secret PSI scalar for one job (never leaves the party)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._sk = (X25519PrivateKey.generate() if secret is None
                    else X25519PrivateKey.from_private_bytes(secret))

    def scalar(self) -> int:
        """The clamped scalar X25519 multiplies by (for tests)."""
        from cryptography.hazmat.primitives import serialization

        raw = bytearray(self._sk.private_bytes(serialization.Encoding.Raw,
                                               serialization.PrivateFormat.Raw,
                                               serialization.NoEncryption()))
        raw[0] &= 248
        raw[31] &= 127
        raw[31] |= 64
        return int.from_bytes(raw, "little")

    def multiply(self, elements: Sequence[bytes]) -> list[bytes]:
        """This key's scalar times each point (X25519); refuses invalid or small-order points."""
        exchange = self._sk.exchange
        load = X25519PublicKey.from_public_bytes
        out: list[bytes] = []
        for i, e in enumerate(elements):
            try:
                out.append(exchange(load(e)))
            except ValueError:
                raise PsiError(f"element {i} is not a valid curve point") from None
        return out


def psi_blind(key: BlindingKey, points: Sequence[bytes]) -> list[bytes]:
    """Blind own hashed IDs: k * H(id)."""
    return key.multiply(points)


def psi_reblind(key: BlindingKey, peer_blinded: Sequence[bytes]) -> list[bytes]:
    """Re-blind the peer's blinded IDs, keeping their order: k * (k' * H(id))."""
    return key.multiply(peer_blinded)


def psi_match(own_double: Sequence[bytes], peer_double: Iterable[bytes]) -> np.ndarray:
    """Positions (ascending) of own rows whose doubly blinded value the peer also holds."""
    peer = set(peer_double)
    return np.asarray([i for i, e in enumerate(own_double) if e in peer], dtype=np.int64)


def psi_align(ids: Sequence[str | int], rows: Sequence[int]) -> np.ndarray:
    """The intersection's rows in the order both parties use: by ID (numeric when all are integers).

    Both parties hold the same intersection IDs, so sorting them by a rule of the
    IDs alone gives both the same order without another message.
    """
    rows = [int(r) for r in rows]
    keys = [canonical_id(ids[r]).decode("utf-8") for r in rows]
    if all(_is_decimal(k) for k in keys):
        order = sorted(range(len(rows)), key=lambda i: (int(keys[i]), keys[i]))
    else:
        order = sorted(range(len(rows)), key=lambda i: keys[i].encode("utf-8"))
    return np.asarray([rows[i] for i in order], dtype=np.int64)


def _is_decimal(text: str) -> bool:
    body = text[1:] if text[:1] == "-" else text
    return body.isascii() and body.isdigit()


def psi_check(aligned_double: Iterable[bytes]) -> str:
    """Hex SHA-256 over the aligned doubly blinded values: equal on both sides iff aligned alike."""
    h = hashlib.sha256()
    for e in aligned_double:
        h.update(e)
    return h.hexdigest()


# -- N hosts -------------------------------------------------------------------

def psi_intersect_hosts(matches: Sequence[np.ndarray | Sequence[int]]) -> np.ndarray:
    """Guest: own rows (ascending) that every host holds, from the `psi_match` rows of each pair."""
    if not matches:
        raise PsiError("an intersection over hosts needs at least one host")
    common = set(int(r) for r in matches[0])
    for rows in matches[1:]:
        common &= set(int(r) for r in rows)
    return np.asarray(sorted(common), dtype=np.int64)


def psi_keep_elements(own_double: Sequence[bytes], rows: Sequence[int] | np.ndarray) -> list[bytes]:
    """Guest -> one host: that pair's doubly blinded values of the rows every party holds, sorted.

    The host already holds each of these values (the pair's intersection), so it learns which
    of its matched rows remain, nothing else; sorted, they carry no row order of the guest.
    """
    return sorted(own_double[int(r)] for r in rows)


def psi_keep_rows(own_double: Sequence[bytes], matched: Sequence[int] | np.ndarray,
                  keep: Sequence[bytes]) -> np.ndarray:
    """Host: its rows (ascending) whose doubly blinded value the guest kept.

    Refuses a kept value that is not one of the host's matched rows (the guest may only
    shrink the pair's intersection) or that appears twice.
    """
    pos = {own_double[int(r)]: int(r) for r in matched}
    rows: list[int] = []
    for i, e in enumerate(keep):
        if e not in pos:
            raise PsiError(f"kept element {i} is not in this pair's intersection")
        rows.append(pos[e])
    if len(set(rows)) != len(rows):
        raise PsiError("the same kept element appears twice")
    return np.asarray(sorted(rows), dtype=np.int64)


@dataclass
class PartyIntersection:
    """One party's result: its aligned rows and the sizes it learned."""

    rows: np.ndarray  # own row positions of the intersection, in the common (ID) order
    own_size: int
    peer_sizes: dict[str, int]  # the set size of each peer it ran a pair with
    pair_sizes: dict[str, int]  # the size of each pair's intersection it learned
    digests: dict[str, str]  # psi_check of each pair over the aligned rows

    @property
    def intersection_size(self) -> int:
        return int(len(self.rows))


def intersect_in_process(guest_ids: Sequence[str | int],
                         host_ids: Sequence[Sequence[str | int]]) -> tuple[PartyIntersection, list[PartyIntersection]]:
    """The N-host intersection run in one process, every step as in the protocol (fresh scalars).

    Returns the guest's result and each host's (hosts named host1..hostN). With one host
    it is the two-party protocol. An empty intersection is an error, as in a job.
    """
    names = [f"host{k}" for k in range(1, len(host_ids) + 1)]
    g_key = BlindingKey()
    g_points = psi_hash_ids(list(guest_ids))
    g_blinded = psi_blind(g_key, g_points)
    g_double: dict[str, list[bytes]] = {}
    h_double: list[list[bytes]] = []
    h_matched: list[np.ndarray] = []
    g_matched: list[np.ndarray] = []
    for ids in host_ids:
        h_key = BlindingKey()
        h_blinded = psi_blind(h_key, psi_hash_ids(list(ids)))
        # each side re-blinds the other's list (the shuffles of the phase do not change the sets)
        g_own_double = psi_reblind(h_key, g_blinded)
        h_own_double = psi_reblind(g_key, h_blinded)
        g_matched.append(psi_match(g_own_double, h_own_double))
        h_matched.append(psi_match(h_own_double, g_own_double))
        g_double[names[len(h_double)]] = g_own_double
        h_double.append(h_own_double)
    common = psi_intersect_hosts(g_matched)
    if len(common) == 0:
        raise PsiError(f"empty intersection: the guest ({len(guest_ids)} IDs) and {len(host_ids)} hosts "
                       "share no ID; nothing to train on")
    g_rows = psi_align(list(guest_ids), common)
    guest = PartyIntersection(g_rows, len(guest_ids), {n: len(ids) for n, ids in zip(names, host_ids, strict=True)},
                              {n: len(m) for n, m in zip(names, g_matched, strict=True)},
                              {n: psi_check(g_double[n][r] for r in g_rows) for n in names})
    hosts = []
    for k, ids in enumerate(host_ids):
        rows = (h_matched[k] if len(host_ids) == 1
                else psi_keep_rows(h_double[k], h_matched[k], psi_keep_elements(g_double[names[k]], common)))
        aligned = psi_align(list(ids), rows)
        digest = psi_check(h_double[k][r] for r in aligned)
        if digest != guest.digests[names[k]]:
            raise PsiError(f"intersection check failed: the guest and {names[k]} did not align the same rows")
        hosts.append(PartyIntersection(aligned, len(ids), {"guest": len(guest_ids)},
                                       {"guest": int(len(h_matched[k]))}, {"guest": digest}))
    return guest, hosts


# -- element arrays on the wire ----------------------------------------------

def elements_to_array(elements: Sequence[bytes]) -> np.ndarray:
    """(n, 32) uint8 array of points, for the message codec."""
    if not elements:
        return np.zeros((0, ELEMENT_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(elements), dtype=np.uint8).reshape(len(elements), ELEMENT_BYTES).copy()


def elements_from_array(arr: object, what: str = "points") -> list[bytes]:
    """Parse a received (n, 32) uint8 array of points; refuses anything else or duplicates."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 2 \
            or arr.shape[1] != ELEMENT_BYTES:
        shape = getattr(arr, "shape", None)
        raise PsiError(f"{what}: expected an (n, {ELEMENT_BYTES}) uint8 array, got {type(arr).__name__} "
                       f"{shape if shape is not None else ''}".rstrip())
    if arr.size and np.any(arr[:, -1] & 0x80):
        raise PsiError(f"{what}: an element is not a canonical curve25519 u-coordinate")
    data = arr.tobytes()
    out = [data[i : i + ELEMENT_BYTES] for i in range(0, len(data), ELEMENT_BYTES)]
    if len(set(out)) != len(out):
        raise PsiError(f"{what}: the same element appears twice")
    return out


# -- helpers -------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None


def _threaded_chunks(fn: Callable[[list[T]], list[R]], items: list[T], min_chunk: int = 512) -> list[R]:
    """Apply a GIL-releasing list function over chunks on all cores."""
    global _pool
    workers = max(1, int(os.environ.get("VFLCHAIN_WORKERS", 0)) or os.cpu_count() or 1)
    if workers == 1 or len(items) < 2 * min_chunk:
        return list(fn(items)) if items else []
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="psi")
    size = max(min_chunk, -(-len(items) // (2 * workers)))
    out: list[R] = []
    for part in _pool.map(fn, [items[i : i + size] for i in range(0, len(items), size)]):
        out.extend(part)
    return out
