"""Wire format of ciphertext arrays: a small header plus raw big-endian integers.

    offset  size        field
    0       4           magic b"VPA1" (vflchain Paillier array, version 1)
    4       8           key fingerprint: SHA-256(n)[:8]
    12      2           precision, signed big-endian (fractional bits)
    14      1           ndim
    15      4*ndim      shape, unsigned big-endian
    ...     2           element width w in bytes = byte length of n^2
    ...     w*size      ciphertexts, unsigned big-endian, w bytes each

Packed arrays (`vfl.paillier.packing`) use the magic b"VPK1" and add their
slot layout and bound to the header (see `packing.dumps_packed`);
`vfl.paillier.packing.load_ciphertexts` reads either (`EncryptedArray.from_bytes`: a plain array).

This module is the bottom of the Paillier layer: it reads and writes bytes and
ciphertext integers and imports neither the arrays nor the keys.

Never pickle. `loads` checks every field and raises `WireFormatError` with a
message naming what is wrong (truncated, trailing bytes, foreign key, a value
that is not a ciphertext of this key).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import gmpy2
import numpy as np

from vfl.errors import WireFormatError

if TYPE_CHECKING:
    from vfl.paillier.array import EncryptedArray
    from vfl.paillier.keys import PublicKey

MAGIC = b"VPA1"
PACKED_MAGIC = b"VPK1"
MAX_ELEMENTS = 1 << 31


def element_width(public_key: PublicKey) -> int:
    return (int(public_key.nsquare).bit_length() + 7) // 8


def dumps(arr: EncryptedArray) -> bytes:
    """Serialize an EncryptedArray."""
    w = element_width(arr.public_key)
    head = MAGIC + arr.public_key.fingerprint + struct.pack(">hB", arr.precision, arr.ndim)
    head += struct.pack(f">{arr.ndim}I", *arr.shape) + struct.pack(">H", w)
    body = b"".join(gmpy2.mpz(c).to_bytes(w, "big") for c in arr.cipher.ravel().tolist())
    return head + body


def check_fingerprint(fp: bytes, public_key: PublicKey) -> None:
    if fp != public_key.fingerprint:
        raise WireFormatError(
            f"ciphertext array is under a foreign key (fingerprint {fp.hex()}, "
            f"expected {public_key.fingerprint.hex()})"
        )


def parse_ciphertexts(mv: memoryview, pos: int, size: int, w: int, public_key: PublicKey,
                      what: str = "ciphertext array") -> np.ndarray:
    """`size` ciphertexts of `w` bytes from mv[pos:], which must end exactly there; each in (0, n^2)."""
    if size > MAX_ELEMENTS:
        raise WireFormatError(f"{what} claims {size} elements, more than allowed")
    expected = pos + w * size
    if len(mv) < expected:
        raise WireFormatError(f"{what} truncated: {len(mv)} bytes, expected {expected}")
    if len(mv) > expected:
        raise WireFormatError(f"{what} has {len(mv) - expected} trailing bytes")
    nsq = public_key.nsquare
    frm = gmpy2.mpz.from_bytes
    body = bytes(mv[pos:expected])
    values = [frm(body[i : i + w], "big") for i in range(0, w * size, w)]
    for i, c in enumerate(values):
        if c <= 0 or c >= nsq:
            raise WireFormatError(f"element {i} of the {what} is not a ciphertext of this key")
    cipher = np.empty(size, dtype=object)
    cipher[:] = values
    return cipher


def is_packed(data: bytes) -> bool:
    """Whether `data` holds a packed array (magic b"VPK1") rather than a plain one."""
    return bytes(data[:4]) == PACKED_MAGIC


def parse_plain(data: bytes, public_key: PublicKey) -> tuple[np.ndarray, int]:
    """(ciphertexts shaped as sent, precision) of bytes produced by `dumps`, checking they are
    ciphertexts of `public_key`."""
    mv = memoryview(data)
    if len(mv) >= 4 and bytes(mv[:4]) == PACKED_MAGIC:
        raise WireFormatError("a packed ciphertext array where a plain one is expected")
    if len(mv) < 15:
        raise WireFormatError(f"ciphertext array truncated: {len(mv)} bytes, header needs 15")
    if bytes(mv[:4]) != MAGIC:
        raise WireFormatError("not a ciphertext array (bad magic bytes)")
    check_fingerprint(bytes(mv[4:12]), public_key)
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
    cipher = parse_ciphertexts(mv, pos, size, w, public_key)
    return cipher.reshape(shape), precision
