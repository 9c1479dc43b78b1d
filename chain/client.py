"""`AuditClient`: the typed client of the VflAudit contract.

Every write is signed locally by the client's own account (a `LocalAccount`),
sent as a raw transaction, and waited for; a refusal raises `ContractRevert`
with the contract's custom error decoded. Reads return TypedDicts
(`chain.types`). `events()` reads the contract's logs: a session's whole
history is one `eth_getLogs` (the session id is every session event's first
indexed topic).

A session's id is not chosen by its opener: the contract derives it from the
chain, the contract, the opener's address and a label the opener picks
(`session_id`, the contract's `sessionIdOf`; `chain.sessions`), so no other account
can open a session under an id someone else will use. A job's label is
`session_label(job_id)`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from chain.abi import decode_revert, error_table, plain
from chain.artifact import load_artifact
from chain.errors import ChainError, ContractRevert
from chain.sessions import bytes32, session_id, session_label
from chain.types import (
    FINAL_STATUSES,
    ROLES,
    ROUND_STATES,
    STATUSES,
    AuditEvent,
    MemberInfo,
    ParticipantInfo,
    RoundInfo,
    RoundState,
    SessionInfo,
    TxResult,
)

ZERO32 = b"\x00" * 32
ZERO_HASH = "0x" + "00" * 32
ZERO_ADDRESS = "0x" + "00" * 20
PRIORITY_FEE_WEI = 10**9
FEE_REFRESH_S = 15.0
RECEIPT_TIMEOUT_S = 120.0
SESSION_TIMEOUT_S = 3600  # default openSession timeout: idle this long, any participant may expire it
LOG_CHUNK_BLOCKS = 50_000

# Gas limits for writes whose cost is bounded; unused gas is refunded, so these are
# ceilings (a 32-party round costs < 200k). Writes with strings or lists are estimated.
GAS = {
    "joinSession": 120_000,
    "submitRound": 250_000,
    "finalize": 150_000,
    "abortSession": 100_000,
    "expireSession": 100_000,
    "proposeAdmin": 60_000,
    "acceptAdmin": 60_000,
    "revoke": 60_000,
}


WRITE_ATTEMPTS = 8  # signing attempts of one write when the fee or the nonce moved under it

_b32 = bytes32  # 32 bytes from bytes or 0x-hex (chain.sessions)


def _hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _address(value: str, what: str = "address") -> str:
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError):
        raise ChainError(f"{what} is not an Ethereum address: {value!r}") from None


class AuditClient:
    """The VflAudit contract at `address`, writing as `account` (None: read-only)."""

    def __init__(self, w3: Web3, address: str, account: LocalAccount | None = None,
                 from_block: int = 0) -> None:
        self.w3 = w3
        self.address = _address(address, "contract address")
        self.account = account
        self.from_block = from_block
        artifact = load_artifact()
        self.abi = artifact["abi"]
        self.contract = w3.eth.contract(address=self.address, abi=self.abi)
        self._errors = error_table(self.abi)
        self._events = {}
        for item in self.abi:
            if item.get("type") == "event":
                sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
                self._events[keccak(text=sig)] = (item, getattr(self.contract.events, item["name"])())
        self._chain_id: int | None = None
        self._max_fee: int | None = None
        self._fee_time = 0.0
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def _revert(self, exc: Exception, tx_hash: str = "") -> ContractRevert:
        data = getattr(exc, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            name, args, message = decode_revert(data, self._errors)
            return ContractRevert(message, name, args, tx_hash)
        return ContractRevert(f"reverted: {exc}", "", {}, tx_hash)

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.contract.functions, fn)(*args).call()
        except ContractLogicError as exc:
            raise self._revert(exc) from None

    def _fees(self, refresh: bool = False) -> tuple[int, int]:
        now = time.monotonic()
        if refresh or self._max_fee is None or now - self._fee_time > FEE_REFRESH_S:
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas") or 0)
            self._max_fee = 2 * base + PRIORITY_FEE_WEI
            self._fee_time = now
        return self._max_fee, PRIORITY_FEE_WEI

    def _transact(self, fn: str, *args: Any) -> TxResult:
        if self.account is None:
            raise ChainError(f"{fn}: this client has no account to sign with (read-only)")
        data = self.contract.encode_abi(fn, args=list(args))
        with self._lock:
            tx: dict[str, Any] = {"to": self.address, "data": data, "value": 0, "type": 2,
                                  "chainId": self.chain_id, "from": self.account.address}
            if fn in GAS:
                tx["gas"] = GAS[fn]
            else:
                try:
                    tx["gas"] = int(self.w3.eth.estimate_gas(tx) * 1.25) + 10_000
                except ContractLogicError as exc:
                    raise self._revert(exc) from None
            tx.pop("from")
            for attempt in range(WRITE_ATTEMPTS):
                max_fee, tip = self._fees(refresh=attempt > 0)
                tx.update(maxFeePerGas=max_fee, maxPriorityFeePerGas=tip,
                          nonce=self.w3.eth.get_transaction_count(self.account.address, "pending"))
                signed = self.account.sign_transaction(tx)
                try:
                    tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
                    break
                except Web3RPCError as exc:
                    msg = str(exc).lower()
                    if attempt < WRITE_ATTEMPTS - 1 and ("fee" in msg or "nonce" in msg or "underpriced" in msg):
                        # the base fee rose, or another process writing from this account (jobs sharing
                        # a chain and an account) took the nonce: sign again with fresh values
                        time.sleep(random.uniform(0.0, 0.05 * (attempt + 1)))
                        continue
                    raise ChainError(f"{fn}: the node refused the transaction: {exc}") from None
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S,
                                                                   poll_latency=0.05)
            except TimeExhausted:
                raise ChainError(f"{fn}: no receipt for {tx_hash.to_0x_hex()} within "
                                 f"{RECEIPT_TIMEOUT_S:.0f} s") from None
        h = receipt["transactionHash"].to_0x_hex()
        if receipt["status"] != 1:
            raise self._diagnose(fn, tx, receipt, h)
        return {"tx_hash": h, "block_number": int(receipt["blockNumber"]),
                "gas_used": int(receipt["gasUsed"]),
                "events": [self._decode_log(log) for log in receipt["logs"]
                           if to_checksum_address(log["address"]) == self.address]}

    def _diagnose(self, fn: str, tx: dict[str, Any], receipt: Any, tx_hash: str) -> ContractRevert:
        """Re-run a failed transaction as a call on its parent state to learn the revert reason."""
        assert self.account is not None
        call = {"from": self.account.address, "to": self.address, "data": tx["data"], "gas": tx["gas"]}
        try:
            self.w3.eth.call(call, block_identifier=int(receipt["blockNumber"]) - 1)
        except ContractLogicError as exc:
            return self._revert(exc, tx_hash)
        except Web3RPCError:
            pass
        return ContractRevert(f"{fn}: transaction {tx_hash} failed without a reason "
                              f"(gas used {receipt['gasUsed']} of {tx['gas']})", "", {}, tx_hash)

    # -- participants -----------------------------------------------------------

    def register_participant(self, address: str, role: str, organisation: str) -> TxResult:
        if role not in ROLES[1:]:
            raise ChainError(f"role must be one of {', '.join(ROLES[1:])}, got {role!r}")
        return self._transact("registerParticipant", _address(address), ROLES.index(role), organisation)

    def propose_admin(self, new_admin: str) -> TxResult:
        """Step 1 of handing over the admin role (admin only); the zero address withdraws a proposal."""
        return self._transact("proposeAdmin", _address(new_admin, "new admin"))

    def accept_admin(self) -> TxResult:
        """Step 2: the proposed account takes the admin role."""
        return self._transact("acceptAdmin")

    def revoke(self, address: str) -> TxResult:
        return self._transact("revoke", _address(address))

    # -- sessions -----------------------------------------------------------------

    def session_id(self, label: bytes | str, opener: str | None = None) -> bytes:
        """The id of the session `opener` (default: this client's account) opens with `label`
        on this contract (computed here; equal to the contract's `sessionIdOf`)."""
        if opener is None:
            if self.account is None:
                raise ChainError("session_id: give the opener (this client has no account)")
            opener = self.account.address
        return session_id(self.chain_id, self.address, opener, label)

    def open_session(self, label: bytes, algorithm: str, config_commitment: bytes,
                     participants: Sequence[str], timeout: int = SESSION_TIMEOUT_S) -> TxResult:
        """Open a session as its guest, under `self.session_id(label)`; `participants` are
        the others (hosts, ...). After `timeout` s without activity any participant may expire it."""
        if not 0 < int(timeout) < 2**64:
            raise ChainError(f"session timeout must be a positive number of seconds, got {timeout}")
        return self._transact("openSession", _b32(label, "session label"), algorithm,
                              _b32(config_commitment, "config commitment"),
                              [_address(p, "participant") for p in participants], int(timeout))

    def join_session(self, session_id: bytes) -> TxResult:
        return self._transact("joinSession", _b32(session_id, "session id"))

    def submit_round(self, session_id: bytes, round_no: int, commitment: bytes,
                     transcript_digest: bytes) -> TxResult:
        if not 0 <= int(round_no) < 2**64:
            raise ChainError(f"round number out of range: {round_no}")
        return self._transact("submitRound", _b32(session_id, "session id"), int(round_no),
                              _b32(commitment, "commitment"), _b32(transcript_digest, "transcript digest"))

    def finalize(self, session_id: bytes, model_commitment: bytes, metrics_hash: bytes = ZERO32) -> TxResult:
        """Post the final model commitment; the guest also the metrics hash (others: none)."""
        return self._transact("finalize", _b32(session_id, "session id"),
                              _b32(model_commitment, "model commitment"),
                              _b32(metrics_hash or ZERO32, "metrics hash"))

    def abort_session(self, session_id: bytes, reason_hash: bytes) -> TxResult:
        return self._transact("abortSession", _b32(session_id, "session id"), _b32(reason_hash, "reason hash"))

    def expire_session(self, session_id: bytes) -> TxResult:
        """End a session idle for longer than its timeout (any participant; NotExpired if too early)."""
        return self._transact("expireSession", _b32(session_id, "session id"))

    # -- views ---------------------------------------------------------------------

    def admin(self) -> str:
        return to_checksum_address(self._call("admin"))

    def pending_admin(self) -> str | None:
        """The account proposed as the next admin, or None."""
        pending = to_checksum_address(self._call("pendingAdmin"))
        return None if pending == ZERO_ADDRESS else pending

    def participant(self, address: str) -> ParticipantInfo | None:
        """The registration of `address`, or None if it is not registered."""
        role, revoked, block, organisation = self._call("participant", _address(address))
        if role == 0:
            return None
        return {"address": _address(address), "role": ROLES[role], "organisation": organisation,  # type: ignore[typeddict-item]
                "revoked": bool(revoked), "registered_block": int(block)}

    def participants(self) -> list[ParticipantInfo]:
        count = self._call("participantCount")
        out = []
        for i in range(count):
            info = self.participant(self._call("participantAt", i))
            assert info is not None
            out.append(info)
        return out

    def sessions(self) -> list[str]:
        return [_hex32(self._call("sessionAt", i)) for i in range(self._call("sessionCount"))]

    def sessions_labelled(self, label: bytes | str) -> list[AuditEvent]:
        """The SessionOpened events of every session opened with `label`, by any opener
        (one `eth_getLogs` on the indexed label), in chain order."""
        item, _ = next(v for v in self._events.values() if v[0]["name"] == "SessionOpened")
        sig = f"SessionOpened({','.join(i['type'] for i in item['inputs'])})"
        return self._logs([_hex32(keccak(text=sig)), None, None, _hex32(_b32(label, "session label"))])

    def session(self, session_id: bytes) -> SessionInfo:
        sid = _b32(session_id, "session id")
        (guest, status, algorithm, config, participants, joined, finalized, opened, metrics,
         reason, aborted_by, last_activity, timeout) = self._call("session", sid)
        return {"session_id": _hex32(sid), "guest": to_checksum_address(guest),
                "status": STATUSES[status],  # type: ignore[typeddict-item]
                "algorithm": algorithm, "config_commitment": _hex32(config),
                "participants": [to_checksum_address(p) for p in participants],
                "joined": int(joined), "finalized": int(finalized), "opened_block": int(opened),
                "metrics_hash": _hex32(metrics), "abort_reason": _hex32(reason),
                "aborted_by": to_checksum_address(aborted_by), "last_activity": int(last_activity),
                "timeout": int(timeout)}

    def wait_for_status(self, session_id: bytes, *statuses: str, timeout: float = 120.0,
                        poll: float = 0.2) -> SessionInfo:
        """Poll until the session exists with one of `statuses` (e.g. the host waits for
        "opened" before joining, the guest for "active" before training). An aborted or
        closed session that was not asked for, or the timeout, raise ChainError."""
        wanted = set(statuses) or set(STATUSES[1:])
        unknown = wanted - set(STATUSES[1:])
        if unknown:
            raise ChainError(f"unknown session status {sorted(unknown)[0]!r}")
        deadline = time.monotonic() + timeout
        info: SessionInfo | None = None
        while True:
            try:
                info = self.session(session_id)
            except ContractRevert as exc:
                if exc.name != "UnknownSession":
                    raise
            if info is not None:
                if info["status"] in wanted:
                    return info
                if info["status"] in FINAL_STATUSES:
                    raise ChainError(f"session {info['session_id']} is {info['status']}, "
                                     f"not {' or '.join(sorted(wanted))}")
            if time.monotonic() >= deadline:
                state = info["status"] if info else "not opened"
                raise ChainError(f"session 0x{_b32(session_id, 'session id').hex()} still {state} after "
                                 f"{timeout:.0f} s (waiting for {' or '.join(sorted(wanted))})")
            time.sleep(poll)

    def member(self, session_id: bytes, address: str) -> MemberInfo:
        is_participant, joined, finalized, last_round, model = self._call(
            "member", _b32(session_id, "session id"), _address(address))
        return {"is_participant": bool(is_participant), "joined": bool(joined), "finalized": bool(finalized),
                "last_round": int(last_round), "model_commitment": _hex32(model)}

    def round(self, session_id: bytes, round_no: int, party: str) -> RoundInfo | None:
        """`party`'s submission for `round_no`, or None if it posted none."""
        commitment, digest = self._call("roundSubmission", _b32(session_id, "session id"), int(round_no),
                                        _address(party))
        if digest == ZERO32:
            return None
        return {"round": int(round_no), "party": _address(party), "commitment": _hex32(commitment),
                "transcript_digest": _hex32(digest)}

    def round_state(self, session_id: bytes, round_no: int) -> RoundState:
        return ROUND_STATES[self._call("roundState", _b32(session_id, "session id"), int(round_no))]  # type: ignore[return-value]

    def round_states(self, session_id: bytes, rounds: Sequence[int]) -> list[RoundState]:
        """`round_state` of each of `rounds`, read in one JSON-RPC batch (one round trip)."""
        sid = _b32(session_id, "session id")
        if not rounds:
            return []
        try:
            with self.w3.batch_requests() as batch:
                for r in rounds:
                    batch.add(self.contract.functions.roundState(sid, int(r)))
                states = batch.execute()
        except ContractLogicError as exc:
            raise self._revert(exc) from None
        return [ROUND_STATES[int(s)] for s in states]  # type: ignore[misc]

    # -- events --------------------------------------------------------------------

    def _decode_log(self, log: Any) -> AuditEvent:
        topics = log["topics"]
        entry = self._events.get(bytes(topics[0])) if topics else None
        if entry is None:
            raise ChainError(f"log {log['transactionHash'].to_0x_hex()}#{log['logIndex']} is not a VflAudit event")
        item, event = entry
        decoded = event.process_log(log)
        params = {i["name"]: i for i in item["inputs"]}
        return {"event": item["name"],
                "args": {k: plain(v, params.get(k)) for k, v in decoded["args"].items()},
                "block_number": int(log["blockNumber"]), "tx_hash": log["transactionHash"].to_0x_hex(),
                "log_index": int(log["logIndex"])}

    def events(self, session_id: bytes | None = None, from_block: int | None = None,
               to_block: int | None = None) -> list[AuditEvent]:
        """The contract's events in chain order; only one session's if `session_id` is given."""
        topics: list[Any] = [None, _hex32(_b32(session_id, "session id"))] if session_id is not None else []
        return self._logs(topics, from_block, to_block)

    def _logs(self, topics: list[Any], from_block: int | None = None,
              to_block: int | None = None) -> list[AuditEvent]:
        """The contract's events matching `topics`, in chain order, read in block chunks."""
        lo = self.from_block if from_block is None else from_block
        hi = int(self.w3.eth.block_number) if to_block is None else to_block
        out: list[AuditEvent] = []
        while lo <= hi:
            end = min(hi, lo + LOG_CHUNK_BLOCKS - 1)
            flt: dict[str, Any] = {"address": self.address, "fromBlock": lo, "toBlock": end}
            if topics:
                flt["topics"] = topics
            out.extend(self._decode_log(log) for log in self.w3.eth.get_logs(flt))  # type: ignore[arg-type]
            lo = end + 1
        out.sort(key=lambda e: (e["block_number"], e["log_index"]))
        return out


class SessionAnchor:
    """One party's round anchor for one session (`nodes.context.ChainAnchor`)."""

    def __init__(self, client: AuditClient, session_id: bytes) -> None:
        self.client = client
        self.session_id = _b32(session_id, "session id")

    def submit_round(self, round_no: int, commitment: bytes, transcript_digest: bytes) -> str:
        return self.client.submit_round(self.session_id, round_no, commitment, transcript_digest)["tx_hash"]


__all__ = ["ZERO32", "AuditClient", "SessionAnchor", "session_id", "session_label"]
