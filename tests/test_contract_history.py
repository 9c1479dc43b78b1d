"""An auditor rebuilds everything from the contract's events alone, and it equals the views."""

from __future__ import annotations

import time

import pytest
from chain_scenario import (
    assert_history_matches_views,
    assert_registry_matches_views,
    full_session,
    h,
    setup_contract,
)

from chain.backends import memory_chain
from chain.client import session_label
from chain.history import HistoryError, replay_session


@pytest.fixture(scope="module")
def p():
    return setup_contract(memory_chain())


def test_closed_session_history_from_events_equals_the_views(p):
    sid = full_session(p, "hist-1", rounds=4, dispute=3)
    assert_history_matches_views(p.auditor, sid)


def test_aborted_multi_party_session_history_equals_the_views(p):
    p.guest.open_session(session_label("hist-2"), "gmm", h("cfg"), [p.host.account.address, p.host2.account.address])
    sid = p.guest.session_id(session_label("hist-2"))
    p.host.join_session(sid)
    p.host2.join_session(sid)
    p.guest.submit_round(sid, 1, h("g1"), h("t1"))
    p.host2.submit_round(sid, 2, h("x2"), h("t2"))
    p.host.abort_session(sid, h("out of memory"))
    assert_history_matches_views(p.auditor, sid)


def test_expired_session_history_equals_the_views(p):
    p.guest.open_session(session_label("hist-exp"), "lr", h("cfg"), [p.host.account.address], timeout=1)
    sid = p.guest.session_id(session_label("hist-exp"))
    p.host.join_session(sid)
    p.guest.submit_round(sid, 1, h("g1"), h("t1"))
    time.sleep(2.1)  # blocks carry the wall-clock second (docs/chain.md): past the timeout
    p.host.expire_session(sid)
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


def test_a_session_id_not_derived_from_its_guest_and_label_is_refused(p):
    sid = full_session(p, "hist-6", rounds=1)
    events = p.auditor.events(sid)
    replay_session(events, p.auditor.chain_id, p.address)
    # the same log, claimed for another guest: its id does not derive from that guest and label
    forged = [dict(e, args=dict(e["args"])) for e in events]
    forged[0]["args"]["guest"] = p.host2.account.address
    with pytest.raises(HistoryError, match="is not the id 0x[0-9a-f]{64} that guest"):
        replay_session(forged, p.auditor.chain_id, p.address)
    with pytest.raises(HistoryError, match="is not the id"):
        replay_session(events, p.auditor.chain_id + 1, p.address)


def test_an_admin_handover_nobody_proposed_is_refused(p):
    from chain.history import replay_registry

    events = p.auditor.events()
    forged = dict(events[0], args={"previousAdmin": p.admin.account.address, "newAdmin": p.outsider.account.address})
    with pytest.raises(HistoryError, match="but the proposed admin was None"):
        replay_registry([*events, forged])
