"""`vflchain run` with a guest and two hosts: four processes (embedded chain, host1, host2, guest),
gRPC on loopback, the guest linked to each host (a star); every party joins the session and attests
every round, and `vflchain audit` checks all three run directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodes.cli import main as cli
from nodes.datafiles import write_party_csv
from vfl.datasets import breast_split

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
HOSTS = ("host1", "host2")
TEST_KEYS = ["paillier.key_bits=1024", "paillier.insecure_test_keys=true"]
# no label noise (it comes from `secrets`): only then can two runs of one job be compared
LR_SETS = [*TEST_KEYS, "lr.epochs=3", "lr.label_noise=0.0", "lr.batch_size=400"]
GMM_SETS = [*TEST_KEYS, "gmm.max_iter=3", "gmm.kmeans_max_iter=3"]


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    """250 guest rows; one host column each for host1 and host2, some rows the guest lacks."""
    d = tmp_path_factory.mktemp("data3")
    g, h = breast_split(overlap=0.9)
    g = g.take(range(250))
    known = set(g.ids.tolist())
    shared = [i for i, rid in enumerate(h.ids.tolist()) if rid in known]
    own = [i for i, rid in enumerate(h.ids.tolist()) if rid not in known][:12]
    h = h.take(shared + own)
    write_party_csv(g, d / "guest.csv")
    write_party_csv(h.select(h.features[:1]), d / "host1.csv")
    write_party_csv(h.take(range(len(shared) + 6)).select(h.features[1:2]), d / "host2.csv")
    return d


def _sets(data: Path, state: Path, *extra: str) -> list[str]:
    return [f"guest.data={data / 'guest.csv'}", *[f"{h}.data={data / f'{h}.csv'}" for h in HOSTS],
            "guest.address=127.0.0.1:0", *[f"{h}.address=127.0.0.1:0" for h in HOSTS], f"chain.state={state}",
            "transport.liveness_grace=2.0", "transport.connect_timeout=15.0", *TEST_KEYS, *extra]


def _cmd(config: Path, out: Path, sets: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(config), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def _run(config: Path, out: Path, sets: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(config, out, sets), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"})


def _job(out: Path, role: str) -> dict:
    return json.loads((out / role / "job.json").read_text())


def _ids(path: Path) -> set[str]:
    return {line.split(",", 1)[0] for line in path.read_text().splitlines()[1:] if line}


def _session(url: str, job: dict) -> dict:
    from chain.backends import connect
    from chain.client import AuditClient

    return AuditClient(connect(url), job["contract"]).session(bytes.fromhex(job["session_id"][2:]))


def test_psi_with_two_hosts_runs_across_processes_and_the_audit_covers_all_three(
        tmp_path, chain_server, small_dir) -> None:
    state, url = chain_server
    out = tmp_path / "run"
    res = _run(REPO / "examples" / "breast_lr_3party.toml", out, _sets(small_dir, state, "job.algorithm=psi"))
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    assert "guest + 2 hosts" in res.stdout and "rounds attested on chain │ 3 of 3" in res.stdout
    jobs = {r: _job(out, r) for r in ("guest", *HOSTS)}
    assert all(j["status"] == "complete" for j in jobs.values())
    assert len({j["session_id"] for j in jobs.values()}) == 1 and len({j["job_id"] for j in jobs.values()}) == 1
    g = jobs["guest"]
    assert g["host_accounts"] == {h: jobs[h]["account"] for h in HOSTS}
    assert all(jobs[h]["peer_account"] == g["account"] for h in HOSTS)
    assert len({j["account"] for j in jobs.values()}) == 3  # three dev accounts, each registered
    # every host learned every host's key from the guest (and trusts them for relayed ciphertexts)
    fps = g["paillier"]["host_fingerprints"]
    assert all(jobs[h]["paillier"]["host_fingerprints"] == fps and jobs[h]["paillier"]["fingerprint"] == fps[h]
               for h in HOSTS)
    # the intersection over all three parties, the same rows in the same order everywhere
    truth = _ids(small_dir / "guest.csv") & _ids(small_dir / "host1.csv") & _ids(small_dir / "host2.csv")
    for r in ("guest", *HOSTS):
        assert json.loads((out / r / "intersection.json").read_text())["intersection_size"] == len(truth)
    # all three participants attested every round; each round's digest is the guest's manifest
    info = _session(url, g)
    assert info["status"] == "closed" and len(info["participants"]) == 3
    rounds = {r: [json.loads(x) for x in (out / r / "rounds.jsonl").read_text().splitlines()] for r in jobs}
    assert [x["round"] for x in rounds["guest"]] == [1, 2, 3]
    for h in HOSTS:
        assert [x["transcript_digest"] for x in rounds[h]] == [x["transcript_digest"] for x in rounds["guest"]]

    assert cli(["audit", str(out), "--rpc", url]) == 0
    audit = json.loads((out / "audit" / "audit.json").read_text())
    assert {c["party"] for c in audit["checks"]} >= {"guest", *HOSTS}
    assert all(c["ok"] for c in audit["checks"])
    assert "host2" in (out / "audit" / "report.html").read_text()


def _same_numbers(a, b, path: str = "") -> None:
    """Equal structure; floats equal to 1e-9 (relative), everything else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            _same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


