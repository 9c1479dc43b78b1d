"""The chain the explorer reads, and its events cached and indexed by session.

`ChainSource` picks the connection on every refresh: `--rpc URL` as given; for `--state DIR`
the embedded chain's server while one runs (a job is writing: read it over JSON-RPC like any
client), else the state directory loaded in-process read-only (no lock taken, nothing
written), reloaded only when its journal grew. It never holds a key: the `AuditClient` it
builds has no account, so no write can be signed.

`EventIndex` keeps every event of the contract read so far and, on `refresh()`, asks only for
the blocks after the last one seen (one `eth_getLogs` range), at most every `min_interval`
seconds however many pages ask. Session records are replayed from the cached events
(`chain.history.replay_session`) and cached until the session gets a new event; block
timestamps are fetched once per block, in JSON-RPC batches.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.audit import SessionHistory, exception_line, session_roles
from chain.client import LOG_CHUNK_BLOCKS, AuditClient
from chain.errors import ChainError
from chain.history import HistoryError, SessionRecord, replay_registry, replay_session
from chain.types import AuditEvent

SESSION_END = ("SessionClosed", "SessionAborted", "SessionExpired")
REGISTRY_EVENTS = ("AdminProposed", "AdminTransferred", "ParticipantRegistered", "ParticipantRevoked")
BATCH = 500  # blocks per timestamp batch


class LogDecoder:
    """VflAudit logs from raw JSON-RPC answers into `AuditEvent`s, equal to `AuditClient.events()`'s.

    web3's log formatting and `process_log` cost ~4 ms per event; this decodes each event's
    topics and data with eth_abi directly (the explorer's first read of a busy chain is
    thousands of events)."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        from eth_utils import keccak

        self.events: dict[str, tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for item in abi:
            if item.get("type") != "event":
                continue
            sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            topic = "0x" + keccak(text=sig).hex()
            self.events[topic] = (item["name"], [i for i in item["inputs"] if i.get("indexed")],
                                  [i for i in item["inputs"] if not i.get("indexed")])

    def decode(self, log: dict[str, Any]) -> AuditEvent:
        from eth_abi import decode

        from chain.abi import plain

        topics = [str(t).lower() for t in log["topics"]]
        entry = self.events.get(topics[0]) if topics else None
        if entry is None:
            raise ChainError(f"log {log.get('transactionHash')}#{log.get('logIndex')} is not a VflAudit event")
        name, indexed, data = entry
        args: dict[str, Any] = {}
        for param, topic in zip(indexed, topics[1:], strict=True):
            raw = bytes.fromhex(topic[2:])
            dynamic = param["type"] in ("string", "bytes") or param["type"].endswith("]")
            args[param["name"]] = _plain(raw if dynamic else decode([param["type"]], raw)[0], param, plain)
        if data:
            values = decode([p["type"] for p in data], bytes.fromhex(str(log["data"])[2:]))
            for param, value in zip(data, values, strict=True):
                args[param["name"]] = _plain(list(value) if isinstance(value, tuple) else value, param, plain)
        return {"event": name, "args": args, "block_number": _int(log["blockNumber"]),
                "tx_hash": str(log["transactionHash"]).lower(), "log_index": _int(log["logIndex"])}


@functools.lru_cache(maxsize=4096)
def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def _plain(value: Any, param: dict[str, Any], plain: Any) -> Any:
    """`chain.abi.plain`, with addresses checksummed through a cache (a few accounts, thousands of events)."""
    if param["type"] == "address":
        return _checksum(value)
    if param["type"] == "address[]":
        return [_checksum(v) for v in value]
    return plain(value, param)


def _int(x: Any) -> int:
    return int(x, 16) if isinstance(x, str) else int(x)


class JournalTimes:
    """Block times from an embedded chain's journal (`chain.embedded`: one line per block with its
    number and timestamp), read incrementally from the last complete line seen. A block's time over
    JSON-RPC costs the embedded chain a whole block load (~5 ms); a busy session spans hundreds."""

    def __init__(self, state: Path) -> None:
        from chain.embedded import JOURNAL_FILE

        self.path = state / JOURNAL_FILE
        self.offset = 0
        self.times: dict[int, int] = {}

    def read(self) -> dict[int, int]:
        try:
            with self.path.open("rb") as fh:
                if fh.seek(0, 2) < self.offset:  # a new chain in the same directory
                    self.offset, self.times = 0, {}
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return self.times
        end = data.rfind(b"\n") + 1  # complete lines only: the last may be being written
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
                self.times[int(entry["number"])] = int(entry["timestamp"])
            except (ValueError, KeyError, TypeError):
                continue
        self.offset += end
        return self.times


class ExplorerError(ChainError):
    """Something the explorer cannot show (unknown session, no contract yet)."""


class ChainSource:
    """Where the chain is: a JSON-RPC URL (`rpc`, with `contract`), or an embedded state directory."""

    def __init__(self, state: str | Path | None = None, rpc: str = "", contract: str = "") -> None:
        if not state and not rpc:
            raise ExplorerError("no chain: give --state DIR or --rpc URL")
        if rpc and not contract:
            raise ExplorerError("--rpc needs --contract ADDR (the audit contract to read)")
        self.state = Path(state).resolve() if state else None
        self.rpc = rpc
        self.contract = contract
        self._client: AuditClient | None = None
        self._key: tuple[Any, ...] = ()
        self._inproc: Any = None  # the read-only EmbeddedChain while no server runs

    def describe(self) -> str:
        return self.rpc if self.rpc else f"embedded chain state {self.state}"

    def mode(self) -> str:
        """"rpc", "server" (the state's server, a job runs) or "state" (read in-process)."""
        return "rpc" if self.rpc else (self._key[0] if self._key else "state")

    def client(self) -> AuditClient:
        """A read-only client on the chain as it is now (reconnecting when the server came or went)."""
        from web3 import Web3

        from chain.backends import EmbeddedProvider, connect
        from chain.embedded import JOURNAL_FILE, EmbeddedChain, running_server

        if self.rpc:
            key: tuple[Any, ...] = ("rpc", self.rpc)
            if key != self._key:
                self._use(key, connect(self.rpc, timeout=10.0))
            assert self._client is not None
            return self._client
        assert self.state is not None
        if self._key[:1] == ("server",) and self._client is not None:
            return self._client  # keep to the job's server until a read fails (`invalidate`)
        info = running_server(self.state)
        if info is not None:
            key = ("server", info["url"])
            if key != self._key:
                self._use(key, connect(info["url"], timeout=10.0))
        else:
            journal = self.state / JOURNAL_FILE
            try:
                st = journal.stat()
                sig: tuple[int, int] = (st.st_size, st.st_mtime_ns)
            except OSError:
                sig = (0, 0)
            key = ("state", sig)
            if key != self._key:
                chain = EmbeddedChain(self.state, read_only=True)
                self._use(key, Web3(EmbeddedProvider(chain)), chain)
        assert self._client is not None
        return self._client

    def _use(self, key: tuple[Any, ...], w3: Any, inproc: Any = None) -> None:
        from chain.deploy import is_audit_contract, recorded

        contract = self.contract
        if not contract:
            dep = recorded(self.state, w3) if self.state else None
            if dep is None:
                raise ExplorerError(f"no audit contract recorded in {self.state} yet (no job has run on it)")
            contract = dep["address"]
        elif not is_audit_contract(w3, contract):
            raise ExplorerError(f"no VflAudit contract at {contract} on this chain")
        self.close()
        self._client = AuditClient(w3, contract)  # no account: it cannot sign anything
        self._key, self._inproc = key, inproc

    def invalidate(self) -> None:
        """Forget the connection (the server stopped mid-read): the next `client()` picks again."""
        self._key = ()

    def close(self) -> None:
        if self._inproc is not None:
            self._inproc.close(snapshot=False)
            self._inproc = None


@dataclass
class _Session:
    events: list[AuditEvent] = field(default_factory=list)
    record: SessionRecord | None = None
    replayed: int = -1  # len(events) when `record` was replayed
    error: str = ""


class EventIndex:
    """The contract's events, read incrementally and indexed by session."""

    def __init__(self, source: ChainSource, min_interval: float = 0.5) -> None:
        self.source = source
        self.min_interval = min_interval
        self.lock = threading.RLock()
        self.chain_id = 0
        self.contract = ""
        self.last_block = -1
        self.events: list[AuditEvent] = []
        self.registry_events: list[AuditEvent] = []
        self.sessions: dict[str, _Session] = {}  # session id -> its events, in opening order
        self.timestamps: dict[int, int] = {}
        self.error = ""  # why the last refresh failed ("" when it worked)
        self.reads = 0  # eth_getLogs ranges read (the benchmark checks pages read none)
        self._refreshed = 0.0
        self._decoder: LogDecoder | None = None
        self._journal = JournalTimes(source.state) if source.state is not None else None

    # -- reading ---------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Read the events of the blocks after the last one seen (at most every `min_interval` s)."""
        with self.lock:
            now = time.monotonic()
            if not force and now - self._refreshed < self.min_interval:
                return
            self._refreshed = now
            for attempt in (0, 1):
                try:
                    self._read()
                    self.error = ""
                    return
                except Exception as exc:  # noqa: BLE001 - a chain that went away: show the cache and say so
                    self.source.invalidate()
                    self.error = exception_line(exc) if not isinstance(exc, ChainError) else str(exc)
                    if attempt:
                        return

    def _read(self) -> None:
        client = self.source.client()
        if client.address != self.contract or int(client.chain_id) != self.chain_id:
            self._reset(client.address, int(client.chain_id))
        head = int(client.w3.eth.block_number)
        if head < self.last_block:  # a different chain under the same state: start again
            self._reset(client.address, int(client.chain_id))
        if head <= self.last_block:
            return
        decoder = self._decoder or LogDecoder(client.abi)
        self._decoder = decoder
        lo = self.last_block + 1
        while lo <= head:  # in chunks, as AuditClient reads logs
            hi = min(head, lo + LOG_CHUNK_BLOCKS - 1)
            answer = client.w3.provider.make_request(
                "eth_getLogs", [{"address": client.address, "fromBlock": hex(lo), "toBlock": hex(hi)}])  # type: ignore[arg-type]
            if not isinstance(answer, dict) or "result" not in answer:
                raise ChainError(f"eth_getLogs of blocks {lo}..{hi} failed: {answer.get('error') if isinstance(answer, dict) else answer}")
            new = [decoder.decode(log) for log in answer["result"]]
            new.sort(key=lambda e: (e["block_number"], e["log_index"]))
            self.reads += 1
            self.add(new)
            self.last_block = hi
            lo = hi + 1

    def _reset(self, contract: str, chain_id: int) -> None:
        self.contract, self.chain_id = contract, chain_id
        self.last_block = -1
        self.events, self.registry_events, self.sessions, self.timestamps = [], [], {}, {}
        if self._journal is not None:
            self._journal = JournalTimes(self._journal.path.parent)

    def add(self, events: Iterable[AuditEvent]) -> None:
        """Index new events (in chain order)."""
        for ev in events:
            self.events.append(ev)
            sid = ev["args"].get("sessionId")
            if sid is None:
                if ev["event"] in REGISTRY_EVENTS:
                    self.registry_events.append(ev)
                continue
            self.sessions.setdefault(str(sid), _Session()).events.append(ev)

    def stamps(self, blocks: Iterable[int]) -> dict[int, int]:
        """Block -> unix time for `blocks`, fetching the ones not cached yet in batches."""
        blocks = [int(b) for b in blocks]
        with self.lock:
            missing = sorted(set(blocks) - self.timestamps.keys())
            if missing and self._journal is not None:
                journal = self._journal.read()
                for b in missing:
                    if b in journal:
                        self.timestamps[b] = journal[b]
                missing = [b for b in missing if b not in self.timestamps]
            if missing:
                try:
                    provider = self.source.client().w3.provider
                    for i in range(0, len(missing), BATCH):
                        part = missing[i:i + BATCH]
                        answers = provider.make_batch_request(
                            [("eth_getBlockByNumber", [hex(n), False]) for n in part])  # type: ignore[arg-type]
                        for n, ans in zip(part, answers, strict=True):  # type: ignore[arg-type]
                            block = ans.get("result") if isinstance(ans, dict) else None
                            if block:
                                self.timestamps[n] = int(block["timestamp"], 16)
                except Exception as exc:  # noqa: BLE001 - times are decoration: leave them out
                    self.source.invalidate()
                    self.error = exception_line(exc)
            return {b: self.timestamps[b] for b in blocks if b in self.timestamps}

    # -- sessions --------------------------------------------------------------------------

    def session_ids(self) -> list[str]:
        with self.lock:
            return list(self.sessions)

    def record(self, sid: str) -> SessionRecord:
        """The session's state replayed from its cached events (replayed again only after new events)."""
        with self.lock:
            s = self.sessions.get(sid)
            if s is None:
                raise ExplorerError(f"unknown session {sid}: no event of it on contract {self.contract}")
            if s.replayed != len(s.events):
                try:
                    s.record = replay_session(list(s.events), self.chain_id, self.contract)
                    s.error = ""
                except HistoryError as exc:
                    s.record, s.error = None, str(exc)
                s.replayed = len(s.events)
            if s.record is None:
                raise ExplorerError(f"the events of session {sid} do not replay: {s.error}")
            return s.record

    def session_events(self, sid: str) -> list[AuditEvent]:
        with self.lock:
            s = self.sessions.get(sid)
            if s is None:
                raise ExplorerError(f"unknown session {sid}: no event of it on contract {self.contract}")
            return list(s.events)

    def registry(self, up_to_block: int | None = None) -> Any:
        with self.lock:
            evs = [e for e in self.registry_events if up_to_block is None or e["block_number"] <= up_to_block]
        return replay_registry(evs)

    def history(self, sid: str, timestamps: bool = True) -> SessionHistory:
        """The session as `chain.audit` takes it, from the cache (what `load_history` reads from a node)."""
        with self.lock:
            record = self.record(sid)
            events = self.session_events(sid)
            registry = self.registry(events[-1]["block_number"])
            stamps = self.stamps(e["block_number"] for e in events) if timestamps else {}
            return SessionHistory(self.contract, self.chain_id, sid, record, events, registry, stamps)

    def row(self, sid: str, orgs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """One line of the Sessions page: algorithm, parties, status, opened/closed, round counts."""
        with self.lock:
            s = self.sessions[sid]
            events = s.events
            try:
                rec = self.record(sid)
            except ExplorerError as exc:
                return {"session_id": sid, "error": str(exc), "algorithm": "?", "status": "invalid",
                        "parties": [], "opened_block": events[0]["block_number"], "opened_time": None,
                        "closed_block": None, "closed_time": None, "rounds": 0,
                        "attested": 0, "disputed": 0, "pending": 0, "last_block": events[-1]["block_number"]}
            info = rec["session"]
            end = next((e for e in reversed(events) if e["event"] in SESSION_END), None)
            blocks = [info["opened_block"]] + ([end["block_number"]] if end else [])
            stamps = self.stamps(blocks)
            states = list(rec["round_states"].values())
            roles = session_roles(rec)
            return {"session_id": sid, "algorithm": info["algorithm"], "status": info["status"],
                    "parties": [{"address": a, "role": roles.get(a, "?"),
                                 "organisation": orgs.get(a, {}).get("organisation", "")}
                                for a in info["participants"]],
                    "opened_block": info["opened_block"], "opened_time": stamps.get(info["opened_block"]),
                    "closed_block": end["block_number"] if end else None,
                    "closed_time": stamps.get(end["block_number"]) if end else None,
                    "rounds": len(states), "attested": states.count("attested"),
                    "disputed": states.count("disputed"), "pending": states.count("pending"),
                    "last_block": events[-1]["block_number"], "error": ""}

    def rows(self) -> list[dict[str, Any]]:
        """Every session's row, newest first (the block times they need fetched in one batch first)."""
        with self.lock:
            orgs = self.registry()["participants"]
            blocks = []
            for s in self.sessions.values():
                blocks.append(s.events[0]["block_number"])
                blocks += [e["block_number"] for e in s.events[-3:] if e["event"] in SESSION_END]
            self.stamps(blocks)
            return [self.row(sid, orgs) for sid in reversed(list(self.sessions))]

