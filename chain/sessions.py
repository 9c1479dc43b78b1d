"""Session ids: derived by the contract from the opener and a label, never chosen.

VflAudit's `openSession(label, ...)` opens the session
`sessionIdOf(msg.sender, label)` = keccak256(abi.encode(chain id, contract, opener,
label)), so another account opening the same label gets another id and cannot take
(squat) the id a guest is about to use. `session_id` is the same function in Python:
the guest computes its id before opening, the host checks the id its guest announces,
an auditor checks the id a run directory names. A job's label is `session_label(job_id)`.
Standard eth libraries only (no web3), so the audit and history code can use it.
"""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from chain.errors import ChainError


def session_label(job_id: str) -> bytes:
    """The label a job's session is opened with: keccak256 of the job id's UTF-8 bytes."""
    return keccak(text=job_id)


def bytes32(value: bytes | str, what: str) -> bytes:
    """32 bytes from bytes or 0x-hex; a ChainError naming `what` otherwise."""
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise ChainError(f"{what} must be 32 bytes of hex, got {value!r}") from None
    if len(value) != 32:
        raise ChainError(f"{what} must be 32 bytes, got {len(value)}")
    return bytes(value)


def _checksummed(value: str, what: str) -> str:
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError):
        raise ChainError(f"{what} is not an Ethereum address: {value!r}") from None


def session_id(chain_id: int, contract: str, opener: str, label: bytes | str) -> bytes:
    """The id VflAudit gives the session `opener` opens with `label` on `contract` of chain
    `chain_id` (the contract's `sessionIdOf`)."""
    return keccak(abi_encode(["uint256", "address", "address", "bytes32"],
                             [int(chain_id), _checksummed(contract, "contract address"),
                              _checksummed(opener, "session opener"), bytes32(label, "session label")]))
