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
_INT64_SAFE = 1 << 62


def is_integer_array(values: np.ndarray) -> bool:
    """True for integer/bool dtypes and for object arrays holding only Python/numpy ints."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        return True
    return arr.dtype == object and arr.size > 0 and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in arr.ravel().tolist())


def scaled_integers(values: np.ndarray, precision: int, what: str = "encrypt") -> np.ndarray:
    """round(values * 2**precision) as exact integers: int64 if they fit, else Python ints.

    Integer inputs are shifted exactly; floats are rounded to nearest.
    """
    arr = np.asarray(values)
    if arr.dtype == object:
        if is_integer_array(arr):
            return _obj_map(arr, lambda v: int(v) << precision if precision >= 0 else int(v) >> -precision)
        arr = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        a = arr.astype(np.int64)
        peak = int(np.abs(a).max()) if a.size else 0
        if peak < (_INT64_SAFE >> max(precision, 0)) and precision >= 0:
            return a << precision
        return _obj_map(a, lambda v: int(v) << precision)
    a = arr.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise PaillierError(f"cannot {what} NaN or infinite values")
    with np.errstate(over="ignore"):
        scaled = np.rint(np.ldexp(a, precision))
    if not np.all(np.isfinite(scaled)):
        i = int(np.flatnonzero(~np.isfinite(scaled.ravel()))[0])
        raise PaillierError(f"value {a.ravel()[i]!r} too large to encode at {precision} fractional bits")
    peak = float(np.abs(scaled).max()) if scaled.size else 0.0
    if peak < _INT64_SAFE:
        return scaled.astype(np.int64)
    return _obj_map(scaled, int)


def _obj_map(arr: np.ndarray, fn: object) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    out.ravel()[:] = [fn(v) for v in arr.ravel().tolist()]  # type: ignore[operator]
    return out


def encode(values: np.ndarray, precision: int, n: int) -> np.ndarray:
    """Encode real (or integer) values as residues mod n; returns an object array of ints."""
    arr = np.asarray(values)
    ints = scaled_integers(arr, precision)
    max_int = n // 3
    flat = ints.ravel()
    if flat.dtype == object:  # int64 values (< 2^62) always fit: n/3 > 2^1000
        for i, v in enumerate(flat.tolist()):
            if abs(v) > max_int:
                raise PaillierError(
                    f"value {arr.ravel()[i]!r} too large to encode at {precision} fractional bits "
                    f"in a {n.bit_length()}-bit key"
                )
    out = np.empty(flat.size, dtype=object)
    out[:] = flat.tolist()
    out %= n
    return out.reshape(arr.shape)


def decode(residues: np.ndarray, precision: int, n: int) -> np.ndarray:
    """Decode residues mod n back to float64 (signed, at `precision` fractional bits)."""
    res = np.asarray(residues, dtype=object)
    flat = res.ravel()
    max_int = n // 3
    vals = np.empty(flat.size, dtype=object)
    vals[:] = [int(m) for m in flat.tolist()]
    if vals.size:
        high = vals > max_int
        if high.any():
            if (vals[high] < n - max_int).any():
                raise PaillierError("decrypted value overflowed the plaintext space (|x| > n/3)")
            vals[high] -= n
    if precision >= 0:
        scale = 1 << precision
        out = np.array([v / scale for v in vals.tolist()], dtype=np.float64)
    else:
        out = np.array([float(v << -precision) for v in vals.tolist()], dtype=np.float64)
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
