"""`vflchain explorer` on a busy chain: page loads with 100 sessions x 50 rounds on the embedded chain.

The state is built once per run in a temporary state directory: four guest and four host
organisations, each session opened, joined, 50 rounds posted by both parties (every round
attested) and finalized, as signed raw transactions. Building it one transaction per block
through the JSON-RPC path would cost 25-50 ms of CPU per transaction (10,000+ of them), so the
bench applies a session's transactions to a few blocks at a time (the EVM, the contract and
its events are the same; the journal and snapshot on disk are what a server writes) and then
closes the chain, which writes its snapshot.

Measured against that state, through a real uvicorn server on 127.0.0.1 and an HTTP GET:
- the explorer's first read of every event (once, at start);
- a 50-round session's page and the Sessions page, each first load (the session page first,
  right after the start) and then steady (the events cached, one empty incremental read per
  refresh); the issue asks < 1 s for both;
- one more session mined, then the Sessions page again: the refresh reads only the new
  blocks (reference: a new explorer reading everything from block 0).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3 import Web3

from benchmarks.harness import Bench, timed
from chain.accounts import dev_account
from chain.backends import EmbeddedProvider, connect
from chain.client import AuditClient, session_label
from chain.deploy import deploy, ensure_registered
from chain.embedded import EmbeddedChain, start_server

SECTION = "explorer"
GUESTS = (1, 3, 5, 7)  # dev account indices
HOSTS = (2, 4, 6, 8)
ROUNDS_PER_BLOCK = 10
GAS = 300_000
MAX_FEE = 50 * 10**9
BUILDER_VERSION = 1  # bump when the built state changes
CACHE = Path(__file__).resolve().parent.parent / "build" / "bench-cache"


def _h(text: str) -> bytes:
    return keccak(text=text)


class _Builder:
    """Signs a session's transactions and mines them a few per block into a state directory."""

    def __init__(self, state: Path | None, address: str = "", url: str = "") -> None:
        """A new contract with the organisations registered, or (`address`) the one already there.
        With `url` (a running chain server), each transaction is sent to it and mined on its own."""
        self.chain = EmbeddedChain(state, fsync=False) if state is not None else None
        self.w3 = connect(url) if url else Web3(EmbeddedProvider(self.chain))
        self.address = address or deploy(self.w3, dev_account(0))["address"]
        admin = AuditClient(self.w3, self.address, dev_account(0))
        if not address:
            orgs = {dev_account(i).address: ("guest", f"Hospital {k + 1}") for k, i in enumerate(GUESTS)}
            orgs.update({dev_account(i).address: ("host", f"Lab {k + 1}") for k, i in enumerate(HOSTS)})
            ensure_registered(admin, orgs)
        self.types = {f["name"]: [i["type"] for i in f["inputs"]] for f in admin.abi if f.get("type") == "function"}
        self.chain_id = int(self.w3.eth.chain_id)
        self.nonces = {i: int(self.w3.eth.get_transaction_count(dev_account(i).address)) for i in GUESTS + HOSTS}
        self.sessions: list[str] = []

    def _raw(self, who: int, fn: str, *args) -> bytes:
        types = self.types[fn]
        data = keccak(text=f"{fn}({','.join(types)})")[:4] + abi_encode(types, list(args))
        tx = {"to": self.address, "data": data, "gas": GAS, "value": 0, "type": 2, "chainId": self.chain_id,
              "nonce": self.nonces[who], "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": 10**9}
        self.nonces[who] += 1
        return bytes(dev_account(who).sign_transaction(tx).raw_transaction)

    def _mine(self, raws: list[bytes]) -> None:
        # bench only: several transactions in one block (the server mines one per transaction),
        # journaled exactly as the server journals its blocks
        # (py-evm's `mine_all` builds the block's tries once; applying transactions one by one
        # rebuilds them after each, quadratic in the block's size; replaying gives the same block)
        chain = self.chain
        if chain is None:  # a server: one block per transaction, as during a job
            for raw in raws:
                self.w3.eth.send_raw_transaction(raw)
            return
        evm = chain.chain
        ts = max(int(time.time()), int(evm.get_canonical_head().timestamp))
        evm.header = evm.header.copy(timestamp=ts)
        decode = evm.get_vm().get_transaction_builder().decode
        result, _, _ = evm.mine_all([decode(r) for r in raws], blob_gas_used=0,
                                    mix_hash=keccak(b"vflchain-mix" + evm.header.parent_hash))
        block = result.imported_block
        chain._index_block(block)
        chain._journal.write(json.dumps({"number": block.number, "timestamp": ts, "hash": "0x" + block.hash.hex(),
                                         "txs": ["0x" + r.hex() for r in raws]}, separators=(",", ":")) + "\n")

    def session(self, k: int, rounds: int) -> str:
        g, h = GUESTS[k % len(GUESTS)], HOSTS[(k // len(GUESTS)) % len(HOSTS)]
        label = session_label(f"bench-explorer-{k}")
        sid = AuditClient(self.w3, self.address).session_id(label, dev_account(g).address)
        algorithm = "lr" if k % 3 else "gmm"
        self._mine([self._raw(g, "openSession", label, algorithm, _h(f"{k}/config"), [dev_account(h).address], 3600),
                    self._raw(h, "joinSession", sid)])
        for first in range(1, rounds + 1, ROUNDS_PER_BLOCK):
            raws = []
            for r in range(first, min(rounds, first + ROUNDS_PER_BLOCK - 1) + 1):
                raws.append(self._raw(g, "submitRound", sid, r, _h(f"{k}/g/{r}"), _h(f"{k}/t/{r}")))
                raws.append(self._raw(h, "submitRound", sid, r, _h(f"{k}/h/{r}"), _h(f"{k}/t/{r}")))
            self._mine(raws)
        self._mine([self._raw(g, "finalize", sid, _h(f"{k}/gm"), _h(f"{k}/metrics")),
                    self._raw(h, "finalize", sid, _h(f"{k}/hm"), b"\x00" * 32)])
        self.sessions.append("0x" + sid.hex())
        return self.sessions[-1]

    def close(self) -> None:
        if self.chain is not None:
            self.chain.close()  # writes the snapshot: a reader loads it instead of replaying every block


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.status, r.read().decode()


def _cached_state(n_sessions: int, n_rounds: int) -> tuple[Path, dict, bool]:
    """The state directory of `n_sessions` x `n_rounds` (built once, kept under build/bench-cache/ keyed by
    the contract's code and the EVM's version), its facts, and whether it was reused."""
    from importlib.metadata import version

    from chain.artifact import load_artifact

    key = hashlib.sha256(json.dumps([BUILDER_VERSION, n_sessions, n_rounds, load_artifact()["deployedBytecode"],
                                     version("py-evm"), version("eth-tester")]).encode()).hexdigest()[:12]
    done = CACHE / f"explorer-{n_sessions}x{n_rounds}-{key}"
    if (done / "bench.json").is_file():
        return done / "chain", json.loads((done / "bench.json").read_text()), True
    work = done.with_name(done.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    b = _Builder(work / "chain")
    for k in range(n_sessions):
        b.session(k, n_rounds)
    b.close()
    meta = {"address": b.address, "sessions": b.sessions, "build_s": time.perf_counter() - t0}
    (work / "bench.json").write_text(json.dumps(meta))
    shutil.rmtree(done, ignore_errors=True)
    work.rename(done)
    return done / "chain", meta, False


def run(bench: Bench) -> None:
    from nodes.explorer.app import listen, make, serve

    n_sessions, n_rounds = (20, 20) if bench.quick else (100, 50)
    cached, meta, reused = _cached_state(n_sessions, n_rounds)
    with tempfile.TemporaryDirectory(prefix="vflchain-bench-explorer-") as tmp:
        state = Path(tmp) / "chain"
        shutil.copytree(cached, state)  # the last step adds a session: never to the cached copy
        target = meta["sessions"][n_sessions // 2]

        explorer = make(state, contract=meta["address"], min_interval=0.0)
        first_read, _ = timed(lambda: explorer.index.refresh(force=True))
        assert not explorer.index.error, explorer.index.error
        events = len(explorer.index.events)
        sock = listen("127.0.0.1", 0)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server: list = []
        thread = threading.Thread(target=lambda: server.append(serve(explorer, sock)), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(url + "/favicon.ico")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

        def sessions_page() -> str:
            status, body = _get(url + "/sessions")
            assert status == 200 and body.count("<tr data-session=") == len(explorer.index.sessions), "sessions page"
            return body

        def session_page() -> str:
            status, body = _get(url + f"/session/{target}")
            assert status == 200 and body.count('data-state="attested"') == n_rounds, "session page"
            return body

        session_first, _ = timed(session_page)  # cold: nothing replayed yet
        sessions_first, _ = timed(sessions_page)  # every other session replayed now
        sessions_steady, _ = timed(sessions_page, repeat=3)
        session_steady, _ = timed(session_page, repeat=3)
        reads = explorer.index.reads

        # a job runs on the chain (its server up) while the explorer watches: the explorer follows the
        # server; after the job's session (one transaction per block), the next load reads only it
        with start_server(state) as chain_server:
            sessions_page()  # the explorer moves from the state directory to the server
            more = _Builder(None, meta["address"], chain_server.url)
            more.session(n_sessions, n_rounds)
            after_new, _ = timed(sessions_page)
            new_blocks = int(more.w3.eth.block_number) - explorer.index.last_block
            assert new_blocks == 0 and explorer.index.source.mode() == "server"
        full_reread, _ = timed(lambda: make(state, contract=meta["address"], min_interval=0.0).index.refresh(force=True))
        if server:
            server[0].should_exit = True
        thread.join(timeout=10)

    size = f"{n_sessions} sessions x {n_rounds} rounds, {events} events"
    bench.add(SECTION, f"build the state ({size})", meta["build_s"],
              note="reused from build/bench-cache/ (built once)" if reused else
              "signed raw transactions, 20 per block; kept in build/bench-cache/ for the next run")
    bench.add(SECTION, "first read of every event (once, at start)", first_read)
    bench.add(SECTION, "Sessions page, first load", sessions_first,
              note="issue: < 1 s; replays every session, block times")
    bench.add(SECTION, "Sessions page, steady", sessions_steady, note=f"events cached; {reads} log reads so far")
    bench.add(SECTION, f"session page ({n_rounds} rounds), first load", session_first,
              note="issue: < 1 s; the first page after start")
    bench.add(SECTION, f"session page ({n_rounds} rounds), steady", session_steady)
    bench.add(SECTION, f"Sessions page after a job's session ({2 * n_rounds + 4} blocks, incremental read)",
              after_new, full_reread, note="while its chain server runs; reference: a new explorer reading "
                                           "every event from block 0")
