"""Paillier work on a real Ray cluster on this machine: one node, then two.

The cluster (`nodes.raycluster.LocalRayCluster`: `ray start --head` plus
`ray start --address`, one CPU per node, own ports, temp dirs and token) runs the
public kernels a party sends to Ray: encryption under the peer's key and the
multi-exponentiation X^T E(d) of an LR epoch. Reference: the local backend with
two worker processes. On a 2-core machine two Ray nodes share the same cores, so
the second node can at best double the first's throughput, and only on an idle
machine; the row shows what Ray's scheduling and byte transfer cost.
"""

from __future__ import annotations

import os
import time

import numpy as np
from phe import paillier

from benchmarks.harness import Bench
from vfl.paillier import PublicKey, _parallel, configure

SECTION = "ray"


def _work(peer: PublicKey, n: int) -> tuple[float, float]:
    """Encryptions/s under the peer's key, and multi-exponentiation rows/s (X^T E(d), 10 columns)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=n)
    t0 = time.perf_counter()
    enc = peer.encrypt(x)
    enc_rate = n / (time.perf_counter() - t0)
    X = rng.normal(size=(10, n))
    t0 = time.perf_counter()
    enc.rmatmul(X, precision=12)
    return enc_rate, n / (time.perf_counter() - t0)


def run(bench: Bench) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        bench.add(SECTION, "Ray cluster", None, note="skipped: the ray package is not installed")
        return
    from nodes.raycluster import LocalRayCluster

    n = 256 if bench.quick else 2048
    peer = PublicKey.from_phe(paillier.generate_paillier_keypair(n_length=2048)[0])  # not ours: public path
    configure(backend="local", workers=2)
    _work(peer, 512)  # worker processes started, the key's tables built in each
    local = _work(peer, n)
    rows: dict[int, tuple[float, float]] = {}
    cluster = LocalRayCluster(cpus_per_node=1)
    try:
        cluster.start_head()
        cluster.driver_env()
        configure(backend="ray", workers=4, address=cluster.address)  # the same chunks for 1 and 2 nodes
        _parallel._ray_module()
        _work(peer, 512)  # Ray starts its worker processes, each builds the key's tables
        rows[1] = _work(peer, n)
        cluster.add_node()
        cluster.wait_for_nodes(2)
        _work(peer, 512)
        rows[2] = _work(peer, n)
    finally:
        configure(backend="local", workers=0)
        cluster.stop()
    load = os.getloadavg()[0]
    for nodes, (enc_rate, mx_rate) in rows.items():
        bench.add(SECTION, f"encryption under the peer's key (2048 bits), {n:,} values, {nodes} Ray node(s)",
                  enc_rate, reference=local[0], unit="values/s",
                  note=f"reference: local backend, 2 worker processes; 1 CPU per Ray node; load {load:.1f}")
        bench.add(SECTION, f"X^T E(d) (10 columns, 2048 bits), {n:,} rows, {nodes} Ray node(s)",
                  mx_rate, reference=local[1], unit="rows/s",
                  note="reference: local backend, 2 worker processes")
    bench.add(SECTION, "second Ray node: speed-up of encryption / X^T E(d)",
              rows[2][0] / rows[1][0], unit="x", ratio=0.0,
              note=f"X^T E(d): {rows[2][1] / rows[1][1]:.2f}x; both nodes on this machine's 2 cores")
