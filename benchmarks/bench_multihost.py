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

import time
from collections.abc import Callable

from benchmarks.harness import Bench
from vfl.datasets import breast_split_hosts
from vfl.lr import LrOptions
from vfl.lr.multihost import fit_in_process
from vfl.paillier import configure

KEY_BITS = 2048


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
