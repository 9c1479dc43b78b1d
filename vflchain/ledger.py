"""A job without a chain (`vflchain.run_job(..., chain=None)`): the parties' chain link, kept in memory.

The job runner (nodes.job.PartyNode) needs a chain link for the session's life
cycle: open, join, post rounds, finalize, abort, read the status. Without a
chain, `OfflineLedger` keeps that life cycle in memory, shared by the parties of
one in-process job, and `OfflineLink` is one party's link to it. Nothing is
anchored anywhere: every commitment is still computed and written to the run
directories (checkpoints, `rounds.jsonl` with an empty `tx_hash`, `job.json`
openings), but no third party can check it, so such a job cannot be audited.
The parties still prove their accounts to each other (development accounts,
registered in the ledger) exactly as on a chain.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from chain.accounts import DEV_INDEX, dev_account
from chain.sessions import session_id as derive_session_id
from nodes.context import NoChain
from nodes.errors import NodeError

CHAIN_ID = 0  # no chain: the id commitments and identity statements are bound to
CONTRACT = "0x" + "00" * 20  # no contract: the address they are bound to
FINAL = ("closed", "aborted")


@dataclass
class _Session:
    guest: str
    algorithm: str
    config_commitment: str
    participants: list[str]
    joined: set[str] = field(default_factory=set)
    finalized: set[str] = field(default_factory=set)
    status: str = "opened"


class OfflineLedger:
    """Sessions and registered accounts of one in-process job, in memory (thread-safe)."""

    def __init__(self, roles: dict[str, Any] | None = None) -> None:
        """`roles`: {role: eth-account LocalAccount}; default the development guest and host."""
        self.accounts = roles or {r: dev_account(DEV_INDEX[r]) for r in ("guest", "host")}
        # host1..hostN are registered as hosts (the contract knows guest and host)
        self.registry = {a.address.lower(): {"role": "host" if re.fullmatch(r"host[0-9]+", role) else role,
                                             "revoked": False, "organisation": role}
                         for role, a in self.accounts.items()}
        self.sessions: dict[bytes, _Session] = {}
        self.lock = threading.Lock()

    def link(self, role: str) -> OfflineLink:
        """The link of `role` (one of the accounts this ledger was made with)."""
        if role not in self.accounts:
            raise NodeError(f"no account for role {role!r} in this job (known: {', '.join(self.accounts)})")
        return OfflineLink(self, self.accounts[role])


class OfflineLink:
    """One party's link to an `OfflineLedger` (what nodes.chainlink.ChainLinkLike asks for)."""

    chain_id = CHAIN_ID
    url = "none (no chain: nothing anchored)"

    def __init__(self, ledger: OfflineLedger, account: Any) -> None:
        self.ledger, self.account = ledger, account
        self.client = SimpleNamespace(account=account)  # where a horizontal node finds the key it signs with

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def contract(self) -> str:
        return CONTRACT

    def sign_text(self, text: str) -> str:
        from nodes.identity import sign_statement

        return sign_statement(self.account, text)

    def participant(self, address: str) -> dict[str, Any] | None:
        info = self.ledger.registry.get(address.lower())
        return None if info is None else dict(info)

    def open_session(self, label: bytes, algorithm: str, config_commitment: bytes, others: list[str]) -> str:
        sid = derive_session_id(CHAIN_ID, CONTRACT, self.address, label)
        with self.ledger.lock:
            if sid in self.ledger.sessions:
                raise NodeError(f"session 0x{sid.hex()} is already open")
            self.ledger.sessions[sid] = _Session(self.address, algorithm, "0x" + config_commitment.hex(),
                                                 [self.address, *others], joined={self.address.lower()})
        return ""

    def _get(self, session_id: bytes) -> _Session:
        s = self.ledger.sessions.get(session_id)
        if s is None:
            raise NodeError(f"no session 0x{session_id.hex()}")
        return s

    def join_session(self, session_id: bytes) -> str:
        with self.ledger.lock:
            s = self._get(session_id)
            if s.status != "opened" or self.address not in s.participants:
                raise NodeError(f"cannot join session 0x{session_id.hex()} ({s.status})")
            s.joined.add(self.address.lower())
            if len(s.joined) == len(s.participants):
                s.status = "active"
        return ""

    def anchor(self, session_id: bytes) -> NoChain:
        return NoChain()

    def finalize(self, session_id: bytes, model_commitment: bytes, metrics_hash: bytes = b"") -> str:
        with self.ledger.lock:
            s = self._get(session_id)
            if s.status != "active":
                raise NodeError(f"cannot finalize session 0x{session_id.hex()} ({s.status})")
            s.finalized.add(self.address.lower())
            if len(s.finalized) == len(s.participants):
                s.status = "closed"
        return ""

    def abort_session(self, session_id: bytes, reason_hash: bytes) -> str | None:
        with self.ledger.lock:
            s = self._get(session_id)
            if s.status in FINAL:
                return None
            s.status = "aborted"
        return ""

    def session(self, session_id: bytes) -> dict[str, Any]:
        with self.ledger.lock:
            s = self._get(session_id)
            return {"session_id": "0x" + session_id.hex(), "guest": s.guest, "status": s.status,
                    "algorithm": s.algorithm, "config_commitment": s.config_commitment,
                    "participants": list(s.participants)}

    def wait_status(self, session_id: bytes, wanted: str, timeout: float, poll: float = 0.01) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.session(session_id)
            if info["status"] == wanted:
                return info
            if info["status"] in FINAL or time.monotonic() >= deadline:
                raise NodeError(f"session 0x{session_id.hex()} is {info['status']}, waited for it to be {wanted}")
            time.sleep(poll)

    def round_state(self, session_id: bytes, round_no: int) -> str:
        return "none"  # nothing is attested without a chain (a job without a chain cannot resume)
