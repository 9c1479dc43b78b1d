"""Proof that a peer controls the chain account it claims, bound to the session and the TLS channel.

In the handshake each node sends the other a fresh challenge (32 random bytes from
`secrets`). Each answers with an EIP-191 `personal_sign` signature, made with its
chain account's key, over an *identity statement*: the text

    vflchain identity proof v1
    {"chain_id": ..., "challenge": "0x<the verifier's nonce>", "config_commitment": "0x...",
     "contract": "0x...", "job_id": "...", "opener": "0x<the guest's account>",
     "prover_account": "0x...", "prover_role": "host", "prover_tls": "<sha256 of the prover's
     TLS certificate, or empty>", "session_id": "0x...", "verifier_account": "0x...",
     "verifier_role": "guest"}

(sorted keys, compact JSON). The verifier rebuilds the same statement from what it
knows itself (its own nonce, account, role, chain, contract, config commitment) and
from what the prover claims, recovers the signer, and accepts only if it is the
claimed account, registered on the contract with the claimed role and not revoked
(`check_identity`). So a signature answers one challenge of one verifier, for one
session of one job on one contract, and cannot be replayed elsewhere.

TLS binding: `prover_tls` is the SHA-256 of the DER certificate the prover presents
on its mutual-TLS connections; the verifier compares it with the certificate its
own gRPC server saw on the messages the prover delivered. A relay (a node that
forwards the challenge to the real owner of the account and its signature back)
presents its own certificate, not the one the owner signed, and is refused.

`opener` and `session_id` are in the statement so that a session id derived from
the opener's address (`keccak256(chainid, contract, opener, label)`) changes
nothing here: the verifier recomputes `session_id` its own way.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import encode_defunct

from nodes.algorithms import generic_role
from nodes.errors import NodeError

PREFIX = "vflchain identity proof v1\n"
CHALLENGE_BYTES = 32
# the contract role each party's account must be registered with
CONTRACT_ROLE = {"guest": "guest", "host": "host"}


class IdentityError(NodeError):
    """A peer could not prove control of the registered account it claims."""


class Registry(Protocol):
    """The contract's participant registry (chain.client.AuditClient.participant)."""

    def participant(self, address: str) -> dict[str, Any] | None: ...


def new_challenge() -> str:
    """A fresh nonce for the peer to sign ("0x" + 64 hex digits), from `secrets`."""
    return "0x" + secrets.token_bytes(CHALLENGE_BYTES).hex()


def statement(*, prover_role: str, prover_account: str, prover_tls: str, verifier_role: str,
              verifier_account: str, challenge: str, job_id: str, session_id: str, opener: str,
              config_commitment: str, chain_id: int, contract: str) -> str:
    """The text a prover signs (see the module docstring); addresses and hex in lower case."""
    body = {
        "prover_role": prover_role, "prover_account": prover_account.lower(), "prover_tls": prover_tls.lower(),
        "verifier_role": verifier_role, "verifier_account": verifier_account.lower(),
        "challenge": challenge.lower(), "job_id": job_id, "session_id": session_id.lower(),
        "opener": opener.lower(), "config_commitment": config_commitment.lower(), "chain_id": int(chain_id),
        "contract": contract.lower(),
    }
    return PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"))


def sign_statement(account: Any, text: str) -> str:
    """EIP-191 personal-message signature of `text` with an eth-account LocalAccount; 0x-hex."""
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def recover(text: str, signature: str) -> str | None:
    """The address that signed `text`, or None for a malformed signature."""
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=signature))
    except Exception:  # noqa: BLE001 - any malformed signature is "signed by nobody"
        return None


def check_identity(registry: Registry, *, role: str, claimed: str, text: str, signature: Any,
                   seen_tls: str | None) -> None:
    """Accept the peer's proof or raise IdentityError (one line naming the problem).

    `seen_tls`: the fingerprint of the certificate the peer's messages arrived with ("" without
    TLS, None when the transport cannot tell: then the statement's `prover_tls` is not checked).
    """
    signer = recover(text, signature) if isinstance(signature, str) else None
    if signer is None:
        raise IdentityError(f"the {role} sent no valid identity signature for account {claimed}")
    if signer.lower() != claimed.lower():
        raise IdentityError(f"the {role}'s identity proof is signed by {signer}, not by the account it "
                            f"claims ({claimed})")
    if seen_tls is not None:
        signed_tls = json.loads(text[len(PREFIX):])["prover_tls"]
        if signed_tls != seen_tls.lower():
            raise IdentityError(f"the {role}'s identity proof names TLS certificate {signed_tls[:16] or '(none)'}…, "
                                f"its messages came with {seen_tls[:16] or '(none)'}… (a relayed proof?)")
    info = registry.participant(claimed)
    want = CONTRACT_ROLE.get(role) or CONTRACT_ROLE[generic_role(role)]  # host1..hostN register as host
    if info is None:
        raise IdentityError(f"the {role}'s account {claimed} is not registered on the contract")
    if info.get("revoked"):
        raise IdentityError(f"the {role}'s account {claimed} is revoked on the contract")
    if info.get("role") != want:
        raise IdentityError(f"the {role}'s account {claimed} is registered as {info.get('role')}, not {want}")
