"""Wire format of ciphertext arrays: a small header plus raw big-endian integers.

    offset  size        field
    0       4           magic b"VPA1" (vflchain Paillier array, version 1)
    4       8           key fingerprint: SHA-256(n)[:8]
    12      2           precision, signed big-endian (fractional bits)
    14      1           ndim
    15      4*ndim      shape, unsigned big-endian
    ...     2           element width w in bytes = byte length of n^2
    ...     w*size      ciphertexts, unsigned big-endian, w bytes each

Never pickle. `loads` checks every field and raises `WireFormatError` with a
message naming what is wrong (truncated, trailing bytes, foreign key, a value
that is not a ciphertext of this key).
"""

from __future__ import annotations

import struct

import gmpy2
import numpy as np

from vfl.errors import WireFormatError
from vfl.paillier.array import EncryptedArray
from vfl.paillier.keys import PublicKey

MAGIC = b"VPA1"
MAX_ELEMENTS = 1 << 31


def element_width(public_key: PublicKey) -> int:
    return (int(public_key.nsquare).bit_length() + 7) // 8


def dumps(arr: EncryptedArray) -> bytes:
    """Serialize an EncryptedArray."""
    w = element_width(arr.public_key)
    head = MAGIC + arr.public_key.fingerprint + struct.pack(">hB", arr.precision, arr.ndim)
    head += struct.pack(f">{arr.ndim}I", *arr.shape) + struct.pack(">H", w)
    body = b"".join(int(c).to_bytes(w, "big") for c in arr.cipher.ravel().tolist())
    return head + body


def loads(data: bytes, public_key: PublicKey) -> EncryptedArray:
    """Parse bytes produced by `dumps`, checking they are ciphertexts of `public_key`."""
    mv = memoryview(data)
    if len(mv) < 15:
        raise WireFormatError(f"ciphertext array truncated: {len(mv)} bytes, header needs 15")
    if bytes(mv[:4]) != MAGIC:
        raise WireFormatError("not a ciphertext array (bad magic bytes)")
    fp = bytes(mv[4:12])
    if fp != public_key.fingerprint:
        raise WireFormatError(
            f"ciphertext array is under a foreign key (fingerprint {fp.hex()}, "
            f"expected {public_key.fingerprint.hex()})"
        )
    precision, ndim = struct.unpack(">hB", mv[12:15])
    pos = 15
    if len(mv) < pos + 4 * ndim + 2:
        raise WireFormatError("ciphertext array truncated inside its shape header")
    shape = struct.unpack(f">{ndim}I", mv[pos : pos + 4 * ndim])
    pos += 4 * ndim
    (w,) = struct.unpack(">H", mv[pos : pos + 2])
    pos += 2
    if w != element_width(public_key):
        raise WireFormatError(f"element width {w} does not match the key ({element_width(public_key)})")
    size = 1
    for s in shape:
        size *= s
    if size > MAX_ELEMENTS:
        raise WireFormatError(f"ciphertext array claims {size} elements, more than allowed")
    expected = pos + w * size
    if len(mv) < expected:
        raise WireFormatError(f"ciphertext array truncated: {len(mv)} bytes, expected {expected}")
    if len(mv) > expected:
        raise WireFormatError(f"ciphertext array has {len(mv) - expected} trailing bytes")
    nsq = public_key.nsquare
    cipher = np.empty(size, dtype=object)
    for i in range(size):
        c = gmpy2.mpz(int.from_bytes(mv[pos + i * w : pos + (i + 1) * w], "big"))
        if c <= 0 or c >= nsq:
            raise WireFormatError(f"element {i} is not a ciphertext of this key")
        cipher[i] = c
    return EncryptedArray(public_key, cipher.reshape(shape), precision)
