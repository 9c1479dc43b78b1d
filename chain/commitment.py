"""Commitments to parameters: keccak256(salt || canonical_bytes(params)).

Canonical bytes are UTF-8 JSON with sorted keys, no whitespace, ASCII only,
numbers as integers or as the shortest repr of IEEE-754 doubles (Python's
`repr(float)`, the same on every platform), numpy arrays as nested lists and
NaN/infinity refused. The same parameters give the same bytes on any machine.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from typing import Any

from eth_utils import keccak

from chain.errors import ChainError

SALT_BYTES = 32


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to JSON-native values."""
    if hasattr(value, "tolist") and not isinstance(value, list | str | bytes):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ChainError("cannot commit to NaN or infinite parameters")
        return value
    raise ChainError(f"cannot commit to a value of type {type(value).__name__}")


def canonical_bytes(params: Mapping[str, Any]) -> bytes:
    """The deterministic byte encoding of a parameter mapping."""
    return json.dumps(_plain(params), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False).encode("ascii")


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def commitment(salt: bytes, params: Mapping[str, Any]) -> bytes:
    """keccak256(salt || canonical_bytes(params)), 32 bytes."""
    if len(salt) != SALT_BYTES:
        raise ChainError(f"salt must be {SALT_BYTES} bytes")
    return keccak(salt + canonical_bytes(params))


def file_hash(data: bytes) -> bytes:
    """keccak256 of a file's bytes (model.json, metrics.json, config)."""
    return keccak(data)
