"""Commitments bound to their place: keccak256(binding || salt || content).

Every commitment the parties post names where it belongs, so that it cannot be
replayed in another session, round, contract or by another party, and hides its
content behind a fresh 32-byte salt (`new_salt`, from `secrets`):

    commitment = keccak256(binding_bytes(tag, b) || salt || content)

`binding_bytes` is the Solidity `abi.encode` of eight 32-byte words (256 bytes):

    word  field        type      value
    0     kind         bytes32   keccak256(tag), tag one of the TAG_* below
    1     chain id     uint256   the chain's id (EIP-155)
    2     contract     address   the audit contract, left-padded to 32 bytes
    3     session id   bytes32   the session on that contract
    4     round        uint256   the round the commitment is made in (the close round for
                                 model and metrics; 0 for the configuration)
    5     party        address   the committing party's chain account
    6     role         bytes32   keccak256 of the party's role ("guest", "host",
                                 "coordinator", "client1", ...), UTF-8
    7     phase        bytes32   keccak256 of the round's phase ("handshake", "lr", "close", ...)

then the 32-byte salt, then the content: `canonical_bytes(params)` for a round
(TAG_ROUND) and the file's bytes for the final model (TAG_MODEL: model.json,
intersection.json of a PSI-only job, aggregates.json) and the metrics file
(TAG_METRICS), and `canonical_bytes(job definition)` for the configuration
(TAG_CONFIG: round 0, phase "config", party the session's opener; its salt travels in
the opener's hello, so every participant can check it, and is kept in job.json
"config_salt"). The binding has a fixed length, the salt too, so the content is
unambiguous. The same bytes can be rebuilt in Solidity with
`keccak256(abi.encodePacked(abi.encode(...), salt, content))`.

Canonical bytes are UTF-8 JSON with sorted keys, no whitespace, ASCII only,
numbers as integers or as the shortest repr of IEEE-754 doubles (Python's
`repr(float)`, the same on every platform), numpy arrays as nested lists and
NaN/infinity refused. The same parameters give the same bytes on any machine.

The salts are kept by the party only: a round's in checkpoints/round-NNNN.json,
the final model's and metrics' in job.json "openings" (`Opening`), the configuration's
(shared by the participants) in job.json "config_salt". Whoever is shown
the run directory recomputes every commitment (chain/audit.py); whoever sees only
the chain learns nothing it could check a guess against.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import keccak

from chain.errors import ChainError

SALT_BYTES = 32
TAG_ROUND = b"vflchain/round/v1"
TAG_MODEL = b"vflchain/model/v1"
TAG_METRICS = b"vflchain/metrics/v1"
TAG_CONFIG = b"vflchain/config/v1"
TAGS = (TAG_ROUND, TAG_MODEL, TAG_METRICS, TAG_CONFIG)
CONFIG_PHASE = "config"  # the configuration commitment's phase; its round is 0 (before any round)
UNANCHORED = "0x" + "00" * 20  # the account/contract of a context with no chain (unit tests of one phase)


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


def _hex_bytes(value: bytes | str, size: int, what: str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x").removeprefix("0X"))
        except ValueError:
            raise ChainError(f"{what} is not hex: {value!r}") from None
    if len(value) != size:
        raise ChainError(f"{what} must be {size} bytes, got {len(value)}")
    return value


def _uint(value: int, what: str) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**256:
        raise ChainError(f"{what} must be an unsigned 256-bit integer, got {value!r}")
    return value.to_bytes(32, "big")


@dataclass(frozen=True)
class Binding:
    """Where a commitment belongs: chain, contract, session, round, party (account and role), phase."""

    chain_id: int
    contract: str  # 0x-hex address
    session_id: str  # 0x-hex, 32 bytes
    round: int
    party: str  # 0x-hex address of the committing account
    role: str
    phase: str

    def encode(self, tag: bytes) -> bytes:
        """abi.encode(keccak256(tag), chainId, contract, sessionId, round, party, keccak256(role),
        keccak256(phase)): 256 bytes (see the module docstring)."""
        if tag not in TAGS:
            raise ChainError(f"unknown commitment kind {tag!r}")
        return b"".join((
            keccak(tag),
            _uint(self.chain_id, "chain id"),
            bytes(12) + _hex_bytes(self.contract, 20, "contract address"),
            _hex_bytes(self.session_id, 32, "session id"),
            _uint(self.round, "round"),
            bytes(12) + _hex_bytes(self.party, 20, "party account"),
            keccak(self.role.encode("utf-8")),
            keccak(self.phase.encode("utf-8")),
        ))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def config(cls, chain_id: int, contract: str, session_id: bytes | str, opener: str, role: str) -> Binding:
        """The configuration commitment's binding: round 0, phase "config", the session's opener."""
        sid = session_id if isinstance(session_id, str) else "0x" + session_id.hex()
        return cls(int(chain_id), str(contract), sid, 0, str(opener), role, CONFIG_PHASE)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Binding:
        try:
            return cls(int(doc["chain_id"]), str(doc["contract"]), str(doc["session_id"]), int(doc["round"]),
                       str(doc["party"]), str(doc["role"]), str(doc["phase"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(f"a commitment binding needs chain_id, contract, session_id, round, party, role "
                             f"and phase: {exc}") from None


@dataclass(frozen=True)
class SessionBinding:
    """The part of a binding fixed for a party's whole session; `.at(round, phase)` completes it."""

    chain_id: int
    contract: str
    session_id: str
    party: str
    role: str

    def at(self, round_no: int, phase: str) -> Binding:
        return Binding(self.chain_id, self.contract, self.session_id, round_no, self.party, self.role, phase)

    @classmethod
    def unanchored(cls, role: str) -> SessionBinding:
        """A binding with zero chain, contract, session and account (a phase run without a chain)."""
        return cls(0, UNANCHORED, "0x" + "00" * 32, UNANCHORED, role)


