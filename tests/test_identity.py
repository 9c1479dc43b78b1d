"""Identity proofs (nodes.identity): a signature over a fresh challenge and the session, by the claimed
account, registered on the contract with the claimed role, made for the TLS certificate the link uses."""

from __future__ import annotations

from typing import Any

import pytest

from chain.accounts import dev_account
from nodes.identity import IdentityError, check_identity, new_challenge, sign_statement, statement

GUEST, HOST, OTHER = dev_account(1), dev_account(2), dev_account(3)


class Registry:
    def __init__(self, **entries: dict[str, Any]) -> None:
        self.entries = {a.lower(): e for a, e in entries.items()}

    def participant(self, address: str) -> dict[str, Any] | None:
        return self.entries.get(address.lower())


REG = Registry(**{GUEST.address: {"role": "guest", "revoked": False},
                  HOST.address: {"role": "host", "revoked": False},
                  OTHER.address: {"role": "host", "revoked": True}})


def _text(challenge: str, prover: str = GUEST.address, tls: str = "aa" * 32) -> str:
    return statement(prover_role="guest", prover_account=prover, prover_tls=tls, verifier_role="host",
                     verifier_account=HOST.address, challenge=challenge, job_id="psi-1", session_id="0x" + "11" * 32,
                     opener=prover, config_commitment="0x" + "22" * 32, chain_id=1337, contract="0x" + "33" * 20)


def test_a_proof_by_the_registered_guest_for_this_challenge_and_channel_is_accepted() -> None:
    c = new_challenge()
    assert len(c) == 66 and c != new_challenge()
    text = _text(c)
    check_identity(REG, role="guest", claimed=GUEST.address, text=text, signature=sign_statement(GUEST, text),
                   seen_tls="aa" * 32)


def test_a_proof_for_another_challenge_does_not_verify_as_the_claimed_account() -> None:
    old = sign_statement(GUEST, _text(new_challenge()))  # a replay of an earlier proof
    with pytest.raises(IdentityError, match="is signed by 0x"):
        check_identity(REG, role="guest", claimed=GUEST.address, text=_text(new_challenge()), signature=old,
                       seen_tls="aa" * 32)


def test_a_proof_made_for_another_tls_certificate_is_refused_as_relayed() -> None:
    text = _text(new_challenge())
    with pytest.raises(IdentityError, match="a relayed proof"):
        check_identity(REG, role="guest", claimed=GUEST.address, text=text, signature=sign_statement(GUEST, text),
                       seen_tls="bb" * 32)


@pytest.mark.parametrize(("account", "role", "reason"), [
    (dev_account(5), "guest", "is not registered on the contract"),
    (HOST, "guest", "is registered as host, not guest"),
    (OTHER, "host", "is revoked on the contract"),
])
def test_a_signer_without_the_claimed_registration_is_refused(account: Any, role: str, reason: str) -> None:
    text = _text(new_challenge(), prover=account.address)
    with pytest.raises(IdentityError, match=reason):
        check_identity(REG, role=role, claimed=account.address, text=text, signature=sign_statement(account, text),
                       seen_tls=None)


def test_a_missing_or_malformed_signature_is_refused() -> None:
    for sig in (None, "0x1234"):
        with pytest.raises(IdentityError, match="no valid identity signature"):
            check_identity(REG, role="guest", claimed=GUEST.address, text=_text(new_challenge()), signature=sig,
                           seen_tls=None)
