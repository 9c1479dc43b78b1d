"""Both parties' transcripts give the same per-round digest, and hold hashes, not content."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from nodes.transcript import Transcript
from nodes.transport import Address, TransportError, memory_pair


def test_both_sides_compute_the_same_round_digest(tmp_path):
    gt, ht = Transcript(tmp_path / "g.jsonl"), Transcript(tmp_path / "h.jsonl")
    g, h = memory_pair(gt, ht)
    for r in (1, 2):
        g.send(Address("j", "p", r, "a"), {"v": np.arange(3)})
        h.recv(Address("j", "p", r, "a"))
        h.send(Address("j", "p", r, "b"), {"w": "text"})
        g.recv(Address("j", "p", r, "b"))
    assert gt.digest(1) == ht.digest(1)
    assert gt.digest(2) == ht.digest(2)
    assert gt.digest(1) != gt.digest(2)
    assert Transcript.load(tmp_path / "g.jsonl") == gt.entries


def test_transcript_records_sizes_and_hashes_not_content(tmp_path):
    gt = Transcript(tmp_path / "g.jsonl")
    g, h = memory_pair(gt, Transcript())
    g.send(Address("j", "p", 1, "secret"), {"labels": "1,0,1,1"})
    line = json.loads((tmp_path / "g.jsonl").read_text())
    assert set(line) == {"round", "phase", "tag", "direction", "sender", "size", "sha256", "time"}
    assert "1,0,1,1" not in (tmp_path / "g.jsonl").read_text()


def test_memory_transport_delivers_out_of_order_messages_by_address():
    g, h = memory_pair()
    g.send(Address("j", "p", 1, "second"), {"n": 2})
    g.send(Address("j", "p", 1, "first"), {"n": 1})
    assert h.recv(Address("j", "p", 1, "first"))["n"] == 1
    assert h.recv(Address("j", "p", 1, "second"))["n"] == 2


def test_resending_the_same_message_is_idempotent_but_different_content_is_refused():
    g, h = memory_pair()
    g.send(Address("j", "p", 1, "a"), {"n": 1})
    g.send(Address("j", "p", 1, "a"), {"n": 1})
    with pytest.raises(TransportError, match="sent twice"):
        g.send(Address("j", "p", 1, "a"), {"n": 2})


def test_receiver_learns_of_a_disconnected_peer():
    g, h = memory_pair()
    threading.Timer(0.05, g.close).start()
    with pytest.raises(TransportError, match="guest disconnected"):
        h.recv(Address("j", "p", 1, "a"), timeout=5)


def test_receive_times_out_with_the_address_in_the_message():
    g, h = memory_pair()
    with pytest.raises(TransportError, match="timed out .* p/1/a"):
        h.recv(Address("j", "p", 1, "a"), timeout=0.05)
