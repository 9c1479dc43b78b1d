"""A shared audit-contract scenario, run on every kind of chain (in-process, served, anvil)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak
from web3 import Web3

from chain.accounts import dev_account
from chain.client import AuditClient, session_label
from chain.deploy import deploy, ensure_registered
from chain.history import replay_registry, replay_session


def h(text: str) -> bytes:
    """A 32-byte stand-in for a commitment or digest."""
    return keccak(text=text)


@dataclass
class Parties:
    address: str
    admin: AuditClient
    guest: AuditClient
    host: AuditClient
    host2: AuditClient
    auditor: AuditClient
    outsider: AuditClient  # a funded account that is never registered


def setup_contract(w3: Web3) -> Parties:
    """Deploy, and register guest (1), host (2), a second host (3) and an auditor (4)."""
    dep = deploy(w3, dev_account(0))
    admin = AuditClient(w3, dep["address"], dev_account(0), from_block=dep["block_number"])
    ensure_registered(admin, {
        dev_account(1).address: ("guest", "General Hospital"),
        dev_account(2).address: ("host", "City Lab"),
        dev_account(3).address: ("host", "County Clinic"),
        dev_account(4).address: ("auditor", "Consortium Audit"),
    })

    def client(i: int) -> AuditClient:
        return AuditClient(w3, dep["address"], dev_account(i), from_block=dep["block_number"])

    return Parties(dep["address"], admin, client(1), client(2), client(3), client(4), client(5))


def full_session(p: Parties, job: str, rounds: int = 3, dispute: int | None = None) -> bytes:
    """Open, join, `rounds` rounds (round `dispute` with differing digests), finalize both."""
    sid = p.guest.session_id(session_label(job))
    p.guest.open_session(session_label(job), "lr", h(job + "/config"), [p.host.account.address])
    p.host.join_session(sid)
    for r in range(1, rounds + 1):
        p.guest.submit_round(sid, r, h(f"{job}/guest/{r}"), h(f"{job}/transcript/{r}"))
        digest = h(f"{job}/transcript/{r}" + ("/tampered" if r == dispute else ""))
        p.host.submit_round(sid, r, h(f"{job}/host/{r}"), digest)
    p.guest.finalize(sid, h(job + "/guest-model"), h(job + "/metrics"))
    p.host.finalize(sid, h(job + "/host-model"))
    return sid


def views_of(client: AuditClient, sid: bytes) -> dict:
    """Everything the view functions say about a session, shaped like chain.history's record."""
    info = client.session(sid)
    members = {a: client.member(sid, a) for a in info["participants"]}
    last = max(m["last_round"] for m in members.values())
    rounds = {}
    for r in range(1, last + 1):
        subs = {a: s for a in info["participants"] if (s := client.round(sid, r, a)) is not None}
        if subs:
            rounds[r] = subs
    states = {r: client.round_state(sid, r) for r in rounds}
    return {"session": info, "members": members, "rounds": rounds, "round_states": states}


def assert_history_matches_views(client: AuditClient, sid: bytes) -> None:
    events = client.events(sid)
    stamps = {e["block_number"]: int(client.w3.eth.get_block(e["block_number"])["timestamp"]) for e in events}
    record = replay_session(events, client.chain_id, client.address, stamps)
    record.pop("events")
    assert record == views_of(client, sid)


def assert_registry_matches_views(client: AuditClient) -> None:
    reg = replay_registry(client.events())
    assert reg["admin"] == client.admin()
    assert reg["pending_admin"] == client.pending_admin()
    assert reg["participants"] == {p["address"]: p for p in client.participants()}
