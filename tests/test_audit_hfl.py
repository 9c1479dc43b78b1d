"""`vflchain audit` on horizontal (hfl-lr) run directories: a coordinator and two clients.

One small job (2 clients, 2 global rounds, 1024-bit keys) runs once for the module as
`vflchain run` does it (chain, coordinator and clients as separate processes); the
audits read the persisted chain state. Each tamper case works on a copy of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chain.audit import failures
from nodes.cli import main as cli
from nodes.commands.audit import audit_dirs

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
ROLES = ("coordinator", "client1", "client2")


@pytest.fixture(scope="module")
def hfl_run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audit_hfl")
    data, state, out = root / "data", root / "chain", root / "run"
    assert cli(["data", "breast", "--horizontal", "2", "--out", str(data)]) == 0
    shards = ", ".join(json.dumps(str(data / f"client{k}.csv")) for k in (1, 2))
    sets = [f"federation.data=[{shards}]", "hfl.clients=2", "hfl.rounds=2",
            'federation.clients=["127.0.0.1:0", "127.0.0.1:0"]',
            'federation.coordinator=["127.0.0.1:0", "127.0.0.1:0"]',
            f"chain.state={state}", "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.connect_timeout=30.0"]
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(REPO / "examples" / "breast_hfl.toml"),
           "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {"run": out, "state": state}


@pytest.fixture
def hfl_copy(hfl_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(hfl_run["run"], dst, ignore=shutil.ignore_patterns("audit", "logs"))
    return dst


def audit(*dirs: Path) -> list:
    _, checks, _, _ = audit_dirs([str(d) for d in dirs], None, None, None)
    return failures(checks)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def write_lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def test_untouched_run_passes_with_every_round_digest_recomputed_from_the_manifests(hfl_run, tmp_path,
                                                                                      capsys) -> None:
    assert cli(["audit", str(hfl_run["run"]), "--report", str(tmp_path / "report")]) == 0
    assert "audit passed" in capsys.readouterr().out
    result = json.loads((tmp_path / "report" / "audit.json").read_text())
    assert set(result["parties"]) == set(ROLES)
    checks = result["checks"]
    rounds = len(lines(hfl_run["run"] / "coordinator" / "rounds.jsonl"))
    assert rounds == 5  # handshake, keys, 2 training rounds, close
    manifests = {(c["party"], c["round"]) for c in checks if c["check"] == "manifest digest" and c["ok"]}
    assert manifests == {(r, n) for r in ROLES for n in range(1, rounds + 1)}
    own = {(c["party"], c["round"]) for c in checks if c["check"] == "transcript in manifest" and c["ok"]}
    assert own == {(r, n) for r in ("client1", "client2") for n in range(1, rounds + 1)}
    assert {c["party"]: c["ok"] for c in checks if c["check"] == "session role"} == dict.fromkeys(ROLES, True)
    assert [c["file"] for c in checks if c["check"] == "model commitment"] == [
        "aggregates.json", "model.json", "model.json"]
    assert [c["party"] for c in checks if c["check"] == "metrics hash"] == ["coordinator"]


def test_one_client_directory_alone_passes(hfl_run, tmp_path) -> None:
    assert cli(["audit", str(hfl_run["run"] / "client2"), "--report", str(tmp_path / "r")]) == 0


def test_session_audit_from_events_shows_all_participants(hfl_run, tmp_path, capsys) -> None:
    sid = json.loads((hfl_run["run"] / "client1" / "job.json").read_text())["session_id"]
    assert cli(["audit", "--session", sid, "--state", str(hfl_run["state"]), "--report", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert all(role in out for role in ROLES)
    result = json.loads((tmp_path / "s" / "audit.json").read_text())
    people = result["summary"]["participants"]
    assert [(p["role"], p["registered_role"], p["finalized"]) for p in people] == [
        ("coordinator", "guest", True), ("client1", "host", True), ("client2", "host", True)]
    accounts = {r: json.loads((hfl_run["run"] / r / "job.json").read_text())["account"] for r in ROLES}
    assert [p["address"] for p in people] == [accounts[r] for r in ROLES]
    submitted = {e["role"] for e in result["timeline"] if e["event"] == "RoundSubmitted"}
    assert submitted == set(ROLES)
    assert "| client2 tx |" in (tmp_path / "s" / "report.md").read_text()


def test_a_manifest_with_a_message_left_out_is_caught(hfl_copy) -> None:
    path = hfl_copy / "client1" / "manifests.jsonl"
    rows = lines(path)
    row = next(r for r in rows if r["round"] == 3)
    row["lines"] = [x for x in row["lines"] if "|client2|" not in x]  # drop the other client's update
    write_lines(path, rows)
    assert [(f.check, f.party, f.file, f.round) for f in audit(hfl_copy)] == [
        ("manifest digest", "client1", "manifests.jsonl", 3)]


def test_a_client_message_missing_from_the_manifest_is_caught(hfl_copy) -> None:
    path = hfl_copy / "client2" / "transcript.jsonl"
    rows = lines(path)
    i = next(i for i, e in enumerate(rows) if e["round"] == 4 and e["direction"] == "sent")
    rows[i]["size"] += 1  # the client's record of what it sent no longer matches the manifest
    write_lines(path, rows)
    fails = audit(hfl_copy)
    assert [(f.check, f.party, f.file, f.round) for f in fails] == [
        ("transcript in manifest", "client2", "transcript.jsonl", 4)]
    assert fails[0].found.startswith("1 missing")


def test_an_edited_coordinator_transcript_is_caught(hfl_copy) -> None:
    path = hfl_copy / "coordinator" / "transcript.jsonl"
    write_lines(path, [e for e in lines(path) if not (e["round"] == 2 and e["tag"] == "key_ok")])
    assert [(f.check, f.party, f.file, f.round) for f in audit(hfl_copy)] == [
        ("transcript digest", "coordinator", "transcript.jsonl", 2)]


@pytest.mark.parametrize("role", ["coordinator", "client1"])
def test_an_edited_checkpoint_is_caught(hfl_copy, role) -> None:
    path = hfl_copy / role / "checkpoints" / "round-0004.json"
    cp = json.loads(path.read_text())
    key = next(iter(cp["params"]))
    cp["params"][key] = str(cp["params"][key]) + "0"
    path.write_text(json.dumps(cp, indent=2))
    assert [(f.check, f.party, f.file, f.round) for f in audit(hfl_copy)] == [
        ("checkpoint commitment", role, "checkpoints/round-0004.json", 4)]


def test_edited_aggregates_are_caught(hfl_copy) -> None:
    path = hfl_copy / "coordinator" / "aggregates.json"
    path.write_text(path.read_text() + " ")
    assert [(f.check, f.party, f.file) for f in audit(hfl_copy)] == [
        ("model commitment", "coordinator", "aggregates.json")]


def test_a_client_directory_of_another_account_is_caught(hfl_copy) -> None:
    """client2's files shown as client1's: its account is not client1 on chain nor in the coordinator's list."""
    path = hfl_copy / "client1" / "job.json"
    job = json.loads(path.read_text())
    job["account"] = json.loads((hfl_copy / "client2" / "job.json").read_text())["account"]
    path.write_text(json.dumps(job))
    fails = {(f.check, f.party) for f in audit(hfl_copy)}
    assert ("session role", "client1") in fails and ("accounts", "") in fails
