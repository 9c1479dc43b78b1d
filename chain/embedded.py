"""The embedded chain: eth-tester on py-evm, served over JSON-RPC on 127.0.0.1.

Guest and host are separate processes, so the chain is a server they reach
exactly as they would reach a real node: `vflchain chain serve --state DIR`
(or `start_server(DIR)` from Python). It accepts only signed raw transactions
(no node-side accounts) and mines one block per transaction, timestamped with the
wall clock's second: blocks in the same second share it (py-evm wants a later
timestamp than the parent's; `_same_second` relaxes that rule for this chain only),
so block times never run ahead of the clock.

Persistence, without pickle. The state directory holds:

    genesis.json    chain id, genesis timestamp, funded accounts, genesis hash
    journal.jsonl   one line per block: {"number", "timestamp", "hash", "txs": [raw tx hex]},
                    appended and fsync'd before the sender (or anyone) gets an answer
                    about the block; if that write fails the server answers nothing more
    snapshot.bin    the py-evm key-value database at some block, as raw bytes, with the
                    SHA-256 of those bytes and of its index in its header
                    (a cache: written on shutdown and every SNAPSHOT_EVERY blocks)
    snapshot-index.json  the server's index of that snapshot's blocks (block hashes,
                    transaction -> block, logs), so a start need not decode every block
    server.json     {"url", "pid", "chain_id", "state"} while a server runs
    server.lock     held (flock) by the serving process, so one writer at a time
    server.log      the output of a server started by `start_server` (chain.processes)

Start-up loads the snapshot if it is intact and matches the journal (else it warns
on stderr and replays from genesis), then re-executes the journal's remaining
blocks with their recorded timestamps; every replayed block must reproduce the
recorded hash. A torn last journal line (a crash mid-write) is dropped with a
warning naming its block and transaction; one complete but for its newline is kept. Mining is deterministic (mix hash derived from
the parent hash), so the same journal always gives the same chain: contract,
storage, events and block history. `EmbeddedChain(DIR, read_only=True)` loads a
state directory in-process for reading (an auditor with no server running).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_canonical_address, to_checksum_address

from chain.accounts import DEV_BALANCE_WEI, dev_addresses
from chain.errors import ChainUnavailable, StateError
from chain.processes import (
    LOG_FILE as LOG_FILE,  # re-exported: the server process's side is chain.processes
)
from chain.processes import SERVER_FILE, ServerInfo, _read_server_file
from chain.processes import ServerHandle as ServerHandle
from chain.processes import StartingServer as StartingServer
from chain.processes import ensure_server as ensure_server
from chain.processes import running_server as running_server
from chain.processes import spawn_server as spawn_server
from chain.processes import start_server as start_server

GENESIS_FILE = "genesis.json"
JOURNAL_FILE = "journal.jsonl"
SNAPSHOT_FILE = "snapshot.bin"
SNAPSHOT_INDEX_FILE = "snapshot-index.json"
LOCK_FILE = "server.lock"
SNAPSHOT_MAGIC = b"VFLCHAIN-KV-1\n"
SNAPSHOT_EVERY = 500
PRIORITY_FEE = 10**9
CLIENT_VERSION = "vflchain-embedded/1 (eth-tester/py-evm)"


class _SnapshotUnusable(Exception):
    """snapshot.bin cannot be used (the reason): the journal is replayed instead."""


class RpcError(Exception):
    """A JSON-RPC error answer (code, message, optional data)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


# ---------------------------------------------------------------- formatting


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _qty(value: int) -> str:
    return hex(int(value))


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _rpc_value(key: str, value: Any) -> Any:
    """eth-tester's normalized values (ints, 0x strings, bytes) as JSON-RPC values."""
    if value is None or isinstance(value, bool):
        return value
    if key in ("to", "contract_address") and value in (b"", ""):
        return None  # contract creation
    if key == "logs_bloom" and isinstance(value, int):
        return "0x" + value.to_bytes(256, "big").hex()
    if isinstance(value, int):
        return _qty(value)
    if isinstance(value, bytes | bytearray):
        return _hex(value)
    if isinstance(value, dict):
        return _rpc_dict(value)
    if isinstance(value, list | tuple):
        return [_rpc_value(key, v) for v in value]
    return value


_RENAME = {"data": "input"}


def _rpc_dict(d: dict[str, Any], rename: dict[str, str] | None = None) -> dict[str, Any]:
    rename = rename or {}
    return {rename.get(k, _camel(k)): _rpc_value(k, v) for k, v in d.items()}


