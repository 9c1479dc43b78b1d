"""The embedded chain served by `vflchain chain serve` persists: stop it, serve the same
state directory again, and the contract, its storage, its events and its blocks are all there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chain_scenario import assert_history_matches_views, full_session, h, setup_contract, views_of

from chain.backends import connect, connect_state
from chain.client import AuditClient, session_label
from chain.embedded import (
    JOURNAL_FILE,
    SERVER_FILE,
    SNAPSHOT_FILE,
    SNAPSHOT_INDEX_FILE,
    EmbeddedChain,
    running_server,
    start_server,
)
from chain.errors import ChainUnavailable, StateError

pytestmark = pytest.mark.slow


def serve_cli(state: Path) -> tuple[subprocess.Popen, str]:
    """`vflchain chain serve --state DIR` as its own process; returns it and its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "nodes.cli", "chain", "serve", "--state", str(state)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        info = running_server(state)
        if info and info["pid"] == proc.pid:
            return proc, info["url"]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("vflchain chain serve did not start")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    os.kill(proc.pid, sig)
    proc.wait(30)


def blocks(w3) -> list[str]:
    return [w3.eth.get_block(n)["hash"].to_0x_hex() for n in range(w3.eth.block_number + 1)]


def test_history_survives_stopping_and_serving_again(tmp_path):
    state = tmp_path / "chain"
    proc, url = serve_cli(state)
    try:
        w3 = connect(url)
        p = setup_contract(w3)
        sid = full_session(p, "persist-1", rounds=3, dispute=2)
        before = (p.auditor.events(), views_of(p.auditor, sid), blocks(w3),
                  w3.eth.get_storage_at(p.address, 0))
        with pytest.raises(StateError, match=f"already served by another process \\(pid {proc.pid}"):
            EmbeddedChain(state)  # one writer per state directory
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert not (state / SERVER_FILE).exists()

    proc, url = serve_cli(state)
    try:
        w3 = connect(url)
        auditor = AuditClient(w3, p.address)
        after = (auditor.events(), views_of(auditor, sid), blocks(w3), w3.eth.get_storage_at(p.address, 0))
        assert after == before
        assert_history_matches_views(auditor, sid)
        # and it goes on where it stopped
        guest = AuditClient(w3, p.address, p.guest.account)
        guest.open_session(session_label("persist-2"), "gmm", h("cfg"), [p.host.account.address])
        assert guest.session(guest.session_id(session_label("persist-2")))["status"] == "opened"
    finally:
        stop(proc)


def test_a_restart_takes_the_block_index_saved_with_the_snapshot_and_ignores_a_stale_one(tmp_path,
                                                                                         monkeypatch):
    from web3 import Web3

    from chain.backends import EmbeddedProvider

    state = tmp_path / "chain"
    chain = EmbeddedChain(state)
    p = setup_contract(Web3(EmbeddedProvider(chain)))
    sid = full_session(p, "index-1", rounds=2)
    before = (p.auditor.events(), views_of(p.auditor, sid))
    chain.close()  # writes the snapshot and its index
    index = json.loads((state / SNAPSHOT_INDEX_FILE).read_text())
    assert index["number"] == len(index["hashes"]) - 1 > 0 and index["logs"]

    def history() -> tuple:
        reader = EmbeddedChain(state, read_only=True)
        auditor = AuditClient(Web3(EmbeddedProvider(reader)), p.address)
        try:
            return auditor.events(), views_of(auditor, sid)
        finally:
            reader.close()

    def no_decoding(self, block) -> None:
        raise AssertionError(f"block {block.number} decoded although the index was saved")

    with monkeypatch.context() as m:
        m.setattr(EmbeddedChain, "_index_block", no_decoding)
        assert history() == before  # from the saved index
    index["hash"] = "0x" + "00" * 32  # an index of another snapshot: the blocks are decoded again
    index["logs"] = []
    (state / SNAPSHOT_INDEX_FILE).write_text(json.dumps(index))
    assert history() == before


