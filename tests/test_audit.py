"""`vflchain audit`: a real job's run directories pass against the chain, and every tampering is caught by name.

One small LR job (1024-bit keys, 2 epochs), one PSI-only job and one `vflchain predict`
job scoring with the LR job's models run once for the module as the commands do it:
the embedded chain, host and guest as separate processes. The chain process has stopped when the audits run, so they read the
persisted state directory. Each tamper case works on a copy of the run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chain.audit import audit_party, failures, load_history, load_party_files, session_checks
from nodes.cli import main as cli
from nodes.commands.audit import audit_dirs, config_commitment_of

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def run_job(out: Path, data: Path, state: Path, config: str, *extra: str, command: tuple[str, ...] = ("run",)) -> None:
    sets = ["guest.data=" + str(data / "guest.csv"), "host.data=" + str(data / "host.csv"),
            "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={state}",
            "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0", *extra]
    cmd = [sys.executable, "-m", "nodes.cli", *command, "--config", str(REPO / "examples" / config),
           "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An LR job and a PSI job on one embedded chain, both ended (no chain process left)."""
    root = tmp_path_factory.mktemp("audit")
    data, state = root / "data", root / "chain"
    assert cli(["data", "breast", "--out", str(data), "--overlap", "0.9"]) == 0
    run_job(root / "lr", data, state, "breast_lr.toml", "lr.epochs=2")
    run_job(root / "psi", data, state, "breast_lr.toml", "job.algorithm=psi")
    run_job(root / "predict", data, state, "breast_lr.toml", command=("predict", "--model", str(root / "lr")))
    return {"lr": root / "lr", "psi": root / "psi", "predict": root / "predict", "state": state, "data": data}


