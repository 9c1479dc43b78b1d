"""The byte format between the party's process and its Paillier workers (never pickle).

A value is a one-byte tag and its payload:

    n                         None
    i  u32 len, bytes         int (signed, big-endian two's complement)
    s  u32 len, UTF-8         str
    b  u64 len, bytes         bytes
    v  u32 width, u64 count, count*width bytes    IntVec (unsigned big-endian)
    a  u8 len, dtype str, u8 ndim, ndim*u64 shape, raw C-order data   numeric ndarray
    o  u8 ndim, ndim*u64 shape, then each element as an `i` value     integer object ndarray
    t  u32 count, values      tuple

Frames on a pipe are a u64 length and the encoded value.
"""

from __future__ import annotations

import struct
from typing import IO, Any

import numpy as np

from vfl.paillier._kernels import IntVec, from_blob, to_blob

_NUMERIC = {"<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1", "<f8", "|b1", "<f4"}


def _int_bytes(v: int) -> bytes:
    v = int(v)
    return v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True)


def _enc(obj: Any, out: list[bytes]) -> None:
    if obj is None:
        out.append(b"n")
    elif isinstance(obj, bool):
        raise TypeError("booleans are not sent to workers")
    elif isinstance(obj, int | np.integer) or type(obj).__name__ == "mpz":
        b = _int_bytes(int(obj))
        out.append(b"i" + struct.pack(">I", len(b)) + b)
    elif isinstance(obj, str):
        b = obj.encode()
        out.append(b"s" + struct.pack(">I", len(b)) + b)
    elif isinstance(obj, bytes | bytearray | memoryview):
        b = bytes(obj)
        out.append(b"b" + struct.pack(">Q", len(b)) + b)
    elif isinstance(obj, IntVec):
        width, blob = to_blob(obj.values)
        out.append(b"v" + struct.pack(">IQ", width, len(obj)) + blob)
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            out.append(b"o" + struct.pack(">B", obj.ndim) + struct.pack(f">{obj.ndim}Q", *obj.shape))
            for v in obj.ravel().tolist():
                _enc(int(v), out)
        else:
            arr = np.ascontiguousarray(obj)
            dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
            if dt.str not in _NUMERIC:
                raise TypeError(f"cannot send arrays of dtype {arr.dtype}")
            arr = arr.astype(dt, copy=False)
            d = dt.str.encode()
            out.append(b"a" + struct.pack(">B", len(d)) + d + struct.pack(">B", arr.ndim)
                       + struct.pack(f">{arr.ndim}Q", *arr.shape) + arr.tobytes())
    elif isinstance(obj, tuple | list):
        out.append(b"t" + struct.pack(">I", len(obj)))
        for v in obj:
            _enc(v, out)
    else:
        raise TypeError(f"cannot send {type(obj).__name__} to a worker")


def encode(obj: Any) -> bytes:
    out: list[bytes] = []
    _enc(obj, out)
    return b"".join(out)


def _dec(mv: memoryview, pos: int) -> tuple[Any, int]:
    tag = bytes(mv[pos : pos + 1])
    pos += 1
    if tag == b"n":
        return None, pos
    if tag == b"i":
        (ln,) = struct.unpack_from(">I", mv, pos)
        pos += 4
        return int.from_bytes(mv[pos : pos + ln], "big", signed=True), pos + ln
    if tag == b"s":
        (ln,) = struct.unpack_from(">I", mv, pos)
        pos += 4
        return bytes(mv[pos : pos + ln]).decode(), pos + ln
    if tag == b"b":
        (ln,) = struct.unpack_from(">Q", mv, pos)
        pos += 8
        return bytes(mv[pos : pos + ln]), pos + ln
    if tag == b"v":
        width, count = struct.unpack_from(">IQ", mv, pos)
        pos += 12
        ln = width * count
        return IntVec(from_blob(width, bytes(mv[pos : pos + ln]))), pos + ln
    if tag == b"a":
        (dl,) = struct.unpack_from(">B", mv, pos)
        pos += 1
        dt = np.dtype(bytes(mv[pos : pos + dl]).decode())
        pos += dl
        (ndim,) = struct.unpack_from(">B", mv, pos)
        pos += 1
        shape = struct.unpack_from(f">{ndim}Q", mv, pos)
        pos += 8 * ndim
        ln = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        arr = np.frombuffer(mv[pos : pos + ln], dtype=dt).reshape(shape).copy()
        return arr, pos + ln
    if tag == b"o":
        (ndim,) = struct.unpack_from(">B", mv, pos)
        pos += 1
        shape = struct.unpack_from(f">{ndim}Q", mv, pos)
        pos += 8 * ndim
        size = int(np.prod(shape, dtype=np.int64))
        vals = []
        for _ in range(size):
            v, pos = _dec(mv, pos)
            vals.append(v)
        arr = np.empty(size, dtype=object)
        arr[:] = vals
        return arr.reshape(shape), pos
    if tag == b"t":
        (count,) = struct.unpack_from(">I", mv, pos)
        pos += 4
        items = []
        for _ in range(count):
            v, pos = _dec(mv, pos)
            items.append(v)
        return tuple(items), pos
    raise ValueError(f"unknown tag {tag!r} in worker message")


def decode(data: bytes) -> Any:
    mv = memoryview(data)
    obj, pos = _dec(mv, 0)
    if pos != len(mv):
        raise ValueError("trailing bytes in worker message")
    return obj


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(struct.pack(">Q", len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame, or None at end of stream."""
    head = _read_exact(stream, 8)
    if head is None:
        return None
    (ln,) = struct.unpack(">Q", head)
    body = _read_exact(stream, ln)
    if body is None:
        raise EOFError("worker pipe closed in the middle of a frame")
    return body


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    got = 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)
