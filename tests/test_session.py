"""The phases' session (nodes.session): peers by name, rounds committed on exit, aborts told to the peers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nodes.config import load_config
from nodes.errors import NodeError
from nodes.session import PeerAborted, PeerLink, Session
from nodes.testing import make_contexts, run_pair
from vfl.datasets import breast_split
from vfl.errors import DataError


def _contexts(tmp_path) -> tuple[Any, Any]:
    g, h = breast_split()
    cfg = load_config(None, ["paillier.key_bits=1024", "paillier.insecure_test_keys=true"])
    return make_contexts(tmp_path, g, h, cfg)


def test_a_round_commits_what_the_block_said_when_it_ends(tmp_path) -> None:
    gctx, hctx = _contexts(tmp_path)

    def guest(ctx):
        s = Session(ctx)
        assert s.peers == ("host",) and s.peer_key("host") == ctx.peer_key
        with s.round("echo") as r:
            r.send("host", "ping", {"n": 1})
            r.commit({"got": r.recv("host", "pong")["n"]})
        return r.number

    def host(ctx):
        s = Session(ctx)
        with s.round("echo") as r:
            n = r.recv("guest", "ping")["n"]
            r.send("guest", "pong", {"n": n + 1})
            r.commit({"sent": n + 1})
        return r.number

    gres, hres = run_pair(guest, host, gctx, hctx)
    assert gres == hres == 1
    cp = json.loads((tmp_path / "guest" / "checkpoints" / "round-0001.json").read_text())
    assert cp["params"] == {"got": 2} and cp["phase"] == "echo"


def test_an_error_in_a_round_aborts_the_waiting_peer_with_the_reason_in_one_line(tmp_path) -> None:
    gctx, hctx = _contexts(tmp_path)
    seen: dict[str, BaseException] = {}

    def guest(ctx):
        try:
            with Session(ctx).round("check", "refused the check") as r:
                r.send("host", "offer", {"n": 1})
                r.recv("host", "answer")
        except PeerAborted as exc:
            seen["guest"] = exc

    def host(ctx):
        try:
            with Session(ctx).round("check") as r:
                r.recv("guest", "offer")
                r.peer_waits("guest", "answer")
                raise DataError("host.csv: column 'x' is constant")
        except DataError as exc:
            seen["host"] = exc

    run_pair(guest, host, gctx, hctx)
    assert not (tmp_path / "host" / "checkpoints").exists()  # the failed round committed nothing
    assert str(seen["guest"]) == "the host refused the check: host.csv: column 'x' is constant"
    assert seen["guest"].peer == "host" and isinstance(seen["host"], DataError)


def test_an_unknown_peer_name_and_a_round_without_commit_are_refused(tmp_path) -> None:
    gctx, _ = _contexts(tmp_path)
    s = Session(gctx)
    with pytest.raises(NodeError, match="the guest has no peer 'host2' in this job"), s.round("x") as r:
        r.send("host2", "t", {})
    with pytest.raises(NodeError, match="round 2 ended without r.commit"), s.round("x"):
        pass


def test_a_guest_addresses_several_hosts_by_name_in_one_round(tmp_path) -> None:
    """The session's peers are names: two hosts, each over its own link, in one job-wide round."""
    import threading

    g1, h1 = _contexts(tmp_path / "one")
    g2, h2 = _contexts(tmp_path / "two")
    links = {"host1": PeerLink(g1.transport, h1.public_key), "host2": PeerLink(g2.transport, h2.public_key)}
    answers: dict[str, int] = {}

    def host(ctx, k):
        with Session(ctx).round("count") as r:
            n = r.recv("guest", "ask")["n"]
            r.send("guest", "reply", {"n": n * k})
            r.commit({"n": n})

    threads = [threading.Thread(target=host, args=(h, k)) for h, k in ((h1, 10), (h2, 100))]
    for t in threads:
        t.start()
    s = Session(g1, links)
    assert s.peers == ("host1", "host2") and s.peer_key("host2") == h2.public_key
    with s.round("count") as r:
        for name in s.peers:
            r.send(name, "ask", {"n": 3})
        answers = {name: r.recv(name, "reply")["n"] for name in s.peers}
        r.commit(answers)
    for t in threads:
        t.join(30)
    assert answers == {"host1": 30, "host2": 300}
