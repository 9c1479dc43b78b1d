"""Round commitments and pictures done in the background still arrive in order, and their failures surface."""

from __future__ import annotations

import json
import threading
import time

import pytest

from chain.errors import ChainError
from nodes import plots
from nodes.testing import make_contexts


class SlowAnchor:
    """Posts slowly (so later rounds are queued behind earlier ones) and refuses chosen rounds."""

    def __init__(self, refuse: set[int] = frozenset()) -> None:
        self.refuse = set(refuse)
        self.posted: list[int] = []
        self.threads: set[str] = set()

    def submit_round(self, round_no: int, commitment: bytes, transcript_digest: bytes) -> str:
        time.sleep(0.02)
        self.threads.add(threading.current_thread().name)
        if round_no in self.refuse:
            raise ChainError(f"round {round_no} refused")
        self.posted.append(round_no)
        return f"0x{round_no:064x}"


def _lines(ctx) -> list[dict]:
    return [json.loads(x) for x in ctx.rundir.file("rounds.jsonl").read_text().splitlines()]


def test_background_round_posts_keep_round_order_and_complete_at_flush(tmp_path) -> None:
    g, _ = make_contexts(tmp_path, None, None)
    g.anchor, g.background_commits = SlowAnchor(), True
    for r in range(1, 6):
        g.commit_round(r, "p", {"r": r})
    assert len(g.anchor.posted) < 5  # commit_round did not wait for the posts
    g.flush_rounds()
    assert g.anchor.posted == [1, 2, 3, 4, 5]
    assert [x["round"] for x in _lines(g)] == [1, 2, 3, 4, 5]
    assert all(x["tx_hash"] == f"0x{x['round']:064x}" for x in _lines(g))
    assert g.anchor.threads != {threading.current_thread().name}


def test_a_refused_background_post_is_raised_by_the_flush(tmp_path) -> None:
    g, _ = make_contexts(tmp_path, None, None)
    g.anchor, g.background_commits = SlowAnchor(refuse={2}), True
    for r in (1, 2, 3):
        g.commit_round(r, "p", {"r": r})
    with pytest.raises(ChainError, match="round 2 refused"):
        g.flush_rounds()
    assert 2 not in [x["round"] for x in _lines(g)]


def test_a_refused_background_post_is_raised_by_the_next_commit(tmp_path) -> None:
    g, _ = make_contexts(tmp_path, None, None)
    g.anchor, g.background_commits = SlowAnchor(refuse={1}), True
    g.commit_round(1, "p", {"r": 1})
    time.sleep(0.2)  # the post has failed by now
    with pytest.raises(ChainError, match="round 1 refused"):
        g.commit_round(2, "p", {"r": 2})


def test_without_background_commits_the_post_happens_in_the_call(tmp_path) -> None:
    g, _ = make_contexts(tmp_path, None, None)
    g.anchor = SlowAnchor(refuse={1})
    with pytest.raises(ChainError, match="round 1 refused"):
        g.commit_round(1, "p", {"r": 1})


def test_a_picture_that_fails_to_draw_fails_the_wait(tmp_path) -> None:
    plots.later("lr", "plot_loss", tmp_path / "no_such_dir" / "loss.png", [0.5, 0.4], [])
    with pytest.raises(OSError):
        plots.wait()
    plots.later("lr", "plot_loss", tmp_path / "loss.png", [0.5, 0.4], [])
    plots.wait()
    assert (tmp_path / "loss.png").stat().st_size > 1000
