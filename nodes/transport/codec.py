"""The message wire format (never pickle).

    b"VFM1" | u32 header length | header (UTF-8 JSON) | body

The header names the address, the sender and every field. A field is
    {"name", "kind": "json", "value"}                       inline JSON value
    {"name", "kind": "ndarray", "dtype", "shape", "offset", "length"}
    {"name", "kind": "bytes", "offset", "length"}
    {"name", "kind": "enc", "key", "offset", "length"}      Paillier wire format
where offset/length locate the field's bytes in the body. ndarrays are raw
little-endian C-order data of an allowed numeric dtype. Ciphertext arrays are
parsed only against a key in the receiver's keyring (its own or its peer's).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from nodes.transport.base import Address, Payload, TransportError
from vfl.errors import WireFormatError
from vfl.paillier import EncryptedArray, PublicKey, load_ciphertexts

MAGIC = b"VFM1"
MAX_HEADER = 16 << 20
ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1", "|b1"}
Keyring = Mapping[str, PublicKey]  # fingerprint hex -> key


def keyring(*keys: PublicKey) -> dict[str, PublicKey]:
    return {k.fingerprint.hex(): k for k in keys}


def encode_message(address: Address, sender: str, payload: Payload) -> bytes:
    """Serialize a payload addressed to `address`, sent by role `sender`."""
    fields: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    offset = 0

    def add_blob(b: bytes) -> tuple[int, int]:
        nonlocal offset
        blobs.append(b)
        start = offset
        offset += len(b)
        return start, len(b)

    for name, value in payload.items():
        if isinstance(value, EncryptedArray):
            off, ln = add_blob(value.to_bytes())
            fields.append({"name": name, "kind": "enc", "key": value.public_key.fingerprint.hex(),
                           "offset": off, "length": ln})
        elif isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
            if dt.str not in ALLOWED_DTYPES:
                raise TypeError(f"field {name!r}: dtype {arr.dtype} cannot be sent")
            off, ln = add_blob(arr.astype(dt, copy=False).tobytes())
            fields.append({"name": name, "kind": "ndarray", "dtype": dt.str,
                           "shape": list(arr.shape), "offset": off, "length": ln})
        elif isinstance(value, bytes | bytearray | memoryview):
            off, ln = add_blob(bytes(value))
            fields.append({"name": name, "kind": "bytes", "offset": off, "length": ln})
        else:
            json.dumps(value)  # raises TypeError for anything not JSON
            fields.append({"name": name, "kind": "json", "value": value})
    header = json.dumps(
        {"job": address.job, "phase": address.phase, "round": address.round, "tag": address.tag,
         "sender": sender, "fields": fields},
        separators=(",", ":"), sort_keys=True, allow_nan=False,
    ).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + b"".join(blobs)


def decode_header(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """Parse and check the header; returns it and the body."""
    mv = memoryview(data)
    if len(mv) < 8 or bytes(mv[:4]) != MAGIC:
        raise TransportError("malformed message: bad magic bytes")
    (hlen,) = struct.unpack(">I", mv[4:8])
    if hlen > MAX_HEADER or 8 + hlen > len(mv):
        raise TransportError("malformed message: truncated header")
    try:
        header = json.loads(bytes(mv[8 : 8 + hlen]))
        Address(str(header["job"]), str(header["phase"]), int(header["round"]), str(header["tag"]))
        if not isinstance(header["fields"], list) or not isinstance(header["sender"], str):
            raise ValueError("fields")
    except (ValueError, KeyError, TypeError) as exc:
        raise TransportError(f"malformed message header: {exc}") from None
    return header, mv[8 + hlen :]


def message_address(header: Mapping[str, Any]) -> Address:
    return Address(header["job"], header["phase"], int(header["round"]), header["tag"])


def decode_message(data: bytes, keys: Keyring) -> tuple[Address, str, Payload]:
    """Parse a message; returns (address, sender, payload). Raises TransportError if malformed."""
    header, body = decode_header(data)
    payload: Payload = {}
    for f in header["fields"]:
        try:
            name, kind = f["name"], f["kind"]
            if kind == "json":
                payload[name] = f["value"]
                continue
            off, ln = int(f["offset"]), int(f["length"])
            if off < 0 or ln < 0 or off + ln > len(body):
                raise TransportError(f"malformed message: field {name!r} outside the body")
            blob = body[off : off + ln]
            if kind == "ndarray":
                if f["dtype"] not in ALLOWED_DTYPES:
                    raise TransportError(f"malformed message: field {name!r} has dtype {f['dtype']}")
                dt = np.dtype(f["dtype"])
                shape = tuple(int(s) for s in f["shape"])
                if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != ln:
                    raise TransportError(f"malformed message: field {name!r} size does not match its shape")
                payload[name] = np.frombuffer(blob, dtype=dt).reshape(shape).copy()
            elif kind == "bytes":
                payload[name] = bytes(blob)
            elif kind == "enc":
                key = keys.get(f["key"])
                if key is None:
                    raise TransportError(f"field {name!r} is encrypted under an unknown key {f['key']}")
                payload[name] = load_ciphertexts(bytes(blob), key)
            else:
                raise TransportError(f"malformed message: field {name!r} of unknown kind {kind!r}")
        except WireFormatError as exc:
            raise TransportError(f"malformed message field {f.get('name')!r}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise TransportError(f"malformed message field: {exc}") from None
    return message_address(header), header["sender"], payload
