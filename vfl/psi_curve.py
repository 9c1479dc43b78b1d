"""Curve25519 maths of the PSI (vfl.psi): RFC 9380 hash-to-curve and the worker kernels.

Kept apart from vfl.psi so that the Paillier worker pool (`vfl.paillier._kernels`) can run
the kernels `k_hash` / `k_x25519` without importing the protocol module, which imports the
pool itself. Everything here is re-exported by vfl.psi.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

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
# A square root of 2*sqrt(-1): turns g^((p+3)/8) of a non-square g into sqrt(2 g) up to a factor sqrt(-1).
_SQRT_2I = gmpy2.powmod(2 * _SQRT_M1 % P, _SQRT_EXP, P)
if (_SQRT_2I * _SQRT_2I) % P != (2 * _SQRT_M1) % P:
    _SQRT_2I = _SQRT_2I * _SQRT_M1 % P
ELEMENT_BYTES = 32
PSI_DST = b"VFLCHAIN-PSI-V01-CS02-with-curve25519_XMD:SHA-512_ELL2_RO_"

Point = tuple[int, int] | None  # affine (u, v); None is the point at infinity


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
    roots = gmpy2.powmod_base_list(gs, _SQRT_EXP, P)
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


def hash_u_batch(msgs: Sequence[bytes], dst: bytes = PSI_DST) -> bytes:
    """The u-coordinates of Q0 + Q1 for many messages, concatenated (32 bytes each, little-endian).

    The same points as `_map_pairs`, computed for a whole batch at once: one
    modular inversion per batch (Montgomery's trick) instead of three per
    message, and one exponentiation per Elligator 2 map: c = g^((p+3)/8) is a
    square root of g up to sqrt(-1) when g is a square, and c * u * sqrt(2i) a
    square root of g(x2) = 2 u^2 g up to sqrt(-1) when it is not, so no
    Legendre symbol is needed.
    """
    if not msgs:
        return b""
    us: list[gmpy2.mpz] = []
    for ub in _expand_96(msgs, dst):
        us.append(gmpy2.mpz(int.from_bytes(ub[:48], "big")) % P)
        us.append(gmpy2.mpz(int.from_bytes(ub[48:], "big")) % P)
    tvs = [(1 + Z * u * u) % P for u in us]
    zero = [tv == 0 for tv in tvs]
    invs = _batch_invert([tv or gmpy2.mpz(1) for tv in tvs])
    minus_a = (-A) % P
    xs = [minus_a if z else (-A * inv) % P for inv, z in zip(invs, zero, strict=True)]
    gs = [(x * (x * (x + A) + 1)) % P for x in xs]
    cs = gmpy2.powmod_base_list(gs, _SQRT_EXP, P)
    ys: list[gmpy2.mpz] = []
    for k, (x, g, c, u) in enumerate(zip(xs, gs, cs, us, strict=True)):
        c2 = (c * c) % P
        if c2 == g:
            y, odd = c, True
        elif c2 == (P - g) % P:
            y, odd = (c * _SQRT_M1) % P, True
        else:  # g is not a square: x2 = -x - A, g(x2) = 2 u^2 g
            xs[k] = (-x - A) % P
            g2 = (Z * u * u % P) * g % P
            y = (c * u % P) * _SQRT_2I % P
            if (y * y) % P != g2:
                y = (y * _SQRT_M1) % P
            if (y * y) % P != g2:
                raise PsiError("internal error: Elligator 2 produced a non-square")  # pragma: no cover
            odd = False
        if bool(y & 1) != odd:
            y = (P - y) % P
        ys.append(y)
    dxs = [(xs[i + 1] - xs[i]) % P for i in range(0, len(xs), 2)]
    if not all(dxs):  # Q0 = +-Q1: probability ~2^-250; the affine formulas handle it
        return b"".join(_u_bytes(point_add((xs[i], ys[i]), (xs[i + 1], ys[i + 1])))
                        for i in range(0, len(xs), 2))
    out = []
    for j, inv in enumerate(_batch_invert(dxs)):
        x0, x1, y0, y1 = xs[2 * j], xs[2 * j + 1], ys[2 * j], ys[2 * j + 1]
        lam = (y1 - y0) * inv % P
        out.append(int((lam * lam - A - x0 - x1) % P).to_bytes(ELEMENT_BYTES, "little"))
    return b"".join(out)


def _expand_96(msgs: Sequence[bytes], dst: bytes) -> list[bytes]:
    """expand_message_xmd(msg, dst, 96) for many messages (the same bytes; shared
    hash prefixes computed once)."""
    if len(dst) > 255:
        raise PsiError("hash-to-curve domain separation tag longer than 255 bytes")
    dst_prime = dst + bytes([len(dst)])
    tail0 = (96).to_bytes(2, "big") + b"\x00" + dst_prime
    zero_pad = hashlib.sha512(bytes(128))
    sha512 = hashlib.sha512
    out = []
    for m in msgs:
        h = zero_pad.copy()
        h.update(m)
        h.update(tail0)
        b0 = h.digest()
        b1 = sha512(b0 + b"\x01" + dst_prime).digest()
        mixed = (int.from_bytes(b0, "big") ^ int.from_bytes(b1, "big")).to_bytes(64, "big")
        b2 = sha512(mixed + b"\x02" + dst_prime).digest()
        out.append(b1 + b2[:32])
    return out


def _batch_invert(values: list[gmpy2.mpz]) -> list[gmpy2.mpz]:
    """Inverses mod P of non-zero values with one inversion (Montgomery's trick)."""
    prefix = [values[0]]
    for v in values[1:]:
        prefix.append(prefix[-1] * v % P)
    inv = gmpy2.invert(prefix[-1], P)
    out = [inv] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inv * prefix[i - 1] % P
        inv = inv * values[i] % P
    out[0] = inv
    return out


def k_hash(blob: bytes, lengths: np.ndarray, dst: bytes) -> bytes:
    """Worker kernel: `hash_u_batch` of messages sent as one blob and their lengths."""
    msgs, pos = [], 0
    for ln in lengths.tolist():
        msgs.append(blob[pos : pos + ln])
        pos += ln
    return hash_u_batch(msgs, dst)


def k_x25519(secret: bytes, blob: bytes) -> tuple[bytes, int]:
    """Worker kernel: X25519 of one secret scalar with each 32-byte point of `blob`.

    Returns the products and -1, or b"" and the index of the first invalid point.
    """
    sk = X25519PrivateKey.from_private_bytes(secret)
    exchange = sk.exchange
    load = X25519PublicKey.from_public_bytes
    out = []
    for i in range(0, len(blob), ELEMENT_BYTES):
        try:
            out.append(exchange(load(blob[i : i + ELEMENT_BYTES])))
        except ValueError:
            return b"", i // ELEMENT_BYTES
    return b"".join(out), -1