def _block_id(value: Any, head: int) -> int:
    """A JSON-RPC block parameter as a mined block number."""
    if value is None or value in ("latest", "pending", "safe", "finalized"):
        return head
    if value == "earliest":
        return 0
    if isinstance(value, str) and value.startswith("0x"):
        try:
            number = int(value, 16)
        except ValueError:
            raise RpcError(-32602, f"invalid block number {value!r}") from None
        if number > head:
            raise RpcError(-32000, f"block {number} not found (head is {head})")
        return number
    if isinstance(value, dict) and "blockNumber" in value:
        return _block_id(value["blockNumber"], head)
    raise RpcError(-32602, f"invalid block parameter {value!r}")


def _int_param(tx: dict[str, Any], key: str) -> int | None:
    v = tx.get(key)
    if v is None:
        return None
    try:
        return int(v, 16) if isinstance(v, str) else int(v)
    except ValueError:
        raise RpcError(-32602, f"invalid {key} {v!r}") from None


def _bytes_param(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(-32602, f"{what} must be 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RpcError(-32602, f"{what} is not valid hex") from None


def _revert_data(exc: BaseException) -> str:
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, bytes | bytearray):
            return _hex(arg)
    return "0x"


# ---------------------------------------------------------------- the chain


def _same_second(vm: type) -> type:
    """`vm` whose header rule lets a block have its parent's timestamp (py-evm wants it strictly later).

    One block per transaction at ~20 blocks/s would otherwise run block times ahead of the wall clock;
    this chain's blocks are never imported by another client, so the relaxation is local."""
    if getattr(vm, "_vflchain_same_second", False):
        return vm

    class SameSecond(vm):  # type: ignore[misc, valid-type]
        _vflchain_same_second = True

        @classmethod
        def validate_header(cls, header: Any, parent_header: Any) -> None:
            if parent_header is not None and header.timestamp == parent_header.timestamp:
                parent_header = parent_header.copy(timestamp=parent_header.timestamp - 1)
            super().validate_header(header, parent_header)

    SameSecond.__name__ = SameSecond.__qualname__ = vm.__name__
    return SameSecond


@dataclass
class _Log:
    block_number: int
    block_hash: bytes
    tx_index: int
    tx_hash: bytes
    log_index: int
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes

    def rpc(self) -> dict[str, Any]:
        return {
            "address": to_checksum_address(self.address),
            "topics": [_hex(t) for t in self.topics],
            "data": _hex(self.data),
            "blockNumber": _qty(self.block_number),
            "blockHash": _hex(self.block_hash),
            "transactionHash": _hex(self.tx_hash),
            "transactionIndex": _qty(self.tx_index),
            "logIndex": _qty(self.log_index),
            "removed": False,
        }


def _warn(message: str) -> None:
    """One line on stderr (the server's log, or the terminal of an in-process reader)."""
    print(f"vflchain: warning: {message}", file=sys.stderr, flush=True)


def _journal_entry(line: str, number: int) -> dict[str, Any]:
    """A journal line as its entry; ValueError/KeyError/TypeError if it is not block `number`'s."""
    entry = json.loads(line)
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    if int(entry["number"]) != number:
        raise ValueError(f"block {entry['number']} out of sequence")
    if not isinstance(entry["txs"], list) or not isinstance(entry["hash"], str):
        raise ValueError("txs or hash missing")
    int(entry["timestamp"])
    return entry


def _torn_contents(tail: bytes) -> str:
    """What a torn journal line held, as far as it can be read: its block and transactions."""
    text = tail.decode("utf-8", "replace")
    parts = []
    m = re.search(r'"number":\s*(\d+)', text)
    if m:
        parts.append(f"block {m.group(1)}")
    hashes = []
    for raw in re.findall(r'"0x([0-9a-fA-F]+)"', text.split('"txs"', 1)[1] if '"txs"' in text else ""):
        with contextlib.suppress(ValueError):
            hashes.append(_hex(keccak(bytes.fromhex(raw))))
    if hashes:
        parts.append("transaction " + ", ".join(hashes))
    elif '"txs"' in text:
        parts.append("its transaction cut off")
    return ", ".join(parts) or "unreadable"


@dataclass
class EmbeddedChain:
    """An eth-tester/py-evm chain with a journal; `rpc(method, params)` answers JSON-RPC.

    `state_dir=None`: memory only (tests, benchmarks). `read_only=True`: load a state
    directory without locking or writing it; raw transactions are refused.
    """

    state_dir: Path | None
    read_only: bool = False
    fsync: bool = True
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _lock_fh: Any = field(default=None, repr=False)
    _journal: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from eth_tester import EthereumTester

        if self.state_dir is not None:
            self.state_dir = Path(self.state_dir).resolve()
        self._tx_block: dict[bytes, int] = {}
        self._logs: list[_Log] = []
        self._hashes: list[bytes] = []  # block hash by number
        self._snapshot_at = 0  # the block the snapshot on disk holds
        self._broken = ""  # set when a block could not be journaled: nothing is answered any more
        if self.state_dir is not None and not self.read_only:
            self._acquire()
        try:
            genesis = self._genesis()
            self.backend = self._new_backend(genesis)
            self.tester = EthereumTester(self.backend)
            self._relax_timestamps()
            self._hashes.append(self.chain.get_canonical_block_header_by_number(0).hash)
            if genesis.get("hash") and _hex(self._hashes[0]) != genesis["hash"]:
                raise StateError(f"{self._path(GENESIS_FILE)}: genesis hash differs from the recorded one "
                                 "(a different eth-tester/py-evm version?)")
            self._load()
        except BaseException:
            self.close(snapshot=False)
            raise

    # -- state directory ------------------------------------------------------

    def _path(self, name: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / name

    def _acquire(self) -> None:
        assert self.state_dir is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fh = self._path(LOCK_FILE).open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            info = _read_server_file(self.state_dir)
            who = f" (pid {info['pid']}, {info['url']})" if info else ""
            raise StateError(f"{self.state_dir}: the embedded chain is already served by another process{who}") from None
        self._lock_fh = fh

    def _genesis(self) -> dict[str, Any]:
        from eth_tester.backends.pyevm.main import get_default_genesis_params

        path = self._path(GENESIS_FILE) if self.state_dir is not None else None
        if path is not None and path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise StateError(f"{path}: not valid JSON (line {exc.lineno})") from exc
        if path is not None and self.read_only:
            raise ChainUnavailable(f"{self.state_dir}: no embedded chain here (no {GENESIS_FILE}); "
                                   "start one with `vflchain chain serve --state DIR`")
        genesis = {
            "format": 1,
            "timestamp": int(get_default_genesis_params()["timestamp"]),
            "accounts": {addr: hex(DEV_BALANCE_WEI) for addr in dev_addresses()},
        }
        if path is not None:  # record the genesis hash, so a version drift is detected on load
            backend = self._new_backend(genesis)
            genesis["chain_id"] = backend.chain.chain_id
            genesis["hash"] = _hex(backend.chain.get_canonical_block_header_by_number(0).hash)
            _write_json_atomic(path, genesis)
        return genesis

    def _relax_timestamps(self) -> None:
        """Let a block share its parent's timestamp, so block times never run ahead of the clock."""
        cls = type(self.chain)  # eth-tester makes one chain class per backend: this one only
        if not getattr(cls, "_vflchain_same_second", False):
            cls.vm_configuration = tuple((n, _same_second(vm)) for n, vm in cls.vm_configuration)
            cls._vflchain_same_second = True

    @staticmethod
    def _new_backend(genesis: dict[str, Any]):
        from eth_tester import PyEVMBackend
        from eth_tester.backends.pyevm.main import (
            get_default_account_state,
            get_default_genesis_params,
        )

        state = {to_canonical_address(a): get_default_account_state({"balance": int(b, 16)})
                 for a, b in genesis["accounts"].items()}
        params = get_default_genesis_params({"timestamp": int(genesis["timestamp"])})
        return PyEVMBackend(genesis_parameters=params, genesis_state=state)

    @property
    def chain(self):
        return self.backend.chain

    @property
    def chain_id(self) -> int:
        return int(self.chain.chain_id)

    @property
    def head(self) -> int:
        return len(self._hashes) - 1

    def _load(self) -> None:
        if self.state_dir is None:
            return
        path = self._path(JOURNAL_FILE)
        data = path.read_bytes() if path.exists() else b""
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: b"" unless the last write was torn
        entries: list[dict[str, Any]] = []
        for raw in lines:
            try:
                entries.append(_journal_entry(raw.decode("utf-8"), len(entries) + 1))
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{path}:{len(entries) + 1}: bad journal line ({exc})") from exc
        good_bytes = len(data) - len(tail)
        if tail:
            try:  # complete but for its newline: the block is whole, keep it
                entries.append(_journal_entry(tail.decode("utf-8"), len(entries) + 1))
                good_bytes = len(data)
                if not self.read_only:
                    with path.open("ab") as fh:
                        fh.write(b"\n")
                        os.fsync(fh.fileno())
            except (ValueError, KeyError, TypeError):
                _warn(f"{path}: dropped a torn last line after block {len(entries)} ({len(tail)} bytes: "
                      f"{_torn_contents(tail)}); a block is answered only once its line is on disk, "
                      "so no answered transaction was in it unless the file was damaged afterwards")
        if not self.read_only and len(data) > good_bytes:
            with path.open("r+b") as fh:  # a torn last line from a crash: drop it
                fh.truncate(good_bytes)
                os.fsync(fh.fileno())
        start = self._load_snapshot(entries)
        for entry in entries[start:]:
            raws = [_bytes_param(t, "journal transaction") for t in entry["txs"]]
            block = self._mine(raws, int(entry["timestamp"]))
            if _hex(block.hash) != entry["hash"]:
                raise StateError(f"{path}:{entry['number']}: replay gave block hash {_hex(block.hash)}, "
                                 f"the journal says {entry['hash']}")
        if not self.read_only:
            if len(entries) - start >= 50:
                self.write_snapshot()
            new = not path.exists()
            self._journal = path.open("a", encoding="utf-8")
            if new and self.fsync:
                _fsync_dir(path.parent)  # the journal's directory entry is durable before any answer

    def _load_snapshot(self, entries: list[dict[str, Any]]) -> int:
        """Load snapshot.bin if it is intact and matches the journal; return the first block still to replay.

        A damaged, stale or foreign snapshot (or index) is a cache miss: warned about, the journal
        is replayed from genesis."""
        path = self._path(SNAPSHOT_FILE)
        if not path.exists():
            return 0
        try:
            number = self._read_snapshot(path, entries)
        except Exception as exc:  # noqa: BLE001 - any damage: fall back to the journal
            number, why = 0, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, _SnapshotUnusable):
                why = str(exc)
        else:
            return number
        _warn(f"{path}: ignored ({why}); replaying the journal from genesis")
        self._reset()
        return 0

    def _reset(self) -> None:
        """Back to the genesis block with empty indexes (after an unusable snapshot)."""
        self.backend = self._new_backend(self._genesis())
        from eth_tester import EthereumTester

        self.tester = EthereumTester(self.backend)
        self._relax_timestamps()
        self._hashes = [self.chain.get_canonical_block_header_by_number(0).hash]
        self._tx_block, self._logs, self._snapshot_at = {}, [], 0

    def _read_snapshot(self, path: Path, entries: list[dict[str, Any]]) -> int:
        from eth.db.atomic import AtomicDB
        from eth.db.backends.memory import MemoryDB

        with path.open("rb") as fh:
            if fh.readline() != SNAPSHOT_MAGIC:
                raise _SnapshotUnusable("not a snapshot of this format")
            header = json.loads(fh.readline())
            data = fh.read()
        number = int(header["number"])
        if not 0 < number <= len(entries) or entries[number - 1]["hash"] != header["hash"]:
            raise _SnapshotUnusable(f"its block {number} is not the journal's")
        if "sha256" not in header:
            raise _SnapshotUnusable("written without a checksum, by an older version")
        if hashlib.sha256(data).hexdigest() != header["sha256"]:
            raise _SnapshotUnusable("damaged: its checksum does not match")
        kv: dict[bytes, bytes] = {}
        view, pos = memoryview(data), 0
        while pos < len(data):
            klen, vlen = struct.unpack_from(">II", view, pos)
            pos += 8
            if pos + klen + vlen > len(data):
                raise _SnapshotUnusable("damaged: truncated")
            kv[bytes(view[pos:pos + klen])] = bytes(view[pos + klen:pos + klen + vlen])
            pos += klen + vlen
        chain = type(self.chain)(AtomicDB(MemoryDB(kv)))
        if _hex(chain.get_canonical_head().hash) != header["hash"]:
            raise _SnapshotUnusable("its head is not the block it names")
        self.backend.chain = chain
        if not self._load_index(number, header["hash"], header.get("index_sha256")):
            self._hashes = self._hashes[:1]
            self._tx_block, self._logs = {}, []
            for n in range(1, number + 1):
                self._index_block(chain.get_canonical_block_by_number(n))
        self._snapshot_at = number
        return number

    def _load_index(self, number: int, head_hash: str, sha256: str | None) -> bool:
        """Take the blocks' index from snapshot-index.json if it is the one of this snapshot, intact."""
        path = self._path(SNAPSHOT_INDEX_FILE)
        try:
            raw = path.read_bytes()
            if hashlib.sha256(raw).hexdigest() != sha256:
                if path.exists() and sha256:
                    _warn(f"{path}: ignored (not the index of snapshot block {number}, or damaged); "
                          "indexing the snapshot's blocks again")
                return False
            index = json.loads(raw)
            if index.get("number") != number or index.get("hash") != head_hash:
                return False
            hashes = [bytes.fromhex(h[2:]) for h in index["hashes"]]
            if len(hashes) != number + 1 or hashes[0] != self._hashes[0]:
                return False
            txs = {bytes.fromhex(t[2:]): int(n) for t, n in index["txs"].items()}
            logs = [_Log(int(b), hashes[int(b)], int(i), bytes.fromhex(t[2:]), int(li), bytes.fromhex(a[2:]),
                         tuple(bytes.fromhex(x[2:]) for x in topics), bytes.fromhex(d[2:]))
                    for b, i, t, li, a, topics, d in index["logs"]]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return False
        self._hashes, self._tx_block, self._logs = hashes, txs, logs
        return True

    def _write_index(self) -> str:
        """Write snapshot-index.json; returns its SHA-256 (recorded in the snapshot's header)."""
        index = {"number": self.head, "hash": _hex(self._hashes[-1]), "hashes": [_hex(h) for h in self._hashes],
                 "txs": {_hex(t): n for t, n in self._tx_block.items()},
                 "logs": [[lg.block_number, lg.tx_index, _hex(lg.tx_hash), lg.log_index, _hex(lg.address),
                           [_hex(t) for t in lg.topics], _hex(lg.data)] for lg in self._logs]}
        return _write_json_atomic(self._path(SNAPSHOT_INDEX_FILE), index)

    def write_snapshot(self) -> None:
        """Dump the key-value database (raw bytes) so the next start need not replay."""
        if self.state_dir is None or self.read_only or self.head == 0:
            return
        with self._lock:
            kv = self.chain.chaindb.db.wrapped_db.kv_store
            path = self._path(SNAPSHOT_FILE)
            tmp = path.with_suffix(".tmp")
            body = b"".join(struct.pack(">II", len(k), len(v)) + k + v for k, v in kv.items())
            index_sha = self._write_index()  # first: an index is used only with the snapshot naming its digest
            header = {"number": self.head, "hash": _hex(self._hashes[-1]),
                      "sha256": hashlib.sha256(body).hexdigest(), "index_sha256": index_sha}
            with tmp.open("wb") as fh:
                fh.write(SNAPSHOT_MAGIC)
                fh.write(json.dumps(header).encode() + b"\n")
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
            self._snapshot_at = self.head

    def close(self, snapshot: bool = True) -> None:
        with self._lock:
            if snapshot and self._journal is not None and self.head != self._snapshot_at:
                self.write_snapshot()
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if self._lock_fh is not None:
                self._lock_fh.close()
                self._lock_fh = None

    # -- mining -----------------------------------------------------------------

    def _index_block(self, block) -> None:
        receipts = block.get_receipts(self.chain.chaindb)
        log_index = 0
        for i, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
            self._tx_block[tx.hash] = block.number
            for log in receipt.logs:
                self._logs.append(_Log(block.number, block.hash, i, tx.hash, log_index, log.address,
                                       tuple(t.to_bytes(32, "big") for t in log.topics), log.data))
                log_index += 1
        if block.number == len(self._hashes):
            self._hashes.append(block.hash)

    def _mine(self, raw_txs: list[bytes], timestamp: int):
        """Apply raw transactions to a new block at `timestamp` and mine it deterministically."""
        chain = self.chain
        chain.header = chain.header.copy(timestamp=timestamp)
        builder = chain.get_vm().get_transaction_builder()
        for raw in raw_txs:
            chain.apply_transaction(builder.decode(raw))
        block = chain.mine_block(mix_hash=keccak(b"vflchain-mix" + chain.header.parent_hash), blob_gas_used=0)
        self._index_block(block)
        return block

    def send_raw_transaction(self, raw: bytes) -> bytes:
        from eth_utils import ValidationError as EvmValidationError
        from rlp.exceptions import DecodingError, DeserializationError

        if self.read_only:
            raise RpcError(-32000, "this chain was opened read-only; send transactions to its server")
        if raw[:1] == b"\x03":
            raise RpcError(-32000, "blob transactions are not supported")
        with self._lock:
            if self._broken:
                raise RpcError(-32000, self._broken)
            parent = self.chain.get_canonical_head()
            timestamp = max(int(time.time()), parent.timestamp)  # never ahead of the clock (same second: allowed)
            saved_header = self.chain.header
            try:
                tx = self.chain.get_vm().get_transaction_builder().decode(raw)
                if tx.hash in self._tx_block:
                    raise RpcError(-32000, f"already known: {_hex(tx.hash)}")
                block = self._mine([raw], timestamp)
            except (EvmValidationError, DecodingError, DeserializationError, ValueError) as exc:
                self.chain.header = saved_header
                raise RpcError(-32000, f"invalid transaction: {exc}") from None
            if self._journal is not None:
                line = {"number": block.number, "timestamp": timestamp, "hash": _hex(block.hash),
                        "txs": [_hex(raw)]}
                size = self._path(JOURNAL_FILE).stat().st_size
                try:  # on disk before the sender (or anyone asking for its receipt) gets an answer
                    self._journal.write(json.dumps(line, separators=(",", ":")) + "\n")
                    self._journal.flush()
                    if self.fsync:
                        os.fsync(self._journal.fileno())
                except OSError as exc:
                    # the block is in memory but not on disk: answer nothing more (its receipt included),
                    # a restart replays the journal without it (a partly written line is cut off if possible)
                    journal, self._journal = self._journal, None
                    with contextlib.suppress(OSError, ValueError):
                        journal.close()
                    with contextlib.suppress(OSError, ValueError):
                        os.truncate(self._path(JOURNAL_FILE), size)
                    self._broken = (f"the chain stopped: cannot write {self._path(JOURNAL_FILE)} "
                                    f"({exc.strerror or exc}); restart it")
                    _warn(self._broken)
                    raise RpcError(-32000, self._broken) from None
                if self.head - self._snapshot_at >= SNAPSHOT_EVERY:
                    self.write_snapshot()
            return tx.hash

    # -- JSON-RPC -----------------------------------------------------------------

    def handle(self, payload: Any) -> Any:
        """Answer a JSON-RPC request object or batch (already parsed JSON)."""
        if isinstance(payload, list):
            if not payload:
                return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "empty batch"}}
            return [self._handle_one(p) for p in payload]
        return self._handle_one(payload)

    def _handle_one(self, req: Any) -> dict[str, Any]:
        rid = req.get("id") if isinstance(req, dict) else None
        try:
            if not isinstance(req, dict) or not isinstance(req.get("method"), str):
                raise RpcError(-32600, "invalid request")
            params = req.get("params") or []
            if not isinstance(params, list):
                raise RpcError(-32602, "params must be an array")
            with self._lock:
                if self._broken:
                    raise RpcError(-32000, self._broken)
                result = self.rpc(req["method"], params)
            return {"jsonrpc": "2.0", "id": rid, "result": result}
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": exc.as_dict()}
        except Exception as exc:  # an unexpected failure must still answer the client
            return {"jsonrpc": "2.0", "id": rid,
                    "error": {"code": -32603, "message": f"internal error: {type(exc).__name__}: {exc}"}}

    def rpc(self, method: str, params: list[Any]) -> Any:
        fn: Callable[..., Any] | None = getattr(self, "_rpc_" + method, None)
        if fn is None:
            raise RpcError(-32601, f"method {method} is not supported by the embedded chain")
        try:
            return fn(*params)
        except TypeError as exc:
            raise RpcError(-32602, f"{method}: invalid params ({exc})") from None

    # simple answers
    def _rpc_web3_clientVersion(self) -> str:
        return CLIENT_VERSION

    def _rpc_net_version(self) -> str:
        return str(self.chain_id)

    def _rpc_net_listening(self) -> bool:
        return True

    def _rpc_net_peerCount(self) -> str:
        return "0x0"

    def _rpc_eth_chainId(self) -> str:
        return _qty(self.chain_id)

    def _rpc_eth_syncing(self) -> bool:
        return False

    def _rpc_eth_accounts(self) -> list[str]:
        return []  # no node-side accounts: every party signs locally

    def _rpc_eth_blockNumber(self) -> str:
        return _qty(self.head)

    def _next_base_fee(self) -> int:
        return int(self.chain.header.base_fee_per_gas)

    def _rpc_eth_gasPrice(self) -> str:
        return _qty(self._next_base_fee() + PRIORITY_FEE)

    def _rpc_eth_maxPriorityFeePerGas(self) -> str:
        return _qty(PRIORITY_FEE)

    def _rpc_eth_feeHistory(self, count: Any, newest: Any, percentiles: list[float] | None = None) -> dict[str, Any]:
        n = int(count, 16) if isinstance(count, str) else int(count)
        last = _block_id(newest, self.head)
        first = max(0, last - max(n, 1) + 1)
        headers = [self.chain.get_canonical_block_header_by_number(b) for b in range(first, last + 1)]
        nxt = (self.chain.get_canonical_block_header_by_number(last + 1).base_fee_per_gas
               if last < self.head else self._next_base_fee())
        out: dict[str, Any] = {
            "oldestBlock": _qty(first),
            "baseFeePerGas": [_qty(h.base_fee_per_gas) for h in headers] + [_qty(nxt)],
            "gasUsedRatio": [h.gas_used / h.gas_limit for h in headers],
        }
        if percentiles:
            out["reward"] = [[_qty(PRIORITY_FEE)] * len(percentiles) for _ in headers]
        return out

    # accounts and code
    def _address(self, value: Any) -> bytes:
        try:
            return to_canonical_address(value)
        except (ValueError, TypeError):
            raise RpcError(-32602, f"invalid address {value!r}") from None

    def _vm_at(self, block: Any):
        number = _block_id(block, self.head)
        return self.chain.get_vm(at_header=self.chain.get_canonical_block_header_by_number(number))

    def _rpc_eth_getBalance(self, address: str, block: Any = "latest") -> str:
        return _qty(self._vm_at(block).state.get_balance(self._address(address)))

    def _rpc_eth_getTransactionCount(self, address: str, block: Any = "latest") -> str:
        return _qty(self._vm_at(block).state.get_nonce(self._address(address)))

    def _rpc_eth_getCode(self, address: str, block: Any = "latest") -> str:
        return _hex(self._vm_at(block).state.get_code(self._address(address)))

    def _rpc_eth_getStorageAt(self, address: str, slot: str, block: Any = "latest") -> str:
        value = self._vm_at(block).state.get_storage(self._address(address), int(slot, 16))
        return "0x" + int(value).to_bytes(32, "big").hex()

    # execution
    def _spoof(self, tx: Any, block: Any):
        from eth.vm.spoof import SpoofTransaction

        if not isinstance(tx, dict):
            raise RpcError(-32602, "transaction object expected")
        number = _block_id(block, self.head)
        header = self.chain.get_canonical_block_header_by_number(number)
        sender = self._address(tx["from"]) if tx.get("from") else b"\x00" * 20
        data = tx.get("input") or tx.get("data") or "0x"
        vm = self.chain.get_vm(at_header=header)
        gas = _int_param(tx, "gas") or header.gas_limit
        fields = {
            "nonce": vm.state.get_nonce(sender),
            "gas": gas,
            "to": self._address(tx["to"]) if tx.get("to") else b"",
            "value": _int_param(tx, "value") or 0,
            "data": _bytes_param(data, "data"),
            "max_fee_per_gas": 0,
            "max_priority_fee_per_gas": 0,
            "access_list": (),
            "chain_id": self.chain_id,
        }
        unsigned = vm.get_transaction_builder().new_unsigned_dynamic_fee_transaction(**fields)
        return vm, header, SpoofTransaction(unsigned, from_=sender)

    def _rpc_eth_call(self, tx: Any, block: Any = "latest", *_overrides: Any) -> str:
        vm, _, spoofed = self._spoof(tx, block)
        with vm.in_costless_state() as state:  # the next block's context, base fee 0
            computation = state.apply_transaction(spoofed)
        if computation.is_error:
            raise RpcError(3, "execution reverted", _hex(computation.output or b""))
        return _hex(computation.output)

    def _rpc_eth_estimateGas(self, tx: Any, block: Any = "latest") -> str:
        from eth.exceptions import Revert, VMError

        _, header, spoofed = self._spoof(tx, block)
        try:
            return _qty(self.chain.estimate_gas(spoofed, header))
        except Revert as exc:
            raise RpcError(3, "execution reverted", _revert_data(exc)) from None
        except VMError as exc:
            raise RpcError(-32000, f"gas estimation failed: {exc}") from None

    def _rpc_eth_sendRawTransaction(self, raw: str) -> str:
        return _hex(self.send_raw_transaction(_bytes_param(raw, "raw transaction")))

    def _rpc_eth_sendTransaction(self, *_: Any) -> str:
        raise RpcError(-32000, "the embedded chain holds no unlocked accounts: sign locally and use "
                               "eth_sendRawTransaction")

    # blocks, transactions, receipts, logs
    def _block(self, number: int, full: bool) -> dict[str, Any]:
        from eth_tester.backends.pyevm.serializers import serialize_block

        block = self.chain.get_canonical_block_by_number(number)
        raw = serialize_block(block, bool(full), False)
        if full:
            raw["transactions"] = [_rpc_dict(t, _RENAME) for t in raw["transactions"]]
        out = _rpc_dict(raw)
        out.pop("totalDifficulty", None)
        return out

    def _rpc_eth_getBlockByNumber(self, block: Any, full: bool = False) -> dict[str, Any] | None:
        try:
            number = _block_id(block, self.head)
        except RpcError:
            return None
        return self._block(number, full)

    def _rpc_eth_getBlockByHash(self, block_hash: str, full: bool = False) -> dict[str, Any] | None:
        h = _bytes_param(block_hash, "block hash")
        try:
            number = self._hashes.index(h)
        except ValueError:
            return None
        return self._block(number, full)

    def _locate(self, tx_hash: str):
        h = _bytes_param(tx_hash, "transaction hash")
        number = self._tx_block.get(h)
        if number is None:
            return None
        block = self.chain.get_canonical_block_by_number(number)
        for i, tx in enumerate(block.transactions):
            if tx.hash == h:
                return block, tx, i
        return None

    def _rpc_eth_getTransactionByHash(self, tx_hash: str) -> dict[str, Any] | None:
        from eth_tester.backends.pyevm.serializers import serialize_transaction

        found = self._locate(tx_hash)
        if found is None:
            return None
        block, tx, i = found
        return _rpc_dict(serialize_transaction(block, tx, i, False), _RENAME)

    def _rpc_eth_getTransactionReceipt(self, tx_hash: str) -> dict[str, Any] | None:
        from eth_bloom import BloomFilter
        from eth_tester.backends.pyevm.serializers import serialize_transaction_receipt

        found = self._locate(tx_hash)
        if found is None:
            return None
        block, tx, i = found
        receipts = block.get_receipts(self.chain.chaindb)
        raw = serialize_transaction_receipt(block, receipts, tx, i, False, self.chain.get_vm())
        raw.pop("state_root", None)
        logs = [lg.rpc() for lg in self._logs_between(block.number, block.number) if lg.tx_index == i]
        bloom = BloomFilter()
        for log in receipts[i].logs:
            bloom.add(log.address)
            for t in log.topics:
                bloom.add(t.to_bytes(32, "big"))
        raw["logs"] = []
        out = _rpc_dict(raw)
        out["logs"] = logs
        out["logsBloom"] = "0x" + int(bloom).to_bytes(256, "big").hex()
        return out

    def _logs_between(self, lo: int, hi: int) -> Iterator[_Log]:
        import bisect

        start = bisect.bisect_left(self._logs, lo, key=lambda lg: lg.block_number)
        for lg in self._logs[start:]:
            if lg.block_number > hi:
                return
            yield lg

    def _rpc_eth_getLogs(self, flt: Any) -> list[dict[str, Any]]:
        if not isinstance(flt, dict):
            raise RpcError(-32602, "filter object expected")
        if flt.get("blockHash"):
            h = _bytes_param(flt["blockHash"], "blockHash")
            if h not in self._hashes:
                raise RpcError(-32000, "unknown block")
            lo = hi = self._hashes.index(h)
        else:
            lo = _block_id(flt.get("fromBlock", "latest"), self.head)
            hi = _block_id(flt.get("toBlock", "latest"), self.head)
        addresses = flt.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        wanted = {self._address(a) for a in addresses} if addresses else None
        topics: list[set[bytes] | None] = []
        for t in flt.get("topics") or []:
            if t is None:
                topics.append(None)
            elif isinstance(t, list):
                topics.append({_bytes_param(x, "topic") for x in t} if t else None)
            else:
                topics.append({_bytes_param(t, "topic")})
        out = []
        for lg in self._logs_between(lo, hi):
            if wanted is not None and lg.address not in wanted:
                continue
            if len(topics) > len(lg.topics):
                continue
            if all(want is None or lg.topics[i] in want for i, want in enumerate(topics)):
                out.append(lg.rpc())
        return out


