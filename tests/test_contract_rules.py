"""Every rule of the VflAudit contract, on the embedded chain (in-process EVM).

Each refusal is checked by the name of the custom error the client decodes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from chain_scenario import Parties, assert_registry_matches_views, full_session, h, setup_contract

from chain.accounts import dev_account
from chain.artifact import load_artifact
from chain.backends import memory_chain
from chain.client import ZERO32, AuditClient, session_id, session_label
from chain.errors import ContractRevert


@pytest.fixture(scope="module")
def w3():
    return memory_chain()


@pytest.fixture(scope="module")
def p(w3) -> Parties:
    return setup_contract(w3)


def expect_revert(name: str, call, *args, **kwargs) -> ContractRevert:
    with pytest.raises(ContractRevert) as info:
        call(*args, **kwargs)
    assert info.value.name == name, str(info.value)
    return info.value


def opened(p: Parties, job: str, others=None) -> bytes:
    p.guest.open_session(session_label(job), "lr", h(job), others if others is not None else [p.host.account.address])
    return p.guest.session_id(session_label(job))


def active(p: Parties, job: str) -> bytes:
    sid = opened(p, job)
    p.host.join_session(sid)
    return sid


# ----------------------------------------------------------------- participants


def test_admin_registers_participants_with_role_and_organisation(p):
    info = p.guest.participant(dev_account(2).address)
    assert info is not None
    assert (info["role"], info["organisation"], info["revoked"]) == ("host", "City Lab", False)
    assert p.guest.participant(dev_account(5).address) is None
    assert p.guest.admin() == dev_account(0).address
    assert [x["role"] for x in p.guest.participants()] == ["guest", "host", "host", "auditor"]


def test_only_the_admin_registers_and_revokes(p):
    expect_revert("NotAdmin", p.guest.register_participant, dev_account(6).address, "host", "Rogue")
    expect_revert("NotAdmin", p.host.revoke, p.guest.account.address)
    expect_revert("NotAdmin", p.guest.propose_admin, p.guest.account.address)


def test_a_registration_is_never_overwritten(p):
    err = expect_revert("AlreadyRegistered", p.admin.register_participant, dev_account(2).address, "guest", "Other")
    assert err.args_dict == {"account": dev_account(2).address}
    assert p.admin.participant(dev_account(2).address)["role"] == "host"


def test_registration_refuses_empty_values(p):
    expect_revert("ZeroAddress", p.admin.register_participant, "0x" + "00" * 20, "host", "Nobody")
    expect_revert("InvalidText", p.admin.register_participant, dev_account(7).address, "host", "")
    expect_revert("InvalidText", p.admin.register_participant, dev_account(7).address, "host", "x" * 129)
    expect_revert("NotRegistered", p.admin.revoke, dev_account(7).address)


def test_invalid_role_number_is_refused_by_the_contract(p):
    # the client only sends known roles; the contract still refuses Role.None itself
    with pytest.raises(ContractRevert) as info:
        p.admin._transact("registerParticipant", dev_account(7).address, 0, "Nobody")
    assert info.value.name == "InvalidRole"


def test_admin_handover_takes_a_proposal_and_its_acceptance(w3):
    fresh = setup_contract(w3)
    old, new = fresh.admin.account.address, fresh.guest.account.address
    result = fresh.admin.propose_admin(new)
    assert [(e["event"], e["args"]) for e in result["events"]] == [
        ("AdminProposed", {"admin": old, "proposedAdmin": new})]
    # proposing changes nothing yet: the old admin still rules, the proposed one cannot act
    assert (fresh.guest.admin(), fresh.guest.pending_admin()) == (old, new)
    expect_revert("NotAdmin", fresh.guest.register_participant, dev_account(8).address, "host", "Early")
    err = expect_revert("NotPendingAdmin", fresh.host.accept_admin)
    assert err.args_dict == {"account": fresh.host.account.address, "pendingAdmin": new}
    result = fresh.guest.accept_admin()
    assert [(e["event"], e["args"]) for e in result["events"]] == [
        ("AdminTransferred", {"previousAdmin": old, "newAdmin": new})]
    assert (fresh.guest.admin(), fresh.guest.pending_admin()) == (new, None)
    expect_revert("NotPendingAdmin", fresh.guest.accept_admin)  # a proposal is accepted once
    expect_revert("NotAdmin", fresh.admin.register_participant, dev_account(8).address, "host", "Late")
    expect_revert("NotAdmin", fresh.admin.propose_admin, old)
    fresh.guest.register_participant(dev_account(8).address, "host", "Late Lab")
    assert fresh.guest.participant(dev_account(8).address)["organisation"] == "Late Lab"
    assert_registry_matches_views(fresh.guest)


def test_an_admin_proposal_can_be_replaced_or_withdrawn(w3):
    fresh = setup_contract(w3)
    fresh.admin.propose_admin(fresh.guest.account.address)
    fresh.admin.propose_admin(fresh.host.account.address)  # a new proposal replaces the old one
    expect_revert("NotPendingAdmin", fresh.guest.accept_admin)
    fresh.admin.propose_admin("0x" + "00" * 20)  # withdrawn
    assert fresh.admin.pending_admin() is None
    err = expect_revert("NotPendingAdmin", fresh.host.accept_admin)
    assert err.args_dict["pendingAdmin"] == "0x" + "00" * 20
    expect_revert("NotPendingAdmin", fresh.outsider.accept_admin)
    assert fresh.auditor.admin() == fresh.admin.account.address
    assert_registry_matches_views(fresh.admin)


def test_a_revoked_participant_can_write_nothing(w3):
    q = setup_contract(w3)
    sid = opened(q, "revoke-1")
    q.admin.revoke(q.host.account.address)
    assert q.admin.participant(q.host.account.address)["revoked"] is True
    expect_revert("AlreadyRevoked", q.admin.revoke, q.host.account.address)
    expect_revert("Revoked", q.host.join_session, sid)
    expect_revert("Revoked", q.host.abort_session, sid, h("why"))
    expect_revert("Revoked", q.guest.open_session, session_label("revoke-2"), "lr", h("c"), [q.host.account.address])
    q.guest.abort_session(sid, h("host revoked"))
    # a revoked guest can no longer write to an active session either
    sid3 = opened(q, "revoke-3", [q.host2.account.address])
    q.host2.join_session(sid3)
    q.admin.revoke(q.guest.account.address)
    expect_revert("Revoked", q.guest.submit_round, sid3, 1, h("c"), h("d"))
    expect_revert("Revoked", q.guest.finalize, sid3, h("m"), h("x"))
    expect_revert("Revoked", q.guest.abort_session, sid3, h("r"))


# ----------------------------------------------------------------- sessions


def test_only_a_registered_guest_opens_a_session(p):
    others = [p.host.account.address]
    expect_revert("WrongRole", p.host.open_session, session_label("o-1"), "lr", h("c"), [p.guest.account.address])
    expect_revert("WrongRole", p.auditor.open_session, session_label("o-2"), "lr", h("c"), others)
    expect_revert("NotRegistered", p.outsider.open_session, session_label("o-3"), "lr", h("c"), others)


def test_opening_checks_the_named_participants(p):
    label = session_label("o-4")
    expect_revert("NotRegistered", p.guest.open_session, label, "lr", h("c"), [dev_account(6).address])
    expect_revert("WrongRole", p.guest.open_session, label, "lr", h("c"), [p.auditor.account.address])
    expect_revert("DuplicateParticipant", p.guest.open_session, label, "lr", h("c"),
                  [p.host.account.address, p.host.account.address])
    expect_revert("DuplicateParticipant", p.guest.open_session, label, "lr", h("c"), [p.guest.account.address])
    expect_revert("BadParticipantCount", p.guest.open_session, label, "lr", h("c"), [])
    err = expect_revert("ZeroValue", p.guest.open_session, ZERO32, "lr", h("c"), [p.host.account.address])
    assert err.args_dict == {"field": "label"}
    expect_revert("ZeroValue", p.guest.open_session, label, "lr", ZERO32, [p.host.account.address])
    expect_revert("InvalidText", p.guest.open_session, label, "", h("c"), [p.host.account.address])
    p.guest.open_session(label, "gmm", h("c"), [p.host.account.address])
    err = expect_revert("SessionExists", p.guest.open_session, label, "lr", h("c"), [p.host.account.address])
    assert err.args_dict == {"sessionId": "0x" + p.guest.session_id(label).hex()}


# ----------------------------------------------------------------- session ids


def test_the_session_id_is_derived_from_chain_contract_opener_and_label(p):
    label = session_label("id-1")
    sid = p.guest.session_id(label)
    assert sid == session_id(p.guest.chain_id, p.address, p.guest.account.address, label)
    assert sid == p.auditor.contract.functions.sessionIdOf(p.guest.account.address, label).call()
    assert p.auditor.session_id(label, opener=p.guest.account.address) == sid
    result = p.guest.open_session(label, "lr", h("c"), [p.host.account.address])
    opened_event = result["events"][0]
    assert opened_event["event"] == "SessionOpened"
    assert (opened_event["args"]["sessionId"], opened_event["args"]["label"]) == ("0x" + sid.hex(),
                                                                                  "0x" + label.hex())
    assert p.auditor.session(sid)["guest"] == p.guest.account.address
    # the same label on another contract (or chain) is another id
    assert session_id(p.guest.chain_id, dev_account(9).address, p.guest.account.address, label) != sid
    assert session_id(p.guest.chain_id + 1, p.address, p.guest.account.address, label) != sid


def test_another_guest_cannot_squat_a_session_id(w3):
    q = setup_contract(w3)
    q.admin.register_participant(dev_account(6).address, "guest", "Rival Hospital")
    rival = AuditClient(w3, q.address, dev_account(6))
    label = session_label("squat-1")
    # the rival front-runs the guest's job id: it only ever gets its own id
    rival_result = rival.open_session(label, "lr", h("rival"), [q.host.account.address])
    rival_sid = rival.session_id(label)
    assert rival_result["events"][0]["args"]["sessionId"] == "0x" + rival_sid.hex()
    guest_sid = q.guest.session_id(label)
    assert rival_sid != guest_sid
    expect_revert("UnknownSession", q.guest.session, guest_sid)
    # the guest opens its session under that label undisturbed, and the host can tell the two apart
    q.guest.open_session(label, "lr", h("mine"), [q.host.account.address])
    assert q.host.session(guest_sid)["guest"] == q.guest.account.address
    assert q.host.session(rival_sid)["guest"] == rival.account.address
    assert [e["args"]["guest"] for e in q.host.sessions_labelled(label)] == [rival.account.address,
                                                                             q.guest.account.address]
    # an id already taken cannot be taken again, not even by its own opener
    err = expect_revert("SessionExists", rival.open_session, label, "gmm", h("again"), [q.host.account.address])
    assert err.args_dict == {"sessionId": "0x" + rival_sid.hex()}
    assert q.host.session(rival_sid)["algorithm"] == "lr"


def test_a_session_is_active_once_everyone_joined(p):
    sid = opened(p, "j-1")
    info = p.guest.session(sid)
    assert (info["status"], info["joined"], info["participants"]) == (
        "opened", 1, [p.guest.account.address, p.host.account.address])
    expect_revert("NotParticipant", p.host2.join_session, sid)
    expect_revert("AlreadyJoined", p.guest.join_session, sid)
    result = p.host.join_session(sid)
    assert [e["event"] for e in result["events"]] == ["SessionJoined", "SessionActivated"]
    assert p.guest.session(sid)["status"] == "active"
    expect_revert("WrongSessionState", p.host.join_session, sid)


def test_an_unknown_session_is_refused(p):
    sid = p.guest.session_id(session_label("never-opened"))
    expect_revert("UnknownSession", p.host.join_session, sid)
    expect_revert("UnknownSession", p.host.submit_round, sid, 1, h("c"), h("d"))
    expect_revert("UnknownSession", p.guest.session, sid)
    expect_revert("UnknownSession", p.guest.round_state, sid, 1)


# ----------------------------------------------------------------- rounds


def test_no_round_before_the_session_is_active(p):
    sid = opened(p, "r-0")
    err = expect_revert("WrongSessionState", p.guest.submit_round, sid, 1, h("c"), h("d"))
    assert err.args_dict["status"] == "opened"


def test_rounds_only_go_forward_and_nothing_is_overwritten(p):
    sid = active(p, "r-1")
    expect_revert("RoundOutOfOrder", p.guest.submit_round, sid, 0, h("c0"), h("d0"))
    p.guest.submit_round(sid, 1, h("c1"), h("d1"))
    p.guest.submit_round(sid, 3, h("c3"), h("d3"))  # rounds may skip numbers
    err = expect_revert("RoundOutOfOrder", p.guest.submit_round, sid, 2, h("c2"), h("d2"))
    assert (err.args_dict["round"], err.args_dict["lastRound"]) == (2, 3)
    expect_revert("DuplicateRound", p.guest.submit_round, sid, 3, h("other"), h("other"))
    expect_revert("DuplicateRound", p.guest.submit_round, sid, 1, h("other"), h("other"))
    assert p.guest.round(sid, 3, p.guest.account.address)["commitment"] == "0x" + h("c3").hex()
    assert p.guest.round(sid, 2, p.guest.account.address) is None
    assert p.guest.member(sid, p.guest.account.address)["last_round"] == 3
    expect_revert("ZeroValue", p.host.submit_round, sid, 1, ZERO32, h("d1"))
    expect_revert("ZeroValue", p.host.submit_round, sid, 1, h("c1"), ZERO32)
    expect_revert("NotParticipant", p.host2.submit_round, sid, 1, h("c"), h("d"))
    expect_revert("NotRegistered", p.outsider.submit_round, sid, 1, h("c"), h("d"))


def test_a_round_is_attested_when_all_digests_are_equal(p):
    sid = active(p, "r-2")
    first = p.guest.submit_round(sid, 1, h("g"), h("t1"))
    assert [e["event"] for e in first["events"]] == ["RoundSubmitted"]
    assert p.guest.round_state(sid, 1) == "pending"
    last = p.host.submit_round(sid, 1, h("hh"), h("t1"))
    assert [e["event"] for e in last["events"]] == ["RoundSubmitted", "RoundAttested"]
    assert last["events"][1]["args"]["transcriptDigest"] == "0x" + h("t1").hex()
    assert p.guest.round_state(sid, 1) == "attested"


def test_a_round_is_disputed_when_digests_differ(p):
    sid = active(p, "r-3")
    p.host.submit_round(sid, 1, h("hh"), h("t1"))
    last = p.guest.submit_round(sid, 1, h("g"), h("t1-other"))
    assert [e["event"] for e in last["events"]] == ["RoundSubmitted", "RoundDisputed"]
    assert p.host.round_state(sid, 1) == "disputed"


def test_round_states_of_many_rounds_come_in_one_batch_and_match_one_by_one(p):
    sid = active(p, "r-batch")
    p.guest.submit_round(sid, 1, h("g1"), h("t1"))
    p.host.submit_round(sid, 1, h("h1"), h("t1"))
    p.guest.submit_round(sid, 2, h("g2"), h("t2"))
    assert p.auditor.round_states(sid, [1, 2, 3]) == ["attested", "pending", "pending"] == \
        [p.auditor.round_state(sid, r) for r in (1, 2, 3)]
    assert p.auditor.round_states(sid, []) == []
    expect_revert("UnknownSession", p.auditor.round_states, h("r-batch-unknown"), [1, 2])


def test_more_than_two_participants(p):
    p.guest.open_session(session_label("multi-1"), "horizontal-lr", h("cfg"),
                         [p.host.account.address, p.host2.account.address])
    sid = p.guest.session_id(session_label("multi-1"))
    p.host.join_session(sid)
    assert p.guest.session(sid)["status"] == "opened"
    p.host2.join_session(sid)
    assert p.guest.session(sid)["status"] == "active"
    for r, digests in ((1, ("a", "a", "a")), (2, ("b", "b", "c"))):
        results = [c.submit_round(sid, r, h(f"c{r}{i}"), h(d)) for i, (c, d) in
                   enumerate(zip((p.guest, p.host, p.host2), digests, strict=True))]
        assert [len(x["events"]) for x in results] == [1, 1, 2]
    assert (p.guest.round_state(sid, 1), p.guest.round_state(sid, 2)) == ("attested", "disputed")
    p.guest.finalize(sid, h("m0"), h("metrics"))
    p.host.finalize(sid, h("m1"))
    assert p.guest.session(sid)["status"] == "active"
    p.host2.finalize(sid, h("m2"))
    assert p.guest.session(sid)["status"] == "closed"


def test_round_gas_stays_well_under_100k(p):
    sid = active(p, "gas-1")
    first = p.guest.submit_round(sid, 1, h("c"), h("d"))
    attesting = p.host.submit_round(sid, 1, h("c2"), h("d"))
    assert first["gas_used"] < 90_000 and attesting["gas_used"] < 90_000


# ----------------------------------------------------------------- close and abort


def test_finalize_closes_the_session_and_a_closed_session_accepts_nothing(p):
    sid = active(p, "f-1")
    p.guest.submit_round(sid, 1, h("c"), h("d"))
    p.host.submit_round(sid, 1, h("c"), h("d"))
    expect_revert("MetricsHashRequired", p.guest.finalize, sid, h("model"))
    expect_revert("MetricsHashNotAllowed", p.host.finalize, sid, h("model"), h("metrics"))
    expect_revert("ZeroValue", p.host.finalize, sid, ZERO32)
    p.host.finalize(sid, h("host-model"))
    expect_revert("AlreadyFinalized", p.host.finalize, sid, h("host-model-2"))
    expect_revert("AlreadyFinalized", p.host.submit_round, sid, 2, h("c"), h("d"))
    p.guest.submit_round(sid, 2, h("c"), h("d"))  # the guest is still at work
    closing = p.guest.finalize(sid, h("guest-model"), h("metrics"))
    assert [e["event"] for e in closing["events"]] == ["PartyFinalized", "SessionClosed"]
    info = p.guest.session(sid)
    assert (info["status"], info["finalized"], info["metrics_hash"]) == ("closed", 2, "0x" + h("metrics").hex())
    assert p.guest.member(sid, p.host.account.address)["model_commitment"] == "0x" + h("host-model").hex()
    for call in (lambda: p.guest.submit_round(sid, 3, h("c"), h("d")),
                 lambda: p.guest.abort_session(sid, h("late")),
                 lambda: p.guest.finalize(sid, h("x"), h("y")),
                 lambda: p.host.join_session(sid)):
        assert expect_revert("WrongSessionState", call).args_dict["status"] == "closed"


def test_any_participant_aborts_with_a_reason(p):
    sid = opened(p, "a-1")
    expect_revert("NotParticipant", p.host2.abort_session, sid, h("why"))
    expect_revert("ZeroValue", p.host.abort_session, sid, ZERO32)
    result = p.host.abort_session(sid, h("host data missing"))  # before even joining
    assert result["events"][0]["args"]["reasonHash"] == "0x" + h("host data missing").hex()
    info = p.guest.session(sid)
    assert (info["status"], info["aborted_by"]) == ("aborted", p.host.account.address)
    expect_revert("WrongSessionState", p.host.join_session, sid)
    expect_revert("WrongSessionState", p.guest.abort_session, sid, h("again"))
    sid2 = active(p, "a-2")
    p.guest.abort_session(sid2, h("guest stopped"))
    expect_revert("WrongSessionState", p.host.submit_round, sid2, 1, h("c"), h("d"))


def test_an_idle_session_expires_after_its_timeout_and_not_before(p):
    p.guest.open_session(session_label("exp-1"), "lr", h("exp-1"), [p.host.account.address], timeout=1)
    sid = p.guest.session_id(session_label("exp-1"))
    info = p.guest.session(sid)
    assert info["timeout"] == 1 and info["last_activity"] > 0
    err = expect_revert("NotExpired", p.host.expire_session, sid)  # the next block is only 1 s later
    assert err.args_dict["expiresAt"] == info["last_activity"] + 1
    expect_revert("NotParticipant", p.host2.expire_session, sid)
    time.sleep(1.1)  # blocks carry the wall-clock second (docs/chain.md)
    p.host.join_session(sid)  # activity resets the clock
    assert p.guest.session(sid)["last_activity"] > info["last_activity"]
    time.sleep(2.1)
    result = p.host.expire_session(sid)
    (event,) = result["events"]
    assert (event["event"], event["args"]["party"]) == ("SessionExpired", p.host.account.address)
    assert event["args"]["lastActivity"] == p.guest.session(sid)["last_activity"]
    info = p.guest.session(sid)
    assert (info["status"], info["aborted_by"]) == ("expired", p.host.account.address)
    for call in (lambda: p.guest.submit_round(sid, 1, h("c"), h("d")), lambda: p.guest.expire_session(sid),
                 lambda: p.guest.abort_session(sid, h("late"))):
        assert expect_revert("WrongSessionState", call).args_dict["status"] == "expired"


def test_a_session_in_use_does_not_expire_and_the_timeout_is_required(p):
    sid = active(p, "exp-2")  # default timeout: an hour
    p.guest.submit_round(sid, 1, h("c"), h("d"))
    assert p.guest.session(sid)["timeout"] == 3600
    expect_revert("NotExpired", p.guest.expire_session, sid)
    closed = full_session(p, "exp-3", rounds=1)
    expect_revert("WrongSessionState", p.guest.expire_session, closed)
    with pytest.raises(Exception, match="timeout"):
        p.guest.open_session(session_label("exp-4"), "lr", h("c"), [p.host.account.address], timeout=0)
    err = expect_revert("ZeroValue", p.guest._transact, "openSession", session_label("exp-4"), "lr", h("c"),
                        [p.host.account.address], 0)  # past the client's own check
    assert err.args_dict["field"] == "timeout"


def test_a_full_session_leaves_every_record(p):
    sid = full_session(p, "full-1", rounds=2, dispute=2)
    assert p.auditor.session(sid)["status"] == "closed"
    assert [p.auditor.round_state(sid, r) for r in (1, 2)] == ["attested", "disputed"]


# ----------------------------------------------------------------- errors


def test_revert_message_reads_like_the_solidity_error(p):
    sid = active(p, "msg-1")
    p.host.submit_round(sid, 3, h("c"), h("d"))
    err = expect_revert("DuplicateRound", p.host.submit_round, sid, 3, h("c"), h("d"))
    assert str(err) == f"DuplicateRound(sessionId=0x{sid.hex()}, round=3, party={p.host.account.address})"
    assert err.tx_hash.startswith("0x") and len(err.tx_hash) == 66  # it was mined, and failed


def test_a_read_only_client_cannot_write(w3, p):
    reader = AuditClient(w3, p.address)
    with pytest.raises(Exception, match="read-only"):
        reader.join_session(h("x"))
    with pytest.raises(Exception, match="give the opener"):
        reader.session_id(session_label("x"))


def test_every_custom_error_of_the_contract_is_tested():
    declared = {e["name"] for e in load_artifact()["abi"] if e["type"] == "error"}
    tested = set(re.findall(r'expect_revert\("(\w+)"', Path(__file__).read_text()))
    tested |= {"InvalidRole"}  # checked directly above
    assert declared - tested == set()


def test_waiting_for_a_session_status(p):
    import threading

    from chain.errors import ChainError

    label = session_label("wait-1")
    sid = p.host.session_id(label, opener=p.guest.account.address)
    timer = threading.Timer(0.3, lambda: p.guest.open_session(label, "lr", h("c"), [p.host.account.address]))
    timer.start()
    assert p.host.wait_for_status(sid, "opened", timeout=30, poll=0.05)["status"] == "opened"
    timer.join()
    with pytest.raises(ChainError, match="still opened after 0 s"):
        p.guest.wait_for_status(sid, "active", timeout=0.2, poll=0.05)
    p.host.abort_session(sid, h("no"))
    with pytest.raises(ChainError, match="is aborted, not active"):
        p.guest.wait_for_status(sid, "active", timeout=5)
