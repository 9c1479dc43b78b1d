"""An auditor rebuilds everything from the contract's events alone, and it equals the views."""

from __future__ import annotations

import pytest
from chain_scenario import (
    assert_history_matches_views,
    assert_registry_matches_views,
    full_session,
    h,
    setup_contract,
)

from chain.backends import memory_chain
from chain.client import session_id
from chain.history import HistoryError, replay_session


@pytest.fixture(scope="module")
def p():
    return setup_contract(memory_chain())


def test_closed_session_history_from_events_equals_the_views(p):
    sid = full_session(p, "hist-1", rounds=4, dispute=3)
    assert_history_matches_views(p.auditor, sid)


def test_aborted_multi_party_session_history_equals_the_views(p):
    sid = session_id("hist-2")
    p.guest.open_session(sid, "gmm", h("cfg"), [p.host.account.address, p.host2.account.address])
    p.host.join_session(sid)
    p.host2.join_session(sid)
    p.guest.submit_round(sid, 1, h("g1"), h("t1"))
    p.host2.submit_round(sid, 2, h("x2"), h("t2"))
    p.host.abort_session(sid, h("out of memory"))
    assert_history_matches_views(p.auditor, sid)


def test_registry_from_events_equals_the_views(p):
    p.admin.revoke(p.host2.account.address)
    assert_registry_matches_views(p.auditor)


def test_session_events_are_only_that_sessions(p):
    a = full_session(p, "hist-3", rounds=1)
    b = full_session(p, "hist-4", rounds=2)
    ids = {e["args"]["sessionId"] for e in p.auditor.events(a)}
    assert ids == {"0x" + a.hex()}
    assert len(p.auditor.events(b)) > len(p.auditor.events(a))


def test_a_forged_history_is_refused(p):
    sid = full_session(p, "hist-5", rounds=2)
    events = p.auditor.events(sid)
    forged = [dict(e, args=dict(e["args"])) for e in events]
    for e in forged:
        if e["event"] == "RoundSubmitted" and e["args"]["round"] == 2:
            e["args"]["transcriptDigest"] = "0x" + h("edited").hex()
    with pytest.raises(HistoryError, match="RoundAttested"):
        replay_session(forged)
    with pytest.raises(HistoryError, match="before SessionOpened"):
        replay_session(events[1:])
