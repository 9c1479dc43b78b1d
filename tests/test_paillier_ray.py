"""The Ray backend runs the same kernels as the local one, with the same results (local Ray instance)."""

from __future__ import annotations

import numpy as np
import pytest
from phe import paillier

from vfl.paillier import PublicKey, _parallel, array, configure, generate_keypair, keys, pack

pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_backend_equals_local(monkeypatch):
    pk, sk = generate_keypair(1024)
    peer_pk, peer_sk = paillier.generate_paillier_keypair(n_length=1024)
    peer = PublicKey.from_phe(peer_pk)  # encryption under a key we do not own runs remotely
    for name in ("_CHEAP_CHUNK", "_MUL_CHUNK", "_MULTIEXP_CHUNK", "_GROUP_CHUNK"):
        monkeypatch.setattr(array, name, (16, 64))
    monkeypatch.setattr(array, "_MIN_PARALLEL_WORK", 16)
    monkeypatch.setattr(keys, "ENCRYPT_CHUNK", (16, 64))
    monkeypatch.setattr(keys, "DECRYPT_CHUNK", (16, 64))
    rng = np.random.default_rng(5)
    n = 96
    x = rng.normal(size=n)
    X = rng.normal(size=(3, n))
    groups = rng.integers(0, 4, size=(n, 3))
    enc = pk.encrypt(x, precision=20)
    y = pk.encrypt(rng.integers(0, 2, size=n))

    def results():
        return {"rmatmul": enc.rmatmul(X, precision=12).cipher.tolist(),
                "group_sum": y.group_sum(groups, 4).cipher.tolist(),
                "mul": enc.mul(np.arange(n) - 40).cipher.tolist(),
                "add": (enc + x).cipher.tolist(),
                "pack": pack(y, bound=1).cipher.tolist()}

    configure(backend="local", workers=2)
    local = results()
    try:
        configure(backend="ray", workers=2)
        remote = results()
        assert _parallel._ray is not None  # the kernels really went to Ray
        on_ray = peer.encrypt(x)
        got = [peer_sk.decrypt(c) for c in on_ray.to_phe()]
        np.testing.assert_allclose(got, x, atol=1e-12)
        np.testing.assert_array_equal(sk.decrypt(enc), np.ldexp(np.rint(np.ldexp(x, 20)), -20))
    finally:
        configure(backend="local", workers=0)
    assert remote == local
