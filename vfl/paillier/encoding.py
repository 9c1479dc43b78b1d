"""Fixed-point encoding of real numbers into the Paillier plaintext space Z_n.

A real x is encoded at `precision` fractional bits as the integer
round(x * 2**precision), reduced mod n (negatives wrap to the top of Z_n).
Products of two encoded values carry the sum of their precisions; the array
tracks it. Values must stay within +-n/3 (python-paillier's `max_int`), beyond
which a decoded residue is reported as an overflow.

The precision is a multiple of 4 so that an encoding is exactly a phe
`EncodedNumber` with BASE 16 and exponent -precision/4 (interoperability).
"""

from __future__ import annotations

import numpy as np

from vfl.errors import PaillierError

DEFAULT_PRECISION_BITS = 48  # resolution 2**-48 ~ 3.6e-15 per encoded value


def encode(values: np.ndarray, precision: int, n: int) -> np.ndarray:
    """Encode real (or integer) values as residues mod n; returns an object array of ints."""
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise PaillierError("cannot encrypt NaN or infinite values")
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        scaled = [int(v) << precision for v in arr.ravel().tolist()]
    else:
        fixed = np.rint(np.ldexp(arr.astype(np.float64), precision)).ravel()
        scaled = [int(v) for v in fixed.tolist()]
    max_int = n // 3
    out = np.empty(len(scaled), dtype=object)
    for i, v in enumerate(scaled):
        if abs(v) > max_int:
            raise PaillierError(
                f"value {arr.ravel()[i]!r} too large to encode at {precision} fractional bits "
                f"in a {n.bit_length()}-bit key"
            )
        out[i] = v % n
    return out.reshape(arr.shape)


def decode(residues: np.ndarray, precision: int, n: int) -> np.ndarray:
    """Decode residues mod n back to float64 (signed, at `precision` fractional bits)."""
    res = np.asarray(residues, dtype=object)
    max_int = n // 3
    scale = 1 << precision if precision >= 0 else None
    out = np.empty(res.size, dtype=np.float64)
    for i, m in enumerate(res.ravel().tolist()):
        m = int(m)
        if m <= max_int:
            v = m
        elif m >= n - max_int:
            v = m - n
        else:
            raise PaillierError("decrypted value overflowed the plaintext space (|x| > n/3)")
        out[i] = v / scale if scale is not None else float(v << -precision)
    return out.reshape(res.shape)


def signed(residues: np.ndarray, n: int) -> np.ndarray:
    """Map residues mod n to signed Python ints in (-n/2, n/2] (no overflow check)."""
    res = np.asarray(residues, dtype=object)
    half = n // 2
    out = np.empty(res.size, dtype=object)
    for i, m in enumerate(res.ravel().tolist()):
        m = int(m)
        out[i] = m - n if m > half else m
    return out.reshape(res.shape)
