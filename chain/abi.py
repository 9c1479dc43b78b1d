"""Decoding what web3 leaves raw: custom errors, and values made JSON-ready.

web3 8 raises `ContractCustomError` with only the revert bytes. `decode_revert`
matches the 4-byte selector against the contract ABI's errors (and Solidity's
built-in `Error(string)` / `Panic(uint256)`) and renders the error the way it
is written in Solidity: `DuplicateRound(sessionId=0x.., round=3, party=0x..)`.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address

from chain.types import ROLES, ROUND_STATES, STATUSES

_ENUMS = {"enum VflAudit.Role": ROLES, "enum VflAudit.Status": STATUSES,
          "enum VflAudit.RoundState": ROUND_STATES}
_BUILTIN = {
    keccak(text="Error(string)")[:4]: ("Error", [{"name": "message", "type": "string"}]),
    keccak(text="Panic(uint256)")[:4]: ("Panic", [{"name": "code", "type": "uint256"}]),
}


def _type_string(param: dict[str, Any]) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in param["components"]) + ")" + t[len("tuple"):]
    return t


def error_table(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[dict[str, Any]]]]:
    """selector -> (error name, inputs) for every error in the ABI, plus the built-ins."""
    table = dict(_BUILTIN)
    for item in abi:
        if item.get("type") == "error":
            sig = f"{item['name']}({','.join(_type_string(i) for i in item['inputs'])})"
            table[keccak(text=sig)[:4]] = (item["name"], item["inputs"])
    return table


def plain(value: Any, param: dict[str, Any] | None = None) -> Any:
    """A decoded ABI value as JSON: bytes -> 0x hex, addresses checksummed, enums by name."""
    internal = (param or {}).get("internalType", "")
    if internal in _ENUMS and isinstance(value, int):
        names = _ENUMS[internal]
        return names[value] if 0 <= value < len(names) else value
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if (param or {}).get("type") == "address" and isinstance(value, str):
        return to_checksum_address(value)
    if isinstance(value, list | tuple):
        inner = dict(param or {}, type=(param or {}).get("type", "").removesuffix("[]"))
        return [plain(v, inner) for v in value]
    return value


def _render(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, str) and not value.startswith("0x"):
        return value if value.isidentifier() else repr(value)
    return str(value)


def decode_revert(data: bytes | str, table: dict[bytes, tuple[str, list[dict[str, Any]]]]
                  ) -> tuple[str, dict[str, Any], str]:
    """(name, args, message) for revert data; unknown selectors are shown raw."""
    if isinstance(data, str):
        data = bytes.fromhex(data.removeprefix("0x"))
    if len(data) < 4:
        return "", {}, "reverted without a reason"
    entry = table.get(bytes(data[:4]))
    if entry is None:
        return "", {}, f"reverted with unknown error data 0x{bytes(data).hex()}"
    name, inputs = entry
    try:
        values = abi_decode([_type_string(i) for i in inputs], bytes(data[4:]))
    except DecodingError:
        return name, {}, f"{name}(<undecodable arguments 0x{bytes(data[4:]).hex()}>)"
    args = {i["name"] or f"arg{n}": plain(v, i) for n, (i, v) in enumerate(zip(inputs, values, strict=True))}
    return name, args, f"{name}(" + ", ".join(f"{k}={_render(v)}" for k, v in args.items()) + ")"