def test_a_killed_server_loses_nothing_it_answered(tmp_path):
    """SIGKILL: no snapshot is written, the journal alone rebuilds the same chain."""
    state = tmp_path / "chain"
    handle = start_server(state)
    try:
        w3 = connect(handle.url)
        p = setup_contract(w3)
        sid = full_session(p, "kill-1", rounds=2)
        before = (p.auditor.events(sid), blocks(w3))
    finally:
        os.kill(handle.pid, signal.SIGKILL)
        handle.process.wait(10)
    assert not (state / SNAPSHOT_FILE).exists()
    with open(state / JOURNAL_FILE, "a") as fh:  # a write torn by the crash
        fh.write('{"number": 999, "timest')
    w3r = connect_state(state)  # an auditor, no server running
    reader = AuditClient(w3r, p.address, p.guest.account)
    assert (reader.events(sid), blocks(w3r)) == before
    with pytest.raises(Exception, match="read-only"):
        reader.open_session(session_label("nope"), "lr", h("c"), [p.host.account.address])

    with start_server(state) as handle:
        w3 = connect(handle.url)
        assert (AuditClient(w3, p.address).events(sid), blocks(w3)) == before
        assert (state / JOURNAL_FILE).read_text().endswith("\n")  # the torn line was dropped
    snap = state / SNAPSHOT_FILE  # written by the clean stop
    assert snap.exists()
    data = bytearray(snap.read_bytes())
    header_end = data.index(b"\n", len(b"VFLCHAIN-KV-1\n")) + 1
    data[header_end + 40] ^= 0xFF  # a damaged snapshot is ignored: the journal rebuilds the chain
    snap.write_bytes(bytes(data))
    assert AuditClient(connect_state(state), p.address).events(sid) == before[0]


def test_no_state_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ChainUnavailable, match="no embedded chain here"):
        connect_state(tmp_path / "missing")


def test_parties_starting_the_chain_at_once_share_one_server(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from chain.embedded import ensure_server

    state = tmp_path / "chain"
    with ThreadPoolExecutor(2) as pool:
        handles = list(pool.map(lambda _: ensure_server(state), range(2)))
    try:
        assert handles[0].url == handles[1].url
        assert sum(handle.owned for handle in handles) == 1
        assert connect(handles[0].url).eth.block_number == 0
    finally:
        for handle in handles:
            handle.stop()
    assert running_server(state) is None


def _closed_state(tmp_path: Path) -> tuple[Path, object, bytes, tuple]:
    """A state directory with a closed session, stopped cleanly (snapshot and index written)."""
    from web3 import Web3

    from chain.backends import EmbeddedProvider

    state = tmp_path / "chain"
    chain = EmbeddedChain(state)
    p = setup_contract(Web3(EmbeddedProvider(chain)))
    sid = full_session(p, "damage-1", rounds=2)
    before = (p.auditor.events(sid), views_of(p.auditor, sid))
    chain.close()
    assert (state / SNAPSHOT_FILE).exists()
    return state, p, sid, before


def _read(state: Path, p, sid: bytes) -> tuple:
    auditor = AuditClient(connect_state(state), p.address)
    return auditor.events(sid), views_of(auditor, sid)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "garbage", "header"])
