"""`vflchain run --resume`: a job whose node was SIGKILLed continues in the same session, from the
last round both parties attested on chain, and ends with the uninterrupted run's model.

Small synthetic data, 1024-bit test keys (the property does not depend on key size), no label
noise (allowed by the batch rule for one host column and large batches: vfl/lr/privacy.py), so
that two runs with the same seed give the same weights.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nodes.cli import main as cli

pytestmark = pytest.mark.slow  # starts processes and chains (as tests/test_run_e2e.py)
REPO = Path(__file__).resolve().parent.parent


def _sets(data: Path, state: Path, *extra: str) -> list[str]:
    return ["guest.data=" + str(data / "guest.csv"), "host.data=" + str(data / "host.csv"),
            "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={state}",
            "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0",
            "transport.connect_timeout=20.0", "transport.retries=2", "job.seed=7", *extra]


LR = ("job.algorithm=lr", "lr.label_noise=0", "lr.batch_size=400", "lr.epochs=8", "lr.tol=0",
      "lr.early_stopping=0", "lr.round_every=1")
GMM = ("job.algorithm=gmm", "gmm.k=2", "gmm.max_iter=6", "gmm.n_init=2", "gmm.tol=0", "gmm.kmeans_max_iter=4")


def _cmd(out: Path, sets: list[str], config: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(REPO / "examples" / config),
           "--out", str(out), *extra]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def _rounds(out: Path, role: str) -> int:
    p = out / role / "rounds.jsonl"
    return len(p.read_text().splitlines()) if p.exists() else 0


def _kill_at(out: Path, cmd: list[str], role: str, at_round: int) -> int:
    """Run `cmd` (`vflchain run`), SIGKILL `role`'s node once it has `at_round` rounds on chain; the
    launcher's exit code (or 0 when the job completed before that)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and _rounds(out, role) < at_round:
            time.sleep(0.05)
        if proc.poll() is None:
            pids = json.loads((out / "logs" / "processes.json").read_text())
            os.kill(pids[role], signal.SIGKILL)
        proc.communicate(timeout=240)
    finally:
        proc.kill()
    return proc.returncode


def _model(out: Path, role: str) -> dict:
    return json.loads((out / role / "model.json").read_text())


def _weights(doc: dict) -> np.ndarray:
    keys = ("weights", "intercept", "means", "covariances")
    return np.concatenate([np.ravel(np.asarray(doc[k], dtype=np.float64)) for k in keys if doc.get(k) is not None])


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    assert cli(["data", "synth", "--out", str(d), "--rows", "1200", "--guest-features", "2",
                "--host-features", "1", "--overlap", "0.9"]) == 0
    return d


def _resume_until_complete(tmp_path: Path, chain_server, synth: Path, algo: tuple[str, ...], config: str,
                           kills: int) -> None:
    state, url = chain_server
    sets = _sets(synth, state, *algo)
    ref = tmp_path / "ref"
    done = subprocess.run(_cmd(ref, sets, config), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    total = _rounds(ref, "guest")
    out = tmp_path / "run"
    rng = random.Random()
    first = True
    session = None
    # kill a random party at `kills` different random rounds (counted in its rounds.jsonl, which a
    # resumed run extends), each run resuming the one before
    for at in sorted(rng.sample(range(2, total), k=min(kills, total - 2))):
        role = rng.choice(["guest", "host"])
        at = max(at, _rounds(out, role) + 1)
        code = _kill_at(out, _cmd(out, sets, config, *([] if first else ["--resume"])), role, at)
        first = False
        job = json.loads((out / "guest" / "job.json").read_text())
        session = session or job["session_id"]
        assert job["session_id"] == session  # always the same session on chain
        if code == 0:
            break
        assert job["status"] != "complete"
    else:
        done = subprocess.run(_cmd(out, sets, config, "--resume"), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    for role in ("guest", "host"):
        job = json.loads((out / role / "job.json").read_text())
        assert job["status"] == "complete" and job["session_id"] == session
        assert job["resumed"] and all("from_round" in r for r in job["resumed"])  # really killed and resumed
        np.testing.assert_allclose(_weights(_model(out, role)), _weights(_model(ref, role)), rtol=0, atol=1e-9)
    assert total > 3
    # the resumed run audits clean, each resume shown (from which attested round, the new handshake round)
    audit = subprocess.run([sys.executable, "-m", "nodes.cli", "audit", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert audit.returncode == 0, audit.stdout[-3000:]
    for role in ("guest", "host"):
        for x in json.loads((out / role / "job.json").read_text())["resumed"]:
            if "handshake_round" in x:
                assert f"resumed ({role}) {x['time']}: from attested round {x['from_round']}, new handshake " \
                       f"round {x['handshake_round']}" in audit.stdout


def test_lr_killed_twice_resumes_to_the_uninterrupted_model(tmp_path, chain_server, synth) -> None:
    _resume_until_complete(tmp_path, chain_server, synth, LR, "breast_lr.toml", kills=2)


def test_gmm_killed_resumes_to_the_uninterrupted_model(tmp_path, chain_server, synth) -> None:
    _resume_until_complete(tmp_path, chain_server, synth, GMM, "breast_gmm.toml", kills=3)


@pytest.mark.skipif(not os.environ.get("VFLCHAIN_LONG_TESTS"),
                    reason="about 4 minutes: set VFLCHAIN_LONG_TESTS=1 (the default suite kills 2 and 3 times)")
def test_lr_killed_ten_times_resumes_to_the_uninterrupted_model(tmp_path, chain_server, synth) -> None:
    _resume_until_complete(tmp_path, chain_server, synth,
                           (*LR[:-2], "lr.epochs=25", "lr.round_every=1"), "breast_lr.toml", kills=10)


def test_resuming_a_job_whose_session_was_aborted_is_a_one_line_error(tmp_path, chain_server) -> None:
    """A job that failed cleanly aborted its session on chain: nothing to continue."""
    state, _ = chain_server
    data = tmp_path / "data"
    data.mkdir()
    (data / "guest.csv").write_text("id,y,a\n" + "".join(f"g{i},{i % 2},{i}\n" for i in range(20)))
    (data / "host.csv").write_text("id,b\n" + "".join(f"h{i},{i}\n" for i in range(20)))
    out = tmp_path / "run"
    sets = _sets(data, state, "job.algorithm=psi")
    assert subprocess.run(_cmd(out, sets, "breast_lr.toml"), capture_output=True, timeout=120).returncode == 1
    res = subprocess.run(_cmd(out, sets, "breast_lr.toml", "--resume"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("vflchain: error: ") and "is aborted on chain" in last, res.stderr[-1000:]