@pytest.mark.parametrize("example, sets", [("breast_lr_3party.toml", LR_SETS), ("breast_gmm_3party.toml", GMM_SETS)])
def test_a_two_host_job_under_vflchain_run_gives_the_models_of_the_python_api(
        tmp_path, chain_server, small_dir, example, sets) -> None:
    import vflchain

    state, url = chain_server
    config = REPO / "examples" / example
    out = tmp_path / "run"
    res = _run(config, out, _sets(small_dir, state, *sets))
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    assert "rounds attested on chain" in res.stdout
    api = vflchain.run_job(config, overrides=[*sets, *[f"{r}.data={small_dir / f'{r}.csv'}"
                                                       for r in ("guest", *HOSTS)]], out=tmp_path / "api")
    for role in ("guest", *HOSTS):
        cli_model = json.loads((out / role / "model.json").read_text())
        _same_numbers({k: v for k, v in cli_model.items() if k != "job_id"},
                      {k: v for k, v in api.models[role].items() if k != "job_id"}, role)
    assert cli(["audit", str(out), "--rpc", url]) == 0
    # each party scores new rows with its own saved model: `vflchain predict` with the same three parties
    pred = tmp_path / "predict"
    cmd = _cmd(config, pred, _sets(small_dir, state, *TEST_KEYS))
    cmd[3:4] = ["predict", "--model", str(out)]  # [python, -m, nodes.cli, run, ...] -> predict --model RUN
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    assert all(_job(pred, r)["status"] == "complete" for r in ("guest", *HOSTS))
    assert (pred / "guest" / "predictions.csv").is_file()
    assert cli(["audit", str(pred), "--rpc", url]) == 0


def test_a_killed_host_aborts_the_three_party_session_for_every_party(tmp_path, chain_server) -> None:
    state, url = chain_server
    data = tmp_path / "data"
    assert cli(["data", "synth", "--out", str(data), "--rows", "15000", "--guest-features", "1",
                "--host-features", "2", "--hosts", "2", "--overlap", "0.9"]) == 0
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(REPO / "examples" / "breast_lr_3party.toml", out,
                                 _sets(data, state, "job.algorithm=psi", "transport.retries=2")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every host in the session, PSI under way
            joins = (_job(out, "guest") if (out / "guest" / "job.json").exists() else {}).get(
                "transactions", {}).get("joins")
            if joins:
                break
            time.sleep(0.05)
        pids = json.loads((out / "logs" / "processes.json").read_text())
        os.kill(pids["host2"], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("vflchain: error: ") and "host2" in last, err[-2000:]  # one line naming it
    guest, host1 = _job(out, "guest"), _job(out, "host1")
    assert guest["status"] == host1["status"] == "failed"
    assert "host2" in guest["error"] and "host2" in host1["error"]
    assert "\n" not in guest["error"] + host1["error"]
    assert _job(out, "host2")["status"] == "running"  # killed: never marked complete
    assert "resumable" not in guest and "resumable" not in host1
    assert _session(url, guest)["status"] == "aborted"