def test_a_damaged_snapshot_is_ignored_with_a_warning_and_the_journal_replayed(tmp_path, capsys, damage):
    state, p, sid, before = _closed_state(tmp_path)
    snap = state / SNAPSHOT_FILE
    data = bytearray(snap.read_bytes())
    if damage == "truncated":
        data = data[:len(data) * 2 // 3]
    elif damage == "flipped byte":
        data[-100] ^= 0x01
    elif damage == "garbage":
        data = bytearray(b"\x00" * 64)
    else:
        data = data.replace(b'"number"', b'"numbor"', 1)
    snap.write_bytes(bytes(data))
    assert _read(state, p, sid) == before  # an auditor, read-only
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vflchain: warning: {snap}: ignored (")
    assert "replaying the journal from genesis" in err
    with start_server(state) as handle:  # a server too; it writes a good snapshot on its clean stop
        assert AuditClient(connect(handle.url), p.address).events(sid) == before[0]
    assert _read(state, p, sid) == before
    assert capsys.readouterr().err == ""


def test_a_damaged_snapshot_index_is_ignored_with_a_warning(tmp_path, capsys):
    state, p, sid, before = _closed_state(tmp_path)
    index = json.loads((state / SNAPSHOT_INDEX_FILE).read_text())
    index["logs"] = index["logs"][:-1]  # valid JSON, wrong content: must not be believed
    (state / SNAPSHOT_INDEX_FILE).write_text(json.dumps(index))
    assert _read(state, p, sid) == before
    err = capsys.readouterr().err
    assert err.startswith(f"vflchain: warning: {state / SNAPSHOT_INDEX_FILE}: ignored") and err.count("\n") == 1


def test_a_torn_last_journal_line_is_named_in_a_warning(tmp_path, capsys):
    state, p, sid, before = _closed_state(tmp_path)
    (state / SNAPSHOT_FILE).unlink()
    journal = state / JOURNAL_FILE
    lines = journal.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    raw = bytes.fromhex(last["txs"][0][2:])
    from eth_utils import keccak

    # the last line complete but for its newline: the block is whole and kept (and the newline restored)
    journal.write_bytes(b"".join(lines)[:-1])
    with start_server(state) as handle:
        assert AuditClient(connect(handle.url), p.address).events(sid) == before[0]
    assert journal.read_bytes().endswith(b"}\n") and capsys.readouterr().err == ""
    (state / SNAPSHOT_FILE).unlink()

    # torn after its transaction: the warning names the block and the transaction dropped
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:-3])
    events, _ = _read(state, p, sid)
    err = capsys.readouterr().err
    assert events == before[0][:-len([e for e in before[0] if e["tx_hash"] == "0x" + keccak(raw).hex()])]
    assert err.startswith(f"vflchain: warning: {journal}: dropped a torn last line after block "
                          f"{last['number'] - 1} (") and err.count("\n") == 1
    assert f"block {last['number']}, transaction 0x{keccak(raw).hex()}" in err
    # torn inside the transaction: the block is named, the transaction is said to be cut off
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:-40])
    _read(state, p, sid)
    assert f"block {last['number']}, its transaction cut off" in capsys.readouterr().err


def test_block_timestamps_never_run_ahead_of_the_clock(tmp_path):
    from web3 import Web3

    from chain.backends import EmbeddedProvider

    chain = EmbeddedChain(tmp_path / "chain")
    w3 = Web3(EmbeddedProvider(chain))
    p = setup_contract(w3)
    full_session(p, "clock-1", rounds=10)  # many blocks a second
    now = time.time()
    stamps = [w3.eth.get_block(n)["timestamp"] for n in range(1, w3.eth.block_number + 1)]
    assert w3.eth.block_number > 20
    assert stamps == sorted(stamps) and stamps[-1] <= now
    assert len(set(stamps)) < len(stamps)  # blocks in one second share it
    chain.close()
    reader = EmbeddedChain(tmp_path / "chain", read_only=True)  # and the journal replays them
    assert reader.head == w3.eth.block_number
    reader.close()


def test_a_block_that_cannot_be_journaled_is_never_answered(tmp_path, monkeypatch):
    from web3 import Web3

    from chain.backends import EmbeddedProvider

    state = tmp_path / "chain"
    chain = EmbeddedChain(state)
    p = setup_contract(Web3(EmbeddedProvider(chain)))
    head = chain.head

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(Exception, match="the chain stopped: cannot write .*No space left on device"):
        full_session(p, "nospace-1", rounds=1)
    monkeypatch.undo()
    with pytest.raises(Exception, match="the chain stopped"):
        p.auditor.sessions()  # nothing is answered any more, not even reads
    chain.close(snapshot=False)
    reader = EmbeddedChain(state, read_only=True)
    assert reader.head == head  # the unjournaled block is not in the chain after a restart
    reader.close()
