"""`vflchain chain deploy|register|revoke|status|events|compile` on an embedded chain state directory."""

from __future__ import annotations

import json
import time

import pytest

from chain.accounts import dev_account
from chain.backends import connect_state
from chain.client import AuditClient, session_label
from chain.deploy import recorded
from nodes.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_deploy_register_status_and_events_without_a_server(tmp_path, capsys):
    state = str(tmp_path / "chain")
    code, out, _ = run(capsys, "chain", "deploy", "--state", state)
    assert code == 0 and "VflAudit deployed at 0x" in out
    code, out, _ = run(capsys, "chain", "deploy", "--state", state)
    assert code == 0 and "already deployed" in out
    auditor = dev_account(4).address
    assert run(capsys, "chain", "register", auditor, "--role", "auditor", "--org", "Audit Co",
               "--state", state)[0] == 0
    assert run(capsys, "chain", "revoke", auditor, "--state", state)[0] == 0

    w3 = connect_state(state)
    address = recorded(state, w3)["address"]
    code, out, _ = run(capsys, "chain", "status", "--state", state, "--json")
    status = json.loads(out)
    assert status["contract"] == address and status["admin"] == dev_account(0).address
    assert [(x["role"], x["revoked"]) for x in status["participants"]] == [
        ("guest", False), ("host", False), ("auditor", True)]
    code, out, _ = run(capsys, "chain", "events", "--state", state, "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["AdminTransferred"] + ["ParticipantRegistered"] * 3 + [
        "ParticipantRevoked"]
    assert AuditClient(w3, address).events() == events
    code, out, _ = run(capsys, "chain", "status", "--state", state)
    assert code == 0 and "Audit Co" in out


def test_events_of_one_session_by_job_id(tmp_path, capsys):
    from chain.backends import close, open_chain

    state = str(tmp_path / "chain")
    run(capsys, "chain", "deploy", "--state", state)
    w3 = open_chain("", state, write=True)
    try:
        address = recorded(state, w3)["address"]
        guest = AuditClient(w3, address, dev_account(1))
        guest.open_session(session_label("job-7"), "lr", b"\x01" * 32, [dev_account(2).address])
        guest.open_session(session_label("job-8"), "lr", b"\x01" * 32, [dev_account(2).address])
        sid = guest.session_id(session_label("job-7"))
    finally:
        close(w3)
    code, out, _ = run(capsys, "chain", "events", "--state", state, "--session", "job-7", "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["SessionOpened", "SessionJoined"]
    assert {e["args"]["sessionId"] for e in events} == {"0x" + sid.hex()}
    code, out, _ = run(capsys, "chain", "events", "--state", state, "--session", "0x" + sid.hex(), "--json")
    assert [json.loads(line) for line in out.splitlines()] == events
    code, _, err = run(capsys, "chain", "events", "--state", state, "--session", "job-9")
    assert code != 0 and "no session was opened for this job id" in err


@pytest.mark.parametrize("argv, message", [
    (["chain", "status", "--rpc", "http://127.0.0.1:9"], "no JSON-RPC node answers at http://127.0.0.1:9"),
    (["chain", "events", "--session", "0x12"], "a session id is 0x followed by 64 hex digits"),
])
def test_chain_command_errors_are_one_line(tmp_path, capsys, argv, message):
    code, _, err = run(capsys, *argv, *(["--state", str(tmp_path)] if "--rpc" not in argv else []))
    assert code == 1
    assert err.count("\n") == 1 and message in err


def test_status_without_a_deployment_says_what_to_do(tmp_path, capsys):
    state = str(tmp_path / "chain")
    run(capsys, "chain", "deploy", "--state", state)
    code, _, err = run(capsys, "chain", "status", "--state", str(tmp_path / "other"))
    assert code == 1 and "no embedded chain here" in err


def _open_sessions(state: str, timeouts: dict[str, int]) -> dict[str, bytes]:
    """Open one session per job id (dev guest with the dev host), each with its idle timeout."""
    from chain.backends import close, open_chain

    w3 = open_chain("", state, write=True)
    try:
        guest = AuditClient(w3, recorded(state, w3)["address"], dev_account(1))
        for job, timeout in timeouts.items():
            guest.open_session(session_label(job), "lr", b"\x01" * 32, [dev_account(2).address], timeout=timeout)
        return {job: guest.session_id(session_label(job)) for job in timeouts}
    finally:
        close(w3)


def _statuses(capsys, state: str) -> dict[str, str]:
    code, out, _ = run(capsys, "chain", "sessions", "--state", state, "--json")
    assert code == 0
    return {s["session_id"]: s["status"] for s in json.loads(out)}


def test_sessions_lists_every_session_with_its_status(tmp_path, capsys):
    state = str(tmp_path / "chain")
    run(capsys, "chain", "deploy", "--state", state)
    sids = _open_sessions(state, {"job-a": 3600, "job-b": 60})
    assert _statuses(capsys, state) == {"0x" + s.hex(): "opened" for s in sids.values()}
    code, out, _ = run(capsys, "chain", "sessions", "--state", state)
    assert code == 0 and "2 sessions of 0x" in out and "opened" in out and "3600 s" in out and "in " in out


def test_a_participant_aborts_its_stranded_session(tmp_path, capsys):
    state = str(tmp_path / "chain")
    run(capsys, "chain", "deploy", "--state", state)
    sids = _open_sessions(state, {"job-killed": 3600, "job-other": 3600})
    code, out, _ = run(capsys, "chain", "abort", "job-killed", "--role", "host", "--reason", "host killed",
                       "--state", state)
    assert code == 0 and f"session 0x{sids['job-killed'].hex()} aborted by {dev_account(2).address}" in out
    assert _statuses(capsys, state)["0x" + sids["job-killed"].hex()] == "aborted"
    code, _, err = run(capsys, "chain", "abort", "0x" + sids["job-killed"].hex(), "--state", state)
    assert code == 1 and err.count("\n") == 1 and "WrongSessionState" in err
    w3 = connect_state(state)
    assert AuditClient(w3, recorded(state, w3)["address"]).session(sids["job-other"])["status"] == "opened"


def test_expire_refuses_before_the_timeout_and_ends_an_idle_session(tmp_path, capsys):
    state = str(tmp_path / "chain")
    run(capsys, "chain", "deploy", "--state", state)
    sids = _open_sessions(state, {"job-idle": 1, "job-busy": 3600})
    code, _, err = run(capsys, "chain", "expire", "job-busy", "--state", state)
    assert code == 1 and err.count("\n") == 1 and "NotExpired" in err
    time.sleep(2.1)  # blocks carry the wall-clock second (docs/chain.md): past job-idle's timeout
    code, out, _ = run(capsys, "chain", "expire", "job-idle", "--role", "host", "--state", state)
    assert code == 0 and "expired by" in out
    assert _statuses(capsys, state) == {"0x" + sids["job-idle"].hex(): "expired",
                                        "0x" + sids["job-busy"].hex(): "opened"}