@pytest.fixture
def lr_copy(runs, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(runs["lr"], dst, ignore=shutil.ignore_patterns("audit", "logs"))
    return dst


def audit(*dirs: Path, state: Path | None = None) -> list:
    _, checks, _, _ = audit_dirs([str(d) for d in dirs], None, str(state) if state else None, None)
    return failures(checks)


def only(fails: list, check: str) -> list:
    return [f for f in fails if f.check == check]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def write_lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


# -- the untouched run --------------------------------------------------------------------

def test_untouched_run_passes_on_the_persisted_embedded_chain(runs, capsys) -> None:
    report = runs["lr"].parent / "report-lr"
    assert cli(["audit", str(runs["lr"]), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "audit passed" in out and "7 attested, 0 disputed" in out
    page = (report / "report.html").read_text()
    guest = json.loads((runs["lr"] / "guest" / "job.json").read_text())
    assert page.startswith("<!DOCTYPE html>") and guest["session_id"] in page and "PASS" in page
    assert "<script" not in page and "http" not in page.split("chain id")[0]  # self-contained
    assert "validate auc" in page and "RoundAttested" in page and "Host hospital" in page
    md = (report / "report.md").read_text()
    assert "**PASS**" in md and "| 7 | close |" in md
    result = json.loads((report / "audit.json").read_text())
    names = {c["check"] for c in result["checks"]}
    assert {"checkpoint commitment", "transcript digest", "model commitment", "metrics hash",
            "config recomputed", "round attested", "participants", "same session"} <= names
    assert result["ok"] and all(c["ok"] for c in result["checks"])
    # evaluation and communication cost: in the report, and each party's communication.json equals the audit's
    assert "Evaluation (guest, metrics.json)" in page and "predicted 1" in page and "cumulative lift" in page
    assert "<svg" in page and "precision-recall curve" in page
    assert "<h2>Communication</h2>" in page and "## Communication: host" in md
    comm = result["communication"]
    assert comm["guest"]["totals"]["sent_bytes"] == comm["host"]["totals"]["received_bytes"] > 0
    for role in ("guest", "host"):
        doc = json.loads((runs["lr"] / role / "communication.json").read_text())
        assert doc["totals"] == comm[role]["totals"] and doc["role"] == role


def test_a_single_party_directory_is_audited_alone(runs) -> None:
    assert cli(["audit", str(runs["lr"] / "host"), "--report", str(runs["lr"].parent / "r-host")]) == 0


def test_session_is_rebuilt_from_events_alone(runs, capsys) -> None:
    sid = json.loads((runs["lr"] / "guest" / "job.json").read_text())["session_id"]
    report = runs["lr"].parent / "report-session"
    assert cli(["audit", "--session", sid, "--state", str(runs["state"]), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    for text in ("Guest hospital", "Host hospital", "SessionOpened", "RoundAttested", "SessionClosed",
                 "7 attested, 0 disputed, 0 pending", "session closed"):
        assert text in out
    assert "PASS" in (report / "report.html").read_text()


# -- tampering: each caught and named ------------------------------------------------------

def test_an_edited_checkpoint_value_is_caught(lr_copy) -> None:
    cp_path = lr_copy / "guest" / "checkpoints" / "round-0006.json"
    cp = json.loads(cp_path.read_text())
    cp["params"]["weights"][0] += 1e-9
    cp_path.write_text(json.dumps(cp))
    fails = audit(lr_copy)
    assert [(f.check, f.party, f.file, f.round) for f in fails] == [
        ("checkpoint commitment", "guest", "checkpoints/round-0006.json", 6)]
    assert fails[0].expected.startswith("0x") and fails[0].found.startswith("0x") and fails[0].expected != fails[0].found


def test_a_removed_checkpoint_is_caught(lr_copy, capsys) -> None:
    (lr_copy / "host" / "checkpoints" / "round-0003.json").unlink()
    assert cli(["audit", str(lr_copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  checkpoint present: [host] checkpoints/round-0003.json round 3" in out
    assert "expected present, found missing" in out and "audit FAILED: 1 of" in out
    assert (lr_copy / "audit" / "report.html").exists()


def test_an_edited_model_is_caught(lr_copy) -> None:
    model = json.loads((lr_copy / "guest" / "model.json").read_text())
    model["intercept"] = model["intercept"] + 0.5
    (lr_copy / "guest" / "model.json").write_text(json.dumps(model, indent=2) + "\n")
    fails = audit(lr_copy)
    assert [(f.check, f.party, f.file) for f in fails] == [("model commitment", "guest", "model.json")]


def test_edited_metrics_are_caught(lr_copy) -> None:
    path = lr_copy / "guest" / "metrics.json"
    path.write_text(path.read_text().replace("0.9", "0.99", 1))
    assert [(f.check, f.file) for f in audit(lr_copy)] == [("metrics hash", "metrics.json")]


@pytest.mark.parametrize("how", ["edit", "delete"])
def test_an_edited_or_deleted_transcript_line_is_caught(lr_copy, how) -> None:
    path = lr_copy / "host" / "transcript.jsonl"
    rows = lines(path)
    i = next(i for i, e in enumerate(rows) if e["round"] == 5)
    if how == "edit":
        rows[i]["size"] += 1
    else:
        del rows[i]
    write_lines(path, rows)
    fails = audit(lr_copy)
    assert [(f.check, f.party, f.file, f.round, f.field) for f in fails] == [
        ("transcript digest", "host", "transcript.jsonl", 5, "transcript_digest")]


def test_a_run_directory_from_another_session_is_caught(runs, tmp_path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(runs["lr"] / "guest", mixed / "guest")
    shutil.copytree(runs["psi"] / "host", mixed / "host")
    fails = audit(mixed)
    other = json.loads((runs["psi"] / "host" / "job.json").read_text())["session_id"]
    assert any(f.check == "same session" and f.found == other for f in fails)
    host = [f for f in fails if f.party == "host"]
    assert any(f.check == "session id" and f.file == "job.json" and f.found == other for f in host)
    assert any(f.check == "algorithm" and f.found == "psi" for f in host)
    assert only(host, "round commitment") and only(host, "model commitment")


def test_a_round_missing_on_chain_is_caught(lr_copy) -> None:
    rounds = lr_copy / "guest" / "rounds.jsonl"
    rows = lines(rounds)
    forged = dict(rows[-1], round=8, tx_hash="0x" + "ab" * 32)
    write_lines(rounds, rows + [forged])
    cp = json.loads((lr_copy / "guest" / "checkpoints" / "round-0007.json").read_text())
    (lr_copy / "guest" / "checkpoints" / "round-0008.json").write_text(json.dumps(dict(cp, round=8)))
    fails = audit(lr_copy)
    assert [(f.check, f.file, f.round) for f in fails] == [("round on chain", "rounds.jsonl", 8)]
    assert fails[0].found == "none"


def test_a_round_on_chain_missing_from_the_files_is_caught(lr_copy) -> None:
    rounds = lr_copy / "host" / "rounds.jsonl"
    rows = lines(rounds)
    write_lines(rounds, [r for r in rows if r["round"] != 4])
    fails = audit(lr_copy)
    assert {(f.check, f.file, f.round) for f in fails} == {
        ("round in files", "rounds.jsonl", 4),  # on chain, not in the files
        ("rounds in order", "rounds.jsonl", 5),  # the files jump from 3 to 5
        ("checkpoint listed", "checkpoints/round-0004.json", 4),
        ("transcript round listed", "transcript.jsonl", 4)}


def test_an_edited_configuration_is_caught(lr_copy) -> None:
    path = lr_copy / "guest" / "job.json"
    job = json.loads(path.read_text())
    job["config"]["lr"]["epochs"] = 20
    path.write_text(json.dumps(job, indent=2))
    assert [(f.check, f.field) for f in audit(lr_copy)] == [("config recomputed", "config")]


def test_a_round_submitted_by_a_third_account_is_refused_by_the_contract() -> None:
    from chain_scenario import h, setup_contract

    from chain.backends import memory_chain
    from chain.client import session_label
    from chain.errors import ContractRevert

    p = setup_contract(memory_chain())
    p.guest.open_session(session_label("third-account"), "lr", h("config"), [p.host.account.address])
    sid = p.guest.session_id(session_label("third-account"))
    p.host.join_session(sid)
    p.guest.submit_round(sid, 1, h("g1"), h("t1"))
    intruders = ((p.host2, "NotParticipant"), (p.auditor, "NotParticipant"), (p.outsider, "NotRegistered"))
    for intruder, error in intruders:
        with pytest.raises(ContractRevert) as exc:
            intruder.submit_round(sid, 1, h("forged"), h("t1"))
        assert exc.value.name == error, exc.value
    p.host.submit_round(sid, 1, h("h1"), h("t1"))
    history = load_history(p.auditor, sid, timestamps=False)
    assert set(history.record["rounds"][1]) == {p.guest.account.address, p.host.account.address}
    assert history.record["round_states"] == {1: "attested"}
    assert not [c for c in session_checks(history) if not c.ok and c.check == "round attested"]


def test_a_disputed_round_fails_the_session_audit() -> None:
    from chain_scenario import full_session, setup_contract

    from chain.backends import memory_chain

    p = setup_contract(memory_chain())
    sid = full_session(p, "disputed", rounds=3, dispute=2)
    fails = failures(session_checks(load_history(p.auditor, sid, timestamps=False)))
    assert [(f.check, f.round, f.expected, f.found) for f in fails] == [("round attested", 2, "attested", "disputed")]


# -- prediction jobs (`vflchain predict`) ---------------------------------------------------

@pytest.fixture
def predict_copy(runs, tmp_path) -> Path:
    dst = tmp_path / "predict"
    shutil.copytree(runs["predict"], dst, ignore=shutil.ignore_patterns("audit", "logs"))
    return dst


def test_untouched_prediction_run_passes_and_is_linked_to_its_training_session(runs, tmp_path, capsys) -> None:
    assert cli(["audit", str(runs["predict"]), "--report", str(tmp_path / "report"), "-v"]) == 0
    out = capsys.readouterr().out
    assert "audit passed" in out and "model trained in session" in out
    result = json.loads((tmp_path / "report" / "audit.json").read_text())
    training = json.loads((runs["lr"] / "guest" / "job.json").read_text())
    assert result["summary"]["algorithm"] == "lr-predict"
    assert [(x["session_id"], x["algorithm"], x["status"]) for x in result["links"]] == [
        (training["session_id"], "lr", "closed")]
    linked = {c["party"]: c for c in result["checks"] if c["check"] == "training model"}
    assert set(linked) == {"guest", "host"} and all(c["ok"] for c in linked.values())
    for role in ("guest", "host"):  # each party named its training model's commitment before scoring,
        job = json.loads((runs["predict"] / role / "job.json").read_text())  # and closed with its own
        trained = json.loads((runs["lr"] / role / "job.json").read_text())
        models = json.loads((runs["predict"] / role / "checkpoints" / "round-0003.json").read_text())["params"]
        assert models["step"] == "models" and models["model_commitment"] == trained["model_commitment"]
        assert job["model_commitment"] != trained["model_commitment"]  # bound to the prediction session
    assert any(c["check"] == "predictions hash" and c["ok"] for c in result["checks"])
    assert "Linked sessions" in (tmp_path / "report" / "report.html").read_text()


def test_edited_predictions_are_caught(predict_copy) -> None:
    path = predict_copy / "guest" / "predictions.csv"
    text = path.read_text().splitlines(keepends=True)
    score_end = text[1].index(',"')  # the last digit of the first row's predict_score
    text[1] = text[1][:score_end - 1] + str((int(text[1][score_end - 1]) + 1) % 10) + text[1][score_end:]
    path.write_text("".join(text))
    fails = audit(predict_copy)
    assert [(f.check, f.party, f.file, f.field) for f in fails] == [
        ("predictions hash", "guest", "predictions.csv", "sha256(file)")]


def test_an_edited_model_copy_is_caught(predict_copy) -> None:
    path = predict_copy / "host" / "model.json"
    model = json.loads(path.read_text())
    model["weights"][0] += 0.25
    path.write_text(json.dumps(model, indent=2) + "\n")
    fails = audit(predict_copy)  # neither the prediction's commitment nor the training one reopens
    assert [(f.check, f.party, f.file) for f in fails] == [("model commitment", "host", "model.json"),
                                                           ("model used", "host", "model.json")]


def test_a_prediction_checked_against_another_training_session_fails_by_name(runs) -> None:
    """The link is checked, not assumed: against the PSI session, the algorithm and each model differ."""
    from chain.audit import training_link
    from chain.backends import connect_state
    from chain.client import AuditClient

    files = load_party_files(runs["predict"] / "guest")
    client = AuditClient(connect_state(runs["state"]), files.job["contract"])
    history = load_history(client, files.job["session_id"], timestamps=False)
    psi = json.loads((runs["psi"] / "guest" / "job.json").read_text())["session_id"]
    fails = failures(training_link(files, history, load_history(client, psi, timestamps=False)))
    assert [(f.check, f.expected, f.found) for f in fails][0] == ("training algorithm", "psi", "lr")
    assert [f.check for f in fails] == ["training algorithm", "training model"]
    info = training_link(files, history, None, "not on this chain")
    assert [(c.check, c.ok, c.detail) for c in info] == [("training session", True, "not compared: not on this chain")]


# -- cannot check: exit 2 -----------------------------------------------------------------

def test_no_chain_or_no_such_session_cannot_be_checked(lr_copy, tmp_path, capsys) -> None:
    assert cli(["audit", str(lr_copy), "--state", str(tmp_path / "nothing")]) == 2
    assert "cannot audit" in capsys.readouterr().out
    assert cli(["audit", str(lr_copy), "--rpc", "http://127.0.0.1:9"]) == 2
    for role in ("guest", "host"):
        path = lr_copy / role / "job.json"
        job = json.loads(path.read_text())
        job["session_id"] = "0x" + "42" * 32
        path.write_text(json.dumps(job))
    assert cli(["audit", str(lr_copy)]) == 2
    assert "is not on contract" in capsys.readouterr().out
    assert cli(["audit", str(tmp_path)]) == 2


def test_a_chain_that_cannot_be_read_cannot_be_checked(lr_copy, capsys, monkeypatch) -> None:
    """Whatever the chain's reader raises (py-evm's HeaderNotFound from a damaged state, ...): exit 2."""
    from eth.exceptions import HeaderNotFound

    from chain.client import AuditClient

    def unreadable(self, *args, **kwargs):
        raise HeaderNotFound("No canonical header for block number #3")

    monkeypatch.setattr(AuditClient, "events", unreadable)
    assert cli(["audit", str(lr_copy)]) == 2
    assert "cannot audit: cannot read the chain: HeaderNotFound: No canonical header" in capsys.readouterr().out


# -- an aborted run ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aborted(runs, tmp_path_factory) -> Path:
    """A PSI job whose guest fails (no common ids) after the handshake round and aborts the session."""
    root = tmp_path_factory.mktemp("aborted")
    data = root / "data"
    data.mkdir()
    (data / "guest.csv").write_text("id,y,a\n" + "".join(f"g{i},{i % 2},{i}\n" for i in range(20)))
    (data / "host.csv").write_text("id,b\n" + "".join(f"h{i},{i}\n" for i in range(20)))
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(REPO / "examples" / "breast_lr.toml"),
           "--out", str(root / "run")]
    for s in ["guest.data=" + str(data / "guest.csv"), "host.data=" + str(data / "host.csv"),
              "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={runs['state']}",
              "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0",
              "job.algorithm=psi"]:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "empty intersection" in res.stderr, res.stdout + res.stderr
    return root / "run"


@pytest.fixture
def aborted_copy(aborted, tmp_path) -> Path:
    dst = tmp_path / "aborted"
    shutil.copytree(aborted, dst, ignore=shutil.ignore_patterns("audit", "logs"))
    return dst


def test_an_aborted_run_audits_as_consistent_with_its_abort(aborted_copy, runs, capsys) -> None:
    guest = json.loads((aborted_copy / "guest" / "job.json").read_text())
    assert guest["status"] == "failed" and guest["rounds"] >= 1
    assert cli(["audit", str(aborted_copy), "-v"]) == 0
    out = capsys.readouterr().out
    result = json.loads((aborted_copy / "audit" / "audit.json").read_text())
    by = result["summary"]["aborted"]["role"]  # whichever party saw the empty intersection first
    other = "host" if by == "guest" else "guest"
    assert f"session ABORTED by the {by}" in out and "abort reason: empty intersection" in out
    assert "audit passed (session ABORTED)" in out and "FAIL" not in out
    checks = {(c["check"], c["party"]): c for c in result["checks"]}
    assert checks[("abort reason", by)]["ok"] and checks[("abort transaction", by)]["ok"]
    assert checks[("session aborted", other)]["ok"] and ("abort reason", other) not in checks
    assert "session closed" not in {c["check"] for c in result["checks"]}
    assert f"ABORTED by the {by}" in (aborted_copy / "audit" / "report.html").read_text()
    # an auditor with no files: the aborted session's history, the abort named, exit 0
    assert cli(["audit", "--session", guest["session_id"], "--state", str(runs["state"]),
                "--report", str(aborted_copy / "session-report")]) == 0
    assert f"session ABORTED by the {by}" in capsys.readouterr().out


def test_an_aborted_run_whose_error_is_not_the_reason_on_chain_fails(aborted_copy) -> None:
    by = next(r for r in ("guest", "host")
              if json.loads((aborted_copy / r / "job.json").read_text()).get("abort", {}).get("tx_hash"))
    path = aborted_copy / by / "job.json"
    job = json.loads(path.read_text())
    job["error"] = "the other party cheated"
    path.write_text(json.dumps(job))
    fails = audit(aborted_copy)
    assert [(f.check, f.party, f.file, f.field) for f in fails] == [("abort reason", by, "job.json", "error")]


def test_an_aborted_run_claiming_completion_fails(aborted_copy) -> None:
    path = aborted_copy / "host" / "job.json"
    job = json.loads(path.read_text())
    job["status"] = "complete"
    path.write_text(json.dumps(job))
    fails = audit(aborted_copy)
    assert [(f.check, f.party, f.expected, f.found) for f in fails] == [
        ("run status", "host", "failed (the session was aborted)", "complete")]


def test_a_committed_round_of_an_aborted_run_is_still_checked(aborted_copy) -> None:
    cp_path = aborted_copy / "host" / "checkpoints" / "round-0001.json"
    cp = json.loads(cp_path.read_text())
    cp["params"]["account"] = cp["params"]["peer_account"]
    cp_path.write_text(json.dumps(cp))
    fails = audit(aborted_copy)
    assert [(f.check, f.party, f.round) for f in fails] == [("checkpoint commitment", "host", 1)]


def test_party_checks_work_on_a_loaded_directory_directly(runs) -> None:
    """The pure API: files + history in, typed checks out (what the notebook and other tools use)."""
    from chain.backends import connect_state
    from chain.client import AuditClient

    files = load_party_files(runs["lr"] / "guest")
    client = AuditClient(connect_state(runs["state"]), files.job["contract"])
    checks = audit_party(files, load_history(client, files.job["session_id"]), config_commitment_of)
    assert checks and not failures(checks)
    assert sum(1 for c in checks if c.check == "checkpoint commitment") == 7


def test_the_same_audit_passes_on_anvil(runs, tmp_path, capsys) -> None:
    """The job on a real JSON-RPC node (anvil), audited over --rpc: same checks, same verdict."""
    from chain.anvil import available, start_anvil

    if not available():
        pytest.skip("node_modules/.bin/anvil missing: run `make setup`")
    with start_anvil() as node:
        out = tmp_path / "anvil-run"
        run_job(out, runs["data"], tmp_path / "anvil-state", "breast_lr.toml", "lr.epochs=1",
                f"chain.url={node.url}")
        assert cli(["audit", str(out), "--rpc", node.url]) == 0
        assert "audit passed" in capsys.readouterr().out
        result = json.loads((out / "audit" / "audit.json").read_text())
        assert result["chain"]["chain_id"] == 31337 and result["summary"]["rounds_by_state"]["attested"] == 6
        sid, contract = result["summary"]["session_id"], result["summary"]["contract"]
        assert cli(["audit", "--session", sid, "--rpc", node.url, "--contract", contract,
                    "--report", str(tmp_path / "session-report")]) == 0
        assert cli(["audit", str(out)]) == 2  # no --rpc: the run's state directory holds no chain
        (out / "host" / "checkpoints" / "round-0005.json").unlink()
        assert cli(["audit", str(out), "--rpc", node.url]) == 1


# -- an interrupted and a resumed run -------------------------------------------------------

@pytest.fixture(scope="module")
def resumed(runs, tmp_path_factory) -> dict[str, Path]:
    """An LR job (tests/test_resume.py's settings) whose guest is SIGKILLed once it has 4 rounds on chain
    (kept as "interrupted" and audited then, before the chain moves on), then continued with --resume to
    the end ("run")."""
    from tests.test_resume import LR, _cmd, _kill_at, _sets

    root = tmp_path_factory.mktemp("resumed")
    data = root / "data"
    assert cli(["data", "synth", "--out", str(data), "--rows", "1200", "--guest-features", "2",
                "--host-features", "1", "--overlap", "0.9"]) == 0
    sets = _sets(data, runs["state"], *LR)
    out = root / "run"
    assert _kill_at(out, _cmd(out, sets, "breast_lr.toml"), "guest", 4) != 0
    shutil.copytree(out, root / "interrupted", ignore=shutil.ignore_patterns("audit", "logs"))
    audit = subprocess.run([sys.executable, "-m", "nodes.cli", "audit", str(root / "interrupted")],
                           capture_output=True, text=True, timeout=300)
    (root / "interrupted" / "audit" / "stdout.txt").write_text(f"{audit.returncode}\n{audit.stdout}")
    done = subprocess.run(_cmd(out, sets, "breast_lr.toml", "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {"run": out, "interrupted": root / "interrupted"}


@pytest.fixture
def resumed_copy(resumed, tmp_path) -> Path:
    dst = tmp_path / "resumed"
    shutil.copytree(resumed["run"], dst, ignore=shutil.ignore_patterns("audit", "logs"))
    return dst


def _resume_of(run: Path, role: str = "guest") -> dict:
    return json.loads((run / role / "job.json").read_text())["resumed"][-1]


def test_a_resumed_run_audits_clean_with_its_resumes_shown(resumed_copy, capsys) -> None:
    guest = json.loads((resumed_copy / "guest" / "job.json").read_text())
    assert guest["status"] == "complete" and guest["resumed"]
    x = _resume_of(resumed_copy)
    rounds = [r["round"] for r in lines(resumed_copy / "guest" / "rounds.jsonl")]
    assert x["handshake_round"] > x["from_round"] + 1 and x["handshake_round"] in rounds  # a real gap
    assert cli(["audit", str(resumed_copy), "-v"]) == 0
    out = capsys.readouterr().out
    assert f"resumed (guest) {x['time']}: from attested round {x['from_round']}, new handshake round " \
           f"{x['handshake_round']}" in out
    assert "audit passed: all" in out and "FAIL" not in out
    result = json.loads((resumed_copy / "audit" / "audit.json").read_text())
    assert {(r["party"], r["from_round"], r["handshake_round"]) for r in result["resumes"]} >= {
        ("guest", x["from_round"], x["handshake_round"])}
    assert not result["interrupted"]
    checks = {(c["check"], c["party"]) for c in result["checks"] if c["ok"]}
    assert {("resume point", "guest"), ("resume handshake", "host"), ("resume messages", "guest")} <= checks
    assert "Interruptions" in (resumed_copy / "audit" / "report.md").read_text()
    assert "Interruptions" in (resumed_copy / "audit" / "report.html").read_text()


def test_an_interrupted_run_audits_as_interrupted_and_resumable(resumed) -> None:
    run = resumed["interrupted"]  # audited by the fixture before the resume closed the session
    host = json.loads((run / "host" / "job.json").read_text())
    assert host["resumable"] and json.loads((run / "guest" / "job.json").read_text())["status"] == "running"
    code, out = (run / "audit" / "stdout.txt").read_text().split("\n", 1)
    assert code == "0", out
    assert "session INTERRUPTED" in out and "audit passed (session INTERRUPTED, resumable)" in out
    assert json.loads((run / "audit" / "audit.json").read_text())["interrupted"]
    assert "INTERRUPTED" in (run / "audit" / "report.md").read_text()


def test_an_edited_committed_checkpoint_of_a_resumed_run_is_caught(resumed_copy) -> None:
    h = _resume_of(resumed_copy)["handshake_round"]
    path = resumed_copy / "host" / "checkpoints" / f"round-{h + 1:04d}.json"
    cp = json.loads(path.read_text())
    cp["salt"] = "0x" + "11" * 32
    path.write_text(json.dumps(cp))
    assert [(f.check, f.party, f.round) for f in audit(resumed_copy)] == [("checkpoint commitment", "host", h + 1)]


def test_a_committed_round_missing_from_a_resumed_run_is_caught(resumed_copy) -> None:
    path = resumed_copy / "guest" / "rounds.jsonl"
    rows = lines(path)
    h = _resume_of(resumed_copy)["handshake_round"]
    write_lines(path, [r for r in rows if r["round"] != h + 1])
    fails = audit(resumed_copy)
    assert ("round in files", "guest", h + 1) in [(f.check, f.party, f.round) for f in fails]
    assert only(fails, "rounds in order")


def test_an_altered_transcript_line_of_a_resumed_run_is_caught(resumed_copy) -> None:
    path = resumed_copy / "guest" / "transcript.jsonl"
    rows = lines(path)
    h = _resume_of(resumed_copy)["handshake_round"]
    k = next(i for i, e in enumerate(rows) if e["round"] == h)
    rows[k]["size"] += 1
    write_lines(path, rows)
    assert [(f.check, f.party, f.round) for f in audit(resumed_copy)] == [("transcript digest", "guest", h)]


def test_a_resume_from_a_round_not_attested_is_caught(resumed_copy) -> None:
    path = resumed_copy / "guest" / "job.json"
    job = json.loads(path.read_text())
    job["resumed"][-1]["from_round"] = 999
    path.write_text(json.dumps(job))
    fails = audit(resumed_copy)
    assert ("resume point", "guest", 999) in [(f.check, f.party, f.round) for f in fails]
    assert only(fails, "resume handshake") and only(fails, "rounds in order")  # the gap is no longer explained


def test_a_gap_no_resume_explains_is_caught(resumed_copy) -> None:
    path = resumed_copy / "host" / "job.json"
    job = json.loads(path.read_text())
    h = job.pop("resumed")[-1]["handshake_round"]
    path.write_text(json.dumps(job))
    fails = audit(resumed_copy)
    assert ("rounds in order", "host", h) in [(f.check, f.party, f.round) for f in fails]