# ---------------------------------------------------------------- the server


def _write_json_atomic(path: Path, data: Any) -> str:
    """Write JSON by rename (readers see the old or the new file); returns the bytes' SHA-256."""
    tmp = path.with_name(path.name + ".tmp")
    raw = (json.dumps(data, indent=1) + "\n").encode()
    tmp.write_bytes(raw)
    tmp.replace(path)
    return hashlib.sha256(raw).hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new file's name) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one small answer per request: do not wait for ACKs
    chain: EmbeddedChain

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._send(200, f"{CLIENT_VERSION}: JSON-RPC over POST\n".encode(), "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer: Any = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        else:
            answer = self.chain.handle(payload)
        self._send(200, json.dumps(answer).encode())


def serve(state_dir: str | Path, port: int = 0, on_ready: Callable[[ServerInfo], None] | None = None) -> None:
    """Serve the embedded chain of `state_dir` on 127.0.0.1 until SIGINT/SIGTERM."""
    state = Path(state_dir).resolve()
    chain = EmbeddedChain(state)
    try:
        handler = type("Handler", (_Handler,), {"chain": chain})
        try:
            httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            raise ChainUnavailable(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
        httpd.daemon_threads = True
        info: ServerInfo = {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "pid": os.getpid(),
                            "chain_id": chain.chain_id, "state": str(state)}
        _write_json_atomic(state / SERVER_FILE, info)

        def stop(signum: int, frame: Any) -> None:
            threading.Thread(target=httpd.shutdown, daemon=True).start()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            if on_ready is not None:
                on_ready(info)
            httpd.serve_forever(poll_interval=0.05)  # how soon a SIGTERM ends it
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            httpd.server_close()
            with contextlib.suppress(FileNotFoundError):
                if _read_server_file(state) == info:
                    (state / SERVER_FILE).unlink()
    finally:
        chain.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chain.embedded", description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True, help="state directory")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    args = ap.parse_args(argv)
    try:
        serve(args.state, args.port, on_ready=lambda info: print(f"serving {info['url']} "
                                                                 f"(chain id {info['chain_id']})", flush=True))
    except (StateError, ChainUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
