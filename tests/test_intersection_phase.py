"""The intersection phase: correct alignment, clear failures, and what crosses the wire."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from nodes.phases import intersection
from nodes.testing import make_contexts, run_pair
from nodes.transcript import Transcript, round_digest
from vfl import psi
from vfl.data import PartyData
from vfl.errors import PsiError


def _party(role: str, ids: list[str], d: int = 2) -> PartyData:
    n = len(ids)
    X = np.arange(n * d, dtype=np.float64).reshape(n, d)
    y = (np.arange(n) % 2).astype(np.int8) if role == "guest" else None
    return PartyData(role, np.asarray(ids, dtype=str), [f"x{i}" for i in range(d)], X, y)


def _run(tmp_path, gids, hids):
    g, h = make_contexts(tmp_path, _party("guest", gids), _party("host", hids))
    sent: list[tuple[str, bytes]] = []
    g.transport.tap = h.transport.tap = lambda role, addr, data: sent.append((role, data))
    out = run_pair(intersection.run_guest, intersection.run_host, g, h)
    return g, h, out, sent


def test_both_parties_hold_the_true_intersection_in_the_same_order(tmp_path) -> None:
    rng = np.random.default_rng(1)
    gids = [f"p{i}" for i in rng.permutation(500)[:400]]
    hids = [f"p{i}" for i in rng.permutation(500)[:300]]
    g, h, (gs, hs), _ = _run(tmp_path, gids, hids)
    truth = set(gids) & set(hids)
    assert g.data.ids.tolist() == h.data.ids.tolist()
    assert set(g.data.ids.tolist()) == truth
    assert gs == {"intersection_size": len(truth), "own_size": 400, "other_size": 300}
    assert hs == {"intersection_size": len(truth), "own_size": 300, "other_size": 400}
    assert json.loads((tmp_path / "guest" / "intersection.json").read_text()) == gs
    assert json.loads((tmp_path / "host" / "intersection.json").read_text()) == hs
    # rows moved with their IDs: feature row of "p<i>" is the one the party had for it
    pos = {v: i for i, v in enumerate(gids)}
    X0 = _party("guest", gids).X
    assert np.array_equal(g.data.X, X0[[pos[i] for i in g.data.ids.tolist()]])


def test_full_overlap_with_integer_ids_aligns_numerically(tmp_path) -> None:
    gids = [str(i) for i in range(200)][::-1]
    hids = [str(i) for i in np.random.default_rng(2).permutation(200)]
    g, h, (gs, _), _ = _run(tmp_path, gids, hids)
    assert gs["intersection_size"] == 200
    assert g.data.ids.tolist() == [str(i) for i in range(200)] == h.data.ids.tolist()


def test_empty_intersection_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(PsiError, match="empty intersection: .* share no ID; nothing to train on"):
        _run(tmp_path, ["a", "b", "c"], ["d", "e"])
    assert not (tmp_path / "guest" / "intersection.json").exists()


def test_round_is_committed_with_equal_transcript_digests(tmp_path) -> None:
    _run(tmp_path, ["a", "b", "c"], ["b", "c", "d"])
    rounds = [json.loads((tmp_path / r / "rounds.jsonl").read_text()) for r in ("guest", "host")]
    assert rounds[0]["round"] == rounds[1]["round"] == 1
    assert rounds[0]["transcript_digest"] == rounds[1]["transcript_digest"]
    g_entries = Transcript.load(tmp_path / "guest" / "transcript.jsonl")
    h_entries = Transcript.load(tmp_path / "host" / "transcript.jsonl")
    assert round_digest(g_entries, 1) == round_digest(h_entries, 1) == rounds[0]["transcript_digest"]
    assert {e["tag"] for e in g_entries} == {"psi_blind", "psi_reblind", "psi_check"}


def test_no_raw_id_or_hash_of_an_id_crosses_unblinded(tmp_path) -> None:
    gids = [f"MRN-{i:07d}-north-hospital" for i in range(0, 120)]
    hids = [f"MRN-{i:07d}-north-hospital" for i in range(60, 200)]
    _, _, _, sent = _run(tmp_path, gids, hids)
    assert sent
    wire = b"".join(data for _, data in sent)
    forbidden: list[bytes] = []
    for i in set(gids) | set(hids):
        raw = psi.canonical_id(i)
        forbidden += [raw, raw.hex().encode(), hashlib.sha256(raw).digest(), hashlib.sha256(raw).hexdigest().encode(),
                      hashlib.sha512(raw).digest()[:32], psi.expand_message_xmd(raw, psi.PSI_DST, 96)[:32]]
    points = psi.psi_hash_ids(sorted(set(gids) | set(hids)))
    forbidden += points + [p.hex().encode() for p in points]
    leaks = [f for f in forbidden if f in wire]
    assert leaks == []
    # every 32-byte element on the wire is a blinded point, none is an ID's hashed point
    chunks = {wire[i : i + 32] for i in range(len(wire) - 31)}
    assert not chunks & set(points)


def test_malformed_points_from_the_peer_are_refused(tmp_path) -> None:
    g, h = make_contexts(tmp_path, _party("guest", ["a", "b"]), _party("host", ["a"]))

    def bad_host(ctx):
        ch = ctx.channel(intersection.PHASE)
        rnd = ctx.next_round()
        ch.send("psi_blind", {"points": np.zeros((1, 31), dtype=np.uint8)}, round=rnd)
        ch.recv("psi_blind", round=rnd)

    with pytest.raises(PsiError, match="host's blinded IDs: expected an \\(n, 32\\) uint8 array"):
        run_pair(intersection.run_guest, bad_host, g, h)