def bound_commitment(tag: bytes, binding: Binding, salt: bytes, content: bytes) -> bytes:
    """keccak256(binding.encode(tag) || salt || content), 32 bytes."""
    if len(salt) != SALT_BYTES:
        raise ChainError(f"salt must be {SALT_BYTES} bytes")
    return keccak(binding.encode(tag) + salt + content)


def round_commitment(binding: Binding, salt: bytes, params: Mapping[str, Any]) -> bytes:
    """A round's commitment to the party's parameters (TAG_ROUND, canonical bytes)."""
    return bound_commitment(TAG_ROUND, binding, salt, canonical_bytes(params))


def file_commitment(tag: bytes, binding: Binding, salt: bytes, data: bytes) -> bytes:
    """A final commitment to a file's bytes (TAG_MODEL or TAG_METRICS)."""
    return bound_commitment(tag, binding, salt, data)


@dataclass(frozen=True)
class Opening:
    """What reopens a final commitment: the file, the salt and the binding (job.json "openings")."""

    file: str
    salt: str  # 0x-hex, 32 bytes
    binding: Binding
    commitment: str  # 0x-hex

    def recompute(self, tag: bytes, data: bytes) -> str:
        return "0x" + file_commitment(tag, self.binding, _hex_bytes(self.salt, SALT_BYTES, "salt"), data).hex()

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "salt": self.salt, "binding": self.binding.to_json(),
                "commitment": self.commitment}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Opening:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("binding"), Mapping):
            raise ChainError("an opening needs file, salt, binding and commitment")
        return cls(str(doc.get("file")), str(doc.get("salt")), Binding.from_json(doc["binding"]),
                   str(doc.get("commitment")))


def open_file_commitment(tag: bytes, binding: Binding, file: str, data: bytes) -> Opening:
    """Commit to a file's bytes with a fresh salt; the opening to keep in the party's job.json."""
    salt = new_salt()
    com = file_commitment(tag, binding, salt, data)
    return Opening(file, "0x" + salt.hex(), binding, "0x" + com.hex())


def parse_salt(value: Any) -> bytes:
    """A 0x-hex salt of SALT_BYTES bytes (as kept in files and sent in a hello); ChainError otherwise."""
    return _hex_bytes(str(value), SALT_BYTES, "salt")

