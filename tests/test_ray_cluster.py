"""A party's Paillier work on a real two-node Ray cluster equals the local backend's."""

from __future__ import annotations

import numpy as np
import pytest
from phe import paillier

from vfl.paillier import PublicKey, _parallel, array, configure, generate_keypair, keys

pytest.importorskip("ray", reason="the ray package is not installed (pip install 'vflchain[ray]')")

from nodes.raycluster import LocalRayCluster, _alive  # noqa: E402


@pytest.mark.slow
def test_two_node_ray_cluster_computes_what_the_local_backend_computes(monkeypatch):
    import ray

    pk, sk = generate_keypair(1024)
    peer_pk, peer_sk = paillier.generate_paillier_keypair(n_length=1024)
    peer = PublicKey.from_phe(peer_pk)  # encryption under the peer's key runs on the cluster
    for name in ("_CHEAP_CHUNK", "_MUL_CHUNK", "_MULTIEXP_CHUNK", "_GROUP_CHUNK"):
        monkeypatch.setattr(array, name, (16, 64))
    monkeypatch.setattr(array, "_MIN_PARALLEL_WORK", 16)
    monkeypatch.setattr(keys, "ENCRYPT_CHUNK", (16, 64))
    rng = np.random.default_rng(9)
    n = 128
    x = rng.normal(size=n)
    X = rng.normal(size=(4, n))
    groups = rng.integers(0, 5, size=(n, 4))
    enc = pk.encrypt(x, precision=20)  # the guest's encrypted gradient, as in an LR epoch
    y = pk.encrypt(rng.integers(0, 2, size=n))

    def job_work():
        return {"host_gradient": enc.rmatmul(X, precision=12).cipher.tolist(),  # X^T [[d]]
                "bin_sums": y.group_sum(groups, 5).cipher.tolist(),  # binning's per-bin label counts
                "scaled": enc.mul(np.arange(n) - 60).cipher.tolist(),
                "offset": (enc + x).cipher.tolist()}

    configure(backend="local", workers=2)
    local = job_work()
    cluster = LocalRayCluster(cpus_per_node=1)
    pids = []
    try:
        cluster.start_head()
        cluster.add_node()
        cluster.driver_env()
        configure(backend="ray", workers=2, address=cluster.address)
        _parallel._ray_module()  # connect now, to wait for the second node
        cluster.wait_for_nodes(2)
        assert sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]) == 2
        remote = job_work()
        on_cluster = peer.encrypt(x)
        pids = [p.pid for p in cluster._procs]
    finally:
        configure(backend="local", workers=0)
        cluster.stop()
    assert remote == local
    np.testing.assert_allclose([peer_sk.decrypt(c) for c in on_cluster.to_phe()], x, atol=1e-12)
    np.testing.assert_array_equal(sk.decrypt(enc), np.ldexp(np.rint(np.ldexp(x, 20)), -20))
    assert pids and not any(_alive(p) for p in pids)
