"""What crosses the chain package's boundary, as TypedDicts.

Going in, hashes and commitments are 32-byte `bytes`; coming out they are
0x-prefixed lowercase hex strings and addresses are checksummed, so every
record here is JSON-ready as it stands.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Role = Literal["guest", "host", "auditor"]
SessionStatus = Literal["opened", "active", "closed", "aborted", "expired"]
RoundState = Literal["pending", "attested", "disputed"]

ROLES: tuple[str, ...] = ("none", "guest", "host", "auditor")  # Solidity enum Role, in order
STATUSES: tuple[str, ...] = ("none", "opened", "active", "closed", "aborted", "expired")  # enum Status
FINAL_STATUSES: tuple[str, ...] = ("closed", "aborted", "expired")  # nothing more can be written
ROUND_STATES: tuple[str, ...] = ("pending", "attested", "disputed")  # enum RoundState


class AuditEvent(TypedDict):
    event: str  # the Solidity event name, e.g. "RoundSubmitted"
    args: dict[str, Any]  # by Solidity parameter name; bytes as hex, roles as names
    block_number: int
    tx_hash: str
    log_index: int


class TxResult(TypedDict):
    tx_hash: str
    block_number: int
    gas_used: int
    events: list[AuditEvent]


class ParticipantInfo(TypedDict):
    address: str
    role: Role
    organisation: str
    revoked: bool
    registered_block: int


class SessionInfo(TypedDict):
    session_id: str
    guest: str
    status: SessionStatus
    algorithm: str
    config_commitment: str
    participants: list[str]  # the guest first
    joined: int  # how many have joined
    finalized: int  # how many have finalized
    opened_block: int
    metrics_hash: str  # zero hash until the guest finalizes
    abort_reason: str  # zero hash unless aborted
    aborted_by: str  # zero address unless aborted (or expired: who expired it)
    last_activity: int  # block timestamp of the last open, join, round or finalize
    timeout: int  # s without activity after which any participant may expire it


class MemberInfo(TypedDict):
    is_participant: bool
    joined: bool
    finalized: bool
    last_round: int
    model_commitment: str


class RoundInfo(TypedDict):
    round: int
    party: str
    commitment: str
    transcript_digest: str


class Deployment(TypedDict):
    address: str
    chain_id: int
    genesis_hash: str
    tx_hash: str
    block_number: int
    admin: str
    code_sha256: str
