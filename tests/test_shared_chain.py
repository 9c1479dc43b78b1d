"""Nothing lost: jobs share one embedded chain, ride out a chain restart, and leave no session open.

Real `vflchain run` processes on one `[chain] state`; 1024-bit keys (the properties do not
depend on key size).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chain.processes import live_leases, running_server, share_server
from nodes.cli import main as cli

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _sets(data: Path, state: Path, *extra: str) -> list[str]:
    return ["guest.data=" + str(data / "guest.csv"), "host.data=" + str(data / "host.csv"),
            "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={state}",
            "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0",
            "transport.connect_timeout=15.0", *extra]


def _start(out: Path, sets: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(REPO / "examples" / "breast_lr.toml"),
           "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, err + out


def _audit(out: Path, state: Path) -> int:
    return cli(["audit", str(out / "guest"), str(out / "host"), "--state", str(state)])


def test_three_jobs_started_together_share_one_chain_and_all_audit_clean(tmp_path, breast_dir, capsys) -> None:
    state = tmp_path / "chain"  # no server: the first launcher starts it, the others attach
    procs = []
    for i in range(3):
        procs.append(_start(tmp_path / f"run{i}", _sets(breast_dir, state, "lr.epochs=1")))
        time.sleep(0.2)
    results = [_finish(p) for p in procs]
    for code, text in results:
        assert code == 0, text
    sessions = set()
    for i in range(3):
        out = tmp_path / f"run{i}"
        assert _audit(out, state) == 0, capsys.readouterr().out
        sessions.add(json.loads((out / "guest" / "job.json").read_text())["session_id"])
    assert len(sessions) == 3
    assert running_server(state) is None and live_leases(state) == []  # the last one done stopped it


def test_a_job_started_while_another_runs_uses_the_same_chain(tmp_path, breast_dir) -> None:
    state = tmp_path / "chain"
    first = _start(tmp_path / "a", _sets(breast_dir, state, "lr.epochs=2"))
    deadline = time.monotonic() + 120
    while running_server(state) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    url = running_server(state)["url"]  # type: ignore[index]
    second = _start(tmp_path / "b", _sets(breast_dir, state, "job.algorithm=psi"))
    assert _finish(second)[0] == 0  # done first: the chain must stay up for the other job
    assert running_server(state) is not None
    code, text = _finish(first)
    assert code == 0, text
    for run in ("a", "b"):
        assert url in (tmp_path / run / "logs" / "chain.json").read_text()
    assert running_server(state) is None


def test_a_server_started_by_hand_is_shared_and_left_running(tmp_path) -> None:
    from chain.processes import start_server

    state = tmp_path / "chain"
    with start_server(state) as handle:
        lease, url, starting = share_server(state)
        assert (url, starting) == (handle.url, None)
        assert lease.release() is False  # not started for jobs: not stopped by them
        assert running_server(state) is not None


def test_a_killed_users_lease_does_not_keep_the_chain_up(tmp_path) -> None:
    state = tmp_path / "chain"
    lease, url, starting = share_server(state)
    assert url == "" and starting is not None
    handle = starting.wait()
    dead = subprocess.Popen([sys.executable, "-c", "from chain.processes import ChainLease; import sys, time; "
                             f"ChainLease({str(state)!r}); print('ok', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert dead.stdout is not None and dead.stdout.readline().strip() == "ok"
    assert len(live_leases(state)) == 2
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    assert live_leases(state) == [os.getpid()]
    assert lease.release() is True  # the killed user's lease is stale: this was the last one
    assert running_server(state) is None and handle.process is not None and handle.process.poll() is not None


def test_a_job_completes_across_a_chain_crash_and_restart(tmp_path, breast_dir) -> None:
    from chain.processes import start_server

    state = tmp_path / "chain"
    out = tmp_path / "run"
    proc = _start(out, _sets(breast_dir, state, "lr.epochs=3", "chain.retry_seconds=90"))
    restarted = None
    try:
        deadline = time.monotonic() + 180
        rounds = out / "guest" / "rounds.jsonl"
        while time.monotonic() < deadline and not (rounds.exists() and len(rounds.read_text().splitlines()) >= 3):
            time.sleep(0.05)  # training under way: rounds are being posted
        info = running_server(state)
        assert info is not None and proc.poll() is None
        os.kill(int(info["pid"]), signal.SIGKILL)
        time.sleep(1.0)  # the nodes meet a refused connection meanwhile
        restarted = start_server(state, port=int(info["url"].rsplit(":", 1)[1]))
        code, text = _finish(proc)
        assert code == 0, text
        assert _audit(out, state) == 0
    finally:
        proc.kill()
        if restarted is not None:
            restarted.stop()
