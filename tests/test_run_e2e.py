"""`vflchain run` end to end: three processes (embedded chain, host, guest), gRPC on loopback.

Every test runs the real command line in a subprocess against one embedded chain
server shared by the module, then checks the run directories, the transcripts
and the chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nodes.cli import main as cli
from nodes.transcript import Transcript, round_digest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _client(url: str, contract: str):
    from chain.backends import connect
    from chain.client import AuditClient

    return AuditClient(connect(url), contract)


def _sets(data: Path, state: Path, *extra: str) -> list[str]:
    return ["guest.data=" + str(data / "guest.csv"), "host.data=" + str(data / "host.csv"),
            "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={state}",
            "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0", "transport.connect_timeout=15.0",
            *extra]


def _run(out: Path, sets: list[str], config: Path = REPO / "examples" / "breast_lr.toml",
         timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(config), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _job(out: Path, role: str) -> dict:
    return json.loads((out / role / "job.json").read_text())


def _ids(path: Path) -> list[str]:
    return [line.split(",", 1)[0] for line in path.read_text().splitlines()[1:] if line]


def _kill_host_when(out: Path, sets: list[str], ready: Callable[[], bool], victim: str = "host") -> tuple[int, str]:
    """Start `vflchain run` of breast_lr.toml, SIGKILL its host node (or `victim`: "guest", "chain") once
    `ready()` (or after 120 s), and return the launcher's exit code and error output."""
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(REPO / "examples" / "breast_lr.toml"),
           "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ready():
            time.sleep(0.05)
        pids = json.loads((out / "logs" / "processes.json").read_text())
        os.kill(pids[victim], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


def _assert_failed_and_aborted(out: Path, url: str, role: str = "guest") -> dict:
    job = _job(out, role)
    assert job["status"] == "failed" and job["error"]
    for r in ("guest", "host"):
        if (out / r / "job.json").exists():
            assert _job(out, r)["status"] != "complete"
    assert job["session_id"], "the session was opened"
    info = _client(url, job["contract"]).session(bytes.fromhex(job["session_id"][2:]))
    assert info["status"] == "aborted"
    return info


def _assert_failed_and_left_active(out: Path, url: str, role: str = "guest") -> dict:
    """A killed peer: the survivor fails but leaves the session active for `--resume` (docs/runtime.md)."""
    job = _job(out, role)
    assert job["status"] == "failed" and job["error"] and job["resumable"] is True
    assert "tx_hash" not in job["abort"]
    info = _client(url, job["contract"]).session(bytes.fromhex(job["session_id"][2:]))
    assert info["status"] == "active"
    return info


def test_breast_job_runs_end_to_end_across_processes(tmp_path, chain_server, breast_dir) -> None:
    state, url = chain_server
    out = tmp_path / "run"
    res = _run(out, _sets(breast_dir, state, "lr.epochs=2"))
    assert res.returncode == 0, res.stderr + res.stdout
    assert "job complete" in res.stdout and "rounds attested on chain" in res.stdout
    g, h = _job(out, "guest"), _job(out, "host")
    assert g["status"] == h["status"] == "complete"
    assert g["session_id"] == h["session_id"] and g["job_id"] == h["job_id"]
    assert g["config_commitment"] == h["config_commitment"]
    assert g["account"] == h["peer_account"] and h["account"] == g["peer_account"]

    # PSI found exactly the true intersection, in the same order on both sides
    truth = set(_ids(breast_dir / "guest.csv")) & set(_ids(breast_dir / "host.csv"))
    assert len(truth) == 512
    for role in ("guest", "host"):
        inter = json.loads((out / role / "intersection.json").read_text())
        assert inter["intersection_size"] == 512
    order = sorted(truth, key=int)
    expected = hashlib.sha256("\n".join(order).encode()).hexdigest()
    for role in ("guest", "host"):
        cp = json.loads((out / role / "checkpoints" / "round-0002.json").read_text())
        assert cp["phase"] == "intersection" and cp["params"]["ids_sha256"] == expected

    # both transcripts give the same per-round digests, the ones posted and attested on chain
    rounds = {r: [json.loads(x) for x in (out / r / "rounds.jsonl").read_text().splitlines()]
              for r in ("guest", "host")}
    assert [x["round"] for x in rounds["guest"]] == [x["round"] for x in rounds["host"]]
    g_entries = Transcript.load(out / "guest" / "transcript.jsonl")
    h_entries = Transcript.load(out / "host" / "transcript.jsonl")
    assert len(g_entries) == len(h_entries) > 0
    client = _client(url, g["contract"])
    sid = bytes.fromhex(g["session_id"][2:])
    for gl, hl in zip(rounds["guest"], rounds["host"], strict=True):
        r = gl["round"]
        assert round_digest(g_entries, r) == round_digest(h_entries, r) == gl["transcript_digest"] == hl["transcript_digest"]
        assert client.round_state(sid, r) == "attested"
        assert gl["tx_hash"] and hl["tx_hash"]
    info = client.session(sid)
    assert info["status"] == "closed"
    names = [e["event"] for e in client.events(sid)]
    assert names[0] == "SessionOpened" and "SessionActivated" in names and names[-1] == "SessionClosed"
    assert (out / "logs" / "processes.json").exists()


def test_gmm_example_runs_end_to_end(tmp_path, chain_server, breast_dir) -> None:
    state, _ = chain_server
    out = tmp_path / "run"
    res = _run(out, _sets(breast_dir, state, "gmm.max_iter=2"), config=REPO / "examples" / "breast_gmm.toml")
    assert res.returncode == 0, res.stderr + res.stdout
    g, h = _job(out, "guest"), _job(out, "host")
    assert g["status"] == h["status"] == "complete" and g["algorithm"] == "gmm"
    assert g["phases_run"][0] == "intersection" and g["phases_run"] + g["phases_skipped"] == ["intersection", "gmm"]


def test_empty_intersection_fails_clearly_and_aborts(tmp_path, chain_server) -> None:
    state, url = chain_server
    data = tmp_path / "data"
    data.mkdir()
    (data / "guest.csv").write_text("id,y,a\n" + "".join(f"g{i},{i % 2},{i}\n" for i in range(20)))
    (data / "host.csv").write_text("id,b\n" + "".join(f"h{i},{i}\n" for i in range(20)))
    out = tmp_path / "run"
    res = _run(out, _sets(data, state, "job.algorithm=psi"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1].startswith("vflchain: error: ")
    assert "empty intersection" in res.stderr and "nothing to train on" in res.stderr
    _assert_failed_and_aborted(out, url)
    assert not (out / "guest" / "intersection.json").exists()


def test_unreachable_peer_is_a_clear_error(tmp_path, chain_server, breast_dir) -> None:
    from nodes.testing import free_port

    state, url = chain_server
    out = tmp_path / "guest"
    sets = _sets(breast_dir, state, "job.algorithm=psi", "transport.connect_timeout=2.0",
                 f"host.address=127.0.0.1:{free_port()}", f"guest.address=127.0.0.1:{free_port()}")
    from chain.backends import connect
    from chain.deploy import dev_contract

    contract = dev_contract(connect(url), state)
    cmd = [sys.executable, "-m", "nodes.cli", "node", "--config", str(REPO / "examples" / "breast_lr.toml"),
           "--role", "guest", "--out", str(out)]
    for s in sets + [f"chain.url={url}", f"chain.contract={contract}"]:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("vflchain: error: host unreachable at 127.0.0.1:") and "after 2s" in last
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "failed" and "unreachable" in job["error"]
    assert job["session_id"] is None  # the handshake comes before the session: nothing on chain to abort


def test_a_node_whose_chain_is_never_announced_fails_clearly(tmp_path, breast_dir, capsys) -> None:
    out = tmp_path / "host"
    args = ["node", "--config", str(REPO / "examples" / "breast_lr.toml"), "--role", "host", "--out", str(out),
            "--chain-info", str(tmp_path / "chain.json"), "--chain-wait", "0.5"]
    for s in _sets(breast_dir, tmp_path / "state"):
        args += ["--set", s]
    assert cli(args) == 1
    assert capsys.readouterr().err.strip() == \
        f"vflchain: error: no chain: nothing announced in {tmp_path / 'chain.json'} within 0.5 s"
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "failed" and job["error"].startswith("no chain: nothing announced")
    assert job["chain_id"] is None and job["session_id"] is None  # it loaded its data, then gave up
    # a launcher that could not get a chain says so in the file: the node fails with its reason
    (tmp_path / "chain.json").write_text(json.dumps({"error": "the chain server exited (1)"}) + "\n")
    assert cli([*args, "--force"]) == 1
    assert capsys.readouterr().err.strip() == "vflchain: error: no chain: the chain server exited (1)"


def test_a_chain_that_cannot_start_stops_the_nodes_and_fails_in_one_line(tmp_path, breast_dir) -> None:
    state = tmp_path / "chain"
    state.mkdir()
    (state / "genesis.json").write_text("not json")  # the embedded chain refuses this state directory
    out = tmp_path / "run"
    res = _run(out, _sets(breast_dir, state, "job.algorithm=psi"), timeout=120)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("vflchain: error: the embedded chain server for ") and "not valid JSON" in last, last
    pids = json.loads((out / "logs" / "processes.json").read_text())
    for role in ("guest", "host", "chain"):  # the nodes were started with the chain, and all are gone
        with pytest.raises(ProcessLookupError):
            os.kill(pids[role], 0)
    for role in ("guest", "host"):
        if (out / role / "job.json").exists():
            job = _job(out, role)
            assert job["status"] == "failed" and job["session_id"] is None


def test_host_killed_mid_job_fails_the_guest_and_leaves_the_session_for_resume(tmp_path, chain_server) -> None:
    state, url = chain_server
    data = tmp_path / "data"
    assert cli(["data", "synth", "--out", str(data), "--rows", "15000", "--guest-features", "1",
                "--host-features", "1", "--overlap", "0.9"]) == 0
    out = tmp_path / "run"

    def joined() -> bool:
        hj = out / "host" / "job.json"
        return hj.exists() and "join" in json.loads(hj.read_text() or "{}").get("transactions", {})

    code, err = _kill_host_when(out, _sets(data, state, "job.algorithm=psi", "transport.retries=2"), joined)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("vflchain: error: ")
    guest_error = _job(out, "guest")["error"]
    assert guest_error.startswith("host disconnected") or guest_error.startswith("host unreachable"), guest_error
    _assert_failed_and_left_active(out, url)
    assert _job(out, "host")["status"] == "running"  # killed: never marked complete


def test_ctrl_c_stops_all_three_processes_and_aborts(tmp_path) -> None:
    state = tmp_path / "chain"  # no server running there: `run` starts (and must stop) its own chain
    data = tmp_path / "data"
    assert cli(["data", "synth", "--out", str(data), "--rows", "15000", "--guest-features", "1",
                "--host-features", "1", "--overlap", "0.9"]) == 0
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(REPO / "examples" / "breast_lr.toml"),
           "--out", str(out)]
    for s in _sets(data, state, "job.algorithm=psi"):
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both parties in the session, PSI under way
            hj = out / "host" / "job.json"
            if hj.exists() and "join" in json.loads(hj.read_text() or "{}").get("transactions", {}):
                break
            time.sleep(0.05)
        pids = json.loads((out / "logs" / "processes.json").read_text())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "vflchain: interrupted"
    assert pids["chain"]
    for pid in (pids["guest"], pids["host"], pids["chain"]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for role, peer in (("guest", "host"), ("host", "guest")):
        job = _job(out, role)
        # its own SIGTERM, or the peer's goodbye if that came a moment earlier
        assert job["status"] == "failed"
        assert job["error"] == "interrupted" or job["error"].startswith(f"{peer} failed: interrupted")
        assert job["abort"]["reason"] == job["error"]
    from chain.backends import connect_state
    from chain.client import AuditClient

    job = _job(out, "guest")
    info = AuditClient(connect_state(state), job["contract"]).session(bytes.fromhex(job["session_id"][2:]))
    assert info["status"] == "aborted"  # read back from the stopped chain's state directory


def test_malformed_message_from_the_host_fails_the_guest_and_aborts(tmp_path, chain_server, breast_dir,
                                                                  monkeypatch) -> None:
    """The host (in this process) sends garbage where its PSI message belongs; the guest is a real node."""
    from chain.backends import connect
    from chain.deploy import dev_contract
    from nodes.config import load_config
    from nodes.errors import NodeError
    from nodes.job import PartyNode
    from nodes.phases import intersection
    from nodes.testing import free_port

    state, url = chain_server
    contract = dev_contract(connect(url), state)
    sets = _sets(breast_dir, state, "job.algorithm=psi", f"guest.address=127.0.0.1:{free_port()}",
                 f"host.address=127.0.0.1:{free_port()}", f"chain.url={url}", f"chain.contract={contract}")
    config = REPO / "examples" / "breast_lr.toml"
    cmd = [sys.executable, "-m", "nodes.cli", "node", "--config", str(config), "--role", "guest",
           "--out", str(tmp_path / "guest")]
    for s in sets:
        cmd += ["--set", s]
    guest = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def rogue_host(ctx):
        import grpc

        ctx.next_round()
        try:
            ctx.transport._deliver_rpc(b"VFM1\x00\x00\x00\x02{]garbage", timeout=10)
        except grpc.RpcError:
            pass
        ctx.channel("intersection").recv("psi_blind", round=2, timeout=30)

    monkeypatch.setattr(intersection, "run_host", rogue_host)
    try:
        with pytest.raises(NodeError, match="guest failed: host sent a malformed message"):
            PartyNode(load_config(config, sets), "host", tmp_path / "host").run()
        _, err = guest.communicate(timeout=60)
    finally:
        guest.kill()
    assert guest.returncode == 1
    assert err.strip().splitlines()[-1].startswith("vflchain: error: host sent a malformed message: malformed message")
    job = json.loads((tmp_path / "guest" / "job.json").read_text())
    assert job["status"] == "failed" and job["abort"]["reason"].startswith("host sent a malformed message")
    assert _client(url, contract).session(bytes.fromhex(job["session_id"][2:]))["status"] == "aborted"


def test_wrong_certificate_is_refused_clearly(tmp_path, chain_server, breast_dir) -> None:
    from nodes.transport.tls import write_dev_pki

    state, _ = chain_server
    good = write_dev_pki(tmp_path / "pki")
    other = write_dev_pki(tmp_path / "rogue", ca_name="a rogue CA")
    out = tmp_path / "run"
    res = _run(out, _sets(breast_dir, state, "job.algorithm=psi", "transport.connect_timeout=5.0",
                          f"transport.ca={good['ca']}", f"transport.cert={good['guest.crt']}",
                          f"transport.key={good['guest.key']}", f"host.ca={other['ca']}",
                          f"host.cert={other['host.crt']}", f"host.key={other['host.key']}"))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("vflchain: error: guest: TLS handshake with host at 127.0.0.1:") and "CERTIFICATE_VERIFY_FAILED" in last
    for role in ("guest", "host"):
        job = _job(out, role)
        assert job["status"] == "failed" and job["session_id"] is None


def test_chain_refusing_a_transaction_fails_the_job_and_aborts(tmp_path, chain_server, breast_dir) -> None:
    """The host signs with a registered account that holds no ether: the chain refuses its join."""
    from chain.accounts import new_keystore

    state, url = chain_server
    env = {"VFLCHAIN_PASSPHRASE": "correct horse"}
    os.environ.update(env)
    try:
        new_keystore(tmp_path / "host.json")
    finally:
        del os.environ["VFLCHAIN_PASSPHRASE"]
    out = tmp_path / "run"
    res = _run(out, _sets(breast_dir, state, "job.algorithm=psi", f"host.keystore={tmp_path / 'host.json'}"),
               env=env)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("vflchain: error: host: ")
    host = _job(out, "host")
    assert host["status"] == "failed" and "join" not in host["transactions"]
    assert _job(out, "guest")["error"].startswith("host failed: ")
    _assert_failed_and_aborted(out, url)


def test_run_on_a_real_json_rpc_node(tmp_path, breast_dir) -> None:
    """The same job with `[chain] url` pointing at an anvil node: the nodes reach it like any node."""
    from chain.anvil import available, start_anvil

    if not available():
        pytest.skip("node_modules/.bin/anvil missing (make setup)")
    with start_anvil() as anvil:
        out = tmp_path / "run"
        res = _run(out, _sets(breast_dir, tmp_path / "state", "job.algorithm=psi", f"chain.url={anvil.url}"))
        assert res.returncode == 0, res.stderr + res.stdout
        g = _job(out, "guest")
        assert g["status"] == "complete" and g["chain_id"] == 31337
        client = _client(anvil.url, g["contract"])
        assert client.session(bytes.fromhex(g["session_id"][2:]))["status"] == "closed"
        assert all(client.round_state(bytes.fromhex(g["session_id"][2:]), r) == "attested" for r in (1, 2, 3))


def test_host_killed_mid_epoch_of_lr_training_leaves_no_result(tmp_path, chain_server, breast_dir) -> None:
    """Issue 6: a host that goes away during training; the guest fails, writes no model, and leaves the
    session active (issue 18: `--resume` continues it; tests/test_resume.py)."""
    state, url = chain_server
    out = tmp_path / "run"
    rounds = out / "host" / "rounds.jsonl"

    def training() -> bool:  # the host committed its first training round: it is mid-training
        return rounds.exists() and '"phase": "lr"' in rounds.read_text()

    sets = _sets(breast_dir, state, "lr.epochs=500", "lr.tol=0", "lr.batch_size=100", "transport.retries=2")
    code, err = _kill_host_when(out, sets, training)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("vflchain: error: guest: ")
    error = _job(out, "guest")["error"]
    assert error.startswith("lr: the host dropped out during epoch"), error
    _assert_failed_and_left_active(out, url)
    for name in ("model.json", "predictions.csv", "metrics.json"):
        assert not (out / "guest" / name).exists() and not (out / "host" / name).exists()
    # job.json counts the rounds committed (the training rounds too), not those of the last finished phase
    guest_rounds = (out / "guest" / "rounds.jsonl").read_text().splitlines()
    assert _job(out, "guest")["rounds"] == len(guest_rounds) and '"phase": "lr"' in guest_rounds[-1]


def test_chain_killed_mid_training_keeps_every_answered_block_and_audits_as_never_ended(tmp_path, breast_dir) -> None:
    """The chain server dies mid-job: the nodes fail (their aborts too); a restart replays the journal, and
    the audit names the session that was never ended, once per party, and checks the committed rounds."""
    state = tmp_path / "chain"  # `run` starts its own chain server here
    out = tmp_path / "run"
    rounds = out / "guest" / "rounds.jsonl"

    def training() -> bool:
        return rounds.exists() and '"phase": "lr"' in rounds.read_text()

    # the nodes retry the chain for [chain] retry_seconds (tests/test_shared_chain.py: a restarted chain
    # costs nothing); here it stays down, so they give up after 2 s
    sets = _sets(breast_dir, state, "lr.epochs=500", "lr.tol=0", "lr.batch_size=100", "chain.retry_seconds=2")
    code, err = _kill_host_when(out, sets, training, victim="chain")
    assert code == 1 and err.strip().splitlines()[-1].startswith("vflchain: error: ")
    for role in ("guest", "host"):
        job = _job(out, role)
        assert job["status"] == "failed" and job["abort"].get("error")  # the abort could not be sent
        assert job["rounds"] == len((out / role / "rounds.jsonl").read_text().splitlines()) >= 4
    res = subprocess.run([sys.executable, "-m", "nodes.cli", "audit", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    fails = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 2 and all("session closed" in f and "found active" in f for f in fails), fails
