"""Vertical LR with N hosts: the protocol's total work, 3 parties (10 + 10 + 10 columns) vs 2 (10 + 20).

`vfl.lr.multihost.fit_in_process` runs every party's steps in this one process, one after
another, with 2048-bit keys and one worker (everything in this thread), so its CPU time is
the work of all parties together (a job spreads it over the parties' processes), and other
programs on the machine barely change it. CPU seconds per epoch are C(1 + extra) - C(1) over
the extra epochs (a 1-epoch run in --quick mode). The same driver runs the two-party split, so the
ratio is the extra work of the third party, not a runtime comparison (that is the
pipeline benchmark's once the runtime runs N hosts).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import Bench
from vfl.datasets import breast_split_hosts
from vfl.lr import LrOptions
from vfl.lr.multihost import fit_in_process
from vfl.paillier import configure

KEY_BITS = 2048
REPO = Path(__file__).resolve().parents[1]


def _runner(n_hosts: int, keys: list) -> Callable[[int], float]:
    guest, hosts = breast_split_hosts(1 if n_hosts == 1 else 2)
    blocks = [hosts[0].X] if n_hosts == 1 else [h.X[:, :10] for h in hosts]  # 10 + 20, or 10 + 10 + 10

    def run(epochs: int) -> float:
        opts = LrOptions(epochs=epochs, tol=0.0)
        c0 = time.process_time()
        fit_in_process(guest.X, blocks, guest.y, opts, keys[0], keys[1:1 + n_hosts])
        return time.process_time() - c0
    return run


def run(bench: Bench) -> None:
    from nodes.testing import party_keys
    from vfl.paillier import generate_keypair

    keys = [*party_keys(KEY_BITS), generate_keypair(KEY_BITS)]  # guest, host1, host2: distinct keys
    extra = 0 if bench.quick else 3
    per_epoch = {}
    before = configure().workers
    configure(workers=1)
    try:
        for n_hosts in (1, 2):
            run_n = _runner(n_hosts, keys)
            one = min(run_n(1), run_n(1))  # the first run also warms the keys' tables
            per_epoch[n_hosts] = one if extra == 0 else max(run_n(1 + extra) - one, 1e-9) / extra
    finally:
        configure(workers=before)
    bench.add("multihost", f"breast LR {KEY_BITS}b CPU s/epoch, all parties in one thread: 3 parties vs 2",
              per_epoch[2], per_epoch[1], unit="s",
              note="10+10+10 vs 10+20 columns, full batch, the same driver (vfl.lr.multihost); "
                   "ratio < 1: the third party's extra work")
    _job_rows(bench)


def _vflchain_run(config: Path, out: Path, data: Path, state: Path, roles: tuple[str, ...], extra: list[str]) -> float:
    """Wall seconds of one `vflchain run` (raises with its output's tail if it fails)."""
    sets = [f"chain.state={state}", *extra]
    for role in roles:
        sets += [f"{role}.data={data / f'{role}.csv'}", f"{role}.address=127.0.0.1:0"]
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(config), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"vflchain run {config.name} failed: {(proc.stdout + proc.stderr)[-2000:]}")
    return seconds


def _job_rows(bench: Bench) -> None:
    from nodes.cli import main as cli

    extra = ["lr.epochs=2"] if bench.quick else []
    with tempfile.TemporaryDirectory(prefix="bench-multihost-") as tmp:
        d = Path(tmp)
        for hosts, where in ((1, "data2"), (2, "data3")):
            if cli(["data", "breast", "--out", str(d / where), *(["--hosts", "2"] if hosts == 2 else [])]) != 0:
                raise RuntimeError("vflchain data breast failed")
        state = d / "chain"
        examples = REPO / "examples"
        two = _vflchain_run(examples / "breast_lr.toml", d / "run2", d / "data2", state, ("guest", "host"), extra)
        three = _vflchain_run(examples / "breast_lr_3party.toml", d / "run3", d / "data3", state,
                              ("guest", "host1", "host2"), extra)
    bench.add("multihost", "breast LR job under `vflchain run`, wall s: 3 parties (10+10+10) vs 2 (10+20)",
              three, two, unit="s",
              note=f"the 3-party job takes {three / two:.2f}x the 2-party job (target <= 1.3x); separate "
                   "processes, 2048-bit keys, every round attested on chain"
                   + ("; --quick: 2 epochs" if bench.quick else ""))
